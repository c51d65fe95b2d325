-- Outcomes: what the people who resolved or own an incident say it was (real, false alarm, unsure),
-- with an optional note. They are labels for retraining the model and calibrating cameras, kept per
-- person (the resolver's and the owner's can differ); the newest one is the incident's verdict.
CREATE TABLE incident_outcomes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    user_id      uuid REFERENCES users (id),
    role         text NOT NULL,
    source       text NOT NULL CHECK (source IN ('resolution', 'review')),
    verdict      text NOT NULL CHECK (verdict IN ('real', 'false_alarm', 'unsure')),
    note         text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_outcomes_incident_idx ON incident_outcomes (incident_id, id);
