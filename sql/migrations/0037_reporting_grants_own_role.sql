-- dw.reporting_sees_v1 answers for the caller's own roles only. It is SECURITY DEFINER (it reads
-- dw.reporting_tenants, which a reporting login may not) and every role may call it, as the views'
-- row filter (dw.tenant_visible) does with current_user: with any role name, a login learned which
-- tenants any other reporting role was granted (auth review). A role the session is not a member
-- of (it could not SET ROLE to it) now sees nothing. Same signature and answer for the view filter.
CREATE OR REPLACE FUNCTION dw.reporting_sees_v1(p_role name, p_tenant text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_has_role(session_user, p_role, 'MEMBER')
       AND EXISTS (SELECT 1 FROM dw.reporting_tenants r WHERE r.role_name = p_role AND r.tenant_id IN (p_tenant, '*'))
$$;
