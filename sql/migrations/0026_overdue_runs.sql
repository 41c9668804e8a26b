-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.executions (a plain
-- build held starts, acquires and records for its whole scan: about a second at 600,000 runs). An
-- interrupted build leaves an invalid index behind, and this migration is recorded only once its
-- statements succeeded, so the index is dropped first (if there) and built again when it runs again.
-- A database that applied this migration's earlier text (the same index, built in place) keeps it
-- (sqlfiles.EARLIER_CHECKSUMS).

-- Issue 16: runs that nobody picks up still end. Every run now has a deadline (the definition's
-- workflowTimeout, else the server's default, DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS: one hour), and
-- dw.time_out_overdue_v1 times out a run whose deadline passed while no worker held it (throttled,
-- parked, suspended, or no worker running). This index finds them without reading finished runs.
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_overdue_idx;
CREATE INDEX CONCURRENTLY executions_overdue_idx ON dw.executions (deadline_at)
    WHERE status IN ('Pending', 'Running', 'Waiting', 'Suspended') AND deadline_at IS NOT NULL;
