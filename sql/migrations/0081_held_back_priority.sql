-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.executions (starts,
-- acquires and records go on during a rolling upgrade). An interrupted build leaves an invalid
-- index behind: it is dropped first (if there) and built again.

-- The root runs a workflow's maxConcurrentExecutions holds back (Pending, waiting on their rows for
-- another look, no promised start time), in the order a freed slot is handed over
-- (dw.hand_over_slot_v1): the highest priority first, then the earliest look. Until this release the
-- hand-off took them in look order alone, whatever their priorities, and the only index that found
-- them (executions_throttled_wake_idx) held every workflow's throttled runs in one look order.
-- Partial: a start (Pending, no wake-up time) and every other run write nothing to it.
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_held_back_idx;
CREATE INDEX CONCURRENTLY executions_held_back_idx
    ON dw.executions (tenant_id, workflow_id, priority DESC, wake_at)
    WHERE status = 'Pending' AND wake_at IS NOT NULL AND rate_slot_at IS NULL AND depth = 0;
