-- SMS fallback over SMPP (issue 23): verified phone numbers, the SMS log, daily budgets.
--
-- A number receives alerts only once verified (a one-time code sent to it by SMS). The SMS log has
-- one row per message: who, why (purpose, reason), which incident step, and where it stands
-- (queued -> sending -> submitted -> delivered | failed; skipped when a budget stopped it). The
-- number itself is never copied here: it is read from users (or the pending verification) when
-- the message is sent. A verification message's body (it holds the code) is blanked once sent.
ALTER TABLE users ADD COLUMN phone_verified_at timestamptz;

CREATE TABLE phone_verifications (
    user_id     uuid PRIMARY KEY REFERENCES users (id),
    phone       text NOT NULL,
    code_hash   text NOT NULL,
    expires_at  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sms_messages (
    id            bigserial PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id),
    purpose       text NOT NULL CHECK (purpose IN ('alert', 'panic', 'reminder', 'verification', 'camera_down')),
    incident_id   uuid REFERENCES incidents (id),
    alert_id      uuid REFERENCES alerts (id),
    venue_id      uuid REFERENCES venues (id),
    step          integer NOT NULL DEFAULT 0,
    reason        text,
    body          text NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'sending', 'submitted', 'delivered', 'failed', 'skipped')),
    attempts      integer NOT NULL DEFAULT 0,
    parts         integer,
    encoding      text,
    provider_ids  text[] NOT NULL DEFAULT '{}',
    error_code    text,
    claimed_at    timestamptz,
    submitted_at  timestamptz,
    receipt_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sms_messages_incident CHECK ((purpose IN ('verification', 'camera_down')) OR incident_id IS NOT NULL)
);
-- never more than one SMS per person per incident step
CREATE UNIQUE INDEX sms_messages_once ON sms_messages (incident_id, user_id, step) WHERE incident_id IS NOT NULL;
CREATE INDEX sms_messages_provider_idx ON sms_messages USING gin (provider_ids);
CREATE INDEX sms_messages_day_idx ON sms_messages (created_at) WHERE status <> 'skipped';
CREATE INDEX sms_messages_venue_day_idx ON sms_messages (venue_id, created_at) WHERE status <> 'skipped';
CREATE INDEX sms_messages_user_idx ON sms_messages (user_id, created_at);
