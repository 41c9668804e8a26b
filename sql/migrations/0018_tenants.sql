-- Tenants: every owned row names its tenant, user-chosen ids are unique per tenant, and row-level
-- security, forced, makes a query see its own tenant's rows only.
--
-- The tenant is the setting dw.tenant_id, which the application's data layer gives each pooled
-- connection before each statement (dataworkflows.db). Unset or empty, a query sees nothing and can
-- write nothing. '*' means every tenant, and counts only for roles with the privileges of
-- dataworkflows_all_tenants.
--
-- Roles (existing data lands in the 'default' tenant):
-- * dataworkflows_app: what the API and the workers SET ROLE to. It owns nothing, so RLS applies to
--   it; FORCE makes RLS apply to the tables' owner too (superusers and BYPASSRLS roles are exempt, as
--   always in PostgreSQL). NOINHERIT: it holds only its own grants, so its one policy is the plain
--   equality tenant_id = dw.tenant_id, which the planner uses as an index condition.
-- * dataworkflows_maintenance: the workers' maintenance loops (recovery, wake-ups, the scheduler,
--   retention) take it (set_config('role', ...), from dataworkflows_app, a member) and set
--   dw.tenant_id to '*'. It has the privileges of dataworkflows_all_tenants.
-- * dataworkflows_all_tenants: the role the '*' policy is for.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dataworkflows_app') THEN
        CREATE ROLE dataworkflows_app NOLOGIN NOINHERIT;
    END IF;
    ALTER ROLE dataworkflows_app NOINHERIT;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dataworkflows_maintenance') THEN
        CREATE ROLE dataworkflows_maintenance NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dataworkflows_all_tenants') THEN
        CREATE ROLE dataworkflows_all_tenants NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'migration 0018 needs the roles dataworkflows_app, dataworkflows_maintenance and '
                    'dataworkflows_all_tenants'
        USING HINT = 'as a superuser: CREATE ROLE dataworkflows_app NOLOGIN NOINHERIT; CREATE ROLE '
                     'dataworkflows_maintenance NOLOGIN; CREATE ROLE dataworkflows_all_tenants NOLOGIN; GRANT '
                     'dataworkflows_all_tenants TO dataworkflows_maintenance; GRANT dataworkflows_maintenance TO '
                     'dataworkflows_app; GRANT dataworkflows_app, dataworkflows_all_tenants TO '
                     || quote_ident(current_user) || '; then migrate again';
END;
$$;

DO $$
BEGIN
    GRANT dataworkflows_all_tenants TO dataworkflows_maintenance;
    -- The application may take the maintenance role for a transaction; being NOINHERIT, it does
    -- not hold its privileges otherwise.
    GRANT dataworkflows_maintenance TO dataworkflows_app;
    -- The migrating login may SET ROLE to the application role (its pools do), and works across
    -- tenants itself (a later migration that moves data).
    EXECUTE format('GRANT dataworkflows_app, dataworkflows_all_tenants TO %I', current_user);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'role grants skipped (no ADMIN option); a DBA must grant dataworkflows_all_tenants to '
                 'dataworkflows_maintenance, dataworkflows_maintenance to dataworkflows_app, and '
                 'dataworkflows_app and dataworkflows_all_tenants to the login that migrates and runs the application';
END;
$$;

-- Which tenants a reporting login (a member of dw_reporting) may read through the dw.v_* views:
-- one row per tenant, or '*' for all. Only the tables' owner changes it.
CREATE TABLE dw.reporting_tenants (
    role_name   name NOT NULL,
    tenant_id   text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, tenant_id),
    CONSTRAINT reporting_tenants_tenant_check
        CHECK (tenant_id = '*' OR tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$')
);

CREATE FUNCTION dw.reporting_sees_v1(p_role name, p_tenant text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM dw.reporting_tenants r WHERE r.role_name = p_role AND r.tenant_id IN (p_tenant, '*'))
$$;

