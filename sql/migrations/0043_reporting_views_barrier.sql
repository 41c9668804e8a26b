-- The reporting views' row filter, dw.tenant_visible, ran after a condition of the caller's own: the
-- views were plain views, so PostgreSQL could evaluate a cheap function the query named (a pg_temp
-- one that raises a NOTICE with its arguments) on every row of every tenant before the filter
-- dropped them, and a reporting login granted one tenant read the others' rows (auth review). As
-- security barriers, a view's own conditions come first: a caller's function sees only the rows
-- the view shows it (a leakproof operator, such as equality, still reaches the tables' indexes).
--
-- v_queue_depth had no tenant and no filter: any reporting login, granted or not, saw every
-- tenant's backlog. It now counts per tenant too (a run's job names its tenant; a job that names
-- none counts under '*', shown only to those who see every tenant) and ends with tenant_id as the
-- other views do.
CREATE OR REPLACE VIEW dw.v_queue_depth AS
SELECT j.queue_name, j.status::text AS status, count(*) AS jobs,
       extract(epoch FROM now() - min(COALESCE(j.scheduled_at, ev.at))) AS oldest_seconds,
       COALESCE(j.args ->> 'tenant_id', '*') AS tenant_id
  FROM procrastinate_jobs j
  LEFT JOIN LATERAL (SELECT min(pe.at) AS at FROM procrastinate_events pe WHERE pe.job_id = j.id) ev ON true
 WHERE j.status IN ('todo', 'doing') AND dw.tenant_visible(COALESCE(j.args ->> 'tenant_id', '*'))
 GROUP BY j.queue_name, j.status, COALESCE(j.args ->> 'tenant_id', '*');

DO $$
DECLARE
    v_view regclass;
BEGIN
    FOR v_view IN
        SELECT c.oid::regclass FROM pg_class c
         WHERE c.relnamespace = 'dw'::regnamespace AND c.relkind = 'v' AND c.relname LIKE 'v\_%'
         ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER VIEW %s SET (security_barrier = true)', v_view);
    END LOOP;
END;
$$;
