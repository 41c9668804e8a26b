-- no-transaction: CREATE INDEX CONCURRENTLY (retention, migration 0024) builds without holding writes to the tables.
-- Each statement runs on its own. A build that was interrupted leaves an invalid index behind, and
-- this migration is recorded only once every statement succeeded, so each index is dropped first
-- (if there) and built again when the migration runs again.

-- The prune's scan: per workflow, its finished root runs by end time (a tree goes with its root).
-- Only finished roots are in it, so starting and running a run never touch it; ending one adds an
-- entry (status already changes an index there).
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_retention_idx;
CREATE INDEX CONCURRENTLY executions_retention_idx ON dw.executions (tenant_id, workflow_id, ended_at)
    WHERE parent_execution_id IS NULL AND status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut');

-- Deleting a run checks this foreign key (resource_touches.execution_id): without an index each
-- deleted execution scanned the whole table.
DROP INDEX CONCURRENTLY IF EXISTS dw.resource_touches_execution_idx;
CREATE INDEX CONCURRENTLY resource_touches_execution_idx ON dw.resource_touches (execution_id)
    WHERE execution_id IS NOT NULL;
