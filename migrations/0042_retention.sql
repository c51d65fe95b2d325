-- Retention (issue 10, part 8). Footage the sweeper deleted is marked, never forgotten: the rows stay,
-- with the time their objects were deleted. Audit records past their retention may be deleted by
-- the sweeper, and by nothing else: a transaction names the cut-off it deletes before
-- (`kuzet.audit_purge_before`), and no row as new as that can go; UPDATE and TRUNCATE stay refused.
ALTER TABLE detections ADD COLUMN footage_purged_at timestamptz;
ALTER TABLE incidents ADD COLUMN footage_purged_at timestamptz;

-- Rejected or unprocessable detections whose footage is still stored, oldest decision first.
CREATE INDEX detections_footage_expiry_idx ON detections (decided_at)
    WHERE footage_purged_at IS NULL AND status IN ('rejected', 'unprocessable');
-- Incidents whose footage is still stored and not held, by the time their retention counts from
-- (the last detection, or the resolution when later; greatest() skips a NULL resolved_at).
CREATE INDEX incidents_footage_expiry_idx ON incidents (greatest(last_seen_at, resolved_at))
    WHERE footage_purged_at IS NULL AND NOT legal_hold;
CREATE INDEX audit_log_at_idx ON audit_log (at);

DROP TRIGGER audit_log_no_update ON audit_log;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE FUNCTION audit_log_retention_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cutoff text := current_setting('kuzet.audit_purge_before', true);
BEGIN
    IF cutoff IS NULL OR cutoff = '' OR OLD.at >= cutoff::timestamptz THEN
        RAISE EXCEPTION 'audit_log is append-only (only the retention sweeper deletes records past retention)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_retention_only();
