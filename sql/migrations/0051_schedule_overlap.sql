-- A schedule's overlap policy (config "overlap": allow, skip or cancelOther; dw.fire_schedule_v1):
-- a tick asks whether a run the schedule started has not ended yet. This index answers that from
-- the unfinished runs only (a schedule's ended runs, a year of a per-minute one, are not read); runs
-- no trigger started are not in it, so a run's own writes do not maintain it.
CREATE INDEX executions_trigger_unfinished_idx ON dw.executions (trigger_id, created_at DESC)
    WHERE trigger_id IS NOT NULL AND status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut');
-- The run a tick met still going: the one it skipped for (overlap skip; the tick has no run), or
-- the newest one it cancelled (cancelOther).
ALTER TABLE dw.schedule_ticks ADD COLUMN overlapped_by uuid;
