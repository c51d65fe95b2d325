-- Staff panic button: the manual kind `panic` (declared in backend/incidents/kinds.py) and one row
-- per panic, keyed by the sender's client id so a double tap or a retry is one alert.
INSERT INTO incident_kinds (name) VALUES ('panic');

CREATE TABLE panics (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id),
    client_id     text NOT NULL,
    body_hash     text NOT NULL,
    venue_id      uuid NOT NULL REFERENCES venues (id),
    incident_id   uuid NOT NULL REFERENCES incidents (id),
    note          text,
    photo_key     text,
    lat           double precision,
    lon           double precision,
    accuracy_m    double precision,
    created_at    timestamptz NOT NULL DEFAULT now(),
    cancel_until  timestamptz NOT NULL,
    cancelled_at  timestamptz,
    CONSTRAINT panics_client_once UNIQUE (user_id, client_id)
);
CREATE INDEX panics_incident_idx ON panics (incident_id);
