-- Issue 17: a start and a change of its workflow's runnable state exclude each other through a
-- transaction-level advisory lock on the workflow, instead of the start locking the workflow's row
-- FOR SHARE.
--
-- Why: a row lock is written into the row. Every start of a workflow wrote its workflows row's xmax
-- (WAL, and the page dirtied: a full-page image after each checkpoint), and starts that overlapped
-- shared the lock through a MultiXact, created and looked up for each newcomer, all on one hot row.
-- An advisory lock lives in the lock manager's memory only. What holds stays the same: a start takes
-- the lock shared (dw.start_execution_v2, dw.schedule_refusal_v1) before it reads the workflow; a
-- change of a workflow's status, current version, enabled flag or tenant, or its removal, takes it
-- exclusive in this trigger, whatever statement makes it (a procedure of this release or of the
-- previous one, or a query). So a publish, an archive or a disable waits for the starts in flight to
-- commit, and a start that comes while one is in flight waits for it and then reads what it
-- committed, as a FOR SHARE lock made them do. Updates of other columns (a workflow's rate-limit
-- slots, written as runs start; its retention) take no lock, as they conflict with no start.

-- The advisory lock key of a workflow's starts (64 bits of a hash of tenant and id: two workflows
-- that share one only wait for each other's changes).
CREATE OR REPLACE FUNCTION dw.workflow_start_key_v1(p_tenant text, p_workflow_id text)
    RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended('dw.workflow_starts:' || p_tenant || ':' || p_workflow_id, 0);
$$;

CREATE OR REPLACE FUNCTION dw.lock_workflow_starts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(dw.workflow_start_key_v1(OLD.tenant_id, OLD.id));
    IF TG_OP = 'UPDATE' AND (NEW.tenant_id, NEW.id) IS DISTINCT FROM (OLD.tenant_id, OLD.id) THEN
        PERFORM pg_advisory_xact_lock(dw.workflow_start_key_v1(NEW.tenant_id, NEW.id));
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER workflows_lock_starts
    BEFORE UPDATE OF status, current_version, is_enabled, tenant_id, id OR DELETE ON dw.workflows
    FOR EACH ROW EXECUTE FUNCTION dw.lock_workflow_starts();
