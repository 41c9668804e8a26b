-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.resource_touches
-- (every create that links a resource writes one) during a rolling upgrade. An interrupted build
-- leaves an invalid index behind: it is dropped first (if there) and built again.

-- The ids a compensation released (migration 0076: its node's resource was undone), by id: an
-- in-doubt create's lookup (linked_external_ids) never takes such an item for the one its own
-- create may have made (a review: a release left the undone item linked to no key, and the next
-- run's in-doubt create, finding it among the recent items of its name, took it as its own).
-- Partial: only the 'released' entries are in it.
DROP INDEX CONCURRENTLY IF EXISTS dw.resource_touches_released_idx;
CREATE INDEX CONCURRENTLY resource_touches_released_idx ON dw.resource_touches (external_id)
    WHERE action = 'released';
