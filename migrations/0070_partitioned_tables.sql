-- The append-heavy tables, partitioned by month (declarative range partitioning), so old months
-- can be dropped whole and the hot months stay small.
--
--   table            partition key        why this key
--   audit_log        at                   nothing references it; retention drops whole months
--   incident_events  incident_opened_at   the incident's opening time: every unique key (the id,
--   deliveries       incident_opened_at   deliveries_unique) stays unique, an incident's timeline and
--                                         deliveries sit in one partition, and webhook_deliveries can
--                                         still reference its event (by id and this key)
--
-- detections is not partitioned: its idempotency key (camera_id, event_id) must be unique for all
-- time, and PostgreSQL only enforces uniqueness across partitions when the key holds the partition
-- key; no time of a detection is fixed by (camera_id, event_id) alone (see docs/architecture.md).
--
-- Each table gets a DEFAULT partition: a row outside the prepared months (a clock far off, an
-- incident opened long ago) is kept there, never refused. The housekeeping job
-- (workers/maintenance.py) prepares the months ahead with ensure_month_partitions().
-- The conversion copies the rows inside this migration's transaction (tables are locked meanwhile).

CREATE FUNCTION ensure_month_partitions(parent regclass, since timestamptz, until timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    month   timestamptz := date_trunc('month', since AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name    text;
    created integer := 0;
    base    text := (SELECT c.relname FROM pg_class c WHERE c.oid = parent);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ensure_month_partitions ' || parent::text));
    IF to_regclass(base || '_default') IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', base || '_default', base);
        created := created + 1;
    END IF;
    WHILE month <= until LOOP
        name := base || '_p' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM');
        IF to_regclass(name) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               name, base, month, month + interval '1 month');
                IF base = 'audit_log' THEN
                    EXECUTE format('CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON %I '
                                   'FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()', name);
                END IF;
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                -- the default partition already holds rows of this month: they stay there
                RAISE WARNING 'partition % not created: % has rows in its range', name, base || '_default';
            END;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END $$;

-- Rebuild ``tbl`` as a table partitioned by ``key`` (added as a column when ``add_key``): same
-- columns, defaults, checks and identity; its indexes and outgoing foreign keys recreated under their
-- names; unique constraints get the key. The old table is left as ``<tbl>_old`` for the copy.
CREATE FUNCTION pg_temp.partition_like(tbl text, key text, add_key boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
    old text := tbl || '_old';
BEGIN
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, old);
    FOR r IN SELECT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
             WHERE d.refobjid = old::regclass AND s.relkind = 'S' LOOP
        EXECUTE format('ALTER SEQUENCE %I RENAME TO %I', r.relname, r.relname || '_old');
    END LOOP;
    EXECUTE format(
        'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY '
        'INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS%s) PARTITION BY RANGE (%I)',
        tbl, old, CASE WHEN add_key THEN format(', %I timestamptz NOT NULL', key) ELSE '' END, key);
    -- primary key and unique constraints, with the partition key added
    FOR r IN SELECT c.conname, c.contype, pg_get_constraintdef(c.oid) AS def
             FROM pg_constraint c WHERE c.conrelid = old::regclass AND c.contype IN ('p', 'u') LOOP
        EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', old, r.conname, r.conname || '_old');
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', tbl, r.conname,
                       regexp_replace(r.def, '\)$', format(', %I)', key)));
    END LOOP;
    -- other indexes, under their names
    FOR r IN SELECT ic.relname, pg_get_indexdef(i.indexrelid) AS def
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
             WHERE i.indrelid = old::regclass
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) LOOP
        IF r.def LIKE 'CREATE UNIQUE%' THEN
            RAISE EXCEPTION 'unique index % on % needs the partition key', r.relname, tbl;
        END IF;
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, left(r.relname, 59) || '_old');
        EXECUTE replace(r.def, format(' ON public.%I ', old), format(' ON public.%I ', tbl));
    END LOOP;
    -- outgoing foreign keys
    FOR r IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def
             FROM pg_constraint c WHERE c.conrelid = old::regclass AND c.contype = 'f' LOOP
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', tbl, r.conname, r.def);
    END LOOP;
    -- triggers (row triggers are copied to every partition by PostgreSQL)
    FOR r IN SELECT pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
             WHERE t.tgrelid = old::regclass AND NOT t.tgisinternal LOOP
        EXECUTE replace(r.def, format(' ON public.%I ', old), format(' ON public.%I ', tbl));
    END LOOP;
END $$;

-- audit_log, by the time of the record
SELECT pg_temp.partition_like('audit_log', 'at', false);
SELECT ensure_month_partitions('audit_log', coalesce((SELECT min(at) FROM audit_log_old), now()),
                               now() + interval '3 months');
INSERT INTO audit_log OVERRIDING SYSTEM VALUE SELECT * FROM audit_log_old;
DROP TABLE audit_log_old;
-- Append-only as before: the table's own triggers came across with it. A statement trigger fires
-- only for statements on the table itself, so a row trigger (copied to every partition) refuses
-- UPDATE, and each partition gets its own TRUNCATE trigger, on a partition named directly too.
-- Retention drops whole partitions (DROP TABLE).
CREATE TRIGGER audit_log_rows_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'audit_log'::regclass LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = r.relname::regclass
                       AND t.tgname = 'audit_log_no_truncate') THEN
            EXECUTE format('CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON %I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()', r.relname);
        END IF;
    END LOOP;
END $$;

-- incident_events, by the opening time of their incident (webhook_deliveries points at them)
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_id_fkey;
SELECT pg_temp.partition_like('incident_events', 'incident_opened_at', true);
SELECT ensure_month_partitions('incident_events', coalesce((SELECT min(opened_at) FROM incidents), now()),
                               now() + interval '3 months');
INSERT INTO incident_events OVERRIDING SYSTEM VALUE
SELECT e.*, i.opened_at FROM incident_events_old e JOIN incidents i ON i.id = e.incident_id;
SELECT setval(pg_get_serial_sequence('incident_events', 'id'), coalesce(max(id), 0) + 1, false) FROM incident_events;
DROP TABLE incident_events_old;

ALTER TABLE webhook_deliveries ADD COLUMN incident_opened_at timestamptz;
UPDATE webhook_deliveries w SET incident_opened_at = i.opened_at FROM incidents i WHERE i.id = w.incident_id;
ALTER TABLE webhook_deliveries ALTER COLUMN incident_opened_at SET NOT NULL;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_event_id_fkey
    FOREIGN KEY (event_id, incident_opened_at) REFERENCES incident_events (id, incident_opened_at);

-- deliveries, by the opening time of their incident
SELECT pg_temp.partition_like('deliveries', 'incident_opened_at', true);
SELECT ensure_month_partitions('deliveries', coalesce((SELECT min(opened_at) FROM incidents), now()),
                               now() + interval '3 months');
INSERT INTO deliveries OVERRIDING SYSTEM VALUE
SELECT d.*, i.opened_at FROM deliveries_old d JOIN incidents i ON i.id = d.incident_id;
SELECT setval(pg_get_serial_sequence('deliveries', 'id'), coalesce(max(id), 0) + 1, false) FROM deliveries;
DROP TABLE deliveries_old;

SELECT setval(pg_get_serial_sequence('audit_log', 'id'), coalesce(max(id), 0) + 1, false) FROM audit_log;
DROP FUNCTION pg_temp.partition_like(text, text, boolean);

ANALYZE audit_log;
ANALYZE incident_events;
ANALYZE deliveries;