-- Whether a view shows a row of this tenant to the current user. The application's roles (and the
-- owner, and superusers): the tenant its transaction set, or every tenant under '*' for the roles
-- allowed it. Anyone else (a dw_reporting login): the tenant it set (or '*'), among those
-- dw.reporting_tenants grants it.
CREATE FUNCTION dw.tenant_visible(p_tenant text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN pg_has_role('dataworkflows_app', 'MEMBER') OR pg_has_role('dataworkflows_maintenance', 'MEMBER')
            THEN p_tenant = current_setting('dw.tenant_id', true)
                 OR (current_setting('dw.tenant_id', true) = '*' AND pg_has_role('dataworkflows_all_tenants', 'USAGE'))
        ELSE (p_tenant = current_setting('dw.tenant_id', true) OR current_setting('dw.tenant_id', true) = '*')
             AND dw.reporting_sees_v1(current_user, p_tenant)
    END
$$;

-- Workflows: unique per tenant. Everything that refers to one by id refers to (tenant, id).
ALTER TABLE dw.workflow_plans DROP CONSTRAINT workflow_plans_workflow_id_version_fkey;
ALTER TABLE dw.executions DROP CONSTRAINT executions_workflow_id_workflow_version_fkey;
ALTER TABLE dw.workflow_versions DROP CONSTRAINT workflow_versions_workflow_id_fkey;
ALTER TABLE dw.triggers DROP CONSTRAINT triggers_workflow_id_fkey;
ALTER TABLE dw.workflows DROP CONSTRAINT workflows_template_fkey;

ALTER TABLE dw.workflow_versions ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE dw.workflow_plans ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE dw.workflow_templates ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE dw.connections ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
UPDATE dw.workflow_versions v SET tenant_id = w.tenant_id FROM dw.workflows w
 WHERE w.id = v.workflow_id AND w.tenant_id <> 'default';
UPDATE dw.workflow_plans p SET tenant_id = w.tenant_id FROM dw.workflows w
 WHERE w.id = p.workflow_id AND w.tenant_id <> 'default';

ALTER TABLE dw.workflows DROP CONSTRAINT workflows_pkey, ADD CONSTRAINT workflows_pkey PRIMARY KEY (tenant_id, id);
ALTER TABLE dw.workflow_versions
    DROP CONSTRAINT workflow_versions_pkey,
    ADD CONSTRAINT workflow_versions_pkey PRIMARY KEY (tenant_id, workflow_id, version),
    DROP CONSTRAINT workflow_versions_checksum_key,
    ADD CONSTRAINT workflow_versions_checksum_key UNIQUE (tenant_id, workflow_id, checksum),
    ADD CONSTRAINT workflow_versions_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dw.workflows (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE dw.workflow_plans
    DROP CONSTRAINT workflow_plans_pkey,
    ADD CONSTRAINT workflow_plans_pkey PRIMARY KEY (tenant_id, workflow_id, version),
    ADD CONSTRAINT workflow_plans_version_fkey FOREIGN KEY (tenant_id, workflow_id, version)
        REFERENCES dw.workflow_versions (tenant_id, workflow_id, version) ON DELETE CASCADE;
ALTER TABLE dw.workflow_templates
    DROP CONSTRAINT workflow_templates_pkey,
    ADD CONSTRAINT workflow_templates_pkey PRIMARY KEY (tenant_id, id, version),
    DROP CONSTRAINT workflow_templates_checksum_key,
    ADD CONSTRAINT workflow_templates_checksum_key UNIQUE (tenant_id, id, checksum);
ALTER TABLE dw.workflows
    ADD CONSTRAINT workflows_template_fkey FOREIGN KEY (tenant_id, template_id, template_version)
        REFERENCES dw.workflow_templates (tenant_id, id, version);
ALTER TABLE dw.executions
    ADD CONSTRAINT executions_version_fkey FOREIGN KEY (tenant_id, workflow_id, workflow_version)
        REFERENCES dw.workflow_versions (tenant_id, workflow_id, version),
    DROP CONSTRAINT executions_request_key,
    ADD CONSTRAINT executions_request_key UNIQUE (tenant_id, workflow_id, request_id);
ALTER TABLE dw.triggers
    ADD CONSTRAINT triggers_workflow_fkey FOREIGN KEY (tenant_id, workflow_id)
        REFERENCES dw.workflows (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE dw.connections DROP CONSTRAINT connections_pkey, ADD CONSTRAINT connections_pkey PRIMARY KEY (tenant_id, name);

DROP INDEX dw.executions_workflow_status_idx;
CREATE INDEX executions_workflow_status_idx ON dw.executions (tenant_id, workflow_id, status);
-- A tenant's newest runs first (GET /executions).
CREATE INDEX executions_tenant_created_idx ON dw.executions (tenant_id, created_at DESC, id);

-- Rows that hang off a run take its tenant.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['node_states', 'action_executions', 'execution_events', 'dead_letters',
                             'resource_touches', 'event_listeners', 'signals', 'foreach_items'] LOOP
        EXECUTE format('ALTER TABLE dw.%I ADD COLUMN tenant_id text NOT NULL DEFAULT %L', t, 'default');
        EXECUTE format('UPDATE dw.%I c SET tenant_id = e.tenant_id FROM dw.executions e '
                       'WHERE e.id = c.execution_id AND e.tenant_id <> %L', t, 'default');
    END LOOP;
END;
$$;
ALTER TABLE dw.approval_decisions ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
UPDATE dw.approval_decisions d SET tenant_id = w.tenant_id FROM dw.waits w
 WHERE w.id = d.wait_id AND w.tenant_id <> 'default';
ALTER TABLE dw.schedule_ticks ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE dw.webhook_deliveries ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
UPDATE dw.schedule_ticks k SET tenant_id = t.tenant_id FROM dw.triggers t
 WHERE t.id = k.trigger_id AND t.tenant_id <> 'default';
UPDATE dw.webhook_deliveries d SET tenant_id = t.tenant_id FROM dw.triggers t
 WHERE t.id = d.trigger_id AND t.tenant_id <> 'default';
CREATE INDEX dead_letters_tenant_created_idx ON dw.dead_letters (tenant_id, created_at DESC);

-- Every tenant table: a well-formed tenant (never '*'), by default the transaction's, and the policy.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['workflows', 'workflow_versions', 'workflow_plans', 'workflow_templates', 'executions',
                             'node_states', 'action_executions', 'execution_events', 'dead_letters', 'connections',
                             'resource_links', 'resource_touches', 'event_listeners', 'waits', 'signals',
                             'approval_decisions', 'foreach_items', 'triggers', 'schedule_ticks',
                             'webhook_deliveries'] LOOP
        EXECUTE format('ALTER TABLE dw.%I ALTER COLUMN tenant_id SET DEFAULT current_setting(%L, true)',
                       t, 'dw.tenant_id');
        EXECUTE format('ALTER TABLE dw.%I ADD CONSTRAINT %I CHECK (tenant_id ~ %L)',
                       t, t || '_tenant_check', '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$');
        EXECUTE format('ALTER TABLE dw.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE dw.%I FORCE ROW LEVEL SECURITY', t);
        -- Two permissive policies (a row passes either): its tenant is the transaction's, for
        -- everyone; or the transaction is '*', for dataworkflows_all_tenants only.
        EXECUTE format('CREATE POLICY tenant_isolation ON dw.%I USING (tenant_id = current_setting(%L, true)) '
                       'WITH CHECK (tenant_id = current_setting(%L, true))', t, 'dw.tenant_id', 'dw.tenant_id');
        EXECUTE format('CREATE POLICY all_tenants ON dw.%I TO dataworkflows_all_tenants '
                       'USING (current_setting(%L, true) = %L) WITH CHECK (current_setting(%L, true) = %L)',
                       t, 'dw.tenant_id', '*', 'dw.tenant_id', '*');
    END LOOP;
END;
$$;

-- A row written under '*' (a maintenance loop: recovery, the scheduler) takes its tenant from the
-- row it belongs to, instead of the '*' its default would give it (which the CHECK refuses). The
-- WHEN clause keeps this off the path of every write made under a tenant.
-- TG_ARGV[0] names the parent: execution (execution_id), trigger (trigger_id) or wait (wait_id).
CREATE FUNCTION dw.tenant_from_parent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_ARGV[0] = 'execution' THEN
        NEW.tenant_id := (SELECT e.tenant_id FROM dw.executions e WHERE e.id = NEW.execution_id);
    ELSIF TG_ARGV[0] = 'trigger' THEN
        NEW.tenant_id := (SELECT t.tenant_id FROM dw.triggers t WHERE t.id = NEW.trigger_id);
    ELSE
        NEW.tenant_id := (SELECT w.tenant_id FROM dw.waits w WHERE w.id = NEW.wait_id);
    END IF;
    RETURN NEW;
END;
$$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['node_states', 'action_executions', 'execution_events', 'dead_letters',
                             'resource_touches', 'event_listeners', 'waits', 'signals', 'foreach_items'] LOOP
        EXECUTE format('CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.%I FOR EACH ROW '
                       'WHEN (NEW.tenant_id = %L) EXECUTE FUNCTION dw.tenant_from_parent(%L)', t, '*', 'execution');
    END LOOP;
    FOREACH t IN ARRAY ARRAY['schedule_ticks', 'webhook_deliveries'] LOOP
        EXECUTE format('CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.%I FOR EACH ROW '
                       'WHEN (NEW.tenant_id = %L) EXECUTE FUNCTION dw.tenant_from_parent(%L)', t, '*', 'trigger');
    END LOOP;
    CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.approval_decisions FOR EACH ROW
        WHEN (NEW.tenant_id = '*') EXECUTE FUNCTION dw.tenant_from_parent('wait');
END;
$$;

-- The application's roles: rows, not schema. Tables later migrations create are granted likewise
-- when the same login runs them (each later migration also grants its tables explicitly).
DO $$
DECLARE
    r record;
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['dataworkflows_app', 'dataworkflows_maintenance'] LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA dw TO %I', v_role);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dw TO %I', v_role);
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON dw.schema_migrations FROM %I', v_role);
        EXECUTE format('REVOKE ALL ON dw.reporting_tenants FROM %I', v_role);
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA dw TO %I', v_role);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA dw GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I',
                       v_role);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA dw GRANT USAGE, SELECT ON SEQUENCES TO %I', v_role);
        -- Procrastinate's queue (its tables hold job arguments: execution ids, no tenant data).
        FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
                  WHERE c.relname LIKE 'procrastinate\_%' AND c.relkind IN ('r', 'S', 'v')
                    AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'procrastinate_jobs'::regclass)
        LOOP
            IF r.relkind = 'S' THEN
                EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %s TO %I', r.name, v_role);
            ELSE
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', r.name, v_role);
            END IF;
        END LOOP;
    END LOOP;
