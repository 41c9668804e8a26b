-- dw.v_workflow_health counts each workflow's runs of the last hour and day, but read every run the
-- workflow ever had to find them (through (tenant_id, workflow_id, status)) and dropped the older
-- ones afterwards: with retention off, a report over a busy workflow's history grew without bound.
-- It now reads the last day's runs only (executions_created_idx), the same figures.
CREATE OR REPLACE VIEW dw.v_workflow_health WITH (security_barrier = true) AS
WITH recent AS MATERIALIZED (
    SELECT e.id, e.tenant_id, e.workflow_id, e.status, e.created_at, e.started_at, e.ended_at
      FROM dw.executions e
     WHERE e.created_at > now() - interval '1 day' AND dw.tenant_visible(e.tenant_id)
)
SELECT w.id AS workflow_id, w.status AS workflow_status, p.period,
       count(e.id) AS executions,
       count(e.id) FILTER (WHERE e.status = 'Succeeded') AS succeeded,
       count(e.id) FILTER (WHERE e.status IN ('Failed', 'TimedOut', 'Cancelled')) AS failed,
       count(e.id) FILTER (WHERE e.status IN ('Pending', 'Running', 'Waiting', 'Suspended')) AS in_flight,
       round(CASE WHEN count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) = 0 THEN NULL
             ELSE (count(e.id) FILTER (WHERE e.status = 'Succeeded'))::numeric
                  / count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) END, 4)::double precision AS success_rate,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.ended_at - e.started_at))
           FILTER (WHERE e.ended_at IS NOT NULL) AS p95_seconds,
       w.tenant_id
  FROM dw.workflows w
 CROSS JOIN (VALUES ('1 hour', interval '1 hour'), ('1 day', interval '1 day')) AS p(period, span)
  LEFT JOIN recent e ON e.tenant_id = w.tenant_id AND e.workflow_id = w.id AND e.created_at > now() - p.span
 WHERE dw.tenant_visible(w.tenant_id)
 GROUP BY w.tenant_id, w.id, w.status, p.period;
