-- The worker's fetch from Procrastinate's job table (the outbox).

-- Procrastinate's procrastinate_fetch_job_v2 (3.10), the same query with the same meaning (queues,
-- priorities, locks, scheduled jobs, FOR UPDATE SKIP LOCKED), for up to p_limit jobs in one
-- statement, planned so that it never sorts the backlog. Left to the planner, the job table's
-- statistics decide, and they are stale whenever a burst of jobs arrives faster than autovacuum
-- analyzes the table (the table looked empty when last analyzed): measured with 2,000 jobs queued,
-- PostgreSQL then chose a bitmap scan of every queued job and a sort, 1.3 ms a fetch and growing
-- with the backlog, instead of walking the (priority DESC, id) index to the first free job, 0.04 ms.
-- Turning bitmap scans and sorts off for this one statement leaves the planner that walk whatever
-- the statistics say; a fetch of one queue walks that queue's own such index (migration 0035), a
-- fetch of several queues or of all of them the one of every queue. Procrastinate's locks hold
-- within the statement as between fetches: of two due jobs with one lock, the later one sees the
-- earlier still 'todo' in the statement's snapshot and is not taken. In no particular order.
CREATE OR REPLACE FUNCTION dw.fetch_jobs_v1(p_queues character varying[], p_worker_id bigint, p_limit integer)
    RETURNS SETOF procrastinate_jobs LANGUAGE plpgsql
    SET enable_bitmapscan = off SET enable_sort = off AS $$
BEGIN
    IF cardinality(p_queues) = 1 THEN
        -- One queue (a worker's DW_QUEUE): the walk is of that queue's queued jobs only
        -- (dw_procrastinate_jobs_queue_todo_idx, migration 0035, whose predicate this one's
        -- `status <= 'todo'` matches, and no other index's: see there), not of every queue's.
        RETURN QUERY
        WITH candidate AS (
            SELECT jobs.id
              FROM procrastinate_jobs AS jobs
             WHERE
                NOT EXISTS (
                    SELECT 1
                      FROM procrastinate_jobs AS other_jobs
                     WHERE jobs.lock IS NOT NULL
                       AND other_jobs.lock = jobs.lock
                       AND (
                           other_jobs.status = 'doing'
                           OR
                           (other_jobs.status = 'todo'
                            AND (other_jobs.priority > jobs.priority
                                 OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)))
                       )
                )
                AND jobs.status <= 'todo'
                AND jobs.queue_name = p_queues[1]
                AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
             ORDER BY jobs.priority DESC, jobs.id ASC LIMIT p_limit
               FOR UPDATE OF jobs SKIP LOCKED
        )
        UPDATE procrastinate_jobs
           SET status = 'doing', worker_id = p_worker_id
         WHERE procrastinate_jobs.id = ANY(ARRAY(SELECT candidate.id FROM candidate))
        RETURNING procrastinate_jobs.*;
        RETURN;
    END IF;
    RETURN QUERY
    WITH candidate AS (
        SELECT jobs.id
          FROM procrastinate_jobs AS jobs
         WHERE
            NOT EXISTS (
                SELECT 1
                  FROM procrastinate_jobs AS other_jobs
                 WHERE jobs.lock IS NOT NULL
                   AND other_jobs.lock = jobs.lock
                   AND (
                       other_jobs.status = 'doing'
                       OR
                       (other_jobs.status = 'todo'
                        AND (other_jobs.priority > jobs.priority
                             OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)))
                   )
            )
            AND jobs.status = 'todo'
            AND (p_queues IS NULL OR jobs.queue_name = ANY(p_queues))
            AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
         ORDER BY jobs.priority DESC, jobs.id ASC LIMIT p_limit
           FOR UPDATE OF jobs SKIP LOCKED
    )
    -- By id from an array: a join with the candidates would be planned for LIMIT's generic guess
    -- (a tenth of the table) as a hash join over a scan of every job.
    UPDATE procrastinate_jobs
       SET status = 'doing', worker_id = p_worker_id
     WHERE procrastinate_jobs.id = ANY(ARRAY(SELECT candidate.id FROM candidate))
    RETURNING procrastinate_jobs.*;
END;
$$;

-- One job (dw.fetch_jobs_v1 with p_limit 1); NULL when none is due.
CREATE OR REPLACE FUNCTION dw.fetch_job_v1(p_queues character varying[], p_worker_id bigint)
    RETURNS procrastinate_jobs LANGUAGE plpgsql AS $$
