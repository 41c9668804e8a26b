-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.executions (starts,
-- acquires and records go on during a rolling upgrade). An interrupted build leaves an invalid
-- index behind, and this migration is recorded only once its statements succeeded, so the index is
-- dropped first (if there) and built again when the migration runs again.

-- Issue 17: a run its workflow's limits hold back (throttled) waits for its turn on its own row, as a
-- parked run does (dw.park_throttled_run_v1 sets wake_at; dw.wake_due_runs_v1 queues its job when
-- the time comes), instead of as a Procrastinate job scheduled for later.
--
-- Why: every fetch walks the queued jobs in (priority, id) order and passes over those not due yet.
-- Measured: with 20,000 throttled runs' jobs scheduled for later, a fetch that found nothing cost
-- 3.8 ms of PostgreSQL CPU instead of 0.10, for every fetch of every worker, whatever its workflow.
-- This index finds the throttled runs whose turn has come, as executions_parked_wake_idx finds the
-- parked ones. Only rows with a wake-up time: a start (Pending, none) writes nothing to it.
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_throttled_wake_idx;
CREATE INDEX CONCURRENTLY executions_throttled_wake_idx ON dw.executions (wake_at)
    WHERE status = 'Pending' AND wake_at IS NOT NULL;
