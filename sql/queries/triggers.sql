-- name: insert_trigger
-- A new trigger of a workflow (the workflow must exist: NotFound otherwise). The workflow's row is
-- locked as the foreign key's check would lock it, but before the insert: a delete of the workflow
-- in flight (dw.delete_workflow_v1) makes this wait and then insert nothing (no workflow), where
-- the check after the insert raised a foreign key violation.
INSERT INTO dw.triggers (id, tenant_id, workflow_id, kind, name, enabled, config, secret, created_by, priority)
SELECT %(id)s, w.tenant_id, w.id, %(kind)s, %(name)s, %(enabled)s, %(config)s, %(secret)s, %(principal)s,
       %(priority)s
  FROM dw.workflows w WHERE w.id = %(workflow_id)s
   FOR KEY SHARE
RETURNING id, tenant_id, workflow_id, kind, name, enabled, config, secret IS NOT NULL AS has_secret, created_by,
          created_at, updated_at, next_tick_at, last_tick_at, error, previous_secret_until, priority;

-- name: get_trigger
SELECT id, tenant_id, workflow_id, kind, name, enabled, config, secret IS NOT NULL AS has_secret, created_by,
       created_at, updated_at, next_tick_at, last_tick_at, error, previous_secret_until, priority
  FROM dw.triggers WHERE id = %(id)s;

-- name: get_trigger_secret
SELECT secret FROM dw.triggers WHERE id = %(id)s;

-- name: list_triggers
-- A workflow's triggers (of a kind), oldest first. Keyset paging: those after the (created_at, id)
-- of the last one of the page before.
SELECT id, tenant_id, workflow_id, kind, name, enabled, config, secret IS NOT NULL AS has_secret, created_by,
       created_at, updated_at, next_tick_at, last_tick_at, error, previous_secret_until, priority
  FROM dw.triggers
 WHERE workflow_id = %(workflow_id)s
   AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
   AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::uuid))
 ORDER BY created_at, id
 LIMIT %(limit)s;

-- name: list_all_triggers
-- Every trigger (of a kind), by workflow, kind and name (unique: a name is unique in its tenant and
-- kind), each with its latest runs (up to `runs`, newest first; one index lookup per trigger:
-- executions_trigger_idx). The console read them with a request per trigger, and 111 triggers
-- passed the API's per-caller rate limit. Keyset paging: those after the (workflow_id, kind, name)
-- of the last one of the page before; the runs are read for the page's triggers only.
SELECT t.id, t.tenant_id, t.workflow_id, t.kind, t.name, t.enabled, t.config, t.secret IS NOT NULL AS has_secret,
       t.created_by, t.created_at, t.updated_at, t.next_tick_at, t.last_tick_at, t.error, t.previous_secret_until,
       t.priority, COALESCE(r.runs, '[]'::jsonb) AS recent_runs
  FROM (SELECT * FROM dw.triggers t
         WHERE (%(kind)s::text IS NULL OR t.kind = %(kind)s::text)
           AND (%(after_workflow)s::text IS NULL
                OR (t.workflow_id, t.kind, t.name)
                   > (%(after_workflow)s::text, %(after_kind)s::text, %(after_name)s::text))
         ORDER BY t.workflow_id, t.kind, t.name
         LIMIT %(limit)s) t
  LEFT JOIN LATERAL (
      SELECT jsonb_agg(jsonb_build_object('id', e.id, 'status', e.status, 'created_at', e.created_at)
                       ORDER BY e.created_at DESC, e.id DESC) AS runs
        FROM (SELECT e.id, e.status, e.created_at FROM dw.executions e
               WHERE e.trigger_id = t.id ORDER BY e.created_at DESC, e.id DESC LIMIT %(runs)s) e
  ) r ON true
 ORDER BY t.workflow_id, t.kind, t.name;

