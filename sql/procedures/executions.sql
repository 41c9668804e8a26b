-- Execution lifecycle procedures. Callers: the API (start), workers (acquire, node writes,
-- completion, parking) and the recovery task. Error codes (SQLSTATE class DW) are mapped to
-- exception classes in dataworkflows.db; keep both lists in step.
--   DW001 workflow not found        DW002 workflow not runnable (not Active, or disabled)
--   DW010 lease lost (fencing)      DW011 node not runnable      DW012 execution not found
--   DW005 dead letter already redriven / nothing to redrive      DW006 dead letter not found
--   DW013 a worker's write broke an invariant (an engine bug)
--
-- Generic plans. The functions a worker calls on every run or step (dw.fetch_run_jobs_v1,
-- dw.try_acquire_execution_v6, dw.start_node_attempt_v2, dw.record_attempt_v6,
-- dw.record_item_attempt_v3, dw.complete_execution_v4, dw.renew_lease_v3) carry
-- SET plan_cache_mode = force_generic_plan, which holds for the functions they call too. Their
-- statements look rows up by key, so the plan does not depend on the values; left to the default,
-- PostgreSQL plans every statement afresh for its first five executions on each connection before
-- it settles on the generic plan. Measured (one connection, a 2-node run's fetch and two records):
-- runs 2 to 6 on a new connection cost 1.5-2x a settled run before, about 1.1x with the setting;
-- a settled run costs the same (bench/procedure_cost.py --against: 0.996x). A worker opens ten
-- connections when it starts, and all of them again after the server restarts.

-- A time as the API writes one (ISO 8601 in UTC: 2026-12-05T23:17:13.933411Z), for messages built
-- here: they printed PostgreSQL's text ("2026-12-05 23:17:13.933411+00") beside the API's times.
CREATE OR REPLACE FUNCTION dw.iso_time_v1(p_at timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
$$;

-- Defers one run job for an execution, at the run's priority (migration 0069: every job of a run
-- carries it, so a run keeps its place in line through its wake-ups and recoveries). Procrastinate's
-- own function, so the insert fires its NOTIFY trigger and workers wake at once; called inside the
-- caller's transaction (the outbox).
CREATE OR REPLACE FUNCTION dw.defer_run_job_v1(p_execution_id uuid, p_queue text, p_scheduled_at timestamptz)
    RETURNS bigint LANGUAGE sql AS $$
    SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
        p_queue, 'dw.run_execution', COALESCE(e.priority, 0), NULL, NULL,
        jsonb_build_object('execution_id', p_execution_id::text, 'tenant_id', e.tenant_id),
        p_scheduled_at
    )::procrastinate_job_to_defer_v1]))[1]
      FROM (SELECT 1) AS one LEFT JOIN dw.executions e ON e.id = p_execution_id;
$$;

