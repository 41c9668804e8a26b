-- name: execution_trace_context
-- The trace context an execution was started with (its worker continues that trace).
SELECT trace_context FROM dw.executions WHERE id = %(id)s;
