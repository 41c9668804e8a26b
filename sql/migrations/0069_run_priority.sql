-- A run's priority (README "Run priority"): its jobs are fetched in Procrastinate's order, higher
-- priority first, then oldest first. Every job a run gets (its start, each wake-up, recovery, a
-- hand-off of a throttled slot, a redrive) carries the run's priority (dw.defer_run_job_v1), so the
-- priority is the run's, not its first job's. Set at the start (the request's `priority`, else the
-- definition's orchestration.priority, else a child's parent's), -100 to 100, 0 by default. No CHECK
-- constraint: every UPDATE of a run row would evaluate it (about 6 us each, docs/performance.md),
-- and the only writers check the range (dw.start_run_v1, dw.set_execution_priority_v1).
-- A constant default: no table rewrite.
ALTER TABLE dw.executions ADD COLUMN priority smallint NOT NULL DEFAULT 0;

-- dw.v_executions with each run's priority (a column added at the end: the view's other columns keep
-- their places).
CREATE OR REPLACE VIEW dw.v_executions AS
SELECT e.id, e.workflow_id, e.workflow_version, e.status, e.principal_id, e.correlation_id,
       e.created_at, e.started_at, e.ended_at,
       extract(epoch FROM e.started_at - e.created_at) AS queue_seconds,
       extract(epoch FROM COALESCE(e.ended_at, now()) - COALESCE(e.started_at, e.created_at)) AS run_seconds,
       e.recovery_count, e.error ->> 'code' AS error_code, e.error ->> 'message' AS error_message,
       e.outputs, e.parent_execution_id, e.parent_node_id, e.root_execution_id, e.depth, e.tenant_id,
       e.priority
  FROM dw.executions e
 WHERE dw.tenant_visible(e.tenant_id);