END;
$$;

-- Reporting views run with their owner's rights (so dw_reporting needs, and has, no access to the
-- tables) and show the rows dw.tenant_visible allows: the application its transaction's tenant, a
-- reporting login the tenant it sets among those dw.reporting_tenants grants it. Each view now ends
-- with its tenant_id. v_queue_depth (Procrastinate's queue, counts only) is not filtered.
CREATE OR REPLACE VIEW dw.v_executions AS
SELECT e.id, e.workflow_id, e.workflow_version, e.status, e.principal_id, e.correlation_id,
       e.created_at, e.started_at, e.ended_at,
       extract(epoch FROM e.started_at - e.created_at) AS queue_seconds,
       extract(epoch FROM COALESCE(e.ended_at, now()) - COALESCE(e.started_at, e.created_at)) AS run_seconds,
       e.recovery_count, e.error ->> 'code' AS error_code, e.error ->> 'message' AS error_message,
       e.outputs, e.parent_execution_id, e.parent_node_id, e.root_execution_id, e.depth, e.tenant_id
  FROM dw.executions e
 WHERE dw.tenant_visible(e.tenant_id);

CREATE OR REPLACE VIEW dw.v_node_durations AS
SELECT n.execution_id, e.workflow_id, n.node_id, n.action_type, n.status, n.attempts,
       n.started_at, n.ended_at, extract(epoch FROM n.ended_at - n.started_at) AS seconds, n.tenant_id
  FROM dw.node_states n JOIN dw.executions e ON e.id = n.execution_id
 WHERE dw.tenant_visible(n.tenant_id);

DROP VIEW dw.v_action_stats;
CREATE VIEW dw.v_action_stats AS
SELECT a.action_type,
       count(*) AS attempts,
       count(*) FILTER (WHERE a.status = 'Succeeded') AS succeeded,
       count(*) FILTER (WHERE a.status <> 'Succeeded') AS failed,
       round((count(*) FILTER (WHERE a.status <> 'Succeeded'))::numeric / count(*), 4)::double precision
           AS failure_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.end_time - a.start_time)) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM a.end_time - a.start_time)) AS p95_seconds,
       a.tenant_id
  FROM dw.action_executions a
 WHERE dw.tenant_visible(a.tenant_id)
 GROUP BY a.tenant_id, a.action_type;

