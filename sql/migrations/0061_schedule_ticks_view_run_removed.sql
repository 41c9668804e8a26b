-- dw.v_schedule_ticks says, as the API's ticks do (runRemoved), whether a tick's run has been
-- removed by retention since: the tick stays and names it, and a join to dw.v_executions found
-- nothing without saying why. Made again, as 0056 made it (a view's new column can only be appended,
-- and the reporting views end with tenant_id), its grant with it.
DROP VIEW dw.v_schedule_ticks;
CREATE VIEW dw.v_schedule_ticks WITH (security_barrier = true) AS
SELECT k.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       k.tick_at, k.fired_at, extract(epoch FROM k.fired_at - k.tick_at) AS lateness_seconds,
       k.execution_id, k.missed_ticks, k.overlapped_by, k.buffered,
       (k.execution_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM dw.executions e WHERE e.id = k.execution_id)) AS run_removed,
       k.tenant_id
  FROM dw.schedule_ticks k
  JOIN dw.triggers t ON t.id = k.trigger_id
 WHERE dw.tenant_visible(k.tenant_id);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_schedule_ticks TO dw_reporting;
    END IF;
END;
$$;
