-- name: list_worker_leases
-- The workers holding a live lease on a run of the session's tenant (row-level security), with how
-- many runs each holds and how many of their nodes are running now.
SELECT e.lease_owner AS worker_id, count(*)::integer AS runs_held,
       coalesce(sum((SELECT count(*) FROM dw.node_states n
                       WHERE n.execution_id = e.id AND n.status = 'Running')), 0)::integer AS nodes_running,
       min(e.started_at) AS oldest_run_started_at, max(e.lease_expires_at) AS lease_expires_at
  FROM dw.executions e
 WHERE e.status = 'Running' AND e.lease_owner IS NOT NULL AND e.lease_expires_at > now()
 GROUP BY e.lease_owner
 ORDER BY e.lease_owner;

-- name: list_fetch_loops
-- Procrastinate's registered fetch loops (every worker process has one or more) with their last
-- heartbeat, and the run jobs of the session's tenant each is doing now.
SELECT w.id, w.last_heartbeat,
       w.last_heartbeat > now() - make_interval(secs => %(stalled_seconds)s) AS alive,
       (SELECT count(*) FROM procrastinate_jobs j
         WHERE j.worker_id = w.id AND j.status = 'doing'
           AND j.args ->> 'tenant_id' = current_setting('dw.tenant_id', true))::integer AS jobs_doing
  FROM procrastinate_workers w
 ORDER BY w.id;

-- name: analyze_stale_run_tables
-- Analyzes the run tables whose planner statistics are missing or far behind (see the procedure).
SELECT dw.analyze_stale_run_tables_v1() AS tables;

-- name: database_time
-- The database server's clock now (a worker measures its own clock's offset from it: clock.py).
SELECT clock_timestamp() AS now;
