-- dw.v_webhook_deliveries (migration 0055) showed a refusal's reason whole, and the reasons of a
-- payloadTemplate or an activation condition that failed quote the sandbox's error, which may quote
-- the body: a template {{ users[body.user] }} over a body whose user is not among them is refused
-- with "... has no attribute '<that user>'", and a reporting login, shown no run input, read the
-- body's value there (a review). Such a reason reads as its code and what failed; the API, whose
-- viewers read the runs' inputs, shows it whole.
CREATE OR REPLACE VIEW dw.v_webhook_deliveries WITH (security_barrier = true) AS
SELECT d.id, d.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       CASE WHEN d.delivery_id ~ '^sha256:[0-9a-f]{64}$' THEN 'sha256:(content hash)' ELSE d.delivery_id END
           AS delivery_id,
       d.received_at, d.outcome,
       CASE WHEN d.reason LIKE 'payload\_template\_error: the payloadTemplate could not be rendered:%'
                THEN 'payload_template_error: the payloadTemplate could not be rendered (the error, which may quote '
                     'the body, is in the API''s deliveries)'
            WHEN d.reason LIKE 'activation\_condition\_error:%'
                THEN 'activation_condition_error: the activation condition failed (the error, which may quote the '
                     'body, is in the API''s deliveries)'
            ELSE regexp_replace(d.reason, 'sha256:[0-9a-f]{64}', 'sha256:(content hash)', 'g') END AS reason,
       d.status_code, d.execution_id, d.body_bytes, d.lapsed_at, d.tenant_id
  FROM dw.webhook_deliveries d
  JOIN dw.triggers t ON t.id = d.trigger_id
 WHERE dw.tenant_visible(d.tenant_id);
