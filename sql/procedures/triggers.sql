-- Triggers: what schedules and webhooks share. Callers: the scheduler (workers), the webhook
-- endpoint and the triggers API.

-- Starts a run of the trigger's workflow (its current version) with the payload as the run's
-- trigger, recording which trigger started it; the principal is who created the trigger, its type
-- the trigger's kind. Idempotent on the request id, like dw.start_execution_v1 (the schedule's tick
-- or the webhook's delivery id is in it).
CREATE OR REPLACE FUNCTION dw.start_triggered_v1(
    p_trigger_id uuid, p_request_id text, p_payload jsonb, p_queue text
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
DECLARE
    v_t dw.triggers;
    v_started record;
BEGIN
    SELECT * INTO v_t FROM dw.triggers t WHERE t.id = p_trigger_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger % not found', p_trigger_id USING ERRCODE = 'DW030';
    END IF;
    SELECT * INTO v_started FROM dw.start_execution_v2(
        v_t.workflow_id, NULL, p_request_id, p_payload, v_t.created_by, v_t.kind, NULL, p_queue,
        NULL::dw.executions, NULL, p_trigger_id);
    RETURN QUERY SELECT v_started.execution_id, v_started.status, v_started.workflow_version, v_started.created;
END;
$$;
