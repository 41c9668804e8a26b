-- Planner statistics of the tables a run writes.
--
-- A worker's calls run with generic plans (see sql/procedures/executions.sql), made at a call's first
-- run on a connection from the statistics PostgreSQL has then, and kept until those statistics
-- change. A table that has never been analyzed has none: PostgreSQL then guesses that "this
-- tenant's rows" (the row-level security policy) are 0.5 % of the table, and plans a set of runs by
-- id as a scan of the tenant's runs (the executions_tenant_created_idx index, or a bitmap of it)
-- instead of a probe of the primary key per run. Autovacuum analyzes a table after 50 rows and 10 %
-- changes, but only at its next round (autovacuum_naptime, a minute by default): on a new database,
-- a first burst of runs (an import, a backlog queued before the workers start) runs on such plans
-- for that long. Measured (bench/procedure_cost.py, 2,000 runs queued on a new database, batches
-- of 9): 1.37 times the PostgreSQL time per run before the first ANALYZE.
--
-- Analyzes those of the run tables whose statistics are missing or far behind: the table has grown
-- since the last analysis by more than max(1,000, twice the rows it counted) (live rows now, as the
-- cumulative statistics count them, against the analysis's pg_class.reltuples; never analyzed: 0).
-- Growth, not changes: a queue's rows come and go (Procrastinate's job table holds a run's job from
-- its start to its end) and a run's rows are updated several times each, and neither makes the
-- statistics describe a table of another size. Counted as changes (n_mod_since_analyze, as this
-- function counted them before), Procrastinate's job table, a few rows long, passes 1,000 changes
-- every second or two at a few hundred runs a second (a job is inserted, taken and deleted): on a
-- database of 20,000 runs taking 480 starts/s, every recovery pass analyzed it (3 of 3 in 16 s),
-- each time making every session plan its fetch, start and last record again; the run tables,
-- whose rows are updated two or three times each, were analyzed again once they had grown by a half
-- to two thirds, not once they had tripled. Autovacuum keeps a table well inside that growth, so
-- this only acts on a new database or where autovacuum is off or lagging.
-- Analyzing a table invalidates every session's plans that read it: each is made again, with the
-- new statistics, at its next call. Never waits: a table whose lock another session holds
-- (autovacuum, or another worker doing the same) is left for the next call (lock_timeout below
-- PostgreSQL's deadlock_timeout, so that autovacuum is never cancelled for it). SECURITY DEFINER:
-- ANALYZE needs the table's owner (or, from PostgreSQL 17, the MAINTAIN privilege), and workers run
-- as the application role. Returns the tables analyzed.
CREATE OR REPLACE FUNCTION dw.analyze_stale_run_tables_v1() RETURNS text[]
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
    -- The caller's session settings do not reach the analysis: the statistics' detail is the
    -- installation's, and no cost delay stretches the lock.
    SET default_statistics_target FROM CURRENT SET vacuum_cost_delay = 0 AS $$
DECLARE
    v_table regclass;
    v_done text[] := '{}';
BEGIN
    FOR v_table IN
        SELECT c.oid::regclass
          FROM pg_class c
          JOIN pg_stat_all_tables s ON s.relid = c.oid
         WHERE (c.oid IN ('dw.executions'::regclass, 'dw.node_states'::regclass, 'dw.execution_events'::regclass,
                          'dw.action_executions'::regclass, 'dw.waits'::regclass, 'dw.foreach_items'::regclass)
                -- Procrastinate's job table, in whichever schema it was installed.
                OR (c.relname = 'procrastinate_jobs' AND c.relkind IN ('r', 'p')))
           -- Only permanent tables of dw.executions' owner: not a table of that name a caller made
           -- (a temporary one, or in a schema of its own), and only tables this function's owner
           -- (the migrations' role, which owns the run tables) may analyze.
           AND c.relpersistence = 'p'
           AND c.relowner = (SELECT r.relowner FROM pg_class r WHERE r.oid = 'dw.executions'::regclass)
           AND s.n_live_tup - greatest(c.reltuples, 0) >= greatest(1000, 2 * greatest(c.reltuples, 0))
         ORDER BY c.oid
    LOOP
        BEGIN
            EXECUTE format('ANALYZE %s', v_table);
            v_done := v_done || v_table::text;
        EXCEPTION WHEN lock_not_available THEN
            -- Another session is analyzing or vacuuming it: next time.
            RAISE LOG 'dw.analyze_stale_run_tables_v1: % is busy; left for the next call', v_table;
        END;
    END LOOP;
    RETURN v_done;
END;
$$;
REVOKE ALL ON FUNCTION dw.analyze_stale_run_tables_v1() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dw.analyze_stale_run_tables_v1() TO dataworkflows_app, dataworkflows_maintenance;
