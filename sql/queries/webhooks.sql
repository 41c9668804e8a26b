-- name: hook_trigger
-- A webhook trigger as its endpoint reads it, with its encrypted secret (NULL: unsigned), and the
-- secret a rotation replaced while it is still valid (migration 0045).
SELECT t.id, t.tenant_id, t.workflow_id, t.name, t.enabled, t.config, t.secret,
       CASE WHEN t.previous_secret_until > now() THEN t.previous_secret END AS previous_secret
  FROM dw.triggers t WHERE t.id = %(id)s AND t.kind = 'webhook';

-- name: accept_webhook_delivery
-- Claims the delivery id and starts the trigger's run in one transaction (or answers a duplicate).
SELECT outcome, execution_id, first_outcome, created
  FROM dw.accept_webhook_delivery_v2(%(trigger_id)s, %(delivery_id)s, %(content_hash)s, %(payload)s, %(queue)s,
                                     %(body_bytes)s, %(received_at)s, %(lapse_seconds)s);

-- name: record_webhook_delivery
-- A refused or not activated delivery's row (a not activated one claims its delivery id).
SELECT outcome, execution_id, first_outcome, created
  FROM dw.record_webhook_delivery_v2(%(trigger_id)s, %(delivery_id)s, %(content_hash)s, %(outcome)s, %(reason)s,
                                     %(status_code)s, %(body_bytes)s, %(received_at)s, %(lapse_seconds)s);

-- name: prune_webhook_deliveries
-- Deletes a batch of delivery rows older than the retention.
SELECT dw.prune_webhook_deliveries_v1(%(keep_seconds)s, %(limit)s) AS deleted;

-- name: list_webhook_deliveries
-- A trigger's deliveries (of an outcome), newest first (webhook_deliveries_trigger_idx). Keyset
-- paging: those before the (received_at, id) of the last one of the page before.
SELECT d.id, d.trigger_id, d.delivery_id, d.received_at, d.outcome, d.reason, d.status_code, d.execution_id,
       d.body_bytes, d.lapsed_at
  FROM dw.webhook_deliveries d
 WHERE d.trigger_id = %(trigger_id)s
   AND (%(outcome)s::text IS NULL OR d.outcome = %(outcome)s::text)
   AND (%(before_at)s::timestamptz IS NULL
        OR (d.received_at, d.id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
 ORDER BY d.received_at DESC, d.id DESC
 LIMIT %(limit)s;
