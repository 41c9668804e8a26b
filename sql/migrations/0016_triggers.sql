-- Triggers: schedules (cron rows, like pg_cron's cron.job) and webhooks, each starting runs of one
-- workflow. A schedule's tick is claimed by a row per (trigger, tick) written in the transaction that
-- starts its run; a webhook delivery is a row whatever its outcome, unique per (trigger, delivery id)
-- once it started (or declined to start) a run.

CREATE TABLE dw.triggers (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     text NOT NULL DEFAULT 'default',
    workflow_id   text NOT NULL REFERENCES dw.workflows (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    -- Unique per tenant and kind: dw.schedule_v1(name, ...) replaces the schedule of that name, as
    -- cron.schedule does.
    name          text NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    -- schedule: {"cron", "timezone", "catchUp": none|latest|all, "maxCatchUp", "payload"}
    -- webhook:  {"signature": hmac-sha256|github|slack|none, "payloadTemplate", "headers",
    --            "activationCondition", "deliveryIdHeader"}
    config        jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- A webhook's signing secret, AES-256-GCM encrypted with DW_CREDENTIALS_KEY (never in clear).
    secret        bytea,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Schedules: the next tick due (NULL: not computed yet; a worker's scheduler computes it) and the
    -- last one fired.
    next_tick_at  timestamptz,
    last_tick_at  timestamptz,
    -- Why a schedule stopped (its cron no longer parses, its workflow is gone); NULL while fine.
    error         text,
    CONSTRAINT triggers_kind_check CHECK (kind IN ('schedule', 'webhook')),
    CONSTRAINT triggers_name_key UNIQUE (tenant_id, kind, name),
    CONSTRAINT triggers_name_check CHECK (length(name) BETWEEN 1 AND 200)
);
CREATE INDEX triggers_workflow_idx ON dw.triggers (workflow_id);
-- The scheduler's scan: enabled schedules whose tick is due (or not computed yet).
CREATE INDEX triggers_due_idx ON dw.triggers (next_tick_at NULLS FIRST) WHERE kind = 'schedule' AND enabled;

-- One row per schedule tick that fired: the unique key is what makes a tick fire once, whatever
-- the number of schedulers.
CREATE TABLE dw.schedule_ticks (
    trigger_id    uuid NOT NULL REFERENCES dw.triggers (id) ON DELETE CASCADE,
    tick_at       timestamptz NOT NULL,
    fired_at      timestamptz NOT NULL DEFAULT now(),
    execution_id  uuid,
    -- Ticks the catch-up policy folded into this one (latest) after downtime.
    missed_ticks  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (trigger_id, tick_at)
);

CREATE TABLE dw.webhook_deliveries (
    id            bigserial PRIMARY KEY,
    trigger_id    uuid NOT NULL REFERENCES dw.triggers (id) ON DELETE CASCADE,
    delivery_id   text,
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- accepted: a run started; duplicate: a delivery id seen before (its first run answered);
    -- not_activated: the activation condition was false; refused: a bad signature, a stale
    -- timestamp, a body or template that could not be used.
    outcome       text NOT NULL,
    reason        text,
    status_code   integer NOT NULL,
    execution_id  uuid,
    body_bytes    integer,
    -- SHA-256 of what a signed delivery's signature covers: the same signed request sent again under
    -- another delivery id is a replay, not a new delivery.
    content_hash  text,
    CONSTRAINT webhook_deliveries_outcome_check CHECK (outcome IN ('accepted', 'duplicate', 'not_activated', 'refused'))
);
CREATE UNIQUE INDEX webhook_deliveries_once ON dw.webhook_deliveries (trigger_id, delivery_id)
    WHERE outcome IN ('accepted', 'not_activated');
CREATE UNIQUE INDEX webhook_deliveries_signed_once ON dw.webhook_deliveries (trigger_id, content_hash)
    WHERE outcome IN ('accepted', 'not_activated') AND content_hash IS NOT NULL;
CREATE INDEX webhook_deliveries_received_idx ON dw.webhook_deliveries (received_at);
CREATE INDEX webhook_deliveries_trigger_idx ON dw.webhook_deliveries (trigger_id, received_at DESC);

-- The trigger that started a run (kept when the trigger is deleted: history).
ALTER TABLE dw.executions ADD COLUMN trigger_id uuid;
CREATE INDEX executions_trigger_idx ON dw.executions (trigger_id, created_at DESC) WHERE trigger_id IS NOT NULL;

-- Each schedule: its next and last tick, the last run's status, and how late its recent ticks fired.
CREATE VIEW dw.v_schedules AS
SELECT t.id, t.tenant_id, t.name, t.workflow_id, t.enabled, t.config ->> 'cron' AS cron,
       t.config ->> 'timezone' AS timezone, COALESCE(t.config ->> 'catchUp', 'latest') AS catch_up,
       t.next_tick_at, t.last_tick_at, t.error,
       last_run.status AS last_run_status, last_run.id AS last_run_id,
       recent.ticks AS recent_ticks, recent.lateness_p50_seconds, recent.lateness_p95_seconds,
       recent.lateness_max_seconds
  FROM dw.triggers t
  LEFT JOIN LATERAL (
      SELECT e.id, e.status FROM dw.schedule_ticks k JOIN dw.executions e ON e.id = k.execution_id
       WHERE k.trigger_id = t.id ORDER BY k.tick_at DESC LIMIT 1) last_run ON true
  LEFT JOIN LATERAL (
      SELECT count(*) AS ticks,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.fired_at - r.tick_at)) AS lateness_p50_seconds,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM r.fired_at - r.tick_at)) AS lateness_p95_seconds,
             max(extract(epoch FROM r.fired_at - r.tick_at)) AS lateness_max_seconds
        FROM (SELECT k.tick_at, k.fired_at FROM dw.schedule_ticks k WHERE k.trigger_id = t.id
               ORDER BY k.tick_at DESC LIMIT 100) r) recent ON true
 WHERE t.kind = 'schedule';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_schedules TO dw_reporting;
    END IF;
END;
$$;
