-- Alerts on responders' phones: devices, duty, officer locations, escalation policies,
-- alerts (incident x person), the delivery log (alert x device) and short image links.

-- Phones. A token belongs to one user at a time: registering it again under another user moves it.
CREATE TABLE devices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id),
    fcm_token    text NOT NULL,
    platform     text NOT NULL CHECK (platform IN ('android', 'ios')),
    app_version  text NOT NULL,
    is_active    boolean NOT NULL DEFAULT true,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX devices_token_key ON devices (fcm_token);
CREATE INDEX devices_user_active_idx ON devices (user_id) WHERE is_active;

-- Who is on duty, where. Bouncers at their venue, officers in their region.
CREATE TABLE duty (
    user_id     uuid PRIMARY KEY REFERENCES users (id),
    role        text NOT NULL,
    on_duty     boolean NOT NULL,
    venue_id    uuid REFERENCES venues (id),
    region_id   uuid REFERENCES police_regions (id),
    since       timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX duty_venue_on_idx ON duty (venue_id) WHERE on_duty;
CREATE INDEX duty_region_on_idx ON duty (region_id, role) WHERE on_duty;

-- The latest location of each on-duty officer (deleted when they go off duty) and a short history.
CREATE TABLE officer_locations (
    user_id      uuid PRIMARY KEY REFERENCES users (id),
    location     geography(Point, 4326) NOT NULL,
    accuracy_m   real NOT NULL,
    recorded_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX officer_locations_location_idx ON officer_locations USING gist (location);
CREATE INDEX officer_locations_recorded_idx ON officer_locations (recorded_at);

CREATE TABLE officer_location_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id),
    location     geography(Point, 4326) NOT NULL,
    accuracy_m   real NOT NULL,
    recorded_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX officer_location_history_user_idx ON officer_location_history (user_id, recorded_at);
CREATE INDEX officer_location_history_recorded_idx ON officer_location_history (recorded_at);

-- Escalation policy per venue; venues without one use the default from the code.
CREATE TABLE escalation_policies (
    venue_id    uuid PRIMARY KEY REFERENCES venues (id),
    policy      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One alert per incident and person: "this incident was sent to you" (and what you did about it).
CREATE TABLE alerts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    incident_id      uuid NOT NULL REFERENCES incidents (id),
    user_id          uuid NOT NULL REFERENCES users (id),
    audience         text NOT NULL CHECK (audience IN ('bouncer', 'officer', 'dispatcher')),
    step             integer NOT NULL,
    distance_m       real,
    created_at       timestamptz NOT NULL DEFAULT now(),
    received_at      timestamptz,
    acknowledged_at  timestamptz,
    CONSTRAINT alerts_incident_user_key UNIQUE (incident_id, user_id)
);
CREATE INDEX alerts_user_idx ON alerts (user_id, created_at DESC);

-- The delivery log: one row per alert (or update) and device.
CREATE TABLE deliveries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id          uuid NOT NULL REFERENCES alerts (id),
    incident_id       uuid NOT NULL REFERENCES incidents (id),
    user_id           uuid NOT NULL REFERENCES users (id),
    device_id         uuid NOT NULL REFERENCES devices (id),
    purpose           text NOT NULL CHECK (purpose IN ('alert', 'update')),
    incident_version  integer NOT NULL,
    title             text NOT NULL,
    body              text NOT NULL,
    image_url         text,
    data              jsonb NOT NULL DEFAULT '{}',
    urgency           text NOT NULL CHECK (urgency IN ('critical', 'time_sensitive')),
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'received', 'acknowledged')),
    attempts          integer NOT NULL DEFAULT 0,
    fcm_message_name  text,
    error_code        text,
    claimed_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz,
    failed_at         timestamptz,
    received_at       timestamptz,
    acknowledged_at   timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_unique UNIQUE (alert_id, device_id, purpose, incident_version)
);
CREATE INDEX deliveries_incident_idx ON deliveries (incident_id, status);
CREATE INDEX deliveries_device_idx ON deliveries (device_id);

-- Short HTTPS links to footage for pushes and the app: /i/{token} redirects to a presigned URL.
CREATE TABLE short_links (
    token        text PRIMARY KEY,
    incident_id  uuid NOT NULL REFERENCES incidents (id),
    venue_id     uuid NOT NULL REFERENCES venues (id),
    user_id      uuid REFERENCES users (id),
    purpose      text NOT NULL CHECK (purpose IN ('snapshot', 'clip')),
    object_key   text NOT NULL,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX short_links_expires_idx ON short_links (expires_at);
