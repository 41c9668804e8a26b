-- The worker's fetch from Procrastinate's job table (the outbox).

-- Procrastinate's procrastinate_fetch_job_v2 (3.10), the same query with the same meaning (queues,
-- priorities, locks, scheduled jobs, FOR UPDATE SKIP LOCKED), planned so that it never sorts the
-- backlog. Left to the planner, the job table's statistics decide, and they are stale whenever a
-- burst of jobs arrives faster than autovacuum analyzes the table (the table looked empty when last
-- analyzed): measured with 2,000 jobs queued, PostgreSQL then chose a bitmap scan of every queued
-- job and a sort, 1.3 ms a fetch and growing with the backlog, instead of walking the
-- (priority DESC, id) index to the first free job, 0.04 ms. Turning bitmap scans and sorts off for
-- this one statement leaves the planner that walk whatever the statistics say.
CREATE OR REPLACE FUNCTION dw.fetch_job_v1(p_queues character varying[], p_worker_id bigint)
    RETURNS procrastinate_jobs LANGUAGE plpgsql
    SET enable_bitmapscan = off SET enable_sort = off AS $$
DECLARE
    v_job procrastinate_jobs;
BEGIN
    WITH candidate AS (
        SELECT jobs.*
          FROM procrastinate_jobs AS jobs
         WHERE
            -- reject the job if its lock has earlier or higher priority jobs
            NOT EXISTS (
                SELECT 1
                  FROM procrastinate_jobs AS other_jobs
                 WHERE jobs.lock IS NOT NULL
                   AND other_jobs.lock = jobs.lock
                   AND (
                       -- job with same lock is already running
                       other_jobs.status = 'doing'
                       OR
                       -- job with same lock is waiting and has higher priority (or same priority but was queued first)
                       (other_jobs.status = 'todo'
                        AND (other_jobs.priority > jobs.priority
                             OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)))
                   )
            )
            AND jobs.status = 'todo'
            AND (p_queues IS NULL OR jobs.queue_name = ANY(p_queues))
            AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
         ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
           FOR UPDATE OF jobs SKIP LOCKED
    )
    UPDATE procrastinate_jobs
       SET status = 'doing', worker_id = p_worker_id
      FROM candidate
     WHERE procrastinate_jobs.id = candidate.id
    RETURNING procrastinate_jobs.* INTO v_job;
    RETURN v_job;
END;
$$;

-- Fetches the next job (dw.fetch_job_v1) and, when it runs an execution (task p_run_task, naming
-- its execution and tenant), takes that execution's lease in the same transaction, as
-- dw.try_acquire_execution_v5 does (first nodes started when p_start): one transaction and one
-- round trip fewer per run. The acquire runs as the job's tenant (row-level security), set for this
-- transaction only. `job` is NULL when no job is due; `outcome` is NULL when the job is not one this
-- takes a lease for (another task, or a job without a tenant, queued before jobs named it): the
-- worker then acquires as it always did.
CREATE OR REPLACE FUNCTION dw.fetch_run_job_v1(
    p_queues character varying[], p_worker_id bigint, p_run_task text, p_owner text,
    p_lease_seconds double precision, p_start boolean
) RETURNS TABLE (job procrastinate_jobs, outcome text, lease_token bigint, run jsonb, nodes jsonb, started text[])
    LANGUAGE plpgsql AS $$
DECLARE
    v_job procrastinate_jobs;
    v_execution text;
    v_tenant text;
BEGIN
    v_job := dw.fetch_job_v1(p_queues, p_worker_id);
    IF v_job.id IS NULL THEN
        RETURN QUERY SELECT NULL::procrastinate_jobs, NULL::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    v_execution := v_job.args ->> 'execution_id';
    v_tenant := v_job.args ->> 'tenant_id';
    IF v_job.task_name <> p_run_task OR v_tenant IS NULL OR v_execution IS NULL
       OR v_tenant !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'
       OR v_execution !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
        RETURN QUERY SELECT v_job, NULL::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    PERFORM set_config('dw.tenant_id', v_tenant, true);
    RETURN QUERY
    SELECT v_job, a.outcome, a.lease_token, a.run, a.nodes, a.started
      FROM dw.try_acquire_execution_v5(v_execution::uuid, p_owner, p_lease_seconds, p_start) a;
END;
$$;
