-- The reporting views read their tables as the caller (security_invoker), and a dw_reporting login's
-- tenants are kept by row-level security on those tables, instead of by the views being security
-- barriers. A barrier view is planned apart from the query around it: `ORDER BY created_at DESC
-- LIMIT 20` on dw.v_executions (the README's own example) read and sorted every run of every
-- tenant, 2.3-2.8 s at 322,000 runs, and dw.v_dead_letters 1.6-2.2 s at 250,000 letters (scale
-- review, 2026-12-07); read as the caller, the same query takes the created_at index and stops
-- after 20 rows (0.7 ms on that database). Row-level security's conditions come before any of the
-- caller's own, as the barrier's did (0043): a function of the caller's sees only the rows of the
-- tenants it was granted.
--
-- For each table a view reads, a dw_reporting login sees a row when its tenant is the one the
-- session set (the tables' tenant_isolation policy), or the session set '*'; and, always, when
-- dw.reporting_tenants grants it that tenant (a restrictive policy): what dw.tenant_visible said.
-- The views keep their dw.tenant_visible filter, for the roles row-level security does not apply
-- to (the owner, superusers). A dw_reporting login is granted SELECT on the columns the views read
-- (and no other): it may read those columns from the tables directly, under the same policies.
-- dw.v_queue_depth reads Procrastinate's tables, which have no tenant policies: it stays as it was
-- (owner's rights, a security barrier). A view added later must be made so too
-- (tests/integration/test_tenants.py checks every dw.v_ view).
-- The letters in the order they came, of every tenant a session sees: the tenant's index cannot
-- serve '*' or a list of granted tenants, and the open letters' index holds the open ones only.
CREATE INDEX dead_letters_created_idx ON dw.dead_letters (created_at DESC);

DO $$
DECLARE
    v_table text;
    v_columns text;
    v_view regclass;
BEGIN
    FOR v_table IN
        SELECT DISTINCT u.table_name FROM information_schema.view_table_usage u
         WHERE u.view_schema = 'dw' AND u.view_name LIKE 'v\_%' AND u.view_name <> 'v_queue_depth'
           AND u.table_schema = 'dw'
         ORDER BY 1
    LOOP
        EXECUTE format('CREATE POLICY reporting_grants ON dw.%I AS RESTRICTIVE FOR SELECT TO dw_reporting '
                       'USING (dw.reporting_sees_v1(current_user, tenant_id))', v_table);
        EXECUTE format('CREATE POLICY reporting_all_tenants ON dw.%I FOR SELECT TO dw_reporting '
                       'USING (current_setting(%L, true) = %L)', v_table, 'dw.tenant_id', '*');
    END LOOP;
    FOR v_table, v_columns IN
        SELECT c.table_name, string_agg(quote_ident(c.column_name), ', ' ORDER BY c.column_name)
          FROM (SELECT DISTINCT u.table_name, u.column_name FROM information_schema.view_column_usage u
                 WHERE u.view_schema = 'dw' AND u.view_name LIKE 'v\_%' AND u.view_name <> 'v_queue_depth'
                   AND u.table_schema = 'dw') c
         GROUP BY c.table_name
         ORDER BY 1
    LOOP
        EXECUTE format('GRANT SELECT (%s) ON dw.%I TO dw_reporting', v_columns, v_table);
    END LOOP;
    FOR v_view IN
        SELECT c.oid::regclass FROM pg_class c
         WHERE c.relnamespace = 'dw'::regnamespace AND c.relkind = 'v' AND c.relname LIKE 'v\_%'
           AND c.relname <> 'v_queue_depth'
         ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true, security_barrier = false)', v_view);
    END LOOP;
END;
$$;
