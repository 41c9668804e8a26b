-- dw.v_action_stats is an all-time aggregate (every attempt ever recorded, a full read of
-- dw.action_executions): a connector that began failing an hour ago hardly moves its rate. Beside it,
-- dw.v_action_health gives the same figures per period, as dw.v_workflow_health does for runs: the
-- last hour's and the last day's attempts of runs created in the last day. It reads those runs by
-- their creation time (executions_created_idx) and their attempts by run (the attempt key), never
-- the whole table, and dw.action_executions gains no index (each attempt's insert would pay for it).
-- An attempt of a run older than a day (a long wait, a redrive) is in neither period.
CREATE VIEW dw.v_action_health WITH (security_barrier = true) AS
WITH runs AS MATERIALIZED (
    SELECT e.id, e.tenant_id
      FROM dw.executions e
     WHERE e.created_at > now() - interval '1 day' AND dw.tenant_visible(e.tenant_id)
), a AS (
    SELECT x.action_type, x.tenant_id, x.status, x.start_time,
           x.status = 'RetriableFailure' AND x.error ->> 'code' = 'attempt_interrupted' AS interrupted,
           extract(epoch FROM x.end_time - x.start_time) AS seconds
      FROM runs r
      JOIN dw.action_executions x ON x.execution_id = r.id AND x.tenant_id = r.tenant_id
), counted AS (
    SELECT a.*, a.status = 'Succeeded' OR (a.status IN ('Failed', 'RetriableFailure', 'TimedOut')
                                             AND NOT a.interrupted) AS ran_to_outcome
      FROM a
)
SELECT c.action_type, p.period,
       count(*) AS attempts,
       count(*) FILTER (WHERE c.status = 'Succeeded') AS succeeded,
       count(*) FILTER (WHERE c.ran_to_outcome AND c.status <> 'Succeeded') AS failed,
       round((count(*) FILTER (WHERE c.ran_to_outcome AND c.status <> 'Succeeded'))::numeric
             / NULLIF(count(*) FILTER (WHERE c.ran_to_outcome), 0), 4)::double precision AS failure_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY c.seconds) FILTER (WHERE c.ran_to_outcome) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY c.seconds) FILTER (WHERE c.ran_to_outcome) AS p95_seconds,
       count(*) FILTER (WHERE c.interrupted) AS interrupted,
       count(*) FILTER (WHERE c.status = 'Cancelled') AS cancelled,
       c.tenant_id
  FROM counted c
  JOIN (VALUES ('1 hour', interval '1 hour'), ('1 day', interval '1 day')) AS p(period, span)
    ON c.start_time > now() - p.span
 GROUP BY c.tenant_id, c.action_type, p.period;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_action_health TO dw_reporting;
    END IF;
END;
$$;
