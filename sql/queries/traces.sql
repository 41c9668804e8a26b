-- name: execution_trace_context
-- The trace context an execution was started with (its worker continues that trace).
SELECT trace_context FROM dw.executions WHERE id = %(id)s;

-- name: keep_execution_trace_context
-- A run started without a trace context (a webhook's, a schedule's, an API's without tracing) keeps
-- its first worker's: its later holds and its children join that trace.
UPDATE dw.executions SET trace_context = %(context)s WHERE id = %(id)s AND trace_context IS NULL;
