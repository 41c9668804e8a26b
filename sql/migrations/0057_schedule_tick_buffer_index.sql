-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding the scheduler's tick inserts (a
-- year of a per-second schedule's ticks is a large table). An interrupted build leaves an invalid
-- index behind, so it is dropped first (if there) and built again when this runs again.

-- The ticks waiting for their schedule's runs to end (migration 0056): the scheduler looks for them
-- at every pass, and there are at most one per schedule.
DROP INDEX CONCURRENTLY IF EXISTS dw.schedule_ticks_waiting_idx;
CREATE INDEX CONCURRENTLY schedule_ticks_waiting_idx ON dw.schedule_ticks (trigger_id)
    WHERE buffered AND execution_id IS NULL;
