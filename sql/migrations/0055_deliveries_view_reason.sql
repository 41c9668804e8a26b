-- dw.v_webhook_deliveries (migration 0053) hid an id-less delivery's content hash in delivery_id but
-- not in reason: a duplicate's reason names the delivery id it first came under ("the same signed
-- request was first received at ... under delivery id sha256:<hash>"), and a reporting login read the
-- hash there (a review). Every such id in the reason reads "sha256:(content hash)" too.
CREATE OR REPLACE VIEW dw.v_webhook_deliveries WITH (security_barrier = true) AS
SELECT d.id, d.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       CASE WHEN d.delivery_id ~ '^sha256:[0-9a-f]{64}$' THEN 'sha256:(content hash)' ELSE d.delivery_id END
           AS delivery_id,
       d.received_at, d.outcome,
       regexp_replace(d.reason, 'sha256:[0-9a-f]{64}', 'sha256:(content hash)', 'g') AS reason,
       d.status_code, d.execution_id, d.body_bytes, d.lapsed_at, d.tenant_id
  FROM dw.webhook_deliveries d
  JOIN dw.triggers t ON t.id = d.trigger_id
 WHERE dw.tenant_visible(d.tenant_id);
