-- The reporting views keep their rows to the caller's tenants through row-level security on the
-- tables they read, instead of by being security barriers. A barrier view is planned apart from
-- the query around it: `ORDER BY created_at DESC LIMIT 20` on dw.v_executions (the README's own
-- example) read and sorted every run of every tenant, 2.3-2.8 s at 322,000 runs, and
-- dw.v_dead_letters 1.6-2.2 s at 250,000 letters (scale review, 2026-12-07). Without the barrier
-- the planner takes the created_at index and stops after 20 rows.
--
-- The views now belong to dataworkflows_views, a role that is subject to the tables' row-level
-- security (their owner until now was the migrating login, a superuser on the embedded database,
-- which row-level security does not apply to). For that role each table the views read has two
-- SELECT policies: views_rows (permissive, every row) and views_visible (restrictive: what
-- dw.tenant_visible says, for the session's user, as the views' own filter does; see
-- dw.visible_tenants_v1). Row-level security's conditions come before any of the caller's, as the
-- barrier's did (0043): a function of the caller's sees only the rows it may see. The views still
-- read their tables with their owner's rights, so a reporting login reads the views only, and what they show of a column (a
-- code and a message of an error, a redacted reason, open waits only) is all it sees. The views
-- keep their dw.tenant_visible filter. dw.v_queue_depth reads Procrastinate's tables, which have
-- no tenant policies: it stays as it was (the migrating login's, a security barrier). A view made
-- later must be given to dataworkflows_views too (tests/integration/test_tenants.py checks every
-- dw.v_ view).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dataworkflows_views') THEN
        CREATE ROLE dataworkflows_views NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'migration 0062 needs the role dataworkflows_views, granted to the login that migrates'
        USING HINT = 'as a superuser: CREATE ROLE dataworkflows_views NOLOGIN; GRANT dataworkflows_views TO '
                     || quote_ident(current_user) || '; then migrate again';
END;
$$;

-- The migrating login gives the views to it (which takes the right to SET ROLE to it), and replaces
-- them later. A login that may not grant it (no ADMIN option) goes on if a DBA granted it already.
DO $$
BEGIN
    EXECUTE format('GRANT dataworkflows_views TO %I', current_user);
EXCEPTION WHEN insufficient_privilege THEN
    IF NOT pg_has_role(current_user, 'dataworkflows_views', 'MEMBER') THEN
        RAISE EXCEPTION 'migration 0062 needs the role dataworkflows_views granted to the login that migrates'
            USING HINT = 'as a superuser: GRANT dataworkflows_views TO ' || quote_ident(current_user)
                         || '; then migrate again';
    END IF;
END;
$$;

-- The tenants whose rows the session's user may see through the views, for their row-level
-- security: NULL for every tenant. What dw.tenant_visible says of a row, said once for a statement
-- (the policy reads it through a scalar subquery, evaluated once) instead of for every row: a
-- policy that called dw.tenant_visible made a count over the views' 322,000 runs take 3.0 s
-- instead of 1.2 s, the views' own filter calling it too.
CREATE FUNCTION dw.reporting_tenants_of_v1(p_role name) RETURNS text[]
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    -- As dw.reporting_sees_v1: for the session's own roles only.
    SELECT CASE WHEN pg_has_role(session_user, p_role, 'MEMBER')
                THEN coalesce((SELECT array_agg(r.tenant_id) FROM dw.reporting_tenants r WHERE r.role_name = p_role),
                              '{}'::text[])
                ELSE '{}'::text[] END
$$;

-- An unset tenant is '' here (no tenant is ''): NULL would read as every tenant (a review).
CREATE FUNCTION dw.visible_tenants_v1() RETURNS text[] LANGUAGE sql STABLE
RETURN CASE
    WHEN pg_catalog.pg_has_role('dataworkflows_app', 'MEMBER')
         OR pg_catalog.pg_has_role('dataworkflows_maintenance', 'MEMBER') THEN
        CASE WHEN coalesce(pg_catalog.current_setting('dw.tenant_id', true), '') <> '*'
                 THEN ARRAY[coalesce(pg_catalog.current_setting('dw.tenant_id', true), '')]
             WHEN pg_catalog.pg_has_role('dataworkflows_all_tenants', 'USAGE') THEN NULL
             ELSE '{}'::text[] END
    ELSE (SELECT CASE
              WHEN g.setting = '*' THEN CASE WHEN '*' = ANY (g.t) THEN NULL ELSE g.t END
              WHEN g.setting = ANY (g.t) OR '*' = ANY (g.t) THEN ARRAY[g.setting]
              ELSE '{}'::text[] END
            FROM (SELECT dw.reporting_tenants_of_v1(current_user) AS t,
                         coalesce(pg_catalog.current_setting('dw.tenant_id', true), '') AS setting) g)
END;

-- dw.tenant_visible (0018), the views' own filter, again with a body parsed once, here: a body in a
-- string was parsed where it was inlined, with the caller's search_path, so a login that may
-- create a function in a schema of its path (public.pg_has_role answering true) read every tenant
-- it set through the views (a review; PostgreSQL 15 and later give public no CREATE by default).
-- Same answers, still inlined into the views' queries.
CREATE OR REPLACE FUNCTION dw.tenant_visible(p_tenant text) RETURNS boolean LANGUAGE sql STABLE
RETURN CASE
    WHEN pg_catalog.pg_has_role('dataworkflows_app', 'MEMBER')
         OR pg_catalog.pg_has_role('dataworkflows_maintenance', 'MEMBER')
        THEN p_tenant = pg_catalog.current_setting('dw.tenant_id', true)
             OR (pg_catalog.current_setting('dw.tenant_id', true) = '*'
                 AND pg_catalog.pg_has_role('dataworkflows_all_tenants', 'USAGE'))
    ELSE (p_tenant = pg_catalog.current_setting('dw.tenant_id', true)
          OR pg_catalog.current_setting('dw.tenant_id', true) = '*')
         AND dw.reporting_sees_v1(current_user, p_tenant)
END;

-- The letters in the order they came, of every tenant a session sees: the tenant's index cannot
-- serve '*' or a list of granted tenants, and the open letters' index holds the open ones only.
CREATE INDEX dead_letters_created_idx ON dw.dead_letters (created_at DESC);

DO $$
DECLARE
    v_table text;
    v_view regclass;
BEGIN
    GRANT USAGE ON SCHEMA dw TO dataworkflows_views;
    FOR v_table IN
        SELECT DISTINCT u.table_name FROM information_schema.view_table_usage u
         WHERE u.view_schema = 'dw' AND u.view_name LIKE 'v\_%' AND u.view_name <> 'v_queue_depth'
           AND u.table_schema = 'dw'
         ORDER BY 1
    LOOP
        EXECUTE format('GRANT SELECT ON dw.%I TO dataworkflows_views', v_table);
        EXECUTE format('CREATE POLICY views_rows ON dw.%I FOR SELECT TO dataworkflows_views USING (true)', v_table);
        EXECUTE format('CREATE POLICY views_visible ON dw.%I AS RESTRICTIVE FOR SELECT TO dataworkflows_views '
                       'USING (coalesce(tenant_id = ANY ((SELECT dw.visible_tenants_v1())::text[]), '
                       '(SELECT dw.visible_tenants_v1()) IS NULL))', v_table);
    END LOOP;
    -- A new owner must be able to create in the schema (superusers are not asked): for the moment
    -- of the change only, as the owner of what it owns needs no more (a review: a login that is no
    -- superuser was refused "permission denied for schema dw").
    GRANT CREATE ON SCHEMA dw TO dataworkflows_views;
    FOR v_view IN
        SELECT c.oid::regclass FROM pg_class c
         WHERE c.relnamespace = 'dw'::regnamespace AND c.relkind = 'v' AND c.relname LIKE 'v\_%'
           AND c.relname <> 'v_queue_depth'
         ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER VIEW %s SET (security_barrier = false)', v_view);
        EXECUTE format('ALTER VIEW %s OWNER TO dataworkflows_views', v_view);
    END LOOP;
    REVOKE CREATE ON SCHEMA dw FROM dataworkflows_views;
END;
$$;
