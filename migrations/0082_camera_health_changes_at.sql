-- Camera health changes older than the audit retention are pruned by the edge housekeeping job, in
-- batches, by time.
CREATE INDEX camera_health_changes_at_idx ON camera_health_changes (at);
