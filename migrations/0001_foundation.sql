-- Foundation: regions, venues, users, cameras, detections, incidents (minimal), audit log, job queue.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE police_regions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    area        geography(MultiPolygon, 4326),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username        text NOT NULL,
    phone           text,
    display_name    text NOT NULL,
    role            text NOT NULL CHECK (role IN ('officer', 'bouncer', 'owner', 'dispatcher', 'admin')),
    venue_id        uuid,
    region_id       uuid REFERENCES police_regions (id),
    password_hash   text,
    otp_hash        text,
    otp_expires_at  timestamptz,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_credential CHECK (password_hash IS NOT NULL OR otp_hash IS NOT NULL),
    CONSTRAINT users_bouncer_venue CHECK (role <> 'bouncer' OR venue_id IS NOT NULL),
    CONSTRAINT users_police_region CHECK (role NOT IN ('officer', 'dispatcher') OR region_id IS NOT NULL)
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_phone_key ON users (phone) WHERE phone IS NOT NULL;

CREATE TABLE venues (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    address     text NOT NULL,
    location    geography(Point, 4326) NOT NULL,
    timezone    text NOT NULL,
    owner_id    uuid REFERENCES users (id),
    region_id   uuid REFERENCES police_regions (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX venues_location_idx ON venues USING gist (location);
CREATE INDEX venues_owner_idx ON venues (owner_id);

ALTER TABLE users ADD CONSTRAINT users_venue_fk FOREIGN KEY (venue_id) REFERENCES venues (id);
CREATE INDEX users_venue_idx ON users (venue_id) WHERE venue_id IS NOT NULL;

CREATE TABLE cameras (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id      uuid NOT NULL REFERENCES venues (id),
    name          text NOT NULL,
    zone          text,
    key_prefix    text NOT NULL UNIQUE,
    key_hash      bytea NOT NULL,
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz
);
CREATE INDEX cameras_venue_idx ON cameras (venue_id);

-- Incidents: confirmed detections of one venue and kind grouped together. Their life:
-- confirmed -> acknowledged (a bouncer) / responding (an officer accepted) -> on_scene -> resolved.
CREATE TABLE incidents (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id           uuid NOT NULL REFERENCES venues (id),
    region_id          uuid REFERENCES police_regions (id),
    kind               text NOT NULL CHECK (kind IN ('fight', 'crowd_surge', 'aggression', 'weapon', 'fire_smoke')),
    status             text NOT NULL DEFAULT 'confirmed'
                       CHECK (status IN ('confirmed', 'acknowledged', 'responding', 'on_scene', 'resolved')),
    opened_at          timestamptz NOT NULL DEFAULT now(),
    first_seen_at      timestamptz NOT NULL,
    last_seen_at       timestamptz NOT NULL,
    detection_count    integer NOT NULL DEFAULT 1,
    max_score          real NOT NULL DEFAULT 0,
    snapshot_key       text,
    clip_key           text,
    police_requested   boolean NOT NULL DEFAULT false,
    acknowledged_at    timestamptz,
    resolved_at        timestamptz,
    outcome            text,
    escalation_policy  jsonb,
    escalation_step    integer NOT NULL DEFAULT 0,
    version            integer NOT NULL DEFAULT 1,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incidents_venue_opened_idx ON incidents (venue_id, opened_at DESC);
CREATE INDEX incidents_open_idx ON incidents (venue_id, kind, last_seen_at DESC) WHERE status <> 'resolved';
CREATE INDEX incidents_region_open_idx ON incidents (region_id, opened_at DESC) WHERE status <> 'resolved';

-- Every change of an incident, in order: its timeline (detected, confirmed, notified, acknowledged...).
CREATE TABLE incident_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    at           timestamptz NOT NULL DEFAULT now(),
    type         text NOT NULL,
    actor_id     uuid,
    actor_role   text,
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, id);

CREATE TABLE detections (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    camera_id          uuid NOT NULL REFERENCES cameras (id),
    venue_id           uuid NOT NULL REFERENCES venues (id),
    event_id           text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('fight', 'crowd_surge', 'aggression', 'weapon', 'fire_smoke')),
    edge_score         real NOT NULL CHECK (edge_score BETWEEN 0 AND 1),
    occurred_at        timestamptz NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    zone               text,
    boxes              jsonb NOT NULL DEFAULT '[]',
    clip_key           text NOT NULL,
    clip_bytes         bigint NOT NULL,
    clip_content_type  text NOT NULL,
    snapshot_key       text,
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'processing', 'confirmed', 'rejected', 'unprocessable')),
    incident_id        uuid REFERENCES incidents (id),
    CONSTRAINT detections_camera_event_key UNIQUE (camera_id, event_id)
);
CREATE INDEX detections_venue_received_idx ON detections (venue_id, received_at DESC);
CREATE INDEX detections_incident_idx ON detections (incident_id) WHERE incident_id IS NOT NULL;

-- Objects written to storage before their row commits; a sweeper deletes those left behind.
CREATE TABLE pending_uploads (
    object_key  text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_uploads_created_idx ON pending_uploads (created_at);

-- Append-only audit log: who did or saw what. Rows can be added, never changed or removed.
CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor_id      uuid,
    actor_role    text NOT NULL,
    action        text NOT NULL,
    subject_type  text NOT NULL,
    subject_id    text NOT NULL,
    venue_id      uuid,
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_venue_at_idx ON audit_log (venue_id, at DESC) WHERE venue_id IS NOT NULL;
CREATE INDEX audit_log_subject_idx ON audit_log (subject_type, subject_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Job queue on the same PostgreSQL: enqueued in the transaction of the change that causes it.
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    dedup_key     text,
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'dead')),
    run_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 8,
    lease_until   timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_dedup_key ON jobs (kind, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX jobs_ready_idx ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_lease_idx ON jobs (lease_until) WHERE status = 'running';

-- Rotating refresh tokens: each use issues a new one in the same family; reuse revokes the family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id),
    token_hash  bytea NOT NULL UNIQUE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
