-- Retention (issue 16): finished runs older than their workflow's retention are removed, a whole
-- tree at a time, by dw.prune_executions_v1 (sql/procedures/retention.sql), which the workers'
-- retention loop and `dataworkflows prune` call in bounded batches.

-- How long a workflow's finished runs are kept, in days: NULL follows the installation's default
-- (DW_RETENTION_DAYS), 0 keeps them forever.
ALTER TABLE dw.workflows
    ADD COLUMN retention_days integer,
    ADD CONSTRAINT workflows_retention_days_check CHECK (retention_days IS NULL OR retention_days BETWEEN 0 AND 36500);

-- The prune's indexes (the scan of finished roots by workflow and end time, and the foreign key
-- that deleting a run checks in dw.resource_touches) are built without blocking writes by
-- migration 0027 (CREATE INDEX CONCURRENTLY, outside a transaction).

-- The event log stays append-only for everyone but the prune. UPDATE and TRUNCATE are refused as
-- before. DELETE is refused unless the transaction set dw.pruning (dw.prune_executions_v1 sets it,
-- transaction-local, to the newest cutoff of its batch, in epoch seconds: no DateStyle or TimeZone
-- re-parsing), and then, by a statement-level check over the deleted rows (a transition table, one
-- query per statement instead of a trigger call per row), only when the deleting role owns the
-- table, every run whose events went ended before that time, and none of those runs has an event
-- left (a run's log goes whole or not at all). The application roles lose the UPDATE, DELETE and
-- TRUNCATE privileges on the table altogether: only its owner can delete, which the prune procedure
-- is (SECURITY DEFINER). A seatbelt against mistakes and against the application roles, not a
-- boundary against the owner, who can drop the triggers.
DROP TRIGGER execution_events_no_update ON dw.execution_events;
CREATE TRIGGER execution_events_no_update BEFORE UPDATE ON dw.execution_events
    FOR EACH ROW EXECUTE FUNCTION dw.execution_events_append_only();

CREATE FUNCTION dw.execution_events_delete_allowed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(current_setting('dw.pruning', true), '') = '' THEN
        RAISE EXCEPTION 'dw.execution_events is append-only (DELETE refused; finished runs are removed by '
                        'dw.prune_executions_v1)' USING ERRCODE = 'DW021';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER execution_events_delete_allowed BEFORE DELETE ON dw.execution_events
    FOR EACH STATEMENT EXECUTE FUNCTION dw.execution_events_delete_allowed();

CREATE FUNCTION dw.execution_events_deleted_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_marker text := NULLIF(current_setting('dw.pruning', true), '');
    v_before timestamptz;
    v_execution uuid;
BEGIN
    IF v_marker IS NULL OR v_marker !~ '^[0-9]+(\.[0-9]+)?$' THEN
        RAISE EXCEPTION 'dw.execution_events is append-only (DELETE refused: dw.pruning is not a prune''s cutoff)'
            USING ERRCODE = 'DW021';
    END IF;
    v_before := to_timestamp(v_marker::double precision);
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                    WHERE c.oid = TG_RELID AND r.rolname = current_user) THEN
        RAISE EXCEPTION 'dw.execution_events is append-only: only its owner deletes, inside dw.prune_executions_v1 '
                        '(not %)', current_user USING ERRCODE = 'DW021';
    END IF;
    -- Each run once (a run has several events): finished before the cutoff, and its whole log gone.
    SELECT o.execution_id INTO v_execution
      FROM (SELECT DISTINCT g.execution_id FROM gone g) o LEFT JOIN dw.executions e ON e.id = o.execution_id
     WHERE e.id IS NULL OR e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
        OR e.ended_at IS NULL OR e.ended_at >= v_before
        OR EXISTS (SELECT 1 FROM dw.execution_events v WHERE v.execution_id = o.execution_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'dw.execution_events is append-only: events of execution % may not be removed (its run '
                        'has not ended before %, or part of its log would stay)', v_execution, v_before
            USING ERRCODE = 'DW021';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER execution_events_deleted_check AFTER DELETE ON dw.execution_events
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION dw.execution_events_deleted_check();

REVOKE UPDATE, DELETE, TRUNCATE ON dw.execution_events FROM PUBLIC, dataworkflows_app, dataworkflows_maintenance;
