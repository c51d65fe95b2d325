-- Webhooks to city systems (police operational centre, the city's safety platform).
-- A subscription names a target URL, the event types it wants, an area filter (a police region,
-- some venues, or a polygon) and a format (Standard Webhooks JSON or CAP 1.2 XML). Its signing secret
-- is kept to sign with; after a rotation the previous one signs too until it expires.
CREATE TABLE webhook_subscriptions (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                        text NOT NULL,
    url                         text NOT NULL,
    event_types                 text[] NOT NULL CHECK (cardinality(event_types) > 0),
    format                      text NOT NULL CHECK (format IN ('json', 'cap')),
    region_id                   uuid REFERENCES police_regions (id),
    venue_ids                   uuid[],
    area                        geography(Geometry, 4326),
    enabled                     boolean NOT NULL DEFAULT true,
    disabled_reason             text,
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one row per event and subscription, written in the transaction of the incident's
-- change. ``message_id`` is the webhook-id (the receiver's idempotency key); ``body`` the exact bytes
-- signed and sent on every attempt. Per subscription, rows are sent in id order.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions (id),
    event_id         bigint NOT NULL REFERENCES incident_events (id),
    incident_id      uuid NOT NULL REFERENCES incidents (id),
    event_type       text NOT NULL,
    message_id       text NOT NULL,
    content_type     text NOT NULL,
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz DEFAULT now(),  -- NULL once delivered or dead
    claimed_at       timestamptz,
    last_error       text,
    last_status      integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    dead_at          timestamptz,
    CONSTRAINT webhook_deliveries_event_key UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_open_idx ON webhook_deliveries (subscription_id, id)
    WHERE status IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_subscription_idx ON webhook_deliveries (subscription_id, id DESC);

-- Every attempt: when, the answer (or the error), how long it took.
CREATE TABLE webhook_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   bigint NOT NULL REFERENCES webhook_deliveries (id),
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    status_code   integer,
    error         text,
    response_ms   real NOT NULL,
    response_body text,
    CONSTRAINT webhook_attempts_key UNIQUE (delivery_id, attempt)
);
