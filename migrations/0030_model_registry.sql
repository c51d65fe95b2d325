-- Which confirmation model the workers run ('live') and which one scores in its shadow ('shadow').
-- A worker reads both when it starts; no row: the model committed with the code. Changes are audited.
CREATE TABLE model_slots (
    slot      text PRIMARY KEY CHECK (slot IN ('live', 'shadow')),
    name      text NOT NULL,
    version   text NOT NULL,
    sidecar   text NOT NULL,  -- path of the model's sidecar JSON on the worker machines
    set_by    uuid REFERENCES users (id),
    set_at    timestamptz NOT NULL DEFAULT now()
);

-- A shadow model's verdict on a live detection: recorded beside the decision, never changing it.
CREATE TABLE shadow_scores (
    detection_id   uuid NOT NULL REFERENCES detections (id),
    model_name     text NOT NULL,
    model_version  text NOT NULL,
    score          real NOT NULL CHECK (score BETWEEN 0 AND 1),
    threshold      real NOT NULL,
    stage          text,
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (detection_id, model_name, model_version)
);
CREATE INDEX shadow_scores_model_idx ON shadow_scores (model_name, model_version);
