-- Deliveries are retried until the alert's TTL, not a fixed number of tries. A recipient none of
-- whose devices can be reached (every delivery failed, or no device registered) is marked on the
-- alert once, with the reason, so escalation can move on at once and dispatchers see who was
-- not reached.
ALTER TABLE alerts ADD COLUMN undelivered_at timestamptz;
ALTER TABLE alerts ADD COLUMN undelivered_reason text;
CREATE INDEX deliveries_alert_idx ON deliveries (alert_id);
