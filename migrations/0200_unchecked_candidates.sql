-- Candidates the server could not check. A fight or aggression candidate is judged by the server's
-- model; when its clip cannot be judged (unreadable, missing from storage, the analysis timed out
-- twice) the detection is 'unprocessable' and nobody is alerted. Such candidates were seen only in
-- the record, the log and an operator's alert rule. They now also wait on the dispatcher's board
-- until a dispatcher marks them checked (backend/detections/unchecked.py).
--
-- A table of their own, written in the decision's transaction: the board reads only what is still
-- waiting (the partial index), never the detections of the last hours, and the index on detections
-- (partitioned, large) stays as it is. Who checked, and when, stays for the audit retention.
CREATE TABLE unchecked_candidates (
    detection_id  uuid PRIMARY KEY,
    camera_id     uuid NOT NULL REFERENCES cameras (id),
    venue_id      uuid NOT NULL REFERENCES venues (id),
    kind          text NOT NULL,
    edge_score    real NOT NULL,
    detected_at   timestamptz NOT NULL,
    reason        text NOT NULL,
    cause         text NOT NULL CHECK (cause IN ('clip_unreadable', 'clip_missing', 'timed_out', 'decoder_crashed')),
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    checked_at    timestamptz,
    checked_by    uuid REFERENCES users (id),
    CHECK ((checked_at IS NULL) = (checked_by IS NULL))
);
-- What waits: the board's list (by time) and a dispatcher's "Checked" (by camera).
CREATE INDEX unchecked_candidates_waiting_idx ON unchecked_candidates (recorded_at) WHERE checked_at IS NULL;
CREATE INDEX unchecked_candidates_camera_idx ON unchecked_candidates (camera_id, recorded_at) WHERE checked_at IS NULL;
-- A venue's cameras, over the last day (the owner's camera health).
CREATE INDEX unchecked_candidates_venue_idx ON unchecked_candidates (venue_id, recorded_at);
-- The retention sweep's.
CREATE INDEX unchecked_candidates_recorded_idx ON unchecked_candidates (recorded_at);
