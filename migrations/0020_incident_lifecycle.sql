-- One incident lifecycle: detection kinds live in a reference table (declared in the code's kind
-- registry, backend/incidents/kinds.py) instead of CHECK lists; incidents can be put on legal hold.
CREATE TABLE incident_kinds (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO incident_kinds (name) VALUES ('fight'), ('aggression'), ('crowd_surge'), ('weapon'), ('fire_smoke');

ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_fkey FOREIGN KEY (kind) REFERENCES incident_kinds (name);
ALTER TABLE detections DROP CONSTRAINT detections_kind_check;
ALTER TABLE detections ADD CONSTRAINT detections_kind_fkey FOREIGN KEY (kind) REFERENCES incident_kinds (name);

ALTER TABLE incidents ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;