DECLARE
    v_job procrastinate_jobs;
BEGIN
    SELECT * INTO v_job FROM dw.fetch_jobs_v1(p_queues, p_worker_id, 1);
    RETURN v_job;
END;
$$;

-- The worker's fetch: up to p_limit jobs in one transaction, each fetched as dw.fetch_job_v1 fetches
-- one (each call sees the jobs taken before it, so Procrastinate's locks hold between the jobs of a
-- batch as between batches), and for each job that runs an execution (task p_run_task, naming its
-- execution and tenant) that execution's lease, taken as dw.try_acquire_execution_v6 takes it (first
-- nodes started when p_start; the lease names the job): one transaction and one round trip for the
-- jobs and their runs' acquires. One row per job fetched, none when no job is due. The worker asks for
-- no more jobs than its fetch loop has free slots, so the jobs of a batch start at once (see
-- ResilientJobManager in workers/app.py). All or nothing: a refused acquire rolls the whole batch
-- back, every job stays queued, and the worker fetches one job alone.
-- Each acquire runs as its job's tenant (row-level security), set for this transaction only.
-- `outcome` is NULL when the job is not one this takes a lease for (another task, or a job without a
-- tenant, queued before jobs named it) or when the execution's row is locked: the worker then
-- acquires as it always did, in the job's task. The row lock is only tried (SKIP LOCKED), never
-- waited for: this transaction holds the job's row, and a run's end (dw.finish_execution_v1) holds
-- the execution's row and deletes the run's queued jobs; waiting here would close that cycle (a
-- deadlock, one side aborted after deadlock_timeout).
CREATE OR REPLACE FUNCTION dw.fetch_run_jobs_v1(
    p_queues character varying[], p_worker_id bigint, p_run_task text, p_owner text,
    p_lease_seconds double precision, p_start boolean, p_limit integer
) RETURNS TABLE (job procrastinate_jobs, outcome text, lease_token bigint, run jsonb, nodes jsonb, started text[])
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_job procrastinate_jobs;
    v_execution text;
    v_tenant text;
BEGIN
    FOR i IN 1 .. least(greatest(p_limit, 1), 100) LOOP
        v_job := dw.fetch_job_v1(p_queues, p_worker_id);
        EXIT WHEN v_job.id IS NULL;
        v_execution := v_job.args ->> 'execution_id';
        v_tenant := v_job.args ->> 'tenant_id';
        IF NOT dw.is_run_job_v1(v_job, p_run_task) THEN
            RETURN QUERY SELECT v_job, NULL::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
            CONTINUE;
        END IF;
        PERFORM set_config('dw.tenant_id', v_tenant, true);
        PERFORM 1 FROM dw.executions e WHERE e.id = v_execution::uuid FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN QUERY SELECT v_job, NULL::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
            CONTINUE;
        END IF;
        RETURN QUERY
        SELECT v_job, a.outcome, a.lease_token, a.run, a.nodes, a.started
          FROM dw.try_acquire_execution_v6(v_execution::uuid, p_owner, p_lease_seconds, p_start, v_job.id) a;
    END LOOP;
END;
$$;

