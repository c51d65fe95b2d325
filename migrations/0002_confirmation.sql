-- Confirmation: the server's decision on each detection (score, why, which model), its artefacts
-- (server snapshot and phone-playable MP4 beside the original clip) and the time each step took.
-- The decision itself is the detection's final status: confirmed, rejected or unprocessable.
ALTER TABLE detections
    ADD COLUMN score                  real CHECK (score BETWEEN 0 AND 1),
    ADD COLUMN decision_reason        text,
    ADD COLUMN model_name             text,
    ADD COLUMN model_version          text,
    ADD COLUMN verified_by_server     boolean,
    ADD COLUMN person_count           integer CHECK (person_count >= 0),
    ADD COLUMN motion                 real,
    ADD COLUMN timings                jsonb,
    ADD COLUMN server_snapshot_key    text,
    ADD COLUMN playable_key           text,
    ADD COLUMN processing_started_at  timestamptz,
    ADD COLUMN decided_at             timestamptz,
    ADD CONSTRAINT detections_decided CHECK (
        status NOT IN ('confirmed', 'rejected', 'unprocessable')
        OR (decided_at IS NOT NULL AND decision_reason IS NOT NULL)
    );

-- Detections still waiting for (or stuck in) confirmation, for the queue dashboard.
CREATE INDEX detections_undecided_idx ON detections (received_at) WHERE status IN ('queued', 'processing');
