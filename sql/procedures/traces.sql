-- Traces (README "Traces"). An execution started with the caller's W3C trace context keeps it in
-- dw.executions.trace_context (migration 0030): the column's default reads dw.trace_context, which
-- this sets for the start's own transaction only, then clears (nothing else in the transaction
-- inherits it). Same arguments and answer as dw.start_execution_v1, the context first.
CREATE OR REPLACE FUNCTION dw.start_execution_traced_v1(
    p_trace_context jsonb,
    p_workflow_id text,
    p_request_id text,
    p_trigger jsonb,
    p_principal_id text,
    p_principal_type text,
    p_correlation_id text,
    p_queue text
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('dw.trace_context', COALESCE(p_trace_context::text, ''), true);
    RETURN QUERY SELECT * FROM dw.start_execution_v1(p_workflow_id, p_request_id, p_trigger, p_principal_id,
                                                     p_principal_type, p_correlation_id, p_queue);
    PERFORM set_config('dw.trace_context', '', true);
END;
$$;

-- v3 (over dw.start_execution_v1 and dw.start_execution_traced_v1, both of which stay for the
-- previous release's API): one function for both (p_trace_context NULL: none), and the run's job
-- wakes no worker from this transaction: once it has committed, a caller whose start made a run
-- (created) calls dw.notify_job_inserted_v1(p_queue) (see there, and for why, Procrastinate's
-- procrastinate_notify_queue_job_inserted_v1 in queue.sql). Both settings hold for the start alone, as
-- the trace context's does in v1: what the caller's transaction does afterwards notifies as usual.
-- Now v4's with no priority of the caller's (kept for the previous release's API).
CREATE OR REPLACE FUNCTION dw.start_execution_v3(
    p_trace_context jsonb,
    p_workflow_id text,
    p_request_id text,
    p_trigger jsonb,
    p_principal_id text,
    p_principal_type text,
    p_correlation_id text,
    p_queue text
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM dw.start_execution_v4(p_trace_context, p_workflow_id, p_request_id, p_trigger,
                                                     p_principal_id, p_principal_type, p_correlation_id, p_queue,
                                                     NULL);
END;
$$;

-- v4 (over v3, which stays for the previous release's API): the run's priority (p_priority, -100
-- to 100; NULL: its definition's, else 0; README "Run priority"). Otherwise v3.
CREATE OR REPLACE FUNCTION dw.start_execution_v4(
    p_trace_context jsonb,
    p_workflow_id text,
    p_request_id text,
    p_trigger jsonb,
    p_principal_id text,
    p_principal_type text,
    p_correlation_id text,
    p_queue text,
    p_priority integer
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('dw.notify_after_commit', 'on', true);
    PERFORM set_config('dw.trace_context', COALESCE(p_trace_context::text, ''), true);
    RETURN QUERY SELECT * FROM dw.start_run_v1(p_workflow_id, NULL, p_request_id, p_trigger, p_principal_id,
                                               p_principal_type, p_correlation_id, p_queue,
                                               NULL::dw.executions, NULL, NULL, p_priority);
    PERFORM set_config('dw.trace_context', '', true);
    PERFORM set_config('dw.notify_after_commit', '', true);
END;
$$;