-- Whether a fetched job runs an execution dw.fetch_run_jobs_v1/v2 takes a lease for: task p_run_task,
-- naming its execution (a uuid) and tenant (a valid tenant id).
CREATE OR REPLACE FUNCTION dw.is_run_job_v1(p_job procrastinate_jobs, p_run_task text)
    RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(p_job.task_name = p_run_task, false)
           AND COALESCE(p_job.args ->> 'tenant_id' ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$', false)
           AND COALESCE(p_job.args ->> 'execution_id'
                        ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$', false);
$$;

-- The worker's fetch, as dw.fetch_run_jobs_v1 (same arguments, same answer) with the common case
-- written set-based: the jobs in one statement (dw.fetch_jobs_v1), and the runs that start for the
-- first time (Pending, never started, no lease, no cancel or suspension requested, the deadline not
-- passed, not a root run of a workflow with limits) leased, their events written and their first
-- nodes started in a statement each for all of them, as dw.try_acquire_execution_v6 does for one.
-- Any other run is acquired by dw.try_acquire_execution_v6, as before, but a child whose cancel was
-- requested (its task acquires it: see below). Per tenant of the batch (row-level security): one
-- pass for most batches. The answer's rows come in no particular order (the worker orders them:
-- dataworkflows.data.runs.fetch_run_jobs). All or nothing as v1: a refusal rolls the whole batch
-- back.
CREATE OR REPLACE FUNCTION dw.fetch_run_jobs_v2(
    p_queues character varying[], p_worker_id bigint, p_run_task text, p_owner text,
    p_lease_seconds double precision, p_start boolean, p_limit integer
) RETURNS TABLE (job procrastinate_jobs, outcome text, lease_token bigint, run jsonb, nodes jsonb, started text[])
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_jobs procrastinate_jobs[];
    v_tenants text[];
    -- How many of the jobs are run jobs (of any tenant).
    v_run_jobs bigint;
    v_tenant text;
    v_job procrastinate_jobs;
    -- This tenant's jobs: their runs whose rows were locked, whether each goes set-based.
    v_locked bigint[];
    v_fast_job bigint[];
    v_fast uuid[];
    v_slow_job bigint[];
    v_leased uuid[];
    v_started_exec uuid[];
    v_started_node text[];
BEGIN
    -- The jobs, their run jobs' tenants and how many run jobs: one statement (a statement's start and
    -- end are much of a lone job's fetch; the statements below that would find nothing are skipped).
    SELECT array_agg(j ORDER BY j.priority DESC, j.id),
           array_agg(DISTINCT j.args ->> 'tenant_id') FILTER (WHERE dw.is_run_job_v1(j, p_run_task)),
           count(*) FILTER (WHERE dw.is_run_job_v1(j, p_run_task))
      INTO v_jobs, v_tenants, v_run_jobs
      FROM dw.fetch_jobs_v1(p_queues, p_worker_id, least(greatest(p_limit, 1), 100)) j;
    IF v_jobs IS NULL THEN
        RETURN;
    END IF;

    -- A job that is not a run job, or names no valid run or tenant: no lease (the worker's task
    -- acquires, as it always did).
    IF v_run_jobs < cardinality(v_jobs) THEN
        RETURN QUERY
        SELECT j, NULL::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[]
          FROM unnest(v_jobs) AS j
         WHERE NOT dw.is_run_job_v1(j, p_run_task);
    END IF;

    FOREACH v_tenant IN ARRAY COALESCE(v_tenants, '{}') LOOP
        PERFORM set_config('dw.tenant_id', v_tenant, true);
        -- The runs' rows, locked (only tried: see v1); the first job of a run in fetch order may go
        -- set-based, a second job of the same run goes through v6 (and finds the lease held). A
        -- child whose cancel was requested, or that v6 cancels (its parent no longer wants it:
        -- dw.child_unwanted_v1), is left to its job's task (no lease here): its end locks
        -- its parent's row, and this transaction holds every job of the batch, among them perhaps
        -- the parent's, which a cancel of the parent holding that row waits to delete (v1 met that
        -- cycle only when the parent's job came first in the batch; here it would in any order).
        SELECT array_agg(s.job_id) FILTER (WHERE NOT s.handed),
               array_agg(s.job_id) FILTER (WHERE s.fast AND NOT s.handed),
               array_agg(s.execution_id) FILTER (WHERE s.fast AND NOT s.handed),
               array_agg(s.job_id) FILTER (WHERE NOT s.fast AND NOT s.handed)
          INTO v_locked, v_fast_job, v_fast, v_slow_job
          FROM (
            SELECT j.job_id, e.id AS execution_id,
                   CASE WHEN e.parent_execution_id IS NULL THEN false
                        ELSE e.cancel_requested_at IS NOT NULL
                             OR dw.child_unwanted_v1(e.id, e.parent_execution_id, e.request_id) END AS handed,
                   j.first_of_run AND p_start
                   AND e.status = 'Pending' AND e.started_at IS NULL AND e.lease_owner IS NULL
                   AND e.cancel_requested_at IS NULL AND e.suspend_requested_at IS NULL
                   AND (e.deadline_at IS NULL OR e.deadline_at > now())
                   AND NOT (e.depth = 0
                            AND EXISTS (SELECT 1 FROM dw.workflows w
                                         WHERE w.id = e.workflow_id AND w.tenant_id = e.tenant_id
                                           AND (w.max_concurrent_executions IS NOT NULL
                                                OR w.rate_limit_per_minute IS NOT NULL))) AS fast
              FROM (
                SELECT j.id AS job_id, (j.args ->> 'execution_id')::uuid AS execution_id,
                       row_number() OVER (PARTITION BY (j.args ->> 'execution_id')::uuid
                                          ORDER BY j.priority DESC, j.id) = 1 AS first_of_run
                  FROM unnest(v_jobs) AS j
                 WHERE dw.is_run_job_v1(j, p_run_task) AND j.args ->> 'tenant_id' = v_tenant
              ) j
              JOIN dw.executions e ON e.id = j.execution_id
             ORDER BY e.id
               FOR NO KEY UPDATE OF e SKIP LOCKED
          ) s;

        -- A run whose row another transaction holds (or that does not exist), and a child whose
        -- cancel was requested: no lease. (None when the batch's only tenant had all its rows locked.)
        IF cardinality(v_tenants) > 1 OR COALESCE(cardinality(v_locked), 0) < v_run_jobs THEN
            RETURN QUERY
            SELECT j, NULL::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[]
              FROM unnest(v_jobs) AS j
             WHERE dw.is_run_job_v1(j, p_run_task) AND j.args ->> 'tenant_id' = v_tenant
               AND NOT j.id = ANY(COALESCE(v_locked, '{}'));
        END IF;

        IF v_fast IS NOT NULL THEN
            -- The leases and their events (dw.try_acquire_execution_v6 on a run's first acquire).
            WITH leased AS (
                UPDATE dw.executions e
                   SET lease_owner = p_owner,
                       lease_job_id = f.job_id,
                       lease_token = e.lease_token + 1,
                       lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                       status = 'Running',
                       started_at = now(),
                       wake_requested_at = NULL
                  FROM unnest(v_fast, v_fast_job) AS f(execution_id, job_id)
                 WHERE e.id = f.execution_id
                RETURNING e.id, e.lease_token
            ), event AS (
                INSERT INTO dw.execution_events (execution_id, type, details)
                SELECT leased.id, 'execution_started',
                       jsonb_build_object('worker', p_owner, 'leaseToken', leased.lease_token,
                                          'previousStatus', 'Pending', 'previousOwner', NULL)
                  FROM leased ORDER BY leased.id
            )
            SELECT array_agg(leased.id) INTO v_leased FROM leased;
            IF cardinality(v_leased) <> cardinality(v_fast) THEN
                RAISE EXCEPTION 'dw.fetch_run_jobs_v2: % of % runs leased', cardinality(v_leased), cardinality(v_fast)
                    USING ERRCODE = 'DW011';
            END IF;

            -- Their Ready nodes started in plan order, as many as each plan's maxParallelActions
            -- (dw.start_ready_nodes_v1).
            WITH run_limit AS (
                SELECT e.id AS execution_id, COALESCE((p.plan ->> 'maxParallelActions')::integer, 1) AS slots
                  FROM dw.executions e
                  JOIN dw.workflow_plans p ON p.tenant_id = e.tenant_id AND p.workflow_id = e.workflow_id
                                          AND p.version = e.workflow_version
                 WHERE e.id = ANY(v_leased)
            ), ready AS (
                SELECT n.execution_id, n.node_id,
                       row_number() OVER (PARTITION BY n.execution_id ORDER BY n.position) AS rank
                  FROM dw.node_states n
                 WHERE n.execution_id = ANY(v_leased) AND n.status = 'Ready'
            ), begun AS (
                UPDATE dw.node_states n
                   SET status = 'Running', attempts = n.attempts + 1,
                       started_at = COALESCE(n.started_at, now()), next_attempt_at = NULL
                  FROM ready JOIN run_limit ON run_limit.execution_id = ready.execution_id
                 WHERE ready.rank <= run_limit.slots
                   AND n.execution_id = ready.execution_id AND n.node_id = ready.node_id AND n.status = 'Ready'
                RETURNING n.execution_id, n.node_id, n.attempts, n.position
            ), event AS (
                INSERT INTO dw.execution_events (execution_id, node_id, type, details)
                SELECT begun.execution_id, begun.node_id, 'node_started',
                       jsonb_build_object('attempt', begun.attempts)
                  FROM begun ORDER BY begun.execution_id, begun.position
            )
            SELECT array_agg(begun.execution_id ORDER BY begun.execution_id, begun.position),
                   array_agg(begun.node_id ORDER BY begun.execution_id, begun.position)
              INTO v_started_exec, v_started_node
              FROM begun;

            -- The answer, as v6 gives it: the run's data, every node's checkpoint, the nodes started.
            RETURN QUERY
            SELECT j, 'acquired'::text, e.lease_token,
                   jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version,
                                      'trigger', e.trigger, 'principalId', e.principal_id,
                                      'correlationId', e.correlation_id, 'deadlineAt', e.deadline_at),
                   dw.run_checkpoints_v1(e.id),
                   ARRAY(SELECT t.node_id FROM unnest(v_started_exec, v_started_node) AS t(execution_id, node_id)
                          WHERE t.execution_id = e.id)
              FROM dw.executions e
              JOIN unnest(v_jobs) AS j ON j.id = e.lease_job_id
             WHERE e.id = ANY(v_leased)
             ORDER BY j.priority DESC, j.id;
        END IF;

        -- Every other run of this tenant, one by one (its row is locked already).
        IF v_slow_job IS NOT NULL THEN
            FOR v_job IN SELECT j.* FROM unnest(v_jobs) AS j WHERE j.id = ANY(v_slow_job) LOOP
                RETURN QUERY
                SELECT v_job, a.outcome, a.lease_token, a.run, a.nodes, a.started
                  FROM dw.try_acquire_execution_v6((v_job.args ->> 'execution_id')::uuid, p_owner,
                                                   p_lease_seconds, p_start, v_job.id) a;
            END LOOP;
        END IF;
    END LOOP;
END;
$$;

-- One job and its run's lease (dw.fetch_run_jobs_v1 with p_limit 1); `job` is NULL when no job is
-- due. Kept for the workers of the release before dw.fetch_run_jobs_v1, during a rolling upgrade.
CREATE OR REPLACE FUNCTION dw.fetch_run_job_v1(
    p_queues character varying[], p_worker_id bigint, p_run_task text, p_owner text,
    p_lease_seconds double precision, p_start boolean
) RETURNS TABLE (job procrastinate_jobs, outcome text, lease_token bigint, run jsonb, nodes jsonb, started text[])
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY SELECT * FROM dw.fetch_run_jobs_v1(p_queues, p_worker_id, p_run_task, p_owner, p_lease_seconds,
                                                   p_start, 1);
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::procrastinate_jobs, NULL::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
    END IF;
END;
$$;

-- Gives back a lease that dw.fetch_run_jobs_v1 took with job p_job_id for p_owner when the run will
-- not run under it: the fetch's answer was lost with its connection (the worker gives the lease
-- back, then hands the job back to the queue; p_token NULL, since the worker never learnt it, and
-- p_queue NULL), or the job's task ended before it took the lease (p_token known; p_queue: a run
-- job is queued again). Only while the run is Running under the lease that job's fetch took (owner,
-- job, and token when known): never one another fetch took, even of the same worker process. Nodes
-- the fetch started stay Running: the next holder records their attempts as interrupted (not
-- counted against the retry budget) and runs them again. As the job's tenant, for this transaction
-- only. Returns whether a lease was given back. The job queued again goes to the run's own queue
-- (p_queue only says whether to queue one).
DROP FUNCTION IF EXISTS dw.release_fetched_lease_v1(uuid, text, text, bigint, text, text);
CREATE OR REPLACE FUNCTION dw.release_fetched_lease_v1(
    p_execution_id uuid, p_tenant text, p_owner text, p_job_id bigint, p_token bigint, p_queue text, p_reason text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
    v_released boolean;
BEGIN
    IF p_tenant IS NULL OR p_tenant !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$' THEN
        RETURN false;
    END IF;
    PERFORM set_config('dw.tenant_id', p_tenant, true);
    UPDATE dw.executions e SET lease_owner = NULL, lease_expires_at = NULL
     WHERE e.id = p_execution_id AND e.lease_owner = p_owner AND e.lease_job_id = p_job_id
       AND e.status = 'Running' AND (p_token IS NULL OR e.lease_token = p_token)
    RETURNING e.queue INTO v_queue;
    v_released := FOUND;
    IF p_queue IS NULL THEN
        -- The job goes back to the queue as it is (Procrastinate's retry keeps its priority): at the
        -- run's priority, which may have changed while it was 'doing' (README "Run priority": a
        -- change leaves a job a fetch took). After the run's row, as dw.set_execution_priority_v1.
        UPDATE procrastinate_jobs j SET priority = e.priority
          FROM dw.executions e
         WHERE j.id = p_job_id AND j.status = 'doing' AND e.id = p_execution_id
           AND (j.args ->> 'execution_id') = p_execution_id::text AND j.priority <> e.priority;
    END IF;
    IF NOT v_released THEN
        RETURN false;
    END IF;
    INSERT INTO dw.execution_events (execution_id, type, details)
    VALUES (p_execution_id, 'execution_released', jsonb_build_object('reason', p_reason));
    IF p_queue IS NOT NULL THEN
        PERFORM dw.defer_run_job_v1(p_execution_id, v_queue, NULL);
    END IF;
    RETURN true;
END;
$$;

-- Ends the Procrastinate job a run ran under, from the transaction that ended the run or parked it
-- (dw.record_attempt_v6, dw.park_execution_v3): deleted, as Procrastinate's finish_job does for a
-- job that succeeded, only while it is still 'doing' for the Procrastinate worker that fetched it
-- and is this run's (recovery may have handed it to another). Returns whether it ended it (false
-- for p_job_id NULL); the worker then does not finish it again.
CREATE OR REPLACE FUNCTION dw.end_run_job_v1(p_job_id bigint, p_job_worker_id bigint, p_execution_id uuid)
    RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_job_id IS NULL THEN
        RETURN false;
    END IF;
    DELETE FROM procrastinate_jobs j
     WHERE j.id = p_job_id AND j.status = 'doing' AND j.worker_id = p_job_worker_id
       AND (j.args ->> 'execution_id') = p_execution_id::text;
    RETURN FOUND;