DROP VIEW dw.v_workflow_health;
CREATE VIEW dw.v_workflow_health AS
SELECT w.id AS workflow_id, w.status AS workflow_status, p.period,
       count(e.id) AS executions,
       count(e.id) FILTER (WHERE e.status = 'Succeeded') AS succeeded,
       count(e.id) FILTER (WHERE e.status IN ('Failed', 'TimedOut', 'Cancelled')) AS failed,
       count(e.id) FILTER (WHERE e.status IN ('Pending', 'Running', 'Waiting', 'Suspended')) AS in_flight,
       round(CASE WHEN count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) = 0 THEN NULL
             ELSE (count(e.id) FILTER (WHERE e.status = 'Succeeded'))::numeric
                  / count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) END, 4)::double precision AS success_rate,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.ended_at - e.started_at))
           FILTER (WHERE e.ended_at IS NOT NULL) AS p95_seconds,
       w.tenant_id
  FROM dw.workflows w
 CROSS JOIN (VALUES ('1 hour', interval '1 hour'), ('1 day', interval '1 day')) AS p(period, span)
  LEFT JOIN dw.executions e ON e.tenant_id = w.tenant_id AND e.workflow_id = w.id AND e.created_at > now() - p.span
 WHERE dw.tenant_visible(w.tenant_id)
 GROUP BY w.tenant_id, w.id, w.status, p.period;

