-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.waits (every wait a
-- run begins or resolves goes on during a rolling upgrade). An interrupted build leaves an invalid
-- index behind: it is dropped first (if there) and built again when the migration runs again.

-- Signals by name and correlation key to every run that waits for them (POST /api/v1/signals/{name},
-- dw.broadcast_signal_v1; README "Signals to every run that waits"): the open signal waits of a
-- tenant by name and key. Partial: only open signal waits are in it (timers, approvals, children and
-- resolved waits are not), so a wait's resolution takes it out.
DROP INDEX CONCURRENTLY IF EXISTS dw.waits_open_signals_idx;
CREATE INDEX CONCURRENTLY waits_open_signals_idx ON dw.waits (tenant_id, name, correlation_key, created_at)
    WHERE state = 'open' AND kind = 'signal';