END;
$$;

-- Readies a new connection for a worker's first runs: PL/pgSQL compiles a function the first time a
-- session calls it, and plans each of its statements the first time it runs, and a backend loads each
-- table's and index's description on first use. On a fresh connection that made the first fetch cost
-- about 10 ms and the first record 6.5 ms, against 2.5 and 2.9 later, and a new worker's first runs
-- queued behind it. This calls the procedures a run goes through on an execution that does not
-- exist, so that each compiles and plans what it reaches: every call finds nothing, and the ones that
-- would raise run in a block that rolls back. No row stays and no existing row is locked (the one
-- insert that fails costs a sequence value and a dead row). Not the fetch itself
-- (dw.fetch_run_jobs_v1): a fetch from a queue that does not exist walks every queued job, so a
-- worker's first fetch on a connection compiles it. With generic plans, as the run's own calls make
-- them (see sql/procedures/executions.sql), so that what it plans is what a run reuses. Returns the
-- milliseconds it took.
CREATE OR REPLACE FUNCTION dw.warm_up_session_v1() RETURNS double precision LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_began timestamptz := clock_timestamp();
    v_none uuid := '00000000-0000-0000-0000-000000000000';
BEGIN
    -- A tenant of its own, for this transaction only (no row of it exists).
    PERFORM set_config('dw.tenant_id', 'dw.warm-up', true);
    PERFORM * FROM dw.try_acquire_execution_v6(v_none, 'dw.warm-up', 1, true, NULL);
    PERFORM * FROM dw.start_ready_nodes_v1(v_none, 1, ARRAY[]::text[]);
    PERFORM dw.run_checkpoints_v1(v_none);
    PERFORM * FROM dw.decide_edges_v1(v_none, ARRAY['none'], ARRAY[true]);
    PERFORM dw.end_run_job_v1(-1, -1, v_none);
    BEGIN
        -- Raises at its lease check (no such execution): compiled, and rolled back with the block.
        PERFORM * FROM dw.record_attempt_v6(v_none, 0, 'none', 1, 'none', 'Succeeded', NULL, NULL, NULL, now(), now(),
                                            'dw.warm-up', 'succeeded', NULL, ARRAY[]::boolean[], NULL, false, 0, false,
                                            NULL, NULL);
    EXCEPTION WHEN SQLSTATE 'DW012' THEN
        NULL;  -- expected: the execution does not exist
    END;
    -- The group commit's batch (dataworkflows.data.group_commit), and the record-by-record way it
    -- sends what it does not write set-based: compiled; no record, so only their first statements
    -- run (the others are planned at the first batch).
    PERFORM * FROM dw.record_attempts_v2('[]'::jsonb);
    PERFORM * FROM dw.record_attempts_v1('[]'::jsonb);
    BEGIN
        -- Plans the run's end on no row; its event's insert then fails (no such execution), and the
        -- block rolls back whatever the statements before it did (nothing: they matched no row).
        PERFORM dw.finish_execution_v1(v_none, 'Succeeded', NULL, 'execution_succeeded');
    EXCEPTION WHEN foreign_key_violation THEN
        NULL;  -- expected: the event names no execution
    END;
    RETURN extract(epoch FROM clock_timestamp() - v_began) * 1000;