CREATE OR REPLACE VIEW dw.v_dead_letters AS
SELECT d.id, d.kind, d.execution_id, e.workflow_id, d.node_id, d.attempts, d.error ->> 'code' AS error_code,
       d.error ->> 'message' AS error_message, d.created_at, d.redriven_at, d.redriven_by,
       d.redriven_at IS NULL AND d.closed_at IS NULL AS open,
       d.closed_at, d.closed_by, d.close_reason, d.tenant_id
  FROM dw.dead_letters d LEFT JOIN dw.executions e ON e.id = d.execution_id
 WHERE dw.tenant_visible(d.tenant_id);

CREATE OR REPLACE VIEW dw.v_waiting_runs AS
SELECT w.execution_id, e.workflow_id, e.status AS execution_status, w.node_id, w.kind, w.name,
       w.correlation_key, w.id AS wait_id, w.created_at AS waiting_since,
       extract(epoch FROM now() - w.created_at) AS waiting_seconds,
       w.due_at, w.expires_at, w.tenant_id
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.state = 'open' AND dw.tenant_visible(w.tenant_id);

CREATE OR REPLACE VIEW dw.v_pending_approvals AS
SELECT w.id AS approval_id, w.execution_id, e.workflow_id, w.node_id, w.details ->> 'title' AS title,
       ARRAY(SELECT jsonb_array_elements_text(w.details -> 'approvers')) AS approvers,
       (w.details ->> 'required')::integer AS required,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'approve') AS approvals,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'reject') AS rejections,
       w.created_at AS requested_at, w.expires_at, w.tenant_id
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.kind = 'approval' AND w.state = 'open' AND dw.tenant_visible(w.tenant_id);

CREATE OR REPLACE VIEW dw.v_execution_tree AS
SELECT e.root_execution_id, e.id AS execution_id, e.parent_execution_id, e.parent_node_id, e.depth,
       e.workflow_id, e.workflow_version, e.status, e.created_at, e.started_at, e.ended_at,
       e.error ->> 'code' AS error_code, e.outputs, e.path, e.tenant_id
  FROM dw.executions e
 WHERE dw.tenant_visible(e.tenant_id);

CREATE OR REPLACE VIEW dw.v_resource_links AS
SELECT l.id AS link_id, l.tenant_id, l.resource_type, l.resource_key, l.external_id, t.action,
       t.execution_id, e.workflow_id, t.node_id, t.at
  FROM dw.resource_links l
  JOIN dw.resource_touches t ON t.resource_link_id = l.id
  LEFT JOIN dw.executions e ON e.id = t.execution_id
 WHERE dw.tenant_visible(l.tenant_id);

CREATE OR REPLACE VIEW dw.v_schedules AS
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
 WHERE t.kind = 'schedule' AND dw.tenant_visible(t.tenant_id);

-- v_action_stats and v_workflow_health were dropped and created again.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_action_stats, dw.v_workflow_health TO dw_reporting;
    END IF;
END;
$$;
