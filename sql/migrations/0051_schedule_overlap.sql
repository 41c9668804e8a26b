-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.executions (starts,
-- acquires and records go on during a rolling upgrade). An interrupted build leaves an invalid
-- index behind, and this migration is recorded only once its statements succeeded, so the index is
-- dropped first (if there) and built again, and the column added only if missing, when it runs again.

-- A schedule's overlap policy (config "overlap": allow, skip or cancelOther; dw.fire_schedule_v1):
-- a tick asks whether a run the schedule started has not ended yet. This index answers that from
-- the unfinished runs only (a schedule's ended runs, a year of a per-minute one, are not read); runs
-- no trigger started are not in it, so a run's own writes do not maintain it.
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_trigger_unfinished_idx;
CREATE INDEX CONCURRENTLY executions_trigger_unfinished_idx ON dw.executions (trigger_id, created_at DESC)
    WHERE trigger_id IS NOT NULL AND status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut');
-- The run a tick met still going: the newest one it skipped for (overlap skip; the tick has no run)
-- or asked to cancel (cancelOther), or, for a catch-up's older tick under cancelOther, the newest
-- tick's run that replaced it.
ALTER TABLE dw.schedule_ticks ADD COLUMN IF NOT EXISTS overlapped_by uuid;
