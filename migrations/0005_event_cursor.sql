-- Offline-sync cursors that never skip: each timeline event records the transaction that wrote it.
-- A cursor is the xmin of a snapshot taken before reading (every transaction below it has finished),
-- so an event whose transaction commits late is still returned by the next sync.
ALTER TABLE incident_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX incident_events_incident_xid_idx ON incident_events (incident_id, xid);
