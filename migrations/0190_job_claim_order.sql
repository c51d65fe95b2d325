-- Claims that stay cheap under a backlog. A claim took a lane's due jobs in order of priority, then
-- of run_at less their headstart (0180): an expression no index could hold, so every claim read and
-- sorted the lane's whole backlog before it could lock one job (bench/claims.py: 17 ms a claim at
-- 20,000 confirmations waiting, 118 ms at 200,000; every worker claims again each time a clip is done,
-- so the database would spend its CPU on sorting just when the workers catch up after an outage).
--
-- job_due_at is that ordering time. It is IMMUTABLE although timestamptz - interval is only STABLE:
-- the interval has no days or months (make_interval(secs => ...)), so the result does not depend on
-- the time zone. Indexed per kind and priority, a claim reads each (kind, priority)'s earliest due
-- jobs in index order and stops there (backend/core/queue.py, CLAIM). In PL/pgSQL: a SQL function whose
-- body is less immutable than declared is not inlined, and called as SQL it cost 30-70 us an enqueue;
-- this way the index costs an enqueue about what jobs_ready_idx does.
CREATE FUNCTION job_due_at(run_at timestamptz, headstart_s real) RETURNS timestamptz
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$ BEGIN RETURN run_at - make_interval(secs => headstart_s); END $$;

CREATE INDEX jobs_claim_idx ON jobs (kind, priority, job_due_at(run_at, headstart_s), id) WHERE status = 'queued';

-- A claim asks for each priority the code knows (backend/core/jobs.py, PRIORITIES): a job with
-- another would never be claimed, so it is refused when it is enqueued.
ALTER TABLE jobs ADD CONSTRAINT jobs_priority_known CHECK (priority IN (0, 10));