END;
$$;

-- Procrastinate's trigger function for a new job (procrastinate_notify_queue_job_inserted_v1 of
-- Procrastinate 3.10, its trigger left as it is), with one change between the dw: markers: a
-- transaction that set dw.notify_after_commit to 'on' sends no NOTIFY here, because its caller sends
-- one once it has committed (dw.start_execution_v3, then dw.notify_job_inserted_v1).
--
-- Why: PostgreSQL serializes the commits of transactions that NOTIFY with one database-wide lock,
-- held through each commit's WAL flush, so that starts that notified could not share a flush: each
-- waited for the lock, then flushed alone. Sampled during bench/throughput.py's start-latency phase,
-- the start call waited on that lock (wait event Lock: object) in 23% of its samples, on WAL flushes in
-- 51%. A notification alone commits with no WAL to wait for. tests/integration/test_procedures.py
-- compares the rest of this function with Procrastinate's schema.sql, so that an upgrade of
-- Procrastinate that changes it fails there instead of being overwritten here.
CREATE OR REPLACE FUNCTION procrastinate_notify_queue_job_inserted_v1()
    RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    payload TEXT;
BEGIN
    -- dw: begin
    IF current_setting('dw.notify_after_commit', true) = 'on' THEN
        RETURN NEW;
    END IF;
    -- dw: end
    SELECT json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text INTO payload;
	PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
	PERFORM pg_notify('procrastinate_any_queue_v1', payload);
	RETURN NEW;
