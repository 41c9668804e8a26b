-- The trigger history views of migration 0052, made again (not replaced: a view's new column can only
-- be appended, and the reporting views end with tenant_id):
-- * dw.v_schedule_ticks with the run each tick met still going under its schedule's overlap policy
--   (schedule_ticks.overlapped_by, migration 0051);
-- * dw.v_webhook_deliveries without the content hash that a delivery without an id header is known
--   by: its id is "sha256:" + the SHA-256 of its body (an unsigned hook's) or of its timestamp and
--   body (a signed one's), and with received_at and body_bytes beside it a short body could be
--   found by trying candidates, which the reporting role, shown no run input, must not. Such an id
--   reads "sha256:(content hash)"; the API, whose viewers read the runs' inputs, shows it whole.
DROP VIEW dw.v_webhook_deliveries;
CREATE VIEW dw.v_webhook_deliveries WITH (security_barrier = true) AS
SELECT d.id, d.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       CASE WHEN d.delivery_id ~ '^sha256:[0-9a-f]{64}$' THEN 'sha256:(content hash)' ELSE d.delivery_id END
           AS delivery_id,
       d.received_at, d.outcome, d.reason, d.status_code, d.execution_id, d.body_bytes, d.lapsed_at, d.tenant_id
  FROM dw.webhook_deliveries d
  JOIN dw.triggers t ON t.id = d.trigger_id
 WHERE dw.tenant_visible(d.tenant_id);

DROP VIEW dw.v_schedule_ticks;
CREATE VIEW dw.v_schedule_ticks WITH (security_barrier = true) AS
SELECT k.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       k.tick_at, k.fired_at, extract(epoch FROM k.fired_at - k.tick_at) AS lateness_seconds,
       k.execution_id, k.missed_ticks, k.overlapped_by, k.tenant_id
  FROM dw.schedule_ticks k
  JOIN dw.triggers t ON t.id = k.trigger_id
 WHERE dw.tenant_visible(k.tenant_id);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_webhook_deliveries, dw.v_schedule_ticks TO dw_reporting;
    END IF;
END;
$$;
