-- Webhooks that never drop an event (issue 21).
-- A replay starts a new round of attempts instead of counting from zero again: round_start is the
-- attempt count when the round began, so every attempt keeps its own number (and its own record in
-- webhook_attempts) and the retry schedule counts from the round's first try.
ALTER TABLE webhook_deliveries ADD COLUMN round_start integer NOT NULL DEFAULT 0;
-- A deleted subscription keeps its history (deliveries and attempts); it matches and sends nothing.
ALTER TABLE webhook_subscriptions ADD COLUMN deleted_at timestamptz;
