-- name: start_execution_traced
-- dw.start_execution_v1 with the caller's trace context stored on the new execution.
SELECT * FROM dw.start_execution_traced_v1(%(trace_context)s, %(workflow_id)s, %(request_id)s, %(trigger)s,
                                           %(principal_id)s, %(principal_type)s, %(correlation_id)s, %(queue)s);

-- name: execution_trace_context
-- The trace context an execution was started with (its worker continues that trace).
SELECT trace_context FROM dw.executions WHERE id = %(id)s;
