-- Tenants (migration 0018). Row-level security reads the transaction setting dw.tenant_id.

-- Moves a maintenance transaction ('*': every tenant) into one tenant for the work that follows,
-- and returns the setting to put back afterwards (dw.leave_tenant_v1). Work done under '*' that
-- starts a run (the scheduler) runs as that run's tenant, as the worker that runs it will. A
-- transaction already in a tenant may not move to another one (DW040).
CREATE OR REPLACE FUNCTION dw.enter_tenant_v1(p_tenant text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_previous text := current_setting('dw.tenant_id', true);
BEGIN
    IF v_previous IS DISTINCT FROM '*' AND v_previous IS DISTINCT FROM p_tenant THEN
        RAISE EXCEPTION 'a transaction of tenant % cannot work for tenant %', v_previous, p_tenant
            USING ERRCODE = 'DW040';
    END IF;
    PERFORM set_config('dw.tenant_id', p_tenant, true);
    RETURN v_previous;
END;
$$;

CREATE OR REPLACE FUNCTION dw.leave_tenant_v1(p_previous text) RETURNS void LANGUAGE sql AS $$
    SELECT set_config('dw.tenant_id', COALESCE(p_previous, ''), true);
$$;

-- The tenant that work outside any request belongs to: the transaction's, or 'default' for a psql
-- session that set none (or '*'), as a single-tenant installation expects.
CREATE OR REPLACE FUNCTION dw.session_tenant_v1() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(NULLIF(current_setting('dw.tenant_id', true), ''), '*'), 'default');
$$;
