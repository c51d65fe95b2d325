-- Live view requests (issue 12's gaps): a pending request is pushed to the people who can approve
-- it, through the delivery log, and expires when nobody answers it in time.
--
-- live_view_grants: a request left unanswered past ``answer_by`` becomes ``expired``.
-- deliveries: a push about a live view request belongs to its grant, not to an alert (the owner who
-- approves is never alerted about the incident). Such a row has ``grant_id`` and no ``alert_id``,
-- and its own time to live (``ttl_s``: a request nobody can answer any more is not worth sending).
-- Written to apply before or after 0070 (which partitions deliveries by incident_opened_at).

ALTER TABLE live_view_grants DROP CONSTRAINT live_view_grants_status_check;
ALTER TABLE live_view_grants ADD CONSTRAINT live_view_grants_status_check
    CHECK (status IN ('requested', 'active', 'denied', 'revoked', 'ended', 'expired'));
ALTER TABLE live_view_grants ADD COLUMN answer_by timestamptz;
CREATE INDEX live_view_grants_requested_idx ON live_view_grants (requested_at) WHERE status = 'requested';

ALTER TABLE deliveries ALTER COLUMN alert_id DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN grant_id uuid REFERENCES live_view_grants (id);
ALTER TABLE deliveries ADD COLUMN ttl_s integer CHECK (ttl_s > 0);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purpose_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purpose_check
    CHECK (purpose IN ('alert', 'update', 'reminder', 'live_view_request', 'live_view_answer'));
ALTER TABLE deliveries ADD CONSTRAINT deliveries_subject_check CHECK (
    CASE WHEN purpose LIKE 'live\_view\_%' THEN grant_id IS NOT NULL AND alert_id IS NULL
         ELSE alert_id IS NOT NULL AND grant_id IS NULL END);
-- One push per grant, device and purpose (the request, then its one answer).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'deliveries'
                 AND column_name = 'incident_opened_at') THEN
        ALTER TABLE deliveries ADD CONSTRAINT deliveries_grant_unique
            UNIQUE (grant_id, device_id, purpose, incident_opened_at);
    ELSE
        ALTER TABLE deliveries ADD CONSTRAINT deliveries_grant_unique UNIQUE (grant_id, device_id, purpose);
    END IF;
END $$;
