-- Retention (issue 16): finished runs older than their workflow's retention are removed, a whole
-- tree at a time, by dw.prune_executions_v1 (sql/procedures/retention.sql), which the workers'
-- retention loop and `dataworkflows prune` call in bounded batches.

-- How long a workflow's finished runs are kept, in days: NULL follows the installation's default
-- (DW_RETENTION_DAYS), 0 keeps them forever.
ALTER TABLE dw.workflows
    ADD COLUMN retention_days integer,
    ADD CONSTRAINT workflows_retention_days_check CHECK (retention_days IS NULL OR retention_days BETWEEN 0 AND 36500);

-- The prune's scan: per workflow, its finished root runs by end time (a tree goes with its root).
-- Only finished roots are in it, so starting and running a run never touch it; ending one adds an
-- entry (status already changes an index there).
CREATE INDEX executions_retention_idx ON dw.executions (tenant_id, workflow_id, ended_at)
    WHERE parent_execution_id IS NULL AND status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut');

-- Deleting a run checks this foreign key (resource_touches.execution_id): without an index each
-- deleted execution scanned the whole table.
CREATE INDEX resource_touches_execution_idx ON dw.resource_touches (execution_id) WHERE execution_id IS NOT NULL;

-- The event log stays append-only for everyone but the prune. UPDATE and TRUNCATE are refused as
-- before. DELETE is refused unless the transaction set dw.pruning (dw.prune_executions_v1 sets it,
-- transaction-local, to the newest end time it may remove), and then only of events whose run has
-- ended before that time: a statement-level check over the deleted rows (a transition table), one
-- query per statement instead of a trigger call per row. The application roles lose the UPDATE,
-- DELETE and TRUNCATE privileges on the table altogether: only its owner can delete, which the
-- prune procedure is (SECURITY DEFINER); anyone else is refused before any trigger runs.
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
    v_before timestamptz := NULLIF(current_setting('dw.pruning', true), '')::timestamptz;
    v_execution uuid;
BEGIN
    -- Each run once (a run has several events).
    SELECT o.execution_id INTO v_execution
      FROM (SELECT DISTINCT g.execution_id FROM gone g) o LEFT JOIN dw.executions e ON e.id = o.execution_id
     WHERE e.id IS NULL OR e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
        OR e.ended_at IS NULL OR v_before IS NULL OR e.ended_at >= v_before
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'dw.execution_events is append-only: events of execution % may not be removed '
                        '(its run has not ended before %)', v_execution, v_before USING ERRCODE = 'DW021';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER execution_events_deleted_check AFTER DELETE ON dw.execution_events
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION dw.execution_events_deleted_check();

REVOKE UPDATE, DELETE, TRUNCATE ON dw.execution_events FROM PUBLIC, dataworkflows_app, dataworkflows_maintenance;