-- Starts an execution of the workflow's current version. Idempotent on (workflow, request id),
-- also under concurrent calls: the unique constraint decides, and the loser returns the winner's row.
CREATE OR REPLACE FUNCTION dw.start_execution_v1(
    p_workflow_id text,
    p_request_id text,
    p_trigger jsonb,
    p_principal_id text,
    p_principal_type text,
    p_correlation_id text,
    p_queue text
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM dw.start_run_v1(p_workflow_id, NULL, p_request_id, p_trigger, p_principal_id,
                                               p_principal_type, p_correlation_id, p_queue,
                                               NULL::dw.executions, NULL, NULL, NULL);
END;
$$;

-- A run's deadline, from now: its definition's workflowTimeout; else, for an attached child, its
-- parent's deadline (p_parent_deadline; 'infinity': its parent has none, and neither has it);
-- else (a root run, a redriven one, a detached child: NULL or '-infinity') the server's default
-- (the session's dw.default_workflow_timeout, which the API's and the workers' pools set from
-- DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS; one hour when the session set none). A default of 0 or
-- less: no deadline. The infinities are never stored.
CREATE OR REPLACE FUNCTION dw.deadline_for_v1(p_plan jsonb, p_parent_deadline timestamptz)
    RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_timeout double precision := (p_plan ->> 'workflowTimeoutSeconds')::double precision;
BEGIN
    IF v_timeout IS NOT NULL THEN
        RETURN now() + make_interval(secs => v_timeout);
    END IF;
    IF p_parent_deadline = 'infinity' THEN
        RETURN NULL;
    END IF;
    IF p_parent_deadline IS NOT NULL AND p_parent_deadline <> '-infinity' THEN
        RETURN p_parent_deadline;
    END IF;
    v_timeout := COALESCE(NULLIF(current_setting('dw.default_workflow_timeout', true), '')::double precision, 3600);
    RETURN CASE WHEN v_timeout > 0 THEN now() + make_interval(secs => v_timeout) END;
END;
$$;

-- A start whose request id names an existing run must be the same request: the same trigger
-- (jsonb equality: key order and spacing do not matter). p_check false: not compared.
CREATE OR REPLACE FUNCTION dw.same_request_v1(p_existing dw.executions, p_trigger jsonb, p_check boolean)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_check AND p_existing.trigger IS DISTINCT FROM COALESCE(p_trigger, '{}'::jsonb) THEN
        RAISE EXCEPTION 'request id % already started execution % with a different trigger',
            p_existing.request_id, p_existing.id
            USING ERRCODE = 'DW007', DETAIL = p_existing.id::text,
                  HINT = 'use a new requestId for a different request';
    END IF;
END;
$$;

-- Raises why dw.start_run_v1 refuses to start a run of workflow p_workflow_id (p_found: its
-- row was found, as p_wf; p_version: the version asked for, NULL for the current one, p_resolved; p_plan:
-- that version's compiled plan, NULL when none was read).
CREATE OR REPLACE FUNCTION dw.start_refusal_v1(
    p_workflow_id text, p_found boolean, p_wf dw.workflows, p_version integer, p_resolved integer, p_plan jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT p_found THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    -- Archived or a Draft, and disabled as well: both said, so that undoing one is not met by the other.
    ELSIF p_wf.status = 'Archived' THEN
        RAISE EXCEPTION 'workflow % is Archived% and refuses new executions; publish a version%',
            p_workflow_id, CASE WHEN p_wf.is_enabled THEN '' ELSE ' and disabled' END,
            CASE WHEN p_wf.is_enabled THEN ' to activate it again' ELSE ' and enable it to run it again' END
            USING ERRCODE = 'DW002', DETAIL = p_wf.status;
    ELSIF p_wf.status <> 'Active' THEN
        RAISE EXCEPTION 'workflow % is a Draft%; publish it% before executing it', p_workflow_id,
            CASE WHEN p_wf.is_enabled THEN '' ELSE ' and disabled' END,
            CASE WHEN p_wf.is_enabled THEN '' ELSE ' and enable it' END
            USING ERRCODE = 'DW002', DETAIL = p_wf.status;
    ELSIF NOT p_wf.is_enabled THEN
        RAISE EXCEPTION 'workflow % is disabled and refuses new executions; enable it to run it again', p_workflow_id
            USING ERRCODE = 'DW002', DETAIL = 'Disabled';
    ELSIF p_plan IS NULL AND p_version IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM dw.workflow_versions v WHERE v.tenant_id = p_wf.tenant_id
                                                                 AND v.workflow_id = p_workflow_id
                                                                 AND v.version = p_version) THEN
        RAISE EXCEPTION 'workflow % has no version %', p_workflow_id, p_version USING ERRCODE = 'DW003';
    ELSIF p_plan IS NULL THEN
        RAISE EXCEPTION 'workflow % version % has no compiled plan', p_workflow_id, p_resolved
            USING ERRCODE = 'DW002', DETAIL = 'NoPlan';
    END IF;
    RAISE EXCEPTION 'workflow % version % has a plan in format %, which this database cannot start',
        p_workflow_id, p_resolved, COALESCE(p_plan ->> 'format', 'none') USING ERRCODE = 'DW002', DETAIL = 'PlanFormat';
END;
$$;

-- v2 (over v1): a version other than the current one (p_version; NULL: the current one), and a
-- parent (p_parent, p_parent_node_id: a subworkflow's child, started by dw.begin_child_v1 in its
-- parent's checkpoint). A child belongs to its parent's tenant and tree, one level deeper. Now
-- dw.start_run_v1's, with no priority of the caller's (kept for the previous release's procedures;
-- this release's call dw.start_run_v1).
DROP FUNCTION IF EXISTS dw.start_execution_v2(text, integer, text, jsonb, text, text, text, text, dw.executions,
                                               text);
CREATE OR REPLACE FUNCTION dw.start_execution_v2(
    p_workflow_id text,
    p_version integer,
    p_request_id text,
    p_trigger jsonb,
    p_principal_id text,
    p_principal_type text,
    p_correlation_id text,
    p_queue text,
    p_parent dw.executions,
    p_parent_node_id text,
    p_trigger_id uuid DEFAULT NULL
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM dw.start_run_v1(p_workflow_id, p_version, p_request_id, p_trigger, p_principal_id,
                                               p_principal_type, p_correlation_id, p_queue, p_parent, p_parent_node_id,
                                               p_trigger_id, NULL);
END;
$$;

-- Starts a run: dw.start_execution_v2's start, and the run's priority (migration 0069): p_priority
-- (the start request's), else its parent's (a tree runs at its root's priority: a child below its
-- parent's would keep the parent waiting behind lower work), else the plan's (the definition's
-- orchestration.priority), else 0. Not part of a request's identity: the same request id again
-- answers the first start's run, at its priority.
CREATE OR REPLACE FUNCTION dw.start_run_v1(
    p_workflow_id text,
    p_version integer,
    p_request_id text,
    p_trigger jsonb,
    p_principal_id text,
    p_principal_type text,
    p_correlation_id text,
    p_queue text,
    p_parent dw.executions,
    p_parent_node_id text,
    -- The schedule or webhook starting it (dw.start_triggered_v1).
    p_trigger_id uuid,
    p_priority integer
) RETURNS TABLE (execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql AS $$
DECLARE
    v_priority integer;
    v_wf dw.workflows%ROWTYPE;
    v_version integer;
    v_plan jsonb;
    v_id uuid := gen_random_uuid();
    v_inserted uuid;
    v_existing dw.executions;
    v_found boolean;
    -- A child runs in its parent's tenant; anything else in the transaction's (dw.enter_tenant_v1).
    v_tenant text := COALESCE(p_parent.tenant_id, current_setting('dw.tenant_id', true));
BEGIN
    IF v_tenant IS NULL OR v_tenant IN ('', '*') THEN
        RAISE EXCEPTION 'starting a run needs a tenant (dw.tenant_id is %)', COALESCE(v_tenant, 'not set')
            USING ERRCODE = 'DW040';
    END IF;
    -- A start and a change of the workflow's runnable state (publish, archive, disable: the trigger
    -- workflows_lock_starts, migration 0033) exclude each other: this lock first, then the workflow read.
    PERFORM pg_advisory_xact_lock_shared(dw.workflow_start_key_v1(v_tenant, p_workflow_id));
    SELECT * INTO v_wf FROM dw.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id;
    v_found := FOUND;
    IF v_found AND v_wf.status = 'Active' AND v_wf.is_enabled THEN
        v_version := COALESCE(p_version, v_wf.current_version);
        SELECT p.plan INTO v_plan FROM dw.workflow_plans p
            WHERE p.tenant_id = v_tenant AND p.workflow_id = p_workflow_id AND p.version = v_version;
    END IF;
    -- The plan's field names below (nodes, id, actionType, incoming, edges/target,
    -- workflowTimeoutSeconds) are those of dataworkflows.planning's format 1.
    IF v_plan IS NULL OR (v_plan ->> 'format') IS DISTINCT FROM '1' THEN
        -- Refused, unless the request id started a run before: the same request again is answered
        -- with its run, whatever became of the workflow since (see below).
        SELECT * INTO v_existing FROM dw.executions e
            WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow_id AND e.request_id = p_request_id;
        IF FOUND THEN
            PERFORM dw.same_request_v1(v_existing, p_trigger, p_parent.id IS NULL AND p_trigger_id IS NULL);
            RETURN QUERY SELECT v_existing.id, v_existing.status, v_existing.workflow_version, false;
            RETURN;
        END IF;
        PERFORM dw.start_refusal_v1(p_workflow_id, v_found, v_wf, p_version, v_version, v_plan);
    END IF;

    v_priority := COALESCE(p_priority, p_parent.priority, (v_plan ->> 'priority')::integer, 0);
    IF v_priority NOT BETWEEN -100 AND 100 THEN
        RAISE EXCEPTION 'a run''s priority is between -100 and 100, not %', v_priority USING ERRCODE = '22023';
    END IF;
    INSERT INTO dw.executions AS e (id, workflow_id, workflow_version, request_id, trigger, principal_id,
                                    principal_type, correlation_id, tenant_id, deadline_at, queue,
                                    parent_execution_id, parent_node_id, root_execution_id, path, depth,
                                    trigger_id, priority)
    VALUES (v_id, p_workflow_id, v_version, p_request_id, COALESCE(p_trigger, '{}'::jsonb),
            p_principal_id, p_principal_type, p_correlation_id, v_wf.tenant_id,
            -- An attached child of a parent without a deadline (started with none, or before
            -- deadlines were: release 0.1.0) has none either, as the README says of such runs.
            dw.deadline_for_v1(v_plan, CASE WHEN p_parent.id IS NOT NULL AND p_parent.deadline_at IS NULL
                                            THEN 'infinity' ELSE p_parent.deadline_at END),
            p_queue, p_parent.id, p_parent_node_id, COALESCE(p_parent.root_execution_id, v_id),
            COALESCE(p_parent.path, ARRAY[]::uuid[]) || v_id, COALESCE(p_parent.depth + 1, 0), p_trigger_id,
            v_priority)
    ON CONFLICT ON CONSTRAINT executions_request_key DO NOTHING
    RETURNING e.id INTO v_inserted;

    IF v_inserted IS NULL THEN
        -- The same request id again: the same run, when it is the same request (a call before this
        -- one, or a concurrent one that committed first). A caller's start with another trigger is a
        -- 409 (DW007), not the first run passed off as this one's. Runs started by a schedule, a
        -- webhook or a parent are not compared: their request ids are derived from what started
        -- them, and a parent re-rendering its child's input after a crash must find the child.
        -- (Looked up only now: the insert's arbiter, the unique key, finds a repeat at no cost to a
        -- first start, and under a plan made before the table had statistics a lookup up front read
        -- the workflow's runs by an index on (tenant, workflow, status).)
        SELECT * INTO v_existing FROM dw.executions e
            WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow_id AND e.request_id = p_request_id;
        PERFORM dw.same_request_v1(v_existing, p_trigger, p_parent.id IS NULL AND p_trigger_id IS NULL);
        RETURN QUERY SELECT v_existing.id, v_existing.status, v_existing.workflow_version, false;
        RETURN;
    END IF;

    INSERT INTO dw.node_states (execution_id, node_id, position, action_type, status,
                                expected_incoming, edge_targets, outputs_used)
    SELECT v_id, n ->> 'id', (ord - 1)::integer, n ->> 'actionType',
           CASE WHEN (n ->> 'incoming')::integer = 0 THEN 'Ready' ELSE 'Pending' END,
           (n ->> 'incoming')::integer,
           ARRAY(SELECT jsonb_array_elements(n -> 'edges') ->> 'target'),
           -- Plans compiled before the key existed: every node's outputs are used.
           COALESCE((n ->> 'outputsUsed')::boolean, true)
    FROM jsonb_array_elements(v_plan -> 'nodes') WITH ORDINALITY AS t(n, ord);

    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (v_id, 'execution_requested', p_principal_id,
            jsonb_strip_nulls(jsonb_build_object('workflowId', p_workflow_id, 'version', v_version,
                                                 'requestId', p_request_id, 'correlationId', p_correlation_id,
                                                 'parentExecutionId', p_parent.id, 'parentNodeId', p_parent_node_id)));

    PERFORM dw.defer_run_job_v1(v_id, p_queue, NULL);

    RETURN QUERY SELECT v_id, 'Pending'::text, v_version, true;
END;
$$;

-- A run's node checkpoints as an acquire returns them (the shape dataworkflows.checkpoints decodes), in
-- plan order: each node's status, attempts and outputs (only those something in the run can read:
-- node_states.outputs_used), the wait of a node that waits (open, or resolved and not yet
-- recorded), and, for a node whose failure nothing handled, failedUnhandled and its error.
-- PL/pgSQL: its statement is planned at the first call (dw.wait_json_v1 is defined in waits.sql).
CREATE OR REPLACE FUNCTION dw.run_checkpoints_v1(p_execution_id uuid) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'nodeId', n.node_id, 'status', n.status, 'attempts', n.attempts,
               'attemptBase', n.attempt_base, 'nextAttemptAt', n.next_attempt_at,
               'outputs', CASE WHEN n.outputs_used THEN n.outputs END,
               'interruptions', n.interruptions,
               'wait', CASE WHEN n.status = 'Waiting' THEN (
                   SELECT dw.wait_json_v1(w) FROM dw.waits w
                    WHERE w.execution_id = n.execution_id AND w.node_id = n.node_id
                      AND w.attempt = n.attempts AND w.recorded_at IS NULL AND w.state <> 'withdrawn'
                    ORDER BY w.created_at DESC LIMIT 1) END)
               -- A node whose failure nothing handled: its record decided the run (it fails), and a
               -- worker that takes the run back before its end ends it so, with this error. A Failed
               -- node's error otherwise: what templates and conditions read as errors.<node>.
               || CASE WHEN n.end_reason = 'unhandled_failure'
                       THEN jsonb_build_object('failedUnhandled', true, 'error', n.error)
                       WHEN n.status = 'Failed' AND n.error IS NOT NULL
                       THEN jsonb_build_object('error', n.error) ELSE '{}'::jsonb END
               ORDER BY n.position), '[]'::jsonb)
      FROM dw.node_states n WHERE n.execution_id = p_execution_id);
END;
$$;

-- Takes the execution's lease. Outcomes: acquired (with a new fencing token), held (another live
-- worker has it), finished (nothing to do; a run whose cancel was requested ends here), suspended
-- (Suspended, or its suspension was requested: it is now), throttled (workflow limits; see below),
-- not_found. When acquired, timers that came due fire and waits past their timeout time out, and
-- it returns what the worker reads next, in the same round trip: the run's data and its node
-- checkpoints, a Waiting node's wait included (the shapes dataworkflows.checkpoints decodes).
-- v4 (over v3): cancel and suspend requests, Suspended runs, waits.
-- v5 (over v4): p_start: on a run's first acquire, its Ready nodes (as many as the plan's
-- maxParallelActions allows, in plan order) are started here, as dw.start_node_attempt_v1 would
-- start them, and `started` names them: the worker runs their first attempts without a
-- transaction of their own. Not when the run is past its deadline (the worker times it out).
-- v6 (over v5): p_job_id, the Procrastinate job whose fetch takes the lease (dw.fetch_run_jobs_v1;
-- NULL: the worker's own acquire), kept with the lease (executions.lease_job_id).
CREATE OR REPLACE FUNCTION dw.try_acquire_execution_v6(
    p_execution_id uuid, p_owner text, p_lease_seconds double precision, p_start boolean, p_job_id bigint
) RETURNS TABLE (outcome text, lease_token bigint, run jsonb, nodes jsonb, started text[])
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_e dw.executions%ROWTYPE;
    v_throttle record;
    v_token bigint;
    v_started text[];
BEGIN
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = p_execution_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RETURN QUERY SELECT 'finished'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    IF v_e.lease_owner IS NOT NULL AND v_e.lease_expires_at > now() THEN
        RETURN QUERY SELECT 'held'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    IF v_e.parent_execution_id IS NOT NULL AND v_e.cancel_requested_at IS NULL
       AND dw.child_unwanted_v1(v_e.id, v_e.parent_execution_id, v_e.request_id) THEN
        -- A child its parent no longer wants, whose cascade (dw.cancel_children) has not come yet:
        -- its job may wait with a dead worker until recovery queues it again, while this run's own
        -- lease ran out first. Cancelled here as the cascade would cancel it, not run on (a worker
        -- took such a child back and sent its HTTP call again; crash review).
        UPDATE dw.executions e
           SET cancel_requested_at = now(), cancel_reason = format('its parent execution %s ended', v_e.parent_execution_id)
         WHERE e.id = p_execution_id
        RETURNING * INTO v_e;
        INSERT INTO dw.execution_events (execution_id, type, details)
        VALUES (p_execution_id, 'cancel_requested',
                jsonb_build_object('reason', v_e.cancel_reason, 'status', v_e.status));
    END IF;
    IF v_e.cancel_requested_at IS NOT NULL THEN
        -- Its worker died (or stopped) before it could end the run. Unless the cancel came too late
        -- (the outcome was decided: dw.cancel_too_late_v1): then the run is taken, and ends as it
        -- would have.
        IF NOT dw.cancel_too_late_v1(p_execution_id) THEN
            PERFORM dw.finish_cancelled_v1(v_e);
            RETURN QUERY SELECT 'finished'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
            RETURN;
        END IF;
    END IF;
    IF v_e.status = 'Suspended' THEN
        RETURN QUERY SELECT 'suspended'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    IF v_e.suspend_requested_at IS NOT NULL THEN
        IF dw.outcome_decided_v1(p_execution_id) THEN
            -- Its last node ended while the request was pending, and its worker stopped before it
            -- ended the run: the suspension comes too late, the run is taken and ends as it would have.
            PERFORM dw.refuse_late_suspension_v1(v_e, NULL);
        ELSIF NOT dw.has_abandoned_attempt_v1(p_execution_id) THEN
            PERFORM dw.suspend_now_v1(v_e, NULL);
            RETURN QUERY SELECT 'suspended'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
            RETURN;
        END IF;
        -- Else an attempt was in flight when its worker stopped: the run is taken (the worker learns of
        -- the suspension from `run`), the attempt is recorded as interrupted, then the worker suspends it.
    END IF;

    -- A workflow's concurrency limit counts and throttles root runs only: a child belongs to a tree
    -- that was admitted (throttling it could stall its parent for good, as with a workflow that
    -- calls itself under a limit of 1).
    -- The limits (maxConcurrentExecutions, rateLimitPerMinute) are dw.admit_root_run_v1's, which locks
    -- nothing for a workflow without any; `run` says {throttledBy, retryAt} (NULL: poll).
    -- (Behind one probe of the workflow's row: most workflows have neither limit.)
    IF v_e.status = 'Pending' AND v_e.depth = 0
       AND EXISTS (SELECT 1 FROM dw.workflows w
                    WHERE w.id = v_e.workflow_id AND w.tenant_id = v_e.tenant_id
                      AND (w.max_concurrent_executions IS NOT NULL OR w.rate_limit_per_minute IS NOT NULL)) THEN
        SELECT * INTO v_throttle FROM dw.admit_root_run_v1(v_e);
        IF v_throttle.throttled_by IS NOT NULL THEN
            RETURN QUERY SELECT 'throttled'::text, NULL::bigint,
                                jsonb_build_object('throttledBy', v_throttle.throttled_by,
                                                   'retryAt', v_throttle.retry_at), NULL::jsonb, NULL::text[];
            RETURN;
        END IF;
    END IF;

    IF v_e.lease_owner IS NOT NULL THEN
        -- The previous holder stopped renewing (died, or lost the database): its token is now stale.
        INSERT INTO dw.execution_events (execution_id, type, details)
        VALUES (p_execution_id, 'lease_lost',
                jsonb_build_object('previousOwner', v_e.lease_owner, 'previousToken', v_e.lease_token,
                                   'expiredAt', v_e.lease_expires_at, 'newOwner', p_owner));
    END IF;
    -- The lease and its event in one statement (a statement's executor start and end are the
    -- largest part of a short run's PostgreSQL time).
    WITH leased AS (
        UPDATE dw.executions e
           SET lease_owner = p_owner,
               lease_job_id = p_job_id,
               lease_token = e.lease_token + 1,
               lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               status = 'Running',
               started_at = COALESCE(e.started_at, now()),
               -- The new holder reads the run's state as it is now: earlier wakes are answered.
               wake_requested_at = NULL
         WHERE e.id = p_execution_id
        RETURNING e.lease_token
    ), event AS (
        INSERT INTO dw.execution_events (execution_id, type, details)
        SELECT p_execution_id,
               CASE WHEN v_e.status = 'Pending' AND v_e.started_at IS NULL THEN 'execution_started'
                    ELSE 'execution_reacquired' END,
               jsonb_build_object('worker', p_owner, 'leaseToken', leased.lease_token, 'previousStatus', v_e.status,
                                  'previousOwner', v_e.lease_owner)
          FROM leased
    )
    SELECT leased.lease_token INTO v_token FROM leased;

    -- A run that never started has no waits (a wait is made under a lease, which sets started_at).
    IF v_e.started_at IS NOT NULL THEN
        PERFORM dw.fire_due_waits_internal_v1(p_execution_id);
    END IF;

    IF p_start AND v_e.status = 'Pending' AND v_e.started_at IS NULL
       AND (v_e.deadline_at IS NULL OR v_e.deadline_at > now()) THEN
        v_started := ARRAY(SELECT s.node_id FROM dw.start_ready_nodes_v1(p_execution_id, NULL, NULL) s);
    END IF;

    RETURN QUERY
    SELECT 'acquired'::text, v_token,
           jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version, 'trigger', e.trigger,
                              'principalId', e.principal_id, 'correlationId', e.correlation_id,
                              'deadlineAt', e.deadline_at)
           -- Only then (the set-based fetch, dw.fetch_run_jobs_v1, answers the same shape without it).
           || CASE WHEN e.suspend_requested_at IS NOT NULL THEN '{"suspendRequested": true}'::jsonb
                   ELSE '{}'::jsonb END,
           dw.run_checkpoints_v1(p_execution_id),
           COALESCE(v_started, '{}'::text[])
      FROM dw.executions e WHERE e.id = p_execution_id;
END;
$$;

-- Ends a run nobody holds whose cancel was requested in time (its outcome still open: not
-- dw.cancel_too_late_v1), as the next acquire ends it (dw.try_acquire_execution_v6): Cancelled with
-- the cancel's error, nodes in flight Cancelled (dw.finish_cancelled_v1). Returns whether it ended the
-- run (false: no cancel pending, or one that came too late). Unfenced: callers hold the row, and
-- nobody else holds the run (the sweeps: dw.time_out_overdue_v2, dw.recover_executions_v1 when it
-- gives up).
CREATE OR REPLACE FUNCTION dw.end_cancelled_in_time_v1(p_execution_id uuid) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions%ROWTYPE;
BEGIN
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = p_execution_id;
    IF NOT FOUND OR v_e.cancel_requested_at IS NULL OR dw.cancel_too_late_v1(p_execution_id) THEN
        RETURN false;
    END IF;
    PERFORM dw.finish_cancelled_v1(v_e);
    RETURN true;
END;
$$;

-- Ends a run whose node failed with nothing to handle the failure (its outcome is decided:
-- dw.outcome_decided_v1) as its worker ends it (the runtime's _decided_failure and _fail_node):
-- Failed, node_failed with the node's error as cause, the node's dead letter, nodes in flight
-- Cancelled by the run's end (run_ended), and cancel_too_late when a cancel is pending. The first
-- such node in plan order, if two failed at once. Returns whether it ended the run (false: no node
-- failed unhandled). Unfenced: callers hold the row, and nobody else holds the run (the acquire of
-- earlier workers, dw.acquire_for_earlier_workers_v1, which has just taken it; the sweeps that end
-- a run nobody holds, dw.time_out_overdue_v2 and dw.recover_executions_v1 when it gives up).
CREATE OR REPLACE FUNCTION dw.fail_decided_run_v1(p_execution_id uuid) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_node text;
    v_failure jsonb;
    v_cause jsonb;
    v_error jsonb;
BEGIN
    SELECT n.node_id, n.error INTO v_node, v_failure
      FROM dw.node_states n
     WHERE n.execution_id = p_execution_id AND n.end_reason = 'unhandled_failure'
     ORDER BY n.position LIMIT 1;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Worded as the runtime's _fail_node words it (a Python repr quotes the node id).
    v_cause := NULLIF(NULLIF(v_failure, 'null'::jsonb), '{}'::jsonb);
    v_error := jsonb_build_object(
        'code', 'node_failed', 'nodeId', v_node,
        'message', format('node %L failed', v_node) || COALESCE(': ' || NULLIF(v_cause ->> 'message', ''), ''),
        'cause', COALESCE(v_failure, 'null'::jsonb));
    -- As its worker's end does (dw.complete_execution_v2), without the lease: the rows of the runs
    -- above it first (recovery and the timeout sweep took them already, without waiting; an acquire
    -- waits for them).
    PERFORM dw.lock_letter_ancestors_v1(p_execution_id, false);
    PERFORM dw.record_cancel_too_late_v1(p_execution_id, 'Failed');
    PERFORM dw.finish_execution_v1(p_execution_id, 'Failed', v_error, 'execution_failed');
    PERFORM dw.file_node_failed_letter_v1(p_execution_id, v_node, COALESCE(v_cause, v_error));
    RETURN true;
END;
$$;

-- The acquire of workers that know neither `suspendRequested` in `run` (750a030) nor `failedUnhandled`
-- in the node checkpoints (eb7b59e): the previous release's (v4) and earlier commits' (v5). v6 as it
-- is, except where its answer would make such a worker do harm; there it keeps their old contract:
-- - a run whose suspension is pending (and not too late: dw.outcome_decided_v1) is suspended here,
--   as before, even with an attempt its worker left Running (dw.has_abandoned_attempt_v1). v6 hands
--   that run over, and a worker that cannot read suspendRequested would record the attempt as
--   interrupted and start it again after the operator was told nothing new starts. The attempt
--   stays Running while the run is Suspended, as it did in that release; whoever takes the run back
--   on resume records it as interrupted.
-- - a run whose node failed unhandled before its worker stopped (its outcome is decided: it fails)
--   is ended here as this release's worker ends it (dw.fail_decided_run_v1), and the answer is
--   finished: such a worker would end it Succeeded or `stuck`, after running nodes in flight again.
-- Only those callers run it: v6, the new workers' acquire, is untouched.
CREATE OR REPLACE FUNCTION dw.acquire_for_earlier_workers_v1(
    p_execution_id uuid, p_owner text, p_lease_seconds double precision, p_start boolean
) RETURNS TABLE (outcome text, lease_token bigint, run jsonb, nodes jsonb, started text[]) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions%ROWTYPE;
    v_a record;
BEGIN
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = p_execution_id FOR NO KEY UPDATE;
    -- In v6's order: an ended or Suspended run, a live holder and a pending cancel come first (v6
    -- answers them).
    IF FOUND AND v_e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut', 'Suspended')
       AND NOT (v_e.lease_owner IS NOT NULL AND v_e.lease_expires_at > now())
       AND v_e.cancel_requested_at IS NULL AND v_e.suspend_requested_at IS NOT NULL
       AND NOT dw.outcome_decided_v1(p_execution_id) THEN
        PERFORM dw.suspend_now_v1(v_e, NULL);
        RETURN QUERY SELECT 'suspended'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    SELECT * INTO v_a FROM dw.try_acquire_execution_v6(p_execution_id, p_owner, p_lease_seconds, p_start, NULL) a;
    IF v_a.outcome = 'acquired' AND dw.fail_decided_run_v1(p_execution_id) THEN
        RETURN QUERY SELECT 'finished'::text, NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::text[];
        RETURN;
    END IF;
    RETURN QUERY SELECT v_a.outcome, v_a.lease_token, v_a.run, v_a.nodes, v_a.started;
END;
$$;

-- v5: kept for workers of earlier commits during a rolling upgrade (dw.acquire_for_earlier_workers_v1).
CREATE OR REPLACE FUNCTION dw.try_acquire_execution_v5(
    p_execution_id uuid, p_owner text, p_lease_seconds double precision, p_start boolean
) RETURNS TABLE (outcome text, lease_token bigint, run jsonb, nodes jsonb, started text[]) LANGUAGE sql AS $$
    SELECT * FROM dw.acquire_for_earlier_workers_v1(p_execution_id, p_owner, p_lease_seconds, p_start);
$$;

-- v4: kept for workers of the previous release during a rolling upgrade (it starts no node;
-- dw.acquire_for_earlier_workers_v1).
CREATE OR REPLACE FUNCTION dw.try_acquire_execution_v4(
    p_execution_id uuid, p_owner text, p_lease_seconds double precision
) RETURNS TABLE (outcome text, lease_token bigint, run jsonb, nodes jsonb) LANGUAGE sql AS $$
    SELECT a.outcome, a.lease_token, a.run, a.nodes
      FROM dw.acquire_for_earlier_workers_v1(p_execution_id, p_owner, p_lease_seconds, false) a;
$$;

-- Starts a run's Ready nodes for their next attempts in plan order, at most p_limit of them (NULL:
-- as many as the plan's maxParallelActions), as dw.start_node_attempt_v1 starts one; only among
-- p_candidates when given (nodes the worker has not been told are Ready, so it cannot be starting
-- them itself). The caller holds the run's row locked (it has checked the lease). Returns the
-- nodes started with their attempt numbers.
CREATE OR REPLACE FUNCTION dw.start_ready_nodes_v1(p_execution_id uuid, p_limit integer, p_candidates text[])
    RETURNS TABLE (node_id text, attempt integer) LANGUAGE plpgsql AS $$
DECLARE
    v_limit integer := p_limit;
BEGIN
    IF v_limit IS NULL THEN
        SELECT COALESCE((p.plan ->> 'maxParallelActions')::integer, 1) INTO v_limit
          FROM dw.executions e
          JOIN dw.workflow_plans p ON p.tenant_id = e.tenant_id AND p.workflow_id = e.workflow_id
                                  AND p.version = e.workflow_version
         WHERE e.id = p_execution_id;
    END IF;
    IF COALESCE(v_limit, 0) <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH chosen AS (
        -- Two branches, one of them switched off by its guard, rather than "p_candidates IS NULL
        -- OR node_id = ANY(p_candidates)": under a generic plan (see the top of this file) that
        -- OR would read every node of the run on each record; the second branch reads only the
        -- candidates' rows by primary key.
        SELECT c.node_id FROM (
            SELECT n.node_id, n.position FROM dw.node_states n
             WHERE p_candidates IS NULL AND n.execution_id = p_execution_id AND n.status = 'Ready'
            UNION ALL
            SELECT n.node_id, n.position FROM dw.node_states n
             WHERE p_candidates IS NOT NULL AND n.execution_id = p_execution_id
               AND n.node_id = ANY(p_candidates) AND n.status = 'Ready'
        ) c
         ORDER BY c.position LIMIT v_limit
    ), started AS (
        -- The time of the start itself, never before its run's: a run a rate admits records its
        -- admission's time (clock_timestamp, dw.admit_root_run_v1, earlier in the same call), later
        -- than this transaction's now() (a review: a run's first node started a second before the
        -- run). No read of the run's row for it.
        UPDATE dw.node_states n
           SET status = 'Running', attempts = n.attempts + 1,
               started_at = COALESCE(n.started_at, clock_timestamp()), next_attempt_at = NULL
          FROM chosen
         WHERE n.execution_id = p_execution_id AND n.node_id = chosen.node_id AND n.status = 'Ready'
        RETURNING n.node_id, n.attempts
    ), events AS (
        INSERT INTO dw.execution_events (execution_id, node_id, type, details)
        SELECT p_execution_id, started.node_id, 'node_started', jsonb_build_object('attempt', started.attempts)
          FROM started
    )
    SELECT started.node_id, started.attempts FROM started;
END;
$$;

-- The fencing check every worker write goes through: locks the execution row and refuses a
-- token that is no longer current, or a run that has already ended.
CREATE OR REPLACE FUNCTION dw.check_lease_v1(p_execution_id uuid, p_token bigint)
    RETURNS dw.executions LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions%ROWTYPE;
BEGIN
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = p_execution_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'execution % not found', p_execution_id USING ERRCODE = 'DW012';
    END IF;
    IF v_e.lease_token <> p_token OR v_e.lease_owner IS NULL
       OR v_e.status NOT IN ('Running') THEN
        RAISE EXCEPTION 'lease on execution % lost (token %, current %, status %)',
            p_execution_id, p_token, v_e.lease_token, v_e.status USING ERRCODE = 'DW010';
    END IF;
    RETURN v_e;
END;
$$;


-- Marks a node Running for its next attempt and returns the attempt number. Refuses a node that
-- has already ended, so a Succeeded node can never run again.
CREATE OR REPLACE FUNCTION dw.start_node_attempt_v1(
    p_execution_id uuid, p_token bigint, p_node_id text
) RETURNS integer LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_attempt integer;
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    UPDATE dw.node_states n
       SET status = 'Running', attempts = n.attempts + 1,
           started_at = COALESCE(n.started_at, now()), next_attempt_at = NULL
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id
       AND n.status IN ('Ready', 'Waiting')
       -- A node that waits on a wait (not on a retry's due time) is resumed from its wait, not
       -- started again.
       AND (n.status = 'Ready' OR NOT EXISTS (
                SELECT 1 FROM dw.waits w
                 WHERE w.execution_id = n.execution_id AND w.node_id = n.node_id
                   AND w.attempt = n.attempts AND w.recorded_at IS NULL AND w.state <> 'withdrawn'))
    RETURNING n.attempts INTO v_attempt;
    IF v_attempt IS NULL THEN
        RAISE EXCEPTION 'node % of execution % is not runnable', p_node_id, p_execution_id
            USING ERRCODE = 'DW011';
    END IF;
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, 'node_started', jsonb_build_object('attempt', v_attempt));
    RETURN v_attempt;
END;
$$;

-- As dw.start_node_attempt_v1, but no attempt starts while an operator's cancel or suspension is
-- pending: NULL then, and the worker checks the run (it learns the request from its lease renewal).
-- v1 started one: a cancel that came just after a worker took the run (its NOTIFY before the run
-- was registered in the worker) let the next node start and run to its end, and the run ended
-- Succeeded with cancel_too_late (crash review). v1 stays for workers of the previous release.
CREATE OR REPLACE FUNCTION dw.start_node_attempt_v2(
    p_execution_id uuid, p_token bigint, p_node_id text
) RETURNS integer LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_e dw.executions%ROWTYPE;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NOT NULL OR v_e.suspend_requested_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    RETURN dw.start_node_attempt_v1(p_execution_id, p_token, p_node_id);
END;
$$;

-- Decides edges into target nodes: counts them, makes a target Ready when all its incoming edges
-- are decided and one fired, or Skipped when none fired; a Skipped node's own edges are decided
-- as not fired in turn (dead-path elimination), so joins never hang. Returns changed nodes.
CREATE OR REPLACE FUNCTION dw.decide_edges_v1(
    p_execution_id uuid, p_targets text[], p_fired boolean[]
) RETURNS TABLE (node_id text, status text) LANGUAGE plpgsql AS $$
DECLARE
    v_targets text[] := p_targets;
    v_fired boolean[] := p_fired;
    v_target text;
    v_is_fired boolean;
    v_n dw.node_states%ROWTYPE;
BEGIN
    WHILE COALESCE(array_length(v_targets, 1), 0) > 0 LOOP
        v_target := v_targets[1];
        v_is_fired := v_fired[1];
        v_targets := v_targets[2:];
        v_fired := v_fired[2:];

        -- One statement counts the edge and, when it was the last one, decides the target (SET
        -- reads the row as it was: decided_incoming + 1 is the count after this edge).
        UPDATE dw.node_states n
           SET decided_incoming = n.decided_incoming + 1,
               satisfied_incoming = n.satisfied_incoming + CASE WHEN v_is_fired THEN 1 ELSE 0 END,
               status = CASE WHEN n.decided_incoming + 1 < n.expected_incoming THEN n.status
                             WHEN n.satisfied_incoming + CASE WHEN v_is_fired THEN 1 ELSE 0 END > 0 THEN 'Ready'
                             ELSE 'Skipped' END,
               ended_at = CASE WHEN n.decided_incoming + 1 >= n.expected_incoming
                                AND n.satisfied_incoming + CASE WHEN v_is_fired THEN 1 ELSE 0 END = 0
                               THEN now() ELSE n.ended_at END
         WHERE n.execution_id = p_execution_id AND n.node_id = v_target AND n.status = 'Pending'
        RETURNING n.* INTO v_n;
        CONTINUE WHEN NOT FOUND OR v_n.status = 'Pending';

        IF v_n.status = 'Ready' THEN
            node_id := v_target; status := 'Ready';
            RETURN NEXT;
        ELSE
            INSERT INTO dw.execution_events (execution_id, node_id, type, details)
            VALUES (p_execution_id, v_target, 'node_skipped',
                    jsonb_build_object('reason', 'no incoming edge fired'));
            node_id := v_target; status := 'Skipped';
            RETURN NEXT;
            v_targets := v_targets || v_n.edge_targets;
            v_fired := v_fired || array_fill(false, ARRAY[COALESCE(array_length(v_n.edge_targets, 1), 0)]);
        END IF;
    END LOOP;
END;
$$;

-- Records one attempt and its consequences in one transaction: the attempt row, the node's new
-- state, the event, the decision of each outgoing edge, and the external resources the action
-- reported (so a node's outcome and what it created are recorded together).
-- p_outcome is what the worker decided (dataworkflows.outcomes.Verdict):
--   succeeded         the node Succeeded; p_fired decides its edges
--   retry             the node Waits until p_next_attempt_at
--   failed_handled    the node Failed and a failure/always edge took it; p_fired decides its edges
--   failed_unhandled  the node Failed and nothing took it: the run ends, its edges stay undecided so
--                     a redrive resumes exactly here
-- v4 (over v3): p_interrupted, an attempt its worker cut short (handed back after the grace period,
-- or lost with the worker). Its row is marked interrupted, the node counts it in `interruptions`,
-- and it does not use up the retry budget (attempt_base moves past it).
-- v5 (over v4): the worker's next steps in the same transaction.
--   p_start_limit  Ready nodes (those the edge decisions just made Ready, in plan order) to start
--                  for their next attempts at once, as dw.start_node_attempt_v1 would: the worker
--                  says how many of its parallel slots are free (0: none, it is stopping or an
--                  operator's request is pending). They come back with status Running and their
--                  attempt number.
--   p_complete     end the run as Succeeded when this record leaves every node final, no node failed
--                  unhandled, no cancel or suspension is pending and the deadline has not passed
--                  (the worker passes false when the run has outputs to render). A row with a NULL
--                  node_id and status Succeeded says the run ended.
-- v6 (over v5): p_job_id and p_job_worker_id, the Procrastinate job the worker runs the run under
--   and the Procrastinate worker that fetched it: when this record ends the run, the job ends with
--   it (deleted, as Procrastinate's finish_job does for a job that succeeded), if it is still that
--   worker's and 'doing' (recovery may have handed it to another), and the run's end row says so
--   in job_finished: the worker then does not finish it again. One transaction fewer per run.
-- Rows: (node_id, status, attempt, job_finished): nodes made Ready (attempt NULL) or Skipped, nodes
-- started; the run's end (node_id NULL).
CREATE OR REPLACE FUNCTION dw.record_attempt_v6(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_action_type text,
    p_attempt_status text, p_parameters jsonb, p_outputs jsonb, p_error jsonb,
    p_start_time timestamptz, p_end_time timestamptz, p_worker text,
    p_outcome text, p_next_attempt_at timestamptz, p_fired boolean[], p_resource_links jsonb,
    p_interrupted boolean, p_start_limit integer, p_complete boolean, p_job_id bigint, p_job_worker_id bigint
) RETURNS TABLE (node_id text, status text, attempt integer, job_finished boolean) LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_e dw.executions;
    v_node_status text;
    v_edges text[];
    v_link jsonb;
    v_change record;
    v_ready text[] := '{}';
    v_started text[] := '{}';
BEGIN
    v_node_status := CASE p_outcome
        WHEN 'succeeded' THEN 'Succeeded'
        WHEN 'retry' THEN 'Waiting'
        WHEN 'failed_handled' THEN 'Failed'
        WHEN 'failed_unhandled' THEN 'Failed' END;
    IF v_node_status IS NULL THEN
        RAISE EXCEPTION 'unknown attempt outcome %', p_outcome USING ERRCODE = 'DW013';
    END IF;
    v_e := dw.check_lease_v1(p_execution_id, p_token);

    -- The attempt's row, the node's new state, its event and its wait's outcome marked recorded, in
    -- one statement (a statement's executor start and end are the largest part of a short run's
    -- PostgreSQL time). The row is written whatever the node's state, as it was when it was a
    -- statement of its own ahead of the others: a second record of the same attempt fails on its
    -- key (a Conflict) before anything else is said. The event and the wait's mark need the node
    -- to have had this attempt in flight; otherwise the procedure raises below, and nothing stays.
    WITH attempt_row AS (
        INSERT INTO dw.action_executions (execution_id, node_id, action_type, attempt, status, parameters,
                                          outputs, error, worker, start_time, end_time, interrupted)
        VALUES (p_execution_id, p_node_id, p_action_type, p_attempt, p_attempt_status, p_parameters,
                p_outputs, p_error, p_worker, p_start_time, p_end_time, p_interrupted)
    ), node AS (
        UPDATE dw.node_states n
           SET status = v_node_status,
               outputs = CASE WHEN v_node_status = 'Succeeded' THEN p_outputs ELSE n.outputs END,
               error = CASE WHEN v_node_status = 'Succeeded' THEN NULL ELSE p_error END,
               next_attempt_at = p_next_attempt_at,
               ended_at = CASE WHEN v_node_status IN ('Succeeded', 'Failed') THEN p_end_time END,
               -- A redrive restores an unhandled failure, also when another node's failure is the one
               -- that ended the run.
               end_reason = CASE WHEN p_outcome = 'failed_unhandled' THEN 'unhandled_failure' END,
               -- An interrupted attempt does not use up the retry budget: the budget counts from past it.
               interruptions = n.interruptions + CASE WHEN p_interrupted THEN 1 ELSE 0 END,
               attempt_base = n.attempt_base + CASE WHEN p_interrupted THEN 1 ELSE 0 END
         WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id
           AND (n.status = 'Running'
                -- A node that waited: its wait was resolved (a signal, a decision, its timer, its
                -- timeout) and this writes the outcome, once.
                OR (n.status = 'Waiting' AND n.attempts = p_attempt AND EXISTS (
                        SELECT 1 FROM dw.waits w
                         WHERE w.execution_id = n.execution_id AND w.node_id = n.node_id AND w.attempt = p_attempt
                           AND w.state NOT IN ('open', 'withdrawn') AND w.recorded_at IS NULL)))
        RETURNING n.edge_targets
    ), recorded_wait AS (
        UPDATE dw.waits w SET recorded_at = now()
         WHERE w.execution_id = p_execution_id AND w.node_id = p_node_id AND w.attempt = p_attempt
           AND w.state NOT IN ('open', 'withdrawn') AND w.recorded_at IS NULL
           AND EXISTS (SELECT 1 FROM node)
    ), event AS (
        INSERT INTO dw.execution_events (execution_id, node_id, type, details)
        SELECT p_execution_id, p_node_id,
               CASE v_node_status WHEN 'Succeeded' THEN 'node_succeeded' WHEN 'Failed' THEN 'node_failed'
                                  ELSE 'node_retry_scheduled' END,
               jsonb_strip_nulls(jsonb_build_object('attempt', p_attempt, 'attemptStatus', p_attempt_status,
                                                    'error', p_error, 'nextAttemptAt', p_next_attempt_at,
                                                    'interrupted', CASE WHEN p_interrupted THEN true END))
          FROM node
    )
    SELECT node.edge_targets INTO v_edges FROM node;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % of execution % has no attempt in flight', p_node_id, p_execution_id
            USING ERRCODE = 'DW011';
    END IF;

    IF p_resource_links IS NOT NULL THEN
        FOR v_link IN SELECT * FROM jsonb_array_elements(p_resource_links) LOOP
            PERFORM dw.link_external_resource_v1(
                v_e.tenant_id, v_link ->> 'resourceType', v_link ->> 'resourceKey', v_link ->> 'externalId',
                v_e.workflow_id, p_execution_id, p_node_id, v_link -> 'data');
        END LOOP;
    END IF;

    IF p_outcome NOT IN ('succeeded', 'failed_handled') THEN
        RETURN;
    END IF;
    IF COALESCE(array_length(v_edges, 1), 0) > 0 THEN
        IF COALESCE(array_length(p_fired, 1), 0) <> array_length(v_edges, 1) THEN
            RAISE EXCEPTION 'node % has % edges but % decisions', p_node_id, array_length(v_edges, 1),
                COALESCE(array_length(p_fired, 1), 0) USING ERRCODE = 'DW013';
        END IF;
        FOR v_change IN SELECT * FROM dw.decide_edges_v1(p_execution_id, v_edges, p_fired) LOOP
            IF v_change.status = 'Ready' THEN
                v_ready := v_ready || v_change.node_id;
            ELSE
                node_id := v_change.node_id; status := v_change.status; attempt := NULL; job_finished := NULL;
                RETURN NEXT;
            END IF;
        END LOOP;
        IF COALESCE(p_start_limit, 0) > 0 AND cardinality(v_ready) > 0
           AND v_e.cancel_requested_at IS NULL AND v_e.suspend_requested_at IS NULL THEN
            FOR v_change IN SELECT * FROM dw.start_ready_nodes_v1(p_execution_id, p_start_limit, v_ready) LOOP
                v_started := v_started || v_change.node_id;
                node_id := v_change.node_id; status := 'Running'; attempt := v_change.attempt; job_finished := NULL;
                RETURN NEXT;
            END LOOP;
        END IF;
        IF cardinality(v_ready) > cardinality(v_started) THEN
            RETURN QUERY SELECT r.node_id, 'Ready'::text, NULL::integer, NULL::boolean
                           FROM unnest(v_ready) AS r(node_id) WHERE NOT r.node_id = ANY(v_started);
        END IF;
    END IF;
    IF p_complete AND cardinality(v_ready) = 0
       AND v_e.cancel_requested_at IS NULL AND v_e.suspend_requested_at IS NULL
       AND (v_e.deadline_at IS NULL OR v_e.deadline_at > now())
       AND NOT EXISTS (SELECT 1 FROM dw.node_states n
                        WHERE n.execution_id = p_execution_id
                          AND (n.status NOT IN ('Succeeded', 'Failed', 'Skipped', 'Cancelled')
                               OR n.end_reason = 'unhandled_failure')) THEN
        PERFORM dw.finish_execution_v1(p_execution_id, 'Succeeded', NULL, 'execution_succeeded');
        node_id := NULL; status := 'Succeeded'; attempt := NULL;
        job_finished := dw.end_run_job_v1(p_job_id, p_job_worker_id, p_execution_id);
        RETURN NEXT;
    END IF;
END;
$$;

-- Records several attempts (of one tenant's runs, this worker's) in one transaction: the worker's
-- group commit. Each record is dw.record_attempt_v6's, in a subtransaction of its own, in order: a
-- record the procedure refuses (its lease lost, a node not in flight, a value the database will not
-- store) rolls back alone and comes back as a row with its SQLSTATE and message; the others commit
-- together. p_records: a JSON array of objects keyed by dw.record_attempt_v6's parameter names
-- without the p_ (a missing key is NULL; fired a JSON array of booleans). Rows: the record's ordinal
-- (1-based) and dw.record_attempt_v6's row, or its error.
-- lock_timeout: a record whose run's row someone else holds (an operator's session left in a
-- transaction) gives up its place after 200 ms (55P03, a transient refusal: the worker sends it
-- again alone, where it waits as it did before group commit) rather than hold the batch back.
CREATE OR REPLACE FUNCTION dw.record_attempts_v1(p_records jsonb)
    RETURNS TABLE (ordinal integer, node_id text, status text, attempt integer, job_finished boolean,
                   error_state text, error_message text, error_detail text, error_constraint text)
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET lock_timeout = '200ms' AS $$
DECLARE
    v_r jsonb;
    v_i integer := 0;
    v_nodes text[];
    v_statuses text[];
    v_attempts integer[];
    v_finished boolean[];
    v_state text;
    v_message text;
    v_detail text;
    v_constraint text;
BEGIN
    FOR v_r IN SELECT e FROM jsonb_array_elements(p_records) AS e LOOP
        v_i := v_i + 1;
        BEGIN
            SELECT array_agg(c.node_id), array_agg(c.status), array_agg(c.attempt), array_agg(c.job_finished)
              INTO v_nodes, v_statuses, v_attempts, v_finished
              FROM dw.record_attempt_v6(
                (v_r ->> 'execution_id')::uuid, (v_r ->> 'token')::bigint, v_r ->> 'node_id',
                (v_r ->> 'attempt')::integer, v_r ->> 'action_type', v_r ->> 'attempt_status',
                v_r -> 'parameters', v_r -> 'outputs', v_r -> 'error',
                (v_r ->> 'start_time')::timestamptz, (v_r ->> 'end_time')::timestamptz, v_r ->> 'worker',
                v_r ->> 'outcome', (v_r ->> 'next_attempt_at')::timestamptz,
                ARRAY(SELECT f::boolean FROM jsonb_array_elements_text(v_r -> 'fired') WITH ORDINALITY AS x(f, n)
                       ORDER BY x.n),
                v_r -> 'resource_links', (v_r ->> 'interrupted')::boolean, (v_r ->> 'start_limit')::integer,
                (v_r ->> 'complete')::boolean, (v_r ->> 'job_id')::bigint, (v_r ->> 'job_worker_id')::bigint) AS c;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                    v_detail = PG_EXCEPTION_DETAIL, v_constraint = CONSTRAINT_NAME;
            ordinal := v_i; node_id := NULL; status := NULL; attempt := NULL; job_finished := NULL;
            error_state := v_state; error_message := v_message; error_detail := NULLIF(v_detail, '');
            error_constraint := NULLIF(v_constraint, '');
            RETURN NEXT;
            CONTINUE;
        END;
        error_state := NULL; error_message := NULL; error_detail := NULL; error_constraint := NULL;
        ordinal := v_i; node_id := NULL; status := NULL; attempt := NULL; job_finished := NULL;
        -- A row per record even when it changed nothing else: the caller counts on one.
        IF v_nodes IS NULL THEN
            status := 'recorded';
            RETURN NEXT;
            CONTINUE;
        END IF;
        RETURN QUERY SELECT v_i, u.n, u.s, u.a, u.f, NULL::text, NULL::text, NULL::text, NULL::text
                       FROM unnest(v_nodes, v_statuses, v_attempts, v_finished) AS u(n, s, a, f);
    END LOOP;
END;
$$;

-- v2 (over v1): the same records and the same answer, with the common record written set-based
-- (issue 17: a statement's executor start and end, a subtransaction and a function call per record
-- were most of a batch's PostgreSQL time). A record that succeeded, fires every edge it has (or has
-- none), reports no external resource, was not interrupted, is its node's only record in the batch,
-- whose run this worker still holds and whose node is in flight, is written together with the others
-- like it, as dw.record_attempt_v6 writes each (the same rows, events and answer), when every record
-- of its run in the batch is such a record (the records of a fan-out's parallel nodes): one
-- statement locks their runs and checks their leases, one writes all their attempt rows, node
-- states, events and waits' marks, one decides all their edges, one starts the nodes those made
-- Ready, one finds the runs they end; the runs whose end is only their row end in one statement,
-- the others through dw.finish_execution_v1, and one statement ends their jobs. Every other record
-- (a retry, a failure, an edge not fired, a resource link, a lease lost; and every record of a run
-- with one of those in the batch) goes through dw.record_attempts_v1, in a subtransaction of its own.
-- Several records of one run, written together, do what they do one after another in batch order: a
-- node their edges make Ready is made so by the last of them that fires into it (the one that
-- completes its count), which starts it within its own start_limit and answers for it; only the
-- run's last record in the batch may end the run. What differs is the order of the run's events
-- within the transaction: the records' node_succeeded events come before the node_started events
-- the records cause (one after another, each record's node_started came after its node_succeeded). The set-based statements run
-- in one subtransaction: if anything in them raises (a duplicate attempt, a value the database will
-- not store, a lock not granted within the lock_timeout), they roll back whole and every record goes
-- through dw.record_attempts_v1, where only the one at fault fails, as before.
-- Plans: generic, like the rest of the run's procedures; the batch's rows are joined to runs and
-- nodes by their keys. A plan made while the tables were small and kept (a new database) is made
-- again when autovacuum's ANALYZE changes their statistics, as every cached plan is.
CREATE OR REPLACE FUNCTION dw.record_attempts_v2(p_records jsonb)
    RETURNS TABLE (ordinal integer, node_id text, status text, attempt integer, job_finished boolean,
                   error_state text, error_message text, error_detail text, error_constraint text)
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET lock_timeout = '200ms' AS $$
DECLARE
    -- The set-based records, in batch order: ordinal, record, run, whether the run may start nodes
    -- (no cancel or suspension pending) and end (also: its deadline not passed).
    f_ord integer[];
    f_rec jsonb[];
    f_exec uuid[];
    f_open boolean[];
    f_in_time boolean[];
    v_recorded integer;
    -- Each edge fired, with the ordinal of the record that fired it.
    v_edge_ord integer[];
    v_edge_exec uuid[];
    v_edge_target text[];
    -- The nodes made Ready, each with the ordinal of the record that made it so (see above).
    v_ready_ord integer[];
    v_ready_exec uuid[];
    v_ready_node text[];
    v_ready_pos integer[];
    v_started_ord integer[];
    v_started_exec uuid[];
    v_started_node text[];
    v_started_attempt integer[];
    v_started_pos integer[];
    -- The runs the records end: each run's last record in the batch.
    v_end_ord integer[];
    v_end_exec uuid[];
    v_end_simple boolean[];
    v_end_job bigint[];
    v_end_worker bigint[];
    v_end_finished boolean[];
    v_simple uuid[];
    v_slot_tenants text[];
    v_slot_workflows text[];
    v_i integer;
    v_rest jsonb;
    v_rest_ord integer[];
BEGIN
    BEGIN
        -- The candidates and their runs' rows, locked in id order (the worker sends its records sorted
        -- so), the lease checked as dw.check_lease_v1 checks it, the node in flight; then only the runs
        -- all of whose records in the batch are candidates. A run whose row another transaction holds
        -- (an operator's cancel being written) is skipped: its records go the record-by-record way, and
        -- wait there as they always have.
        SELECT array_agg(q.ord ORDER BY q.ord), array_agg(q.rec ORDER BY q.ord), array_agg(q.id ORDER BY q.ord),
               array_agg(q.open ORDER BY q.ord), array_agg(q.in_time ORDER BY q.ord)
          FROM (
            SELECT s.*, count(*) OVER (PARTITION BY s.id) AS candidates_of_run
              FROM (
                SELECT r.ord, r.rec, r.records_of_run, e.id,
                       e.cancel_requested_at IS NULL AND e.suspend_requested_at IS NULL AS open,
                       e.deadline_at IS NULL OR e.deadline_at > now() AS in_time
                  FROM (
                    SELECT x.n::integer AS ord, x.e AS rec, (x.e ->> 'execution_id')::uuid AS execution_id,
                           count(*) OVER (PARTITION BY (x.e ->> 'execution_id')::uuid) AS records_of_run,
                           count(*) OVER (PARTITION BY (x.e ->> 'execution_id')::uuid, x.e ->> 'node_id')
                               AS records_of_node
                      FROM jsonb_array_elements(p_records) WITH ORDINALITY AS x(e, n)
                  ) r
                  JOIN dw.executions e ON e.id = r.execution_id
                  JOIN dw.node_states n ON n.execution_id = r.execution_id AND n.node_id = r.rec ->> 'node_id'
                 WHERE r.records_of_node = 1
                   AND r.rec ->> 'outcome' = 'succeeded'
                   AND (r.rec -> 'resource_links' IS NULL OR r.rec -> 'resource_links' = '[]'::jsonb)
                   AND (r.rec ->> 'interrupted')::boolean IS NOT TRUE
                   AND e.lease_token = (r.rec ->> 'token')::bigint AND e.lease_owner IS NOT NULL
                   AND e.status = 'Running'
                   AND n.status = 'Running'
                   AND (cardinality(n.edge_targets) = 0
                        OR (jsonb_typeof(r.rec -> 'fired') = 'array'
                            AND jsonb_array_length(r.rec -> 'fired') = cardinality(n.edge_targets)
                            AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.rec -> 'fired') AS f(v)
                                             WHERE f.v IS DISTINCT FROM 'true'::jsonb)))
                 ORDER BY e.id, r.ord
                   FOR NO KEY UPDATE OF e SKIP LOCKED
              ) s
          ) q
         WHERE q.candidates_of_run = q.records_of_run
          INTO f_ord, f_rec, f_exec, f_open, f_in_time;

        IF f_ord IS NOT NULL THEN
            -- Each record's attempt row, node state, event and wait's mark, as dw.record_attempt_v6
            -- writes them for a record that succeeded; and the edges they fired.
            WITH r AS (
                SELECT x.ord, (x.rec ->> 'execution_id')::uuid AS execution_id, x.rec ->> 'node_id' AS node_id,
                       (x.rec ->> 'attempt')::integer AS attempt, x.rec ->> 'action_type' AS action_type,
                       x.rec ->> 'attempt_status' AS attempt_status, x.rec -> 'parameters' AS parameters,
                       x.rec -> 'outputs' AS outputs, x.rec -> 'error' AS error, x.rec ->> 'worker' AS worker,
                       (x.rec ->> 'start_time')::timestamptz AS start_time,
                       (x.rec ->> 'end_time')::timestamptz AS end_time,
                       (x.rec ->> 'next_attempt_at')::timestamptz AS next_attempt_at,
                       (x.rec ->> 'interrupted')::boolean AS interrupted
                  FROM unnest(f_ord, f_rec) AS x(ord, rec)
            ), attempt_row AS (
                INSERT INTO dw.action_executions (execution_id, node_id, action_type, attempt, status, parameters,
                                                  outputs, error, worker, start_time, end_time, interrupted)
                SELECT r.execution_id, r.node_id, r.action_type, r.attempt, r.attempt_status, r.parameters,
                       r.outputs, r.error, r.worker, r.start_time, r.end_time, r.interrupted
                  FROM r ORDER BY r.ord
            ), node AS (
                UPDATE dw.node_states n
                   SET status = 'Succeeded', outputs = r.outputs, error = NULL,
                       next_attempt_at = r.next_attempt_at, ended_at = r.end_time, end_reason = NULL
                  FROM r
                 WHERE n.execution_id = r.execution_id AND n.node_id = r.node_id AND n.status = 'Running'
                RETURNING r.ord, n.execution_id, n.edge_targets
            ), recorded_wait AS (
                UPDATE dw.waits w SET recorded_at = now()
                  FROM r
                 WHERE w.execution_id = r.execution_id AND w.node_id = r.node_id AND w.attempt = r.attempt
                   AND w.state NOT IN ('open', 'withdrawn') AND w.recorded_at IS NULL
            ), event AS (
                INSERT INTO dw.execution_events (execution_id, node_id, type, details)
                SELECT r.execution_id, r.node_id, 'node_succeeded',
                       jsonb_strip_nulls(jsonb_build_object('attempt', r.attempt, 'attemptStatus', r.attempt_status,
                                                            'error', r.error, 'nextAttemptAt', r.next_attempt_at))
                  FROM r ORDER BY r.ord
            )
            -- The edges in one pass, so that the three arrays pair up.
            SELECT (SELECT count(*) FROM node), edges.ords, edges.runs, edges.targets
              FROM (SELECT array_agg(node.ord) AS ords, array_agg(node.execution_id) AS runs,
                           array_agg(t.target) AS targets
                      FROM node, unnest(node.edge_targets) AS t(target)) edges
              INTO v_recorded, v_edge_ord, v_edge_exec, v_edge_target;
            IF v_recorded <> cardinality(f_ord) THEN
                -- A node left flight between the check and the write: all go the record-by-record way.
                RAISE EXCEPTION 'a node of the batch is no longer in flight' USING ERRCODE = 'DW011';
            END IF;
        END IF;

        IF cardinality(v_edge_exec) > 0 THEN
            -- Every edge fired: a target whose edges are all decided is Ready (dw.decide_edges_v1), made
            -- so by the last record (in batch order) that fires into it; and each record's Ready nodes
            -- are started in plan order up to its start_limit (dw.start_ready_nodes_v1), unless its run
            -- has a cancel or a suspension pending. One write of each target's row: a node decided and
            -- started goes from Pending to Running at once (the runs' rows are locked above, so the
            -- targets read here are the ones written).
            WITH d AS (
                SELECT t.execution_id, t.target, count(*)::integer AS fired, max(t.ord) AS owner
                  FROM unnest(v_edge_ord, v_edge_exec, v_edge_target) AS t(ord, execution_id, target)
                 GROUP BY t.execution_id, t.target
            ), target AS (
                SELECT d.owner, d.execution_id, d.target AS node_id, d.fired, n.position,
                       n.decided_incoming + d.fired >= n.expected_incoming AS ready
                  FROM d JOIN dw.node_states n ON n.execution_id = d.execution_id AND n.node_id = d.target
                 WHERE n.status = 'Pending'
            ), chosen AS (
                SELECT target.*,
                       target.ready AND l.open
                           AND row_number() OVER (PARTITION BY target.owner, target.ready ORDER BY target.position)
                               <= COALESCE((l.rec ->> 'start_limit')::integer, 0) AS start
                  FROM target JOIN unnest(f_ord, f_rec, f_open) AS l(ord, rec, open) ON l.ord = target.owner
            ), decided AS (
                UPDATE dw.node_states n
                   SET decided_incoming = n.decided_incoming + c.fired,
                       satisfied_incoming = n.satisfied_incoming + c.fired,
                       status = CASE WHEN c.start THEN 'Running' WHEN c.ready THEN 'Ready' ELSE n.status END,
                       attempts = n.attempts + CASE WHEN c.start THEN 1 ELSE 0 END,
                       started_at = CASE WHEN c.start THEN COALESCE(n.started_at, now()) ELSE n.started_at END,
                       next_attempt_at = CASE WHEN c.start THEN NULL ELSE n.next_attempt_at END
                  FROM chosen c
                 WHERE n.execution_id = c.execution_id AND n.node_id = c.node_id AND n.status = 'Pending'
                RETURNING c.owner, n.execution_id, n.node_id, n.attempts, n.position, c.ready, c.start
            ), events AS (
                INSERT INTO dw.execution_events (execution_id, node_id, type, details)
                SELECT decided.execution_id, decided.node_id, 'node_started',
                       jsonb_build_object('attempt', decided.attempts)
                  FROM decided WHERE decided.start ORDER BY decided.owner, decided.position
            )
            SELECT array_agg(decided.owner) FILTER (WHERE decided.ready),
                   array_agg(decided.execution_id) FILTER (WHERE decided.ready),
                   array_agg(decided.node_id) FILTER (WHERE decided.ready),
                   array_agg(decided.position) FILTER (WHERE decided.ready),
                   array_agg(decided.owner) FILTER (WHERE decided.start),
                   array_agg(decided.execution_id) FILTER (WHERE decided.start),
                   array_agg(decided.node_id) FILTER (WHERE decided.start),
                   array_agg(decided.attempts) FILTER (WHERE decided.start),
                   array_agg(decided.position) FILTER (WHERE decided.start)
              FROM decided
              INTO v_ready_ord, v_ready_exec, v_ready_node, v_ready_pos,
                   v_started_ord, v_started_exec, v_started_node, v_started_attempt, v_started_pos;
        END IF;

        IF f_ord IS NOT NULL THEN
            -- The runs these records end (dw.record_attempt_v6's p_complete, of the run's last record in
            -- the batch: an earlier one found that one's node in flight): no node made Ready, no
            -- cancel or suspension pending, the deadline not passed, every node final and none failed
            -- unhandled. A run whose end is only its row (no wait left to withdraw, no forEach item in
            -- flight, no parent to tell, no child to cancel: most runs) is simple.
            SELECT array_agg(l.ord), array_agg(l.execution_id), array_agg((l.rec ->> 'job_id')::bigint),
                   array_agg((l.rec ->> 'job_worker_id')::bigint),
                   array_agg(e.parent_execution_id IS NULL
                             AND NOT EXISTS (SELECT 1 FROM dw.waits w
                                              WHERE w.execution_id = l.execution_id AND w.state <> 'withdrawn'
                                                AND w.recorded_at IS NULL)
                             AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i
                                              WHERE i.execution_id = l.execution_id
                                                AND i.status IN ('Pending', 'Running', 'Waiting'))
                             AND NOT EXISTS (SELECT 1 FROM dw.executions c
                                              WHERE c.parent_execution_id = l.execution_id))
              FROM (SELECT u.*, max(u.ord) OVER (PARTITION BY u.execution_id) AS last_ord
                      FROM unnest(f_ord, f_exec, f_rec, f_open, f_in_time) AS u(ord, execution_id, rec, open, in_time)
                   ) l
              JOIN dw.executions e ON e.id = l.execution_id
             WHERE l.ord = l.last_ord AND (l.rec ->> 'complete')::boolean AND l.open AND l.in_time
               AND NOT l.execution_id = ANY(COALESCE(v_ready_exec, '{}'))
               AND NOT EXISTS (SELECT 1 FROM dw.node_states n
                                WHERE n.execution_id = l.execution_id
                                  AND (n.status NOT IN ('Succeeded', 'Failed', 'Skipped', 'Cancelled')
                                       OR n.end_reason = 'unhandled_failure'))
              INTO v_end_ord, v_end_exec, v_end_job, v_end_worker, v_end_simple;
        END IF;

        IF v_end_exec IS NOT NULL THEN
            SELECT array_agg(t.id) INTO v_simple FROM unnest(v_end_exec, v_end_simple) AS t(id, simple) WHERE t.simple;
            IF v_simple IS NOT NULL THEN
                -- Their rows, events, queued wake-up jobs and letters, as dw.finish_execution_v1 ends a run;
                -- and, as it does, the runs that held a slot of their workflow's maxConcurrentExecutions
                -- (roots, all of them here, that had started), whose slots go to runs held back.
                WITH ended AS (
                    UPDATE dw.executions e
                       SET status = 'Succeeded', error = NULL, ended_at = now(),
                           lease_owner = NULL, lease_expires_at = NULL
                     WHERE e.id = ANY(v_simple)
                    RETURNING e.tenant_id, e.workflow_id, e.started_at
                ), wake_ups AS (
                    DELETE FROM procrastinate_jobs j
                     WHERE (j.args ->> 'execution_id') = ANY(v_simple::text[]) AND j.status = 'todo'
                ), event AS (
                    INSERT INTO dw.execution_events (execution_id, type, details)
                    SELECT t.id, 'execution_succeeded', jsonb_build_object('status', 'Succeeded')
                      FROM unnest(v_simple) AS t(id)
                ), letters AS (
                    UPDATE dw.dead_letters d SET closed_at = now(), close_reason = 'run_ended'
                     WHERE d.execution_id = ANY(v_simple) AND d.kind = 'job_failed'
                       AND d.redriven_at IS NULL AND d.closed_at IS NULL
                )
                SELECT array_agg(ended.tenant_id), array_agg(ended.workflow_id)
                  INTO v_slot_tenants, v_slot_workflows
                  FROM ended
                 WHERE ended.started_at IS NOT NULL
                   AND EXISTS (SELECT 1 FROM dw.workflows w
                                WHERE w.tenant_id = ended.tenant_id AND w.id = ended.workflow_id
                                  AND w.max_concurrent_executions IS NOT NULL);
                FOR v_i IN 1 .. COALESCE(cardinality(v_slot_tenants), 0) LOOP
                    PERFORM dw.hand_over_slot_v1(v_slot_tenants[v_i], v_slot_workflows[v_i]);
                END LOOP;
            END IF;
            FOR v_i IN 1 .. cardinality(v_end_exec) LOOP
                CONTINUE WHEN v_end_simple[v_i];
                PERFORM dw.finish_execution_v1(v_end_exec[v_i], 'Succeeded', NULL, 'execution_succeeded');
            END LOOP;
            -- Their jobs end with them (dw.end_run_job_v1): each if still its fetching worker's and doing.
            WITH deleted AS (
                DELETE FROM procrastinate_jobs p
                 USING unnest(v_end_exec, v_end_job, v_end_worker) AS j(execution_id, job_id, worker_id)
                 WHERE p.id = j.job_id AND p.status = 'doing' AND p.worker_id = j.worker_id
                   AND (p.args ->> 'execution_id') = j.execution_id::text
                RETURNING p.id
            )
            SELECT array_agg(j.job_id IS NOT NULL AND j.job_id IN (SELECT deleted.id FROM deleted) ORDER BY j.n)
              FROM unnest(v_end_job) WITH ORDINALITY AS j(job_id, n)
              INTO v_end_finished;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Rolled back whole: every record goes the record-by-record way below, where the one at
        -- fault fails alone with its own error (the others are written as they would have been).
        -- In the server's log, so that a set-based statement that always fails does not go unseen.
        RAISE LOG 'dw.record_attempts_v2: the set-based records were refused (%: %); the batch goes record by record',
            SQLSTATE, SQLERRM;
        f_ord := NULL; f_rec := NULL; f_exec := NULL;
        v_ready_ord := NULL; v_ready_exec := NULL; v_started_ord := NULL; v_started_exec := NULL;
        v_end_ord := NULL; v_end_exec := NULL;
    END;

    IF f_ord IS NOT NULL THEN
        -- The set-based records' answer, each as dw.record_attempt_v6 gives it: the nodes started, the
        -- nodes made Ready and not started, the run's end; 'recorded' for one that did none of these.
        RETURN QUERY
        -- Each row goes to the record that caused it (see above).
        WITH answer AS (
            SELECT s.ord, 1 AS part, s.position, s.node_id, 'Running'::text AS status, s.attempt,
                   NULL::boolean AS job_finished
              FROM unnest(v_started_ord, v_started_node, v_started_attempt, v_started_pos)
                   AS s(ord, node_id, attempt, position)
            UNION ALL
            SELECT r.ord, 2, r.position, r.node_id, 'Ready', NULL, NULL
              FROM unnest(v_ready_ord, v_ready_exec, v_ready_node, v_ready_pos) AS r(ord, execution_id, node_id, position)
             WHERE NOT EXISTS (SELECT 1 FROM unnest(v_started_exec, v_started_node) AS s(execution_id, node_id)
                                WHERE s.execution_id = r.execution_id AND s.node_id = r.node_id)
            UNION ALL
            SELECT d.ord, 3, NULL, NULL, 'Succeeded', NULL, d.job
              FROM unnest(v_end_ord, v_end_finished) AS d(ord, job)
        )
        SELECT l.ord, a.node_id, COALESCE(a.status, 'recorded'), a.attempt, a.job_finished,
               NULL::text, NULL::text, NULL::text, NULL::text
          FROM unnest(f_ord) AS l(ord) LEFT JOIN answer a ON a.ord = l.ord
         ORDER BY l.ord, a.part, a.position;
    END IF;

    -- Every other record, record by record; their ordinals mapped back to the batch's. (None when the
    -- whole batch went the set-based way, as most do.)
    IF f_ord IS NULL OR cardinality(f_ord) < jsonb_array_length(p_records) THEN
        SELECT jsonb_agg(x.e ORDER BY x.n), array_agg(x.n::integer ORDER BY x.n)
          INTO v_rest, v_rest_ord
          FROM jsonb_array_elements(p_records) WITH ORDINALITY AS x(e, n)
         WHERE NOT x.n::integer = ANY(COALESCE(f_ord, '{}'));
    END IF;
    IF v_rest IS NOT NULL THEN
        RETURN QUERY
        SELECT v_rest_ord[b.ordinal], b.node_id, b.status, b.attempt, b.job_finished,
               b.error_state, b.error_message, b.error_detail, b.error_constraint
          FROM dw.record_attempts_v1(v_rest) AS b;
    END IF;
END;
$$;

-- v5: kept for workers of the previous commit during a rolling upgrade (it finishes no job).
CREATE OR REPLACE FUNCTION dw.record_attempt_v5(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_action_type text,
    p_attempt_status text, p_parameters jsonb, p_outputs jsonb, p_error jsonb,
    p_start_time timestamptz, p_end_time timestamptz, p_worker text,
    p_outcome text, p_next_attempt_at timestamptz, p_fired boolean[], p_resource_links jsonb,
    p_interrupted boolean, p_start_limit integer, p_complete boolean
) RETURNS TABLE (node_id text, status text, attempt integer) LANGUAGE sql AS $$
    SELECT r.node_id, r.status, r.attempt FROM dw.record_attempt_v6(p_execution_id, p_token, p_node_id,
        p_attempt, p_action_type, p_attempt_status, p_parameters, p_outputs, p_error, p_start_time, p_end_time,
        p_worker, p_outcome, p_next_attempt_at, p_fired, p_resource_links, p_interrupted, p_start_limit,
        p_complete, NULL, NULL) r;
$$;

-- v4: kept for workers of the previous release during a rolling upgrade (it starts nothing and
-- ends nothing).
CREATE OR REPLACE FUNCTION dw.record_attempt_v4(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_action_type text,
    p_attempt_status text, p_parameters jsonb, p_outputs jsonb, p_error jsonb,
    p_start_time timestamptz, p_end_time timestamptz, p_worker text,
    p_outcome text, p_next_attempt_at timestamptz, p_fired boolean[], p_resource_links jsonb,
    p_interrupted boolean
) RETURNS TABLE (node_id text, status text) LANGUAGE sql AS $$
    SELECT r.node_id, r.status FROM dw.record_attempt_v6(p_execution_id, p_token, p_node_id, p_attempt,
        p_action_type, p_attempt_status, p_parameters, p_outputs, p_error, p_start_time, p_end_time, p_worker,
        p_outcome, p_next_attempt_at, p_fired, p_resource_links, p_interrupted, 0, false, NULL, NULL) r;
$$;


-- v3: kept for workers of the previous release during a rolling upgrade (it records no interruption).
CREATE OR REPLACE FUNCTION dw.record_attempt_v3(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_action_type text,
    p_attempt_status text, p_parameters jsonb, p_outputs jsonb, p_error jsonb,
    p_start_time timestamptz, p_end_time timestamptz, p_worker text,
    p_outcome text, p_next_attempt_at timestamptz, p_fired boolean[], p_resource_links jsonb
) RETURNS TABLE (node_id text, status text) LANGUAGE sql AS $$
    SELECT * FROM dw.record_attempt_v4(p_execution_id, p_token, p_node_id, p_attempt, p_action_type,
        p_attempt_status, p_parameters, p_outputs, p_error, p_start_time, p_end_time, p_worker,
        p_outcome, p_next_attempt_at, p_fired, p_resource_links, false);
$$;

-- A run whose cancel was requested and that ends otherwise than Cancelled (the cancel came too late,
-- dw.cancel_too_late_v1; or the run failed or timed out first) says so: a cancel_too_late event with
-- the status it ends with, written just before its end. Nothing for a run without a cancel request.
-- Its worker's end (dw.complete_execution_v2) and the sweeps that end a run nobody holds
-- (dw.time_out_overdue_v2, dw.recover_executions_v1 when it gives up) call it; they hold the row.
CREATE OR REPLACE FUNCTION dw.record_cancel_too_late_v1(p_execution_id uuid, p_status text) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    SELECT e.id, 'cancel_too_late', e.cancel_requested_by,
           jsonb_strip_nulls(jsonb_build_object('status', p_status, 'reason', e.cancel_reason,
                                                'requestedAt', e.cancel_requested_at))
      FROM dw.executions e
     WHERE e.id = p_execution_id AND e.cancel_requested_at IS NOT NULL AND p_status <> 'Cancelled';
$$;

-- The node_failed dead letter of a run that a node's unhandled failure ended: the node, with
-- p_error (the node's own error), for a human to redrive or let go. Its worker's end
-- (dw.complete_execution_v2) and dw.fail_decided_run_v1 file it.
CREATE OR REPLACE FUNCTION dw.file_node_failed_letter_v1(p_execution_id uuid, p_node_id text, p_error jsonb)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dw.dead_letters (kind, execution_id, node_id, payload, error, attempts)
    SELECT 'node_failed', p_execution_id, n.node_id,
           jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version,
                              'actionType', n.action_type, 'trigger', e.trigger),
           p_error, n.attempts
      FROM dw.node_states n JOIN dw.executions e ON e.id = n.execution_id
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id;
    -- A child whose parent was cancelled before it ended, or had ended with no letter open to
    -- supersede this one: nobody can act on it.
    PERFORM dw.close_late_child_letters_v1(p_execution_id);
END;
$$;

-- Ends the run: final status, error, times, event; nodes that never started become Skipped and
-- nodes that had (an attempt in flight, a wait, a retry's backoff) become Cancelled, so nothing is
-- left Pending.
-- p_dead_letter_node: the node whose unhandled failure ended the run; it becomes a node_failed
-- dead letter (with p_dead_letter_error, the node's own error) for a human to redrive or let go.
-- A run whose cancel was requested and that ends otherwise (the cancel came too late:
-- dw.cancel_too_late_v1, or as the run failed or timed out) says so in a cancel_too_late event
-- (dw.record_cancel_too_late_v1).
CREATE OR REPLACE FUNCTION dw.complete_execution_v2(
    p_execution_id uuid, p_token bigint, p_status text, p_error jsonb,
    p_dead_letter_node text, p_dead_letter_error jsonb
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    IF p_status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RAISE EXCEPTION 'not a final status: %', p_status USING ERRCODE = 'DW013';
    END IF;
    IF p_dead_letter_node IS NOT NULL AND p_status <> 'Failed' THEN
        RAISE EXCEPTION 'a dead-letter node for a % run', p_status USING ERRCODE = 'DW013';
    END IF;
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    -- A child that files a letter holds the rows of the runs above it from here, before it takes any
    -- letter's (the child, then its parent, as dw.child_ended_v1 takes them, then theirs; and before
    -- letters, as a redrive or an acknowledgement of a letter above takes that run's row before the
    -- letters of its tree): dw.close_late_child_letters_v1 reads whether the runs above have ended, or
    -- have a letter open, and an end or acknowledgement above in flight, which does not see this
    -- letter, left it open for good (the parent's; and, with only the parent's row taken, the root's
    -- over a grandchild: dw.lock_letter_ancestors_v1).
    IF p_dead_letter_node IS NOT NULL AND v_e.parent_execution_id IS NOT NULL THEN
        PERFORM dw.lock_letter_ancestors_v1(p_execution_id, false);
    END IF;
    IF v_e.cancel_requested_at IS NOT NULL AND p_status <> 'Cancelled' THEN
        PERFORM dw.record_cancel_too_late_v1(p_execution_id, p_status);
    END IF;
    PERFORM dw.finish_execution_v1(p_execution_id, p_status, p_error, 'execution_' || lower(p_status));
    IF p_dead_letter_node IS NOT NULL THEN
        PERFORM dw.file_node_failed_letter_v1(p_execution_id, p_dead_letter_node, p_dead_letter_error);
    END IF;
END;
$$;

-- v3 (over v2): a successful run's outputs (the definition's `outputs`, rendered by the worker) are
-- stored with its end.
CREATE OR REPLACE FUNCTION dw.complete_execution_v3(
    p_execution_id uuid, p_token bigint, p_status text, p_error jsonb,
    p_dead_letter_node text, p_dead_letter_error jsonb, p_outputs jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_outputs IS NOT NULL AND p_status <> 'Succeeded' THEN
        RAISE EXCEPTION 'outputs for a % run', p_status USING ERRCODE = 'DW013';
    END IF;
    IF p_outputs IS NOT NULL THEN
        -- Before the end itself: a child's end hands its outputs to its parent's wait.
        PERFORM dw.check_lease_v1(p_execution_id, p_token);
        UPDATE dw.executions e SET outputs = p_outputs WHERE e.id = p_execution_id;
    END IF;
    PERFORM dw.complete_execution_v2(p_execution_id, p_token, p_status, p_error, p_dead_letter_node,
                                     p_dead_letter_error);
END;
$$;

-- v4 (over v3): p_job_id and p_job_worker_id, the Procrastinate job the worker runs the run under
-- and the Procrastinate worker that fetched it: the job ends in the same transaction as the run
-- (dw.end_run_job_v1, as dw.record_attempt_v6 ends it for a run its last record ends). Returns
-- whether it ended it; the worker then does not finish it again. One transaction fewer for a run
-- with outputs, and for one that fails, is cancelled or times out.
CREATE OR REPLACE FUNCTION dw.complete_execution_v4(
    p_execution_id uuid, p_token bigint, p_status text, p_error jsonb,
    p_dead_letter_node text, p_dead_letter_error jsonb, p_outputs jsonb, p_job_id bigint, p_job_worker_id bigint
) RETURNS boolean LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM dw.complete_execution_v3(p_execution_id, p_token, p_status, p_error, p_dead_letter_node,
                                     p_dead_letter_error, p_outputs);
    RETURN dw.end_run_job_v1(p_job_id, p_job_worker_id, p_execution_id);
END;
$$;

-- Unfenced finish, for callers that already hold the row (completion, recovery giving up).
-- A child's end resolves its parent's wait (dw.child_ended_v1); a parent's end queues the
-- cancellation of the children it can no longer wait for (dw.children_to_cancel_v1).
CREATE OR REPLACE FUNCTION dw.finish_execution_v1(
    p_execution_id uuid, p_status text, p_error jsonb, p_event text
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_parent uuid;
    v_queue text;
    v_has_children boolean;
    v_tenant text;
    v_workflow_id text;
    v_frees_slot boolean;
BEGIN
    -- Nodes not yet final and waits not yet recorded are what the next two statements end. A run
    -- that ends because every node has (most runs) has neither: two index probes instead.
    IF EXISTS (SELECT 1 FROM dw.node_states n
                WHERE n.execution_id = p_execution_id AND n.status IN ('Pending', 'Ready', 'Running', 'Waiting'))
       OR EXISTS (SELECT 1 FROM dw.waits w
                   WHERE w.execution_id = p_execution_id AND w.state <> 'withdrawn' AND w.recorded_at IS NULL) THEN
        -- Attempts in flight (running, or waiting on a wait) are recorded Cancelled: the attempt row
        -- says that the run's end stopped them, whatever they may already have done. It started when
        -- its wait was made, or at its node_started event: node_states.started_at is the node's
        -- first attempt's start (a review: a redriven node's second attempt, timed out after 3 s,
        -- said it ran 9 s, from the first attempt's start).
        INSERT INTO dw.action_executions (execution_id, node_id, action_type, attempt, status, parameters, error,
                                          start_time, end_time)
        SELECT n.execution_id, n.node_id, n.action_type, n.attempts, 'Cancelled', w.parameters,
               jsonb_build_object('code', 'run_ended',
                                  'message', format('the run ended (%s) while this attempt was in flight', p_status)),
               COALESCE(w.created_at, (
                   SELECT ev.at FROM dw.execution_events ev
                    WHERE ev.execution_id = n.execution_id AND ev.node_id = n.node_id
                      AND ev.type = 'node_started' AND ev.details ->> 'attempt' = n.attempts::text
                    ORDER BY ev.id DESC LIMIT 1), n.started_at, now()), now()
          FROM dw.node_states n
          LEFT JOIN dw.waits w ON w.execution_id = n.execution_id AND w.node_id = n.node_id
                              AND w.attempt = n.attempts AND w.recorded_at IS NULL AND w.state <> 'withdrawn'
         WHERE n.execution_id = p_execution_id AND n.attempts > 0
           AND (n.status = 'Running' OR (n.status = 'Waiting' AND w.id IS NOT NULL))
        ON CONFLICT ON CONSTRAINT action_executions_attempt_key DO NOTHING;

        -- Running and Waiting nodes had started: Cancelled. Waiting is a wait or a retry's backoff
        -- (the node's last attempt failed and the next was due later): it keeps its attempts and the
        -- last one's error; end_reason and its node_cancelled event say that the run's end stopped
        -- it. Only Pending and Ready nodes, which never started, are Skipped.
        WITH ended AS (
            UPDATE dw.node_states n
               SET status = CASE WHEN n.status IN ('Running', 'Waiting') THEN 'Cancelled' ELSE 'Skipped' END,
                   ended_at = now(), next_attempt_at = NULL, end_reason = 'run_ended'
             WHERE n.execution_id = p_execution_id AND n.status IN ('Pending', 'Ready', 'Running', 'Waiting')
            RETURNING n.node_id, n.status
        ), withdrawn AS (
            -- Open waits, and waits resolved whose outcome the run's end came before: their node is
            -- Cancelled, and a redrive starts it again with a new wait. A resolved one keeps when and by
            -- what it was resolved (an approval's decision time, the signal it took): the run's end
            -- overwrote them, so an approved approval said it was decided when the run was cancelled
            -- (its wait_withdrawn event dates the withdrawal).
            UPDATE dw.waits w SET state = 'withdrawn', consumed_at = COALESCE(w.consumed_at, now()),
                                  consumed_by = COALESCE(w.consumed_by, 'run_ended')
             WHERE w.execution_id = p_execution_id AND w.state <> 'withdrawn' AND w.recorded_at IS NULL
            RETURNING w.id, w.node_id, w.kind
        ), released_signals AS (
            -- A signal such a wait took goes back to the inbox, for that new wait: it is not lost.
            UPDATE dw.signals s SET consumed_at = NULL, wait_id = NULL
              FROM withdrawn
             WHERE s.execution_id = p_execution_id AND s.wait_id = withdrawn.id
        ), withdrawn_events AS (
            INSERT INTO dw.execution_events (execution_id, node_id, type, details)
            SELECT p_execution_id, withdrawn.node_id, 'wait_withdrawn',
                   jsonb_build_object('waitId', withdrawn.id, 'kind', withdrawn.kind, 'runStatus', p_status)
              FROM withdrawn
        )
        INSERT INTO dw.execution_events (execution_id, node_id, type, details)
        SELECT p_execution_id, ended.node_id,
               CASE WHEN ended.status = 'Cancelled' THEN 'node_cancelled' ELSE 'node_skipped' END,
               jsonb_build_object('reason', 'run_ended', 'runStatus', p_status)
          FROM ended;
    END IF;

    -- forEach items in flight are recorded Cancelled like the node's attempt; those that never ran
    -- are Cancelled too (behind one probe: most runs have none). The probe is ordered by the items'
    -- key, so that its plan is the key's index: as an EXISTS, its generic plan scanned the whole
    -- table when one forEach's items filled it (the statistics say one execution_id holds every
    -- row): each of a forEach's 9,999 children read its parent's items as it ended, 1.3 ms each
    -- (bench/foreach_children.py, PostgreSQL 15, pg_stat_statements).
    PERFORM 1 FROM dw.foreach_items i
      WHERE i.execution_id = p_execution_id AND i.status IN ('Pending', 'Running', 'Waiting')
      ORDER BY i.execution_id, i.node_id, i.item_index LIMIT 1;
    IF FOUND THEN
        INSERT INTO dw.action_executions (execution_id, node_id, item_index, action_type, attempt, status, error,
                                          start_time, end_time)
        SELECT i.execution_id, i.node_id, i.item_index, i.action_type, i.attempts, 'Cancelled',
               jsonb_build_object('code', 'run_ended',
                                  'message', format('the run ended (%s) while this attempt was in flight', p_status)),
               COALESCE(i.started_at, now()), now()
          FROM dw.foreach_items i
         WHERE i.execution_id = p_execution_id AND i.status = 'Running'
        ON CONFLICT ON CONSTRAINT action_executions_attempt_key DO NOTHING;
        UPDATE dw.foreach_items i SET status = 'Cancelled', ended_at = now(), next_attempt_at = NULL
         WHERE i.execution_id = p_execution_id AND i.status IN ('Pending', 'Running', 'Waiting');
    END IF;

    -- The run's row, its event, its queued wake-up jobs and its closed letters in one statement (each
    -- statement of a procedure costs its executor's start and end, the largest part of a short
    -- run's PostgreSQL time); the parts touch different tables, so the order does not matter.
    -- An ended run is neither suspended nor being suspended: a run cancelled, or timed out, while
    -- Suspended kept suspendedAt (a client reading it took the run for suspended); its events say
    -- that it was.
    WITH ended AS (
        UPDATE dw.executions e
           SET status = p_status, error = p_error, ended_at = now(),
               lease_owner = NULL, lease_expires_at = NULL,
               suspended_at = NULL, suspend_requested_at = NULL, suspend_requested_by = NULL
         WHERE e.id = p_execution_id
        RETURNING e.parent_execution_id, e.queue, e.tenant_id, e.workflow_id, e.depth, e.started_at
    ), wake_ups AS (
        -- Wake-up jobs still queued for it have nothing left to do.
        DELETE FROM procrastinate_jobs j
         WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo'
    ), event AS (
        -- A suspension asked and not yet in effect is withdrawn with the run's end (the row above
        -- clears it), and the event says when it was asked: it was dropped without a word (a
        -- review). This statement reads the row as it was before the UPDATE beside it (one snapshot).
        INSERT INTO dw.execution_events (execution_id, type, details)
        SELECT p_execution_id, p_event,
               jsonb_strip_nulls(jsonb_build_object('status', p_status, 'error', p_error, 'withdrewSuspension',
                                                    CASE WHEN o.suspended_at IS NULL THEN o.suspend_requested_at END))
          FROM dw.executions o WHERE o.id = p_execution_id
    ), letters AS (
        -- A job of this run raised earlier and recovery resumed the run: now that it has ended, that
        -- letter needs nobody.
        UPDATE dw.dead_letters d SET closed_at = now(), close_reason = 'run_ended'
         WHERE d.execution_id = p_execution_id AND d.kind = 'job_failed'
           AND d.redriven_at IS NULL AND d.closed_at IS NULL
    )
    SELECT ended.parent_execution_id, ended.queue,
           -- Most runs have no children: one index probe says so (dw.queue_cancel_children_v1
           -- asks the fuller question). Ordered by executions_parent_created_idx, so that it is
           -- that index's probe: as an EXISTS, its generic plan scanned the table when one
           -- parent's children filled it (a forEach's 9,999: each child's end read them all).
           (SELECT true FROM dw.executions c WHERE c.parent_execution_id = p_execution_id
             ORDER BY c.parent_execution_id, c.created_at, c.id LIMIT 1) IS NOT NULL,
           ended.tenant_id, ended.workflow_id,
           -- A root run that had started held a slot of its workflow's maxConcurrentExecutions
           -- (dw.admit_root_run_v1 counts those): it frees it. Most workflows have no such limit:
           -- one probe of the workflow's row, here rather than in a statement of its own.
           ended.depth = 0 AND ended.started_at IS NOT NULL
           AND EXISTS (SELECT 1 FROM dw.workflows w
                        WHERE w.tenant_id = ended.tenant_id AND w.id = ended.workflow_id
                          AND w.max_concurrent_executions IS NOT NULL)
      INTO v_parent, v_queue, v_has_children, v_tenant, v_workflow_id, v_frees_slot
      FROM ended;

    IF v_parent IS NOT NULL THEN
        PERFORM dw.child_ended_v1(p_execution_id, v_parent);
    END IF;
    IF v_has_children THEN
        PERFORM dw.queue_cancel_children_v1(p_execution_id, v_queue);
        PERFORM dw.close_handled_child_letters_v1(p_execution_id);
    END IF;
    IF v_frees_slot THEN
        PERFORM dw.hand_over_slot_v1(v_tenant, v_workflow_id);
    END IF;
    -- What its Succeeded nodes did is undone by their compensations, when its plan says so (migration
    -- 0071; a plan without compensations stops at its first look).
    IF p_status <> 'Succeeded' THEN
        PERFORM dw.queue_compensations_v1(p_execution_id, p_status);
    END IF;
    -- A root run past its deadline needs a human, as a failed one does: its letter redrives it
    -- (migration 0048); so does a detached child, whose end nobody takes. An attached child's
    -- timeout is its parent's to handle (child_timed_out fails the parent's node, whose letter runs
    -- it again).
    IF p_status = 'TimedOut' AND (v_parent IS NULL OR dw.is_detached_child_v1(p_execution_id)) THEN
        INSERT INTO dw.dead_letters (kind, execution_id, payload, error, attempts)
        SELECT 'timed_out', e.id,
               jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version, 'trigger', e.trigger,
                                  'deadlineAt', e.deadline_at),
               p_error, 1
          FROM dw.executions e WHERE e.id = p_execution_id;
    END IF;
END;
$$;

-- Gives the lease back without finishing (a worker shutting down) and re-queues the run at once,
-- so another worker resumes it from its checkpoints. Like every procedure that queues a run job
-- again, on the run's own queue (executions.queue: the one it was started on, a child its
-- parent's), not on the caller's: p_queue is not read any more, and stays for the callers of
-- earlier releases.
CREATE OR REPLACE FUNCTION dw.release_execution_v1(
    p_execution_id uuid, p_token bigint, p_queue text, p_reason text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
BEGIN
    UPDATE dw.executions e SET lease_owner = NULL, lease_expires_at = NULL
     WHERE e.id = p_execution_id AND e.lease_token = p_token AND e.lease_owner IS NOT NULL
       AND e.status = 'Running'
    RETURNING e.queue INTO v_queue;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO dw.execution_events (execution_id, type, details)
    VALUES (p_execution_id, 'execution_released', jsonb_build_object('reason', p_reason));
    PERFORM dw.defer_run_job_v1(p_execution_id, v_queue, NULL);
    RETURN true;
END;
$$;

-- Finds runs whose worker vanished and re-queues them (DBOS-style: recovery enqueues, the lease
-- picks one runner). A Running execution whose lease expired lost its worker; a Pending one with
-- no queued or live job lost its job. Past p_max_recoveries the run fails with worker_lost, unless
-- it ends as a worker's acquire would have ended it: Cancelled when its cancel was requested in time
-- (action `cancelled`), Failed node_failed with the node's dead letter when a node failed unhandled
-- before its worker died (dw.fail_decided_run_v1).
-- SKIP LOCKED lets every worker run this concurrently without double work.
CREATE OR REPLACE FUNCTION dw.recover_executions_v1(
    p_max_recoveries integer, p_stalled_worker_seconds double precision, p_queue text
) RETURNS TABLE (execution_id uuid, action text) LANGUAGE plpgsql AS $$
DECLARE
    v_e record;
    v_in_flight jsonb;
BEGIN
    -- A worker killed between completing its run and finishing its job leaves the job 'doing'
    -- forever: the run has ended, so the job is done (deleted, as Procrastinate deletes the jobs
    -- that succeed). Only jobs whose worker is gone or silent: a live worker finishes its own.
    RETURN QUERY
    WITH orphans AS (
        SELECT j.id, e.id AS execution_id
          FROM procrastinate_jobs j
          -- Cast the job's text, not the key: the executions primary key stays usable.
          JOIN dw.executions e ON e.id = (j.args ->> 'execution_id')::uuid
          LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
         WHERE j.status = 'doing' AND j.task_name = 'dw.run_execution'
           AND e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
           AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => p_stalled_worker_seconds))
         LIMIT 500
         FOR UPDATE OF j SKIP LOCKED
    ), deleted AS (
        DELETE FROM procrastinate_jobs j USING orphans o WHERE j.id = o.id RETURNING o.execution_id
    )
    SELECT d.execution_id, 'job_reconciled'::text FROM deleted d;

    -- A cancel cascade (dw.cancel_children, queued by a parent's end) or a schedule's cancel of its
    -- runs (dw.cancel_overlapped, queued by a tick under overlap cancelOther) whose worker is gone or
    -- silent stays 'doing' for good: Procrastinate does not retry a stalled job by itself, and the
    -- runs would go on. It is queued again (as Procrastinate retries a job: status todo, one attempt
    -- more); the tasks are idempotent, they cancel the runs still unfinished. The parent's id is
    -- returned, action cascade_requeued; or the first run's, action overlap_cancel_requeued.
    RETURN QUERY
    WITH stalled AS (
        SELECT j.id, j.task_name,
               COALESCE(j.args ->> 'parent_execution_id', j.args -> 'execution_ids' ->> 0, j.args ->> 'run_id') AS run
          FROM procrastinate_jobs j
          LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
         WHERE j.status = 'doing' AND j.task_name IN ('dw.cancel_children', 'dw.cancel_overlapped', 'dw.compensate')
           AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => p_stalled_worker_seconds))
         LIMIT 500
         FOR UPDATE OF j SKIP LOCKED
    ), requeued AS (
        UPDATE procrastinate_jobs j
           SET status = 'todo', worker_id = NULL, attempts = j.attempts + 1, scheduled_at = NULL
          FROM stalled s
         WHERE j.id = s.id
        RETURNING s.run, s.task_name
    )
    SELECT r.run::uuid,
           CASE r.task_name WHEN 'dw.cancel_children' THEN 'cascade_requeued'
                            WHEN 'dw.compensate' THEN 'compensation_requeued'
                            ELSE 'overlap_cancel_requeued' END
      FROM requeued r;

    -- A run whose compensation is under way with no dw.compensate job queued or running (its job
    -- failed for good, or was deleted by hand) gets one: the steps left would wait for ever. Its
    -- first job is queued with the run's end, so only runs that ended a while ago are looked at.
    RETURN QUERY
    WITH lost AS (
        SELECT e.id FROM dw.executions e
         WHERE e.compensation_status = 'Compensating'
           AND e.ended_at < now() - make_interval(secs => p_stalled_worker_seconds)
           AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                            WHERE j.task_name = 'dw.compensate' AND (j.args ->> 'run_id') = e.id::text
                              AND j.status IN ('todo', 'doing'))
           -- Nor one whose step waits for a child's end or its compensation under way (those queue
           -- its job).
           AND NOT EXISTS (SELECT 1 FROM dw.compensations c
                             JOIN dw.executions k ON k.id = c.child_execution_id
                            WHERE c.execution_id = e.id AND c.status = 'Waiting'
                              AND (k.compensation_status = 'Compensating'
                                   OR k.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')))
         ORDER BY e.ended_at
         LIMIT 100
         FOR NO KEY UPDATE OF e SKIP LOCKED
    )
    SELECT l.id, 'compensation_requeued'::text FROM lost l
     WHERE dw.defer_compensation_job_v1(l.id, NULL) IS NOT NULL;

    FOR v_e IN
        SELECT e.id, e.status, e.recovery_count, e.lease_owner, e.parent_execution_id, e.queue,
               e.cancel_requested_at
          FROM dw.executions e
         WHERE ((e.status = 'Running' AND (e.lease_expires_at IS NULL OR e.lease_expires_at < now()))
                OR (e.status = 'Pending'
                    AND e.created_at < now() - make_interval(secs => p_stalled_worker_seconds)
                    -- A throttled run has no job until its turn (dw.park_throttled_run_v1): only
                    -- one whose turn has passed (its wake-up job may be lost).
                    AND (e.wake_at IS NULL
                         OR e.wake_at < now() - make_interval(secs => p_stalled_worker_seconds)))
                -- A parked run whose wake-up time has passed (its job may be lost). One that waits
                -- only for signals or approvals without a timeout (wake_at NULL) has no job,
                -- rightly: their arrival queues one.
                OR (e.status = 'Waiting'
                    AND e.wake_at < now() - make_interval(secs => p_stalled_worker_seconds)))
           -- Covered: a queued job (a parked run's wake-up included); or a job that a live worker
           -- (recent heartbeat) holds, while nobody holds the lease (it is about to acquire). A
           -- Running run whose lease expired is not covered by its worker: the lease is the
           -- heartbeat that matters, and it stopped.
           AND NOT EXISTS (
               SELECT 1 FROM procrastinate_jobs j
                 LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
                WHERE (j.args ->> 'execution_id') = e.id::text AND j.status IN ('todo', 'doing')
                  AND (j.status = 'todo'
                       OR (e.lease_owner IS NULL AND w.id IS NOT NULL
                           AND w.last_heartbeat > now() - make_interval(secs => p_stalled_worker_seconds))))
         ORDER BY e.created_at
         LIMIT 500
         FOR NO KEY UPDATE OF e SKIP LOCKED
    LOOP
        -- The dead worker's job goes, so that it does not stay 'doing' forever: deleted, as the
        -- orphans above are (the run goes on under a new job, or ends here). It was marked 'failed',
        -- which read as a task failure for runs that then succeeded, and Procrastinate's failed
        -- rows are never pruned. A plain conditional delete, not procrastinate_finish_job_v1, which
        -- raises if the job finished meanwhile.
        DELETE FROM procrastinate_jobs j
         WHERE (j.args ->> 'execution_id') = v_e.id::text AND j.status = 'doing';

        IF v_e.recovery_count >= p_max_recoveries THEN
            -- A child's end locks its parent. Not waiting for it here, where other runs' rows are
            -- held (two sweeps could wait for each other): a parent locked now is tried next time.
            -- The runs above it too, whose end or acknowledgement closes its letter (dw.lock_letter_ancestors_v1).
            CONTINUE WHEN NOT dw.lock_letter_ancestors_v1(v_e.id, true);
            execution_id := v_e.id;
            -- It ends as a worker's acquire would have ended it: Cancelled when its cancel was
            -- requested in time (its worker died before taking it in; dw.end_cancelled_in_time_v1),
            -- Failed as its worker would have when a node failed unhandled before that worker died.
            IF v_e.cancel_requested_at IS NOT NULL AND dw.end_cancelled_in_time_v1(v_e.id) THEN
                action := 'cancelled';
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF dw.fail_decided_run_v1(v_e.id) THEN
                action := 'failed';
                RETURN NEXT;
                CONTINUE;
            END IF;
            -- Say what was running each time: an attempt that keeps killing its worker (a crash in
            -- an action, memory exhaustion) is named here, with how often it was interrupted.
            -- startedAt: this attempt's start (its node_started event), not the node's first.
            SELECT jsonb_agg(jsonb_build_object('nodeId', n.node_id, 'actionType', n.action_type,
                                                'attempt', n.attempts, 'startedAt', COALESCE((
                       SELECT ev.at FROM dw.execution_events ev
                        WHERE ev.execution_id = n.execution_id AND ev.node_id = n.node_id
                          AND ev.type = 'node_started' AND ev.details ->> 'attempt' = n.attempts::text
                        ORDER BY ev.id DESC LIMIT 1), n.started_at),
                                                'interruptedAttempts', (
                       SELECT count(*) FROM dw.action_executions a
                        WHERE a.execution_id = n.execution_id AND a.node_id = n.node_id
                          AND a.error ->> 'code' = 'attempt_interrupted')) ORDER BY n.position)
              INTO v_in_flight
              FROM dw.node_states n WHERE n.execution_id = v_e.id AND n.status = 'Running';
            IF v_e.cancel_requested_at IS NOT NULL THEN
                -- A cancel that came too late (every node had ended).
                PERFORM dw.record_cancel_too_late_v1(v_e.id, 'Failed');
            END IF;
            PERFORM dw.finish_execution_v1(v_e.id, 'Failed',
                jsonb_strip_nulls(jsonb_build_object(
                    'code', 'worker_lost',
                    'message', format('the run lost its worker %s%s',
                                      CASE v_e.recovery_count WHEN 0 THEN 'once'
                                           ELSE (v_e.recovery_count + 1) || ' times' END,
                                      CASE WHEN v_in_flight IS NULL THEN ''
                                           ELSE CASE v_e.recovery_count WHEN 0 THEN '; in flight: '
                                                     ELSE '; in flight each time: ' END || (
                                               SELECT string_agg(format('node %s attempt %s (%s)', f ->> 'nodeId',
                                                                        f ->> 'attempt', f ->> 'actionType'), ', ')
                                                 FROM jsonb_array_elements(v_in_flight) f) END),
                    'inFlight', v_in_flight)),
                'execution_failed');
            INSERT INTO dw.dead_letters (kind, execution_id, payload, error, attempts)
            SELECT 'worker_lost', e.id,
                   jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version, 'trigger', e.trigger),
                   e.error, v_e.recovery_count + 1
              FROM dw.executions e WHERE e.id = v_e.id;
            PERFORM dw.close_late_child_letters_v1(v_e.id);
            action := 'failed';
            RETURN NEXT;
            CONTINUE;
        END IF;

        UPDATE dw.executions e SET recovery_count = e.recovery_count + 1, lease_owner = NULL,
                                   lease_expires_at = NULL
         WHERE e.id = v_e.id;
        INSERT INTO dw.execution_events (execution_id, type, details)
        VALUES (v_e.id, 'execution_recovered',
                jsonb_build_object('previousOwner', v_e.lease_owner, 'previousStatus', v_e.status,
                                   'recovery', v_e.recovery_count + 1));
        -- On the run's own queue: the worker recovering it may read another.
        PERFORM dw.defer_run_job_v1(v_e.id, v_e.queue, NULL);
        execution_id := v_e.id; action := 'requeued';
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Records a Procrastinate job that raised (the worker calls this before re-raising).
-- A job of a run that has already ended (its completion committed, but the worker lost the answer)
-- needs nobody: its letter is filed closed, as finish_execution_v1 closes the earlier ones.
CREATE OR REPLACE FUNCTION dw.record_job_failure_v1(
    p_job_id bigint, p_execution_id uuid, p_payload jsonb, p_error jsonb, p_attempts integer
) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO dw.dead_letters (kind, execution_id, job_id, payload, error, attempts, closed_at, close_reason)
    SELECT 'job_failed', e.id, p_job_id, p_payload, p_error, p_attempts,
           CASE WHEN e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN now() END,
           CASE WHEN e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN 'run_ended' END
      FROM (SELECT 1) one LEFT JOIN dw.executions e ON e.id = p_execution_id
    RETURNING id;
$$;

-- Re-runs the failed part of a dead-lettered run: the failed node gets a fresh retry budget, nodes
-- that the run's end skipped or cancelled get their place back (from their join counters), and a
-- run job is queued. Succeeded nodes keep their outputs and never run again. A cancel or suspension
-- still requested of the failed run is withdrawn (the execution_redriven event names it). A letter
-- is redriven at most once (DW005); a run that is no longer Failed has nothing to redrive (DW005);
-- nor a child whose parent has taken its end (DW005, dw.child_redrive_refusal_v1), or whose parent
-- was cancelled (DW005).
CREATE OR REPLACE FUNCTION dw.redrive_dead_letter_v1(p_id bigint, p_principal text, p_queue text)
    RETURNS TABLE (dead_letter_id bigint, execution_id uuid, action text) LANGUAGE plpgsql AS $$
DECLARE
    v_d dw.dead_letters%ROWTYPE;
    v_e dw.executions%ROWTYPE;
    v_plan jsonb;
    v_refusal text;
    v_ended text;
BEGIN
    -- The run first, then its letter: a run's end locks the run, then closes its open job_failed
    -- letters (dw.finish_execution_v1, dw.complete_execution_v4). The other way round, a redrive and
    -- the run's end coming at once deadlocked, and PostgreSQL aborted one of them. A letter's run
    -- never changes, so it is read unlocked to find the run.
    PERFORM 1 FROM dw.executions e
     WHERE e.id = (SELECT d.execution_id FROM dw.dead_letters d WHERE d.id = p_id)
       FOR NO KEY UPDATE;
    SELECT * INTO v_d FROM dw.dead_letters d WHERE d.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % not found', p_id USING ERRCODE = 'DW006';
    END IF;
    IF v_d.redriven_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already redriven at % by %', p_id, dw.iso_time_v1(v_d.redriven_at),
            COALESCE(v_d.redriven_by, 'an anonymous caller') USING ERRCODE = 'DW005';
    END IF;
    IF v_d.closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was closed at % (%)', p_id, dw.iso_time_v1(v_d.closed_at), v_d.close_reason
            USING ERRCODE = 'DW005';
    END IF;
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = v_d.execution_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % has no execution to redrive', p_id USING ERRCODE = 'DW005';
    END IF;
    IF v_d.kind = 'compensation_failed' THEN
        -- The run stays as it ended: only its failed compensation steps run again.
        RETURN QUERY SELECT * FROM dw.redrive_compensation_v1(p_id, v_e.id, p_principal);
        RETURN;
    END IF;

    IF v_d.kind = 'job_failed' THEN
        IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
            RAISE EXCEPTION 'execution % already ended (%); redrive its node_failed or worker_lost letter instead',
                v_e.id, v_e.status USING ERRCODE = 'DW005';
        END IF;
        PERFORM dw.defer_run_job_v1(v_e.id, v_e.queue, NULL);
    ELSE
        -- A timed_out letter's run ended TimedOut; the others' Failed.
        v_ended := CASE v_d.kind WHEN 'timed_out' THEN 'TimedOut' ELSE 'Failed' END;
        IF v_e.status <> v_ended THEN
            RAISE EXCEPTION 'execution % is %, not %: nothing to redrive', v_e.id, v_e.status, v_ended
                USING ERRCODE = 'DW005';
        END IF;
        v_refusal := dw.child_redrive_refusal_v1(v_e);
        IF v_refusal IS NOT NULL THEN
            RAISE EXCEPTION '%', v_refusal USING ERRCODE = 'DW005';
        END IF;
        -- What the run had done was undone (or is being undone) by its compensations (migration
        -- 0071): running its failed nodes again would build on effects that are gone.
        IF v_e.compensation_status IS NOT NULL THEN
            RAISE EXCEPTION 'execution %''s compensation ran (%): what its nodes did was undone, so a redrive would '
                'build on effects that are gone; acknowledge the letter, or start a new run', v_e.id,
                v_e.compensation_status USING ERRCODE = 'DW005';
        END IF;
        -- A child of a cancelled parent (a detached one: an attached child's end was taken above)
        -- would be cancelled by the first worker to take it, its node never run again, and its
        -- letter redriven for nothing (a review: 200 requeued, then Cancelled, the letter spent).
        IF v_e.parent_execution_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM dw.executions p WHERE p.id = v_e.parent_execution_id AND p.status = 'Cancelled') THEN
            RAISE EXCEPTION 'execution % is a child of execution %, which was cancelled: a cancelled parent''s '
                'children are cancelled, so a redrive would run nothing; acknowledge the letter, or start a new run',
                v_e.id, v_e.parent_execution_id USING ERRCODE = 'DW005';
        END IF;
        UPDATE dw.node_states n
           SET status = CASE
                   WHEN n.status IN ('Failed', 'Cancelled') THEN 'Ready'
                   WHEN n.decided_incoming = n.expected_incoming AND (n.expected_incoming = 0 OR n.satisfied_incoming > 0)
                       THEN 'Ready'
                   ELSE 'Pending' END,
               -- Failed and interrupted nodes get a fresh retry budget, and a fresh interruption bound.
               attempt_base = CASE WHEN n.status IN ('Failed', 'Cancelled') THEN n.attempts ELSE n.attempt_base END,
               interruptions = CASE WHEN n.status IN ('Failed', 'Cancelled') THEN 0 ELSE n.interruptions END,
               error = NULL, ended_at = NULL, end_reason = NULL, next_attempt_at = NULL
         WHERE n.execution_id = v_e.id
           AND ((n.node_id = v_d.node_id AND n.status = 'Failed')
                OR (n.status = 'Failed' AND n.end_reason = 'unhandled_failure')
                OR n.end_reason = 'run_ended');

        -- The run's tenant's plan: a session that sees every tenant (an operator's psql, the
        -- maintenance role) read another tenant's workflow of the same id and version, and its deadline.
        SELECT p.plan INTO v_plan
          FROM dw.workflow_plans p
         WHERE p.tenant_id = v_e.tenant_id AND p.workflow_id = v_e.workflow_id AND p.version = v_e.workflow_version;
        UPDATE dw.executions e
           SET status = 'Pending', ended_at = NULL, error = NULL, recovery_count = 0,
               lease_owner = NULL, lease_expires_at = NULL,
               -- A fresh deadline, as at its start (a child's own, or the default: not its
               -- parent's, which may have passed; the parent is not redriven with it).
               deadline_at = dw.deadline_for_v1(v_plan, NULL),
               -- A cancel or suspension asked of the run that failed (one that came too late, or
               -- was pending when it failed) was about that run: the redriven one would otherwise
               -- be cancelled or suspended by it at its first acquire. The event below says so.
               cancel_requested_at = NULL, cancel_requested_by = NULL, cancel_reason = NULL,
               suspend_requested_at = NULL, suspend_requested_by = NULL,
               -- A start time its workflow's rateLimitPerMinute promised the run that ended while
               -- held back (timed out) was given back then, and promised to the next run held back:
               -- it is held back anew (dw.admit_root_run_v1), not on the old time beside that run's.
               rate_slot_at = NULL, rate_first_slot_at = NULL
         WHERE e.id = v_e.id;
        PERFORM dw.defer_run_job_v1(v_e.id, v_e.queue, NULL);
    END IF;

    UPDATE dw.dead_letters d SET redriven_at = now(), redriven_by = p_principal WHERE d.id = p_id;
    IF v_d.kind <> 'job_failed' THEN
        -- The letters of the children (and theirs) whose end this run took: its redriven nodes start
        -- children of their own, and those letters could never be redriven (a 409 naming this
        -- run's letter). Closed as superseded: they stayed open, and retention kept the tree. Not in
        -- a detached child's tree, as an acknowledgement and a run's end leave it: its letter, still
        -- open, supersedes those beneath it (this redrive closed them, saying it had, while the
        -- detached child's letter stayed open; and it and the detached child's own redrive or
        -- acknowledgement locked the same letters, each in its plan's order).
        WITH RECURSIVE tree AS (
            SELECT c.* FROM dw.executions c
             WHERE c.parent_execution_id = v_e.id AND NOT dw.is_detached_child_v1(c.id)
            UNION ALL
            SELECT c.* FROM dw.executions c JOIN tree t ON c.parent_execution_id = t.id
             WHERE NOT dw.is_detached_child_v1(c.id)
        )
        UPDATE dw.dead_letters d
           SET closed_at = now(), closed_by = p_principal, close_reason = 'superseded',
               close_note = format('execution %s was redriven (dead letter %s)', v_e.id, p_id)
          FROM tree t
         -- Not a compensation_failed letter: an effect of that run was not undone, which no redrive,
         -- acknowledgement or end of a run above it undoes (a review: they closed it as superseded).
         WHERE d.execution_id = t.id AND d.kind NOT IN ('job_failed', 'compensation_failed')
           AND d.redriven_at IS NULL AND d.closed_at IS NULL
           AND dw.child_redrive_refusal_v1(t::dw.executions) IS NOT NULL;
    END IF;
    INSERT INTO dw.execution_events (execution_id, node_id, type, principal, details)
    VALUES (v_e.id, v_d.node_id, 'execution_redriven', p_principal,
            jsonb_build_object('deadLetterId', p_id, 'kind', v_d.kind)
            || CASE WHEN v_d.kind <> 'job_failed' AND v_e.cancel_requested_at IS NOT NULL
                    THEN jsonb_build_object('withdrewCancel', v_e.cancel_requested_at) ELSE '{}'::jsonb END
            || CASE WHEN v_d.kind <> 'job_failed' AND v_e.suspend_requested_at IS NOT NULL
                    THEN jsonb_build_object('withdrewSuspension', v_e.suspend_requested_at) ELSE '{}'::jsonb END);
    RETURN QUERY SELECT p_id, v_e.id, 'requeued'::text;
END;
$$;

-- An event a worker records outside an attempt (a condition error), fenced like every worker write.
CREATE OR REPLACE FUNCTION dw.record_event_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_type text, p_details jsonb
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, p_type, COALESCE(p_details, '{}'::jsonb));
END;
$$;

-- An operator closes a dead letter without redriving it ("seen; nothing to re-run"), with an
-- optional note. Once only (DW005), like a redrive; the run's log records it.
CREATE OR REPLACE FUNCTION dw.acknowledge_dead_letter_v1(p_id bigint, p_principal text, p_note text)
    RETURNS SETOF dw.dead_letters LANGUAGE plpgsql AS $$
DECLARE
    v_d dw.dead_letters%ROWTYPE;
BEGIN
    -- The run first, then its letter, as a redrive and a run's end take them. Every writer of a run's
    -- events holds its row until it commits, so that the events commit in the order of their ids
    -- and a follower reading after=N misses none; this one wrote its event without it, and could
    -- commit a lower id after a worker's higher one.
    PERFORM 1 FROM dw.executions e
     WHERE e.id = (SELECT d.execution_id FROM dw.dead_letters d WHERE d.id = p_id)
       FOR NO KEY UPDATE;
    SELECT * INTO v_d FROM dw.dead_letters d WHERE d.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % not found', p_id USING ERRCODE = 'DW006';
    END IF;
    IF v_d.redriven_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was redriven at %; nothing to acknowledge', p_id, dw.iso_time_v1(v_d.redriven_at)
            USING ERRCODE = 'DW005';
    END IF;
    IF v_d.closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already closed at % (%)', p_id, dw.iso_time_v1(v_d.closed_at), v_d.close_reason
            USING ERRCODE = 'DW005';
    END IF;
    UPDATE dw.dead_letters d
       SET closed_at = now(), closed_by = p_principal, close_reason = 'acknowledged', close_note = p_note
     WHERE d.id = p_id
    RETURNING * INTO v_d;
    IF v_d.kind NOT IN ('job_failed', 'compensation_failed') AND v_d.execution_id IS NOT NULL THEN
        -- The letters of the children (and theirs) whose end this run took: refused every redrive
        -- (naming this letter), they stayed open for good once it was acknowledged instead of
        -- redriven, and retention kept the tree. Closed as a redrive of this letter closes them. Not
        -- in a detached child's tree: its letter, still open, is the one to redrive or acknowledge.
        -- Not by a compensation_failed letter: its acknowledgement says an undo was done by hand,
        -- and the run's own letter, which supersedes its children's, stays open (they were closed
        -- as superseded by a letter that was not theirs).
        WITH RECURSIVE tree AS (
            SELECT c.* FROM dw.executions c
             WHERE c.parent_execution_id = v_d.execution_id AND NOT dw.is_detached_child_v1(c.id)
            UNION ALL
            SELECT c.* FROM dw.executions c JOIN tree t ON c.parent_execution_id = t.id
             WHERE NOT dw.is_detached_child_v1(c.id)
        )
        UPDATE dw.dead_letters d
           SET closed_at = now(), closed_by = p_principal, close_reason = 'superseded',
               close_note = format('execution %s''s dead letter %s was acknowledged', v_d.execution_id, p_id)
          FROM tree t
         -- Not a compensation_failed letter: an effect of that run was not undone, which no redrive,
         -- acknowledgement or end of a run above it undoes (a review: they closed it as superseded).
         WHERE d.execution_id = t.id AND d.kind NOT IN ('job_failed', 'compensation_failed')
           AND d.redriven_at IS NULL AND d.closed_at IS NULL
           AND dw.child_redrive_refusal_v1(t::dw.executions) IS NOT NULL;
    END IF;
    IF v_d.execution_id IS NOT NULL THEN
        INSERT INTO dw.execution_events (execution_id, node_id, type, principal, details)
        VALUES (v_d.execution_id, v_d.node_id, 'dead_letter_acknowledged', p_principal,
                jsonb_strip_nulls(jsonb_build_object('deadLetterId', p_id, 'kind', v_d.kind, 'note', p_note)));
    END IF;
    RETURN NEXT v_d;
END;
$$;

-- Runs whose deadline passed while no worker held them (throttled, parked on a wait, suspended, or
-- no worker running) end TimedOut here, at most p_limit per call: every worker calls it with its
-- recovery pass and the API every few seconds (SKIP LOCKED: they do not double up, and a run a worker
-- holds is left to that worker, which times it out itself). It ends as the worker's acquire would
-- have ended it instead: Cancelled when its cancel was requested in time (its worker died before
-- taking it in: dw.end_cancelled_in_time_v1, as recovery's give-up does), Failed when a node failed
-- unhandled before its worker died (its outcome is decided: dw.fail_decided_run_v1). Returns the runs
-- it ended, with the status each ended with.
-- v2 (over v1): `status`.
CREATE OR REPLACE FUNCTION dw.time_out_overdue_v2(p_limit integer)
    RETURNS TABLE (execution_id uuid, workflow_id text, status text) LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_parent uuid;
    v_workflow text;
    v_cancel timestamptz;
BEGIN
    FOR v_id, v_parent, v_workflow, v_cancel IN
        SELECT e.id, e.parent_execution_id, e.workflow_id, e.cancel_requested_at FROM dw.executions e
         WHERE e.status IN ('Pending', 'Running', 'Waiting', 'Suspended') AND e.deadline_at IS NOT NULL
           AND e.deadline_at < now()
           AND (e.lease_expires_at IS NULL OR e.lease_expires_at < now())
         ORDER BY e.deadline_at
         LIMIT p_limit
           FOR NO KEY UPDATE SKIP LOCKED
    LOOP
        -- A child's end locks its parent: not waited for here (as in recovery), tried next time.
        -- And the runs above it, whose end or acknowledgement closes its letter (dw.lock_letter_ancestors_v1).
        CONTINUE WHEN NOT dw.lock_letter_ancestors_v1(v_id, true);
        execution_id := v_id;
        workflow_id := v_workflow;
        IF v_cancel IS NOT NULL AND dw.end_cancelled_in_time_v1(v_id) THEN
            status := 'Cancelled';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF dw.fail_decided_run_v1(v_id) THEN
            status := 'Failed';
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- A run whose cancel came too late says so.
        PERFORM dw.record_cancel_too_late_v1(v_id, 'TimedOut');
        PERFORM dw.finish_execution_v1(
            v_id, 'TimedOut',
            jsonb_build_object('code', 'workflow_timeout',
                               'message', 'the workflow ran past its workflowTimeout while no worker held it'),
            'execution_timedout');
        status := 'TimedOut';
        RETURN NEXT;
    END LOOP;
END;
$$;

-- v1: kept for workers of earlier (unreleased) commits during a rolling upgrade; release 0.1.0 has no
-- time_out_overdue (v2 without `status`: such a worker counts every run it ends as TimedOut).
CREATE OR REPLACE FUNCTION dw.time_out_overdue_v1(p_limit integer)
    RETURNS TABLE (execution_id uuid, workflow_id text) LANGUAGE sql AS $$
    SELECT t.execution_id, t.workflow_id FROM dw.time_out_overdue_v2(p_limit) t;
$$;