END;
$$;

-- The notification of a job queued in `p_queue` whose transaction sent none (dw.notify_after_commit,
-- above), as Procrastinate's trigger sends it, with job id 0 (a worker that hears it looks for work,
-- whichever job it is). In a transaction of its own, after the job's has committed: it writes no WAL
-- that its commit must wait for (synchronous_commit off for this transaction only; a notification
-- is not durable anyway: a worker that misses one finds the job at its next poll).
CREATE OR REPLACE FUNCTION dw.notify_job_inserted_v1(p_queue text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_payload text := json_build_object('type', 'job_inserted', 'job_id', 0)::text;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_notify('procrastinate_queue_v1#' || p_queue, v_payload);
    PERFORM pg_notify('procrastinate_any_queue_v1', v_payload);
END;
$$;

-- The notification of the run a start just made and committed (the query start_execution_then_notify:
-- the start leaves its queue in the session's dw.notify_queue, '' when it made no run), as
-- dw.notify_job_inserted_v1 sends it; the setting is cleared. The run is there whatever happens here,
-- and the workers find its job at their next poll, so a notification that cannot be sent is a
-- warning, not an error: one refused at once (inside the block below), and one the commit would
-- refuse (PostgreSQL finds its notification queue full only at commit, where no handler can catch
-- it: a listener that reads nothing fills it), which is not sent once the queue is half full. If
-- this transaction fails all the same, the setting's clearing rolls back with it; harmless: only
-- this function reads it, and only right after the start of its own message has set it again.
CREATE OR REPLACE FUNCTION dw.notify_started_job_v1() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_queue text := current_setting('dw.notify_queue', true);
BEGIN
    IF COALESCE(v_queue, '') = '' THEN
        RETURN;
    END IF;
    PERFORM set_config('dw.notify_queue', '', false);
    IF pg_notification_queue_usage() > 0.5 THEN
        RAISE WARNING 'dw.notify_started_job_v1: the notification queue is % full (a session that listens and reads nothing?); the workers find the run queued in % at their next poll',
            to_char(pg_notification_queue_usage() * 100, 'FM990.0') || '%', v_queue;
        RETURN;
    END IF;
    BEGIN
        PERFORM dw.notify_job_inserted_v1(v_queue);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'dw.notify_started_job_v1: the workers were not woken for a run queued in % (%: %); they find its job at their next poll',
            v_queue, SQLSTATE, SQLERRM;
    END;
END;
$$;
