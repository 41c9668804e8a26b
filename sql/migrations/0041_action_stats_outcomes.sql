-- dw.v_action_stats, "how often an action fails", counted every attempt that did not succeed as a
-- failure: attempts cut short by their worker (recorded RetriableFailure, code attempt_interrupted,
-- and retried without using the budget), attempts stopped by a cancel or a run given up on
-- (Cancelled), even Skipped ones. A crash loop looked like a flaky connector, and the interrupted
-- attempt's long duration (until its lease expired) went into the percentiles. Now `failed` and
-- `failure_rate` count only the attempts the action itself failed (Failed, RetriableFailure,
-- TimedOut), the rate is over the attempts that ran to an outcome, the percentiles are over those
-- too, and the attempts interrupted or cancelled are counted apart (new columns, at the end).
CREATE OR REPLACE VIEW dw.v_action_stats AS
WITH a AS (
    SELECT x.action_type, x.tenant_id, x.status,
           x.status = 'RetriableFailure' AND x.error ->> 'code' = 'attempt_interrupted' AS interrupted,
           extract(epoch FROM x.end_time - x.start_time) AS seconds
      FROM dw.action_executions x
     WHERE dw.tenant_visible(x.tenant_id)
), counted AS (
    SELECT a.*, a.status = 'Succeeded' OR (a.status IN ('Failed', 'RetriableFailure', 'TimedOut')
                                             AND NOT a.interrupted) AS ran_to_outcome
      FROM a
)
SELECT c.action_type,
       count(*) AS attempts,
       count(*) FILTER (WHERE c.status = 'Succeeded') AS succeeded,
       count(*) FILTER (WHERE c.ran_to_outcome AND c.status <> 'Succeeded') AS failed,
       round((count(*) FILTER (WHERE c.ran_to_outcome AND c.status <> 'Succeeded'))::numeric
             / NULLIF(count(*) FILTER (WHERE c.ran_to_outcome), 0), 4)::double precision AS failure_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY c.seconds) FILTER (WHERE c.ran_to_outcome) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY c.seconds) FILTER (WHERE c.ran_to_outcome) AS p95_seconds,
       c.tenant_id,
       count(*) FILTER (WHERE c.interrupted) AS interrupted,
       count(*) FILTER (WHERE c.status = 'Cancelled') AS cancelled
  FROM counted c
 GROUP BY c.tenant_id, c.action_type;
