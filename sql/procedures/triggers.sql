-- Triggers: what schedules and webhooks share. Callers: the scheduler (workers), the webhook
-- endpoint and the triggers API.

-- Starts a run of the trigger's workflow (its current version) with the payload as the run's
-- trigger, recording which trigger started it; the principal is who created the trigger, its type
-- the trigger's kind. Idempotent on the request id, like dw.start_execution_v1 (the schedule's tick
-- or the webhook's delivery id is in it). In the trigger's tenant (dw.enter_tenant_v1: under '*' as
-- that tenant, DW040 in a transaction of another one): the workflow was looked up by its id in the
-- session's tenant, and a session that row-level security does not narrow (a superuser's psql set
-- to another tenant) started that tenant's workflow of the same id under this trigger's id.
CREATE OR REPLACE FUNCTION dw.start_triggered_v1(
    p_trigger_id uuid, p_request_id text, p_payload jsonb, p_queue text
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
DECLARE
    v_t dw.triggers;
    v_started record;
    v_previous_tenant text;
BEGIN
    SELECT * INTO v_t FROM dw.triggers t WHERE t.id = p_trigger_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger % not found', p_trigger_id USING ERRCODE = 'DW030';
    END IF;
    v_previous_tenant := dw.enter_tenant_v1(v_t.tenant_id);
    -- The trigger's own priority (migration 0077), else the workflow's (dw.start_run_v1).
    SELECT * INTO v_started FROM dw.start_run_v1(
        v_t.workflow_id, NULL, p_request_id, p_payload, v_t.created_by, v_t.kind, NULL, p_queue,
        NULL::dw.executions, NULL, p_trigger_id, v_t.priority);
    PERFORM dw.leave_tenant_v1(v_previous_tenant);
    RETURN QUERY SELECT v_started.execution_id, v_started.status, v_started.workflow_version, v_started.created;
END;
$$;
