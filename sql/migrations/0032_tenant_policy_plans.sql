-- Issue 17: the tenant policies of dw.executions and dw.dead_letters compare with the transaction's
-- tenant read once per statement, as a sub-select, instead of calling current_setting() in the
-- condition itself.
--
-- Why: PostgreSQL estimates a condition on a stable function such as current_setting() by
-- evaluating it when it plans, also when the plan is generic and kept for the session. A plan made
-- while the session's tenant was unset (a worker's connection warming up, dw.warm_up_session_v1) or
-- was a tenant with few runs judged "this tenant's runs" to be a row or two, and chose an index led
-- by tenant_id over the primary key; the connection then kept that plan for every tenant it served.
-- Measured in a worker's 2-node drain of 6,000 runs: the run's end (dw.finish_execution_v1's UPDATE
-- of the run by its id) read the tenant's whole (tenant_id, created_at, id) index, skipping to the
-- id, 3.5 ms a run instead of about 0.1 ms. A sub-select is a parameter to the planner: it estimates
-- the condition from the column's statistics whichever tenant the planning session has, and each
-- statement reads the setting once when it runs. What a policy lets through does not change.
--
-- Only these two tables have indexes led by tenant_id besides their keys; on the others (lookups
-- by keys that do not start with tenant_id, or that name it with an equality of their own) the
-- sub-select cost about 7% more PostgreSQL CPU per run (bench: a 2-node run's fetch and records)
-- and changed no plan, so they keep the plain call.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['executions', 'dead_letters'] LOOP
        EXECUTE format('ALTER POLICY tenant_isolation ON dw.%I '
                       'USING (tenant_id = (SELECT current_setting(%L, true))) '
                       'WITH CHECK (tenant_id = (SELECT current_setting(%L, true)))', t, 'dw.tenant_id', 'dw.tenant_id');
    END LOOP;
END;
$$;
