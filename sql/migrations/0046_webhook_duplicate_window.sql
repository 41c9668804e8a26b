-- An unsigned hook's delivery that names no delivery id is known by its body's SHA-256, and its
-- claim of that id lasted as long as the delivery's row (DW_WEBHOOK_RETENTION_DAYS), then as long
-- as its run, through the run's request id: a sender whose events are alike (an alert, a ping)
-- started one run, ever. Such a claim now lapses after the hook's duplicateWindowSeconds (README
-- "Webhooks"): the next delivery of that body marks the old claim lapsed (lapsed_at) and claims the
-- id again. A lapsed claim is history; it no longer holds the id.
ALTER TABLE dw.webhook_deliveries ADD COLUMN lapsed_at timestamptz;
DROP INDEX dw.webhook_deliveries_once;
CREATE UNIQUE INDEX webhook_deliveries_once ON dw.webhook_deliveries (trigger_id, delivery_id)
    WHERE outcome IN ('accepted', 'not_activated') AND lapsed_at IS NULL;