-- name: update_trigger
-- Changes what is given (NULL: unchanged). A schedule's next tick is computed again by the scheduler,
-- from the moment of the change (updated_at), when its cron or time zone changes or it is enabled
-- again (the ticks it missed while disabled are not caught up); a change of its payload, catchUp
-- or name keeps it; a disabled schedule has none (migration 0036). Its error is cleared.
UPDATE dw.triggers t
   SET name = COALESCE(%(name)s, t.name),
       enabled = COALESCE(%(enabled)s, t.enabled),
       config = COALESCE(%(config)s, t.config),
       -- Its own priority: given (a number), cleared (clear_priority), or kept.
       priority = CASE WHEN %(clear_priority)s THEN NULL ELSE COALESCE(%(priority)s, t.priority) END,
       updated_at = now(),
       next_tick_at = CASE WHEN t.kind = 'schedule'
                            AND ((%(config)s::jsonb IS NOT NULL
                                  AND (btrim(%(config)s::jsonb ->> 'cron', E' \t\n\r\f\x0B')
                                           IS DISTINCT FROM btrim(t.config ->> 'cron', E' \t\n\r\f\x0B')
                                       OR COALESCE(%(config)s::jsonb ->> 'timezone', 'UTC')
                                           IS DISTINCT FROM COALESCE(t.config ->> 'timezone', 'UTC')))
                                 OR (%(enabled)s::boolean AND NOT t.enabled)
                                 -- disabled by this change, or still disabled
                                 OR NOT COALESCE(%(enabled)s::boolean, t.enabled))
                           THEN NULL ELSE t.next_tick_at END,
       error = CASE WHEN %(config)s::jsonb IS NOT NULL OR %(enabled)s::boolean THEN NULL ELSE t.error END
 WHERE t.id = %(id)s
RETURNING id, tenant_id, workflow_id, kind, name, enabled, config, secret IS NOT NULL AS has_secret, created_by,
          created_at, updated_at, next_tick_at, last_tick_at, error, previous_secret_until, priority;

-- name: rotate_trigger_secret
-- A signed webhook's new secret (encrypted); the one it replaces stays valid for keep_seconds (0:
-- not at all). NULL row: no such signed webhook.
UPDATE dw.triggers t
   SET previous_secret = CASE WHEN %(keep_seconds)s::float8 > 0 THEN t.secret END,
       previous_secret_until = CASE WHEN %(keep_seconds)s::float8 > 0
                                    THEN now() + make_interval(secs => %(keep_seconds)s::float8) END,
       secret = %(secret)s,
       updated_at = now()
 WHERE t.id = %(id)s AND t.kind = 'webhook' AND t.secret IS NOT NULL
RETURNING id, tenant_id, workflow_id, kind, name, enabled, config, secret IS NOT NULL AS has_secret, created_by,
          created_at, updated_at, next_tick_at, last_tick_at, error, previous_secret_until, priority;

-- name: delete_trigger
DELETE FROM dw.triggers WHERE id = %(id)s RETURNING id;

-- name: lock_event_triggers
-- Held while an event trigger is created, enabled or reconfigured, until its transaction ends: two
-- at once would each count the other's triggers without its own and pass DW_MAX_EVENT_TRIGGERS
-- together. Per tenant: an event matches its own tenant's triggers only.
SELECT pg_advisory_xact_lock(hashtextextended('dw.event_triggers:' || dw.session_tenant_v1(), 0));

-- name: enabled_event_subscriptions
-- The session tenant's enabled event triggers but one (the one being changed), as matching sees
-- them: their eventType pattern and source (NULL: any). The tenant explicitly, as the audit log's.
-- Only those one event could match together with a trigger of this pattern and source (NULL: any):
-- a source it takes, and a pattern that takes a type the other takes (one takes the other's pattern
-- as a type: a prefix over the other, '*', the same type). The tenant's every event trigger was read
-- for each change (a review: 100,000 of them, 1.6 s a creation), and only these can count.
SELECT t.config ->> 'eventType' AS pattern, t.config ->> 'source' AS source
  FROM dw.triggers t
 WHERE t.tenant_id = dw.session_tenant_v1() AND t.kind = 'event' AND t.enabled AND t.id <> %(id)s
   AND (%(source)s::text IS NULL OR t.config ->> 'source' IS NULL OR t.config ->> 'source' = %(source)s::text)
   AND (dw.event_type_matches_v1(t.config ->> 'eventType', %(pattern)s::text)
        OR dw.event_type_matches_v1(%(pattern)s::text, t.config ->> 'eventType'));
