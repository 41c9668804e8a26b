-- dw.v_schedules with each schedule's overlap policy (config "overlap", migration 0051), and its last
-- run read from the runs the schedule started (executions_trigger_idx, newest first) instead of
-- from its ticks: under overlap skip a schedule whose run is stuck records a tick without a run at
-- every tick, and the ticks were read back through all of them (a day of a per-second schedule's)
-- to find the last one that had a run.
CREATE OR REPLACE VIEW dw.v_schedules WITH (security_barrier = true) AS
SELECT t.id, t.tenant_id, t.name, t.workflow_id, t.enabled, t.config ->> 'cron' AS cron,
       COALESCE(t.config ->> 'timezone', 'UTC') AS timezone, COALESCE(t.config ->> 'catchUp', 'latest') AS catch_up,
       t.next_tick_at, t.last_tick_at, t.error,
       last_run.status AS last_run_status, last_run.id AS last_run_id,
       recent.ticks AS recent_ticks, recent.lateness_p50_seconds, recent.lateness_p95_seconds,
       recent.lateness_max_seconds, COALESCE(t.config ->> 'overlap', 'allow') AS overlap
  FROM dw.triggers t
  LEFT JOIN LATERAL (
      SELECT e.id, e.status FROM dw.executions e
       WHERE e.trigger_id = t.id ORDER BY e.created_at DESC LIMIT 1) last_run ON true
  LEFT JOIN LATERAL (
      SELECT count(*) AS ticks,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.fired_at - r.tick_at)) AS lateness_p50_seconds,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM r.fired_at - r.tick_at)) AS lateness_p95_seconds,
             max(extract(epoch FROM r.fired_at - r.tick_at)) AS lateness_max_seconds
        FROM (SELECT k.tick_at, k.fired_at FROM dw.schedule_ticks k WHERE k.trigger_id = t.id
               ORDER BY k.tick_at DESC LIMIT 100) r) recent ON true
 WHERE t.kind = 'schedule' AND dw.tenant_visible(t.tenant_id);
