-- Repeats of an escalation policy: after the last step, reminders to everyone alerted who has not
-- acknowledged. An incident counts the rounds it has had (the stale-timer guard, as escalation_step
-- is for steps); each reminder push is its own delivery row, told apart from the alert and from
-- other rounds by its round.
ALTER TABLE incidents ADD COLUMN repeat_round integer NOT NULL DEFAULT 0;

ALTER TABLE deliveries ADD COLUMN round integer NOT NULL DEFAULT 0;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purpose_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purpose_check
    CHECK (purpose IN ('alert', 'update', 'reminder'));
ALTER TABLE deliveries ADD CONSTRAINT deliveries_round_check
    CHECK ((purpose = 'reminder') = (round > 0));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_unique;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_unique UNIQUE (alert_id, device_id, purpose, incident_version, round);
