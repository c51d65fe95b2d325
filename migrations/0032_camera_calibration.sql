-- Per-camera calibration of the confirmation threshold from resolved incidents: a camera whose
-- confirmed detections are mostly false alarms gets a raised threshold (never past the model's
-- validated bound) or, when that would not help, is flagged to its owner.
CREATE TABLE camera_calibration (
    camera_id      uuid PRIMARY KEY REFERENCES cameras (id),
    venue_id       uuid NOT NULL REFERENCES venues (id),
    model_name     text NOT NULL,
    model_version  text NOT NULL,
    threshold      real CHECK (threshold BETWEEN 0 AND 1),  -- NULL: the model's own
    flagged        boolean NOT NULL DEFAULT false,
    reason         text NOT NULL,
    labelled       integer NOT NULL,
    false_alarms   integer NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX camera_calibration_venue_idx ON camera_calibration (venue_id);
