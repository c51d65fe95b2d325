-- Edge boxes (issue 18, the server side): a box beside a venue's NVR enrols with a one-time code,
-- registers the venue's cameras under its own names for them, and reports each camera's health.
--
-- edge_boxes: the enrolment code and the box key are stored as SHA-256 only (the code is 80 bits,
-- one-time, expiring and throttled per client; the key is 256 bits). ``pending`` until enrolled,
-- ``active`` after, ``revoked`` for ever (its key and its cameras' keys stop working at once).
-- cameras: a camera registered by a box keeps the box's stable name for it (``edge_key``); one the
-- box no longer lists is ``removed_at`` (and inactive), never deleted.
-- camera_health: the latest report per camera with the condition derived from it; changes of
-- condition are kept in camera_health_changes, and each stretch of a bad condition is one episode
-- (camera_health_episodes): alerted once, recovered once.
-- deliveries: a push about a camera's health belongs to its episode (no incident, no alert); it is
-- partitioned by the episode's start as an incident's pushes are by the incident's opening.

CREATE TABLE edge_boxes (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    venue_id             uuid NOT NULL REFERENCES venues (id),
    name                 text NOT NULL,
    status               text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'revoked')),
    code_hash            bytea,
    code_expires_at      timestamptz,
    key_prefix           text UNIQUE,
    key_hash             bytea,
    hostname             text,
    agent_version        text,
    created_by           uuid REFERENCES users (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    enrolled_at          timestamptz,
    revoked_at           timestamptz,
    last_seen_at         timestamptz,
    outbox_depth         integer,
    outbox_oldest_age_s  double precision,
    disk_free_bytes      bigint,
    evicted_clips        bigint,
    CONSTRAINT edge_boxes_enrolled CHECK (status = 'pending' OR enrolled_at IS NOT NULL OR revoked_at IS NOT NULL),
    CONSTRAINT edge_boxes_key CHECK (status <> 'active' OR (key_prefix IS NOT NULL AND key_hash IS NOT NULL))
);
CREATE UNIQUE INDEX edge_boxes_code_key ON edge_boxes (code_hash) WHERE code_hash IS NOT NULL;
CREATE INDEX edge_boxes_venue_idx ON edge_boxes (venue_id, created_at);
CREATE INDEX edge_boxes_seen_idx ON edge_boxes (last_seen_at) WHERE status = 'active';

ALTER TABLE cameras ADD COLUMN edge_box_id uuid REFERENCES edge_boxes (id);
ALTER TABLE cameras ADD COLUMN edge_key text;
ALTER TABLE cameras ADD COLUMN vendor text;
ALTER TABLE cameras ADD COLUMN model text;
ALTER TABLE cameras ADD COLUMN removed_at timestamptz;
ALTER TABLE cameras ADD CONSTRAINT cameras_edge_key CHECK ((edge_box_id IS NULL) = (edge_key IS NULL));
CREATE UNIQUE INDEX cameras_edge_key_idx ON cameras (edge_box_id, edge_key) WHERE edge_box_id IS NOT NULL;

-- A failed enrolment counts against the client address like a failed sign-in.
ALTER TABLE sign_in_throttle DROP CONSTRAINT sign_in_throttle_scope_check;
ALTER TABLE sign_in_throttle ADD CONSTRAINT sign_in_throttle_scope_check
    CHECK (scope IN ('account', 'address', 'enrolment'));

CREATE TABLE camera_health (
    camera_id            uuid PRIMARY KEY REFERENCES cameras (id),
    venue_id             uuid NOT NULL REFERENCES venues (id),
    edge_box_id          uuid NOT NULL REFERENCES edge_boxes (id),
    reported_at          timestamptz NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    stream_up            boolean NOT NULL,
    fps                  double precision,
    last_keyframe_age_s  double precision,
    reconnects           integer NOT NULL DEFAULT 0,
    bitrate_kbps         double precision,
    picture              text NOT NULL,
    condition            text NOT NULL
                         CHECK (condition IN ('ok', 'unknown', 'frozen', 'dark', 'obstructed', 'moved', 'offline')),
    condition_since      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX camera_health_venue_idx ON camera_health (venue_id);

CREATE TABLE camera_health_episodes (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    camera_id    uuid NOT NULL REFERENCES cameras (id),
    venue_id     uuid NOT NULL REFERENCES venues (id),
    condition    text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    alerted_at   timestamptz,
    ended_at     timestamptz
);
CREATE UNIQUE INDEX camera_health_episodes_open_key ON camera_health_episodes (camera_id) WHERE ended_at IS NULL;
CREATE INDEX camera_health_episodes_unalerted_idx ON camera_health_episodes (venue_id)
    WHERE ended_at IS NULL AND alerted_at IS NULL;

CREATE TABLE camera_health_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    camera_id       uuid NOT NULL REFERENCES cameras (id),
    venue_id        uuid NOT NULL REFERENCES venues (id),
    at              timestamptz NOT NULL DEFAULT now(),
    from_condition  text,
    to_condition    text NOT NULL,
    episode_id      uuid REFERENCES camera_health_episodes (id)
);
CREATE INDEX camera_health_changes_camera_idx ON camera_health_changes (camera_id, at);

ALTER TABLE deliveries ALTER COLUMN incident_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN episode_id uuid REFERENCES camera_health_episodes (id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purpose_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purpose_check CHECK (purpose IN (
    'alert', 'update', 'reminder', 'live_view_request', 'live_view_answer', 'camera_alert', 'camera_recovered'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_subject_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_subject_check CHECK (
    CASE WHEN purpose LIKE 'camera\_%' THEN episode_id IS NOT NULL AND incident_id IS NULL
                                            AND alert_id IS NULL AND grant_id IS NULL
         WHEN purpose LIKE 'live\_view\_%' THEN grant_id IS NOT NULL AND alert_id IS NULL
                                                AND incident_id IS NOT NULL AND episode_id IS NULL
         ELSE alert_id IS NOT NULL AND grant_id IS NULL AND incident_id IS NOT NULL AND episode_id IS NULL END);
-- One push per episode, device and purpose (the alert, then its one recovery).
ALTER TABLE deliveries ADD CONSTRAINT deliveries_episode_unique
    UNIQUE (episode_id, device_id, purpose, incident_opened_at);
CREATE INDEX deliveries_episode_idx ON deliveries (episode_id) WHERE episode_id IS NOT NULL;
