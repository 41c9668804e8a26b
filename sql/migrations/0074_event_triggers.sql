-- Event triggers (README "Events"): POST /api/v1/events takes a CloudEvent, and every enabled
-- trigger of kind 'event' of the tenant whose eventType (and source, when it names one) matches
-- starts a run of its workflow (dw.publish_event_v1). An event is a row, unique per tenant by its
-- (source, id) as CloudEvents defines it: a producer's redelivery is a duplicate that starts nothing
-- and answers the first delivery's runs. Each trigger it met is a row of dw.event_deliveries (what
-- happened: started, or refused and why). Kept DW_WEBHOOK_RETENTION_DAYS, as webhook deliveries.
ALTER TABLE dw.triggers DROP CONSTRAINT triggers_kind_check;
ALTER TABLE dw.triggers ADD CONSTRAINT triggers_kind_check CHECK (kind IN ('schedule', 'webhook', 'event'));

CREATE TABLE dw.events (
    tenant_id     text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    id            bigserial NOT NULL,
    -- CloudEvents' context attributes.
    source        text NOT NULL,
    event_id      text NOT NULL,
    type          text NOT NULL,
    subject       text,
    time          timestamptz,
    data          jsonb,
    received_at   timestamptz NOT NULL DEFAULT now(),
    published_by  text,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT events_once UNIQUE (tenant_id, source, event_id),
    CONSTRAINT events_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$')
);
CREATE INDEX events_received_idx ON dw.events (received_at);

CREATE TABLE dw.event_deliveries (
    tenant_id     text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    event_row     bigint NOT NULL,
    trigger_id    uuid NOT NULL,
    workflow_id   text NOT NULL,
    -- started: a run was started (its request id is "event:<row>:<trigger>"); refused:
    -- the workflow could not start one (reason says why: not active, disabled, ...).
    outcome       text NOT NULL,
    execution_id  uuid,
    reason        text,
    PRIMARY KEY (tenant_id, event_row, trigger_id),
    FOREIGN KEY (tenant_id, event_row) REFERENCES dw.events (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT event_deliveries_outcome_check CHECK (outcome IN ('started', 'refused')),
    CONSTRAINT event_deliveries_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$')
);
CREATE INDEX event_deliveries_trigger_idx ON dw.event_deliveries (trigger_id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['events', 'event_deliveries'] LOOP
        EXECUTE format('ALTER TABLE dw.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE dw.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON dw.%I USING (tenant_id = current_setting(%L, true)) '
                       'WITH CHECK (tenant_id = current_setting(%L, true))', t, 'dw.tenant_id', 'dw.tenant_id');
        EXECUTE format('CREATE POLICY all_tenants ON dw.%I TO dataworkflows_all_tenants '
                       'USING (current_setting(%L, true) = %L) WITH CHECK (current_setting(%L, true) = %L)',
                       t, 'dw.tenant_id', '*', 'dw.tenant_id', '*');
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON dw.%I TO dataworkflows_app, dataworkflows_maintenance', t);
        -- Read by the reporting view below (migration 0062's arrangement).
        EXECUTE format('GRANT SELECT ON dw.%I TO dataworkflows_views', t);
        EXECUTE format('CREATE POLICY views_rows ON dw.%I FOR SELECT TO dataworkflows_views USING (true)', t);
        EXECUTE format('CREATE POLICY views_visible ON dw.%I AS RESTRICTIVE FOR SELECT TO dataworkflows_views '
                       'USING (coalesce(tenant_id = ANY ((SELECT dw.visible_tenants_v1())::text[]), '
                       '(SELECT dw.visible_tenants_v1()) IS NULL))', t);
    END LOOP;
END;
$$;
GRANT USAGE, SELECT ON SEQUENCE dw.events_id_seq TO dataworkflows_app, dataworkflows_maintenance;

-- Every event and what it started, for operators (the data left out: it is run input, which the
-- reporting role is not shown).
CREATE VIEW dw.v_events AS
SELECT ev.id, ev.source, ev.event_id, ev.type, ev.subject, ev.time, ev.received_at, ev.published_by,
       count(d.trigger_id) AS triggers,
       count(d.trigger_id) FILTER (WHERE d.outcome = 'started') AS runs_started,
       count(d.trigger_id) FILTER (WHERE d.outcome = 'refused') AS refused,
       ev.tenant_id
  FROM dw.events ev
  LEFT JOIN dw.event_deliveries d ON d.tenant_id = ev.tenant_id AND d.event_row = ev.id
 WHERE dw.tenant_visible(ev.tenant_id)
 GROUP BY ev.tenant_id, ev.id;
GRANT CREATE ON SCHEMA dw TO dataworkflows_views;
ALTER VIEW dw.v_events OWNER TO dataworkflows_views;
REVOKE CREATE ON SCHEMA dw FROM dataworkflows_views;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_events TO dw_reporting;
    END IF;
END;
$$;
