-- Signals by name and correlation key to every run that waits for them (POST /api/v1/signals/{name},
-- dw.broadcast_signal_v1; README "Signals to every run that waits"): the open signal waits of a
-- tenant by name and key. Partial: only open signal waits are in it (timers, approvals, children and
-- resolved waits are not), so a wait's resolution takes it out.
CREATE INDEX waits_open_signals_idx ON dw.waits (tenant_id, name, correlation_key, created_at)
    WHERE state = 'open' AND kind = 'signal';
