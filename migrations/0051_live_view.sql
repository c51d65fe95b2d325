-- Police live view: a venue's consent policy, time-limited grants to responders of an incident, and
-- the short video segments the venue's cameras upload while a grant is active (short retention).
CREATE TABLE live_view_policies (
    venue_id    uuid PRIMARY KEY REFERENCES venues (id),
    policy      text NOT NULL CHECK (policy IN ('never', 'on_request', 'automatic')),
    updated_by  uuid REFERENCES users (id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE live_view_grants (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    incident_id     uuid NOT NULL REFERENCES incidents (id),
    venue_id        uuid NOT NULL REFERENCES venues (id),
    grantee_id      uuid NOT NULL REFERENCES users (id),
    grantee_role    text NOT NULL,
    policy          text NOT NULL,  -- the venue's policy when it was requested
    status          text NOT NULL CHECK (status IN ('requested', 'active', 'denied', 'revoked', 'ended')),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    decided_by      uuid REFERENCES users (id),
    decided_role    text,
    started_at      timestamptz,
    expires_at      timestamptz,
    ended_at        timestamptz,
    end_reason      text,
    viewed_cameras  uuid[] NOT NULL DEFAULT '{}'
);
-- One open request or grant per person and incident.
CREATE UNIQUE INDEX live_view_grants_open_idx ON live_view_grants (incident_id, grantee_id)
    WHERE status IN ('requested', 'active');
CREATE INDEX live_view_grants_venue_idx ON live_view_grants (venue_id, status);

CREATE TABLE live_view_segments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    camera_id    uuid NOT NULL REFERENCES cameras (id),
    venue_id     uuid NOT NULL REFERENCES venues (id),
    seq          bigint NOT NULL CHECK (seq >= 0),
    duration_s   double precision NOT NULL,
    object_key   text NOT NULL,
    bytes        integer NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT live_view_segments_once UNIQUE (camera_id, seq)
);
CREATE INDEX live_view_segments_received_idx ON live_view_segments (received_at);
