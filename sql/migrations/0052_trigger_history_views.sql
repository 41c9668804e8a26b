-- Webhook deliveries and schedule ticks were recorded (dw.webhook_deliveries, dw.schedule_ticks) but
-- only the application could read them: dw_reporting has no table. Two reporting views, each row
-- with its trigger's name, kind, workflow and tenant, filtered and granted as the other dw.v_*
-- views are (migrations 0018, 0043): security barriers whose rows are those dw.tenant_visible
-- shows the caller. Neither shows a delivery's content hash (a hash of what its signature covered)
-- nor anything of the trigger's config or secret.
CREATE VIEW dw.v_webhook_deliveries WITH (security_barrier = true) AS
SELECT d.id, d.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       d.delivery_id, d.received_at, d.outcome, d.reason, d.status_code, d.execution_id, d.body_bytes,
       d.lapsed_at, d.tenant_id
  FROM dw.webhook_deliveries d
  JOIN dw.triggers t ON t.id = d.trigger_id
 WHERE dw.tenant_visible(d.tenant_id);

CREATE VIEW dw.v_schedule_ticks WITH (security_barrier = true) AS
SELECT k.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       k.tick_at, k.fired_at, extract(epoch FROM k.fired_at - k.tick_at) AS lateness_seconds,
       k.execution_id, k.missed_ticks, k.tenant_id
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
