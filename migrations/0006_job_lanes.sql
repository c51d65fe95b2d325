-- Job lanes and priorities: alerts are claimed in their own lane (by kind), and within a lane by
-- priority (lower first: edge-decided confirmations before those waiting for the model), then by
-- when they became due. Running jobs keep their lease by heartbeat, so leases are short.
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 10;
DROP INDEX jobs_ready_idx;
CREATE INDEX jobs_ready_idx ON jobs (kind, priority, run_at) WHERE status = 'queued';
