-- A run's own outputs: the definition's `outputs` templates, rendered when the run succeeds.
ALTER TABLE dw.executions ADD COLUMN outputs jsonb;

CREATE OR REPLACE VIEW dw.v_executions AS
SELECT e.id, e.workflow_id, e.workflow_version, e.status, e.principal_id, e.correlation_id,
       e.created_at, e.started_at, e.ended_at,
       extract(epoch FROM e.started_at - e.created_at) AS queue_seconds,
       extract(epoch FROM COALESCE(e.ended_at, now()) - COALESCE(e.started_at, e.created_at)) AS run_seconds,
       e.recovery_count, e.error ->> 'code' AS error_code, e.error ->> 'message' AS error_message,
       e.outputs
  FROM dw.executions e;
