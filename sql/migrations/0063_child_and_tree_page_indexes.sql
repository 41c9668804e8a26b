-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.executions. An
-- interrupted build leaves an invalid index behind, so each one is dropped first (if there) and built
-- again when this runs again.

-- An execution's children in their order (GET /executions/{id}: the oldest 100; …/children: a page
-- after a (created_at, id)). With the parent alone in the index, the first page of a parent with many
-- children (its own row among the statistics' most common values) was read by walking the tenant's
-- runs in created_at order (executions_tenant_created_idx) until the page was full: 310,000 rows
-- filtered out for a forEach of 10,000 items in a tenant of 320,000 runs, and as many more as the
-- tenant's history is long (a review). This index serves the parent's lookups as the old one did.
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_parent_created_idx;
CREATE INDEX CONCURRENTLY executions_parent_created_idx ON dw.executions (parent_execution_id, created_at, id)
    WHERE parent_execution_id IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_parent_idx;

-- A run tree in the order of its paths (…/tree, a page at a time): without it each page read every
-- run of the tree and sorted them (10,000 rows for each page of 1,000); with it a page can be read in
-- order (0.6-2.5 ms instead of 12-40 ms at 10,000 runs, when the planner takes it: it estimates a
-- tree at a run or two, for which both plans cost the same). It serves the root's lookups (the
-- tree's size, retention) as the old one did.
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_root_path_idx;
CREATE INDEX CONCURRENTLY executions_root_path_idx ON dw.executions (root_execution_id, path);
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_root_idx;
