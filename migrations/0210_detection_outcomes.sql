-- An owner's word on a detection the model rejected. A detection's label was only its incident's
-- verdict, and only detections the model confirmed join incidents: a fight the model missed never got
-- a label, and misses are what the next model most needs. The venue's owner, having watched the
-- rejected clip (an audited footage view), says what it was; the newest word is the label
-- (backend/history/outcomes.py). Confirmed detections keep their incident's verdict.
CREATE TABLE detection_outcomes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detection_id  uuid NOT NULL REFERENCES detections (id),
    venue_id      uuid NOT NULL REFERENCES venues (id),
    user_id       uuid REFERENCES users (id),
    role          text NOT NULL,
    verdict       text NOT NULL CHECK (verdict IN ('real', 'false_alarm', 'unsure')),
    note          text,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX detection_outcomes_detection_idx ON detection_outcomes (detection_id, id);
