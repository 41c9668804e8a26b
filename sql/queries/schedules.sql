-- name: claim_due_schedules
-- Locks up to `limit` enabled schedules whose next tick is due or not computed yet, the oldest
-- first (SKIP LOCKED: concurrent schedulers take others), with the database's clock as now.
SELECT t.id, t.config, t.next_tick_at, t.updated_at, now() AS now
  FROM dw.triggers t
 WHERE t.kind = 'schedule' AND t.enabled AND (t.next_tick_at IS NULL OR t.next_tick_at <= now())
 ORDER BY t.next_tick_at NULLS FIRST
 LIMIT %(limit)s
   FOR NO KEY UPDATE SKIP LOCKED;

-- name: bound_claim_idle
-- The claim's transaction ends the session if it sits idle longer than `ms` (a worker that hangs
-- between the claim and the fire: see ScheduleData.fire_due).
SELECT set_config('idle_in_transaction_session_timeout', %(ms)s, true);

-- name: claim_due_schedule
-- Locks one schedule if it is enabled and due (or not computed yet) and nobody holds it.
SELECT t.id, t.config, t.next_tick_at, t.updated_at, now() AS now
  FROM dw.triggers t
 WHERE t.id = %(id)s AND t.kind = 'schedule' AND t.enabled
   AND (t.next_tick_at IS NULL OR t.next_tick_at <= now())
   FOR NO KEY UPDATE SKIP LOCKED;

-- name: fire_schedules
-- Fires the claimed schedules' ticks and moves their next ticks (dw.fire_schedules_v1).
SELECT trigger_id, tick_at, fired_at, execution_id, outcome FROM dw.fire_schedules_v1(%(plans)s, %(queue)s);

-- name: start_buffered_ticks
-- Starts the ticks that wait for their schedule's runs to end once none is going
-- (dw.start_buffered_ticks_v1; drops a disabled schedule's).
SELECT trigger_id, tick_at, fired_at, execution_id, outcome FROM dw.start_buffered_ticks_v1(%(queue)s, %(limit)s);

-- name: schedule_failed
-- Records why a schedule could not fire; it skips its due ticks, or is disabled (only if the row is
-- still as claimed: due tick and updated_at).
SELECT dw.schedule_failed_v2(%(id)s, %(error)s, %(next_tick)s, %(disable)s, %(due)s, %(updated_at)s);

-- name: seconds_to_next_tick
-- Seconds until the earliest next tick of an enabled schedule (0: one is due or not computed yet;
-- no row: there is no enabled schedule).
SELECT CASE WHEN t.next_tick_at IS NULL THEN 0
            ELSE GREATEST(extract(epoch FROM t.next_tick_at - clock_timestamp()), 0) END::float8 AS seconds
  FROM dw.triggers t
 WHERE t.kind = 'schedule' AND t.enabled
 ORDER BY t.next_tick_at NULLS FIRST
 LIMIT 1;

-- name: prune_schedule_ticks
-- Deletes a batch of tick rows that fired more than `keep_seconds` ago (SKIP LOCKED: workers share
-- the work), keeping each schedule's newest tick and a tick still waiting for the schedule's runs
-- to end (overlap bufferOne, bufferAll, cancelOther: its run is yet to start).
WITH doomed AS (
    SELECT k.trigger_id, k.tick_at
      FROM dw.schedule_ticks k
     WHERE k.fired_at < now() - make_interval(secs => %(keep_seconds)s)
       AND EXISTS (SELECT 1 FROM dw.schedule_ticks n WHERE n.trigger_id = k.trigger_id AND n.tick_at > k.tick_at)
       AND NOT (k.buffered AND k.execution_id IS NULL)
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM dw.schedule_ticks k USING doomed d
     WHERE k.trigger_id = d.trigger_id AND k.tick_at = d.tick_at
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: list_schedule_ticks
-- A schedule's fired ticks, newest first (the primary key, read backwards). Keyset paging: those
-- before the tick_at of the last one of the page before.
SELECT k.trigger_id, k.tick_at, k.fired_at, k.execution_id, k.missed_ticks, k.overlapped_by, k.buffered,
       -- Its run was removed by retention since (the tick stays, naming it).
       (k.execution_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM dw.executions e WHERE e.id = k.execution_id)) AS run_removed
  FROM dw.schedule_ticks k
 WHERE k.trigger_id = %(trigger_id)s
   AND (%(before_at)s::timestamptz IS NULL OR k.tick_at < %(before_at)s::timestamptz)
 ORDER BY k.tick_at DESC
 LIMIT %(limit)s;
