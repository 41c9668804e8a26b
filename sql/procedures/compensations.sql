-- Compensation (migration 0071, README "Compensation"): after a run ends Failed, TimedOut or
-- Cancelled, the compensations of the nodes that had Succeeded run, the last to succeed first, one at
-- a time (a forEach's children up to its concurrency at once), each with its own retries, under a
-- dw.compensate job.

-- Queues the dw.compensate job of a run (the outbox: in the caller's transaction). Its argument is
-- `run_id`, not `execution_id`: the run-job procedures find a run's jobs by that key (a run's end
-- deletes its queued ones; recovery counts them as covering the run).
CREATE OR REPLACE FUNCTION dw.defer_compensation_job_v1(p_execution_id uuid, p_scheduled_at timestamptz)
    RETURNS bigint LANGUAGE sql AS $$
    SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
        e.queue, 'dw.compensate', COALESCE(e.priority, 0), NULL, NULL,
        jsonb_build_object('run_id', p_execution_id::text, 'tenant_id', e.tenant_id),
        p_scheduled_at
    )::procrastinate_job_to_defer_v1]))[1]
      FROM dw.executions e WHERE e.id = p_execution_id;
$$;

-- The steps of a run's compensation after an end of status p_status, written in its order (the last
-- to end first: a node's record time, a child's end; the later node in the definition among
-- equals), and how many there are. A step per node that had Succeeded and has a compensation in
-- p_plan (NULL: none has), and one per child run that Succeeded and has something to undo by the
-- same rule: its own plan compensates on p_status, or (its plan has no compensation) it has
-- succeeded children of its own. Its compensation starts when its step is claimed
-- (dw.start_child_compensation_v1), where a child with nothing to undo after all ends its step.
-- At the run's own end, also one per child not ended that the end's cascade cancels (first: its end
-- is the last to come): its step waits for that end, and the compensation it then runs, or starts
-- one if the child ended Succeeded after all (its cancel came too late).
CREATE OR REPLACE FUNCTION dw.queue_compensation_steps_v1(p_execution_id uuid, p_status text, p_tenant text,
                                                           p_plan jsonb)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    -- The plan's compensations read once, joined to the run's nodes by id (a plan of 1,000 nodes is
    -- not walked once per node).
    WITH planned AS (
        SELECT pn ->> 'id' AS node_id, pn -> 'compensation' AS compensation
          FROM jsonb_array_elements(COALESCE(p_plan -> 'nodes', '[]')) pn
         WHERE jsonb_typeof(pn -> 'compensation') = 'object'
    ), item_nodes AS (
        -- The run's forEach nodes and their concurrency (default 10): as many of a node's children
        -- compensate at once as ran at once (read from the run's own plan: p_plan is NULL for a plan
        -- without compensations, whose children may still be steps).
        SELECT pn ->> 'id' AS node_id,
               CASE WHEN jsonb_typeof(pn -> 'parameters' -> 'concurrency') = 'number'
                    THEN LEAST(GREATEST((pn -> 'parameters' ->> 'concurrency')::numeric, 1), 100)::integer
                    ELSE 10 END AS concurrency
          FROM dw.executions e
          JOIN dw.workflow_plans p ON p.tenant_id = e.tenant_id AND p.workflow_id = e.workflow_id
                                  AND p.version = e.workflow_version
         CROSS JOIN LATERAL jsonb_array_elements(p.plan -> 'nodes') pn
         WHERE e.id = p_execution_id AND pn ->> 'kind' = 'forEach'
           AND EXISTS (SELECT 1 FROM dw.executions k WHERE k.parent_execution_id = p_execution_id)
    ), steps AS (
        SELECT n.node_id, NULL::uuid AS child_execution_id, n.ended_at, n.position,
               c.compensation ->> 'actionType' AS action_type,
               (c.compensation -> 'retry' ->> 'maxAttempts')::integer AS max_attempts,
               (c.compensation ->> 'timeoutSeconds')::double precision AS timeout_seconds
          FROM dw.node_states n
          JOIN planned c ON c.node_id = n.node_id
         WHERE n.execution_id = p_execution_id AND n.status = 'Succeeded'
        UNION ALL
        SELECT k.parent_node_id, k.id, k.ended_at, COALESCE(n.position, 0), 'subworkflow', 1, 0
          FROM dw.executions k
          JOIN dw.workflow_plans kp ON kp.tenant_id = k.tenant_id AND kp.workflow_id = k.workflow_id
                                   AND kp.version = k.workflow_version
          LEFT JOIN dw.node_states n ON n.execution_id = p_execution_id AND n.node_id = k.parent_node_id
         WHERE k.parent_execution_id = p_execution_id
           AND ((k.status = 'Succeeded' AND k.compensation_status IS NULL
                 -- A detached child (waitForCompletion false) outlives a parent that failed or timed
                 -- out: one still running at that end goes on and keeps its effects, so one that had
                 -- ended a moment before keeps its too (not undone by timing alone; a review). A
                 -- cancelled parent cancels its detached children: those that had succeeded are undone.
                 AND (p_status = 'Cancelled' OR NOT dw.is_detached_child_v1(k.id))
                 AND (p_status = ANY (kp.compensate_on)
                      OR (kp.compensate_on IS NULL
                          AND EXISTS (SELECT 1 FROM dw.executions g
                                       WHERE g.parent_execution_id = k.id AND g.status = 'Succeeded'))))
                -- A child the run's end cancels (dw.cancel_children: those it waited for; every one
                -- when it was cancelled) compensates itself as it ends: its step waits for that, so
                -- that what it did is undone before what its parent did before it (its end, not
                -- yet come, sorts it first). A detached child outlives a parent that failed.
                -- Only at the run's own end (its status is p_status): a succeeded child's
                -- compensation (dw.start_child_compensation_v1) cancels none of its children.
                OR (k.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
                    AND (p_status = 'Cancelled' OR NOT dw.is_detached_child_v1(k.id))
                    AND (SELECT r.status FROM dw.executions r WHERE r.id = p_execution_id) = p_status
                    -- Only a child that may have something to undo: a plan with compensations that
                    -- does not say never, or children of its own. A step for any child made every
                    -- parent that failed while a child ran a compensated run, whose redrive is
                    -- refused, though nothing was there to undo (a full-suite run caught it).
                    AND (cardinality(kp.compensate_on) > 0
                         OR (kp.compensate_on IS NULL
                             AND EXISTS (SELECT 1 FROM dw.executions g
                                          WHERE g.parent_execution_id = k.id
                                            AND g.status NOT IN ('Failed', 'Cancelled', 'TimedOut'))))))
    )
    INSERT INTO dw.compensations (tenant_id, execution_id, node_id, position, action_type, max_attempts,
                                  timeout_seconds, child_execution_id, parameters)
    SELECT p_tenant, p_execution_id, s.node_id,
           row_number() OVER (ORDER BY s.ended_at DESC, s.position DESC, s.child_execution_id DESC NULLS FIRST),
           s.action_type, s.max_attempts, s.timeout_seconds, s.child_execution_id,
           -- A child's step: the end its compensation is as if it had (its grandchildren's too), and
           -- for a forEach's child how many of its node's children's steps in a row may wait at once
           -- (its concurrency; none, one: a subworkflow node's child, a step queued before this
           -- release).
           CASE WHEN s.child_execution_id IS NOT NULL
                THEN jsonb_strip_nulls(jsonb_build_object('compensateAs', p_status, 'concurrency', i.concurrency))
           END
      FROM steps s
      LEFT JOIN item_nodes i ON s.child_execution_id IS NOT NULL AND i.node_id = s.node_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- A run's compensation begins: its status, its compensation_started event (`details` besides the
-- steps) and its job.
CREATE OR REPLACE FUNCTION dw.begin_compensation_v1(p_execution_id uuid, p_tenant text, p_steps integer,
                                                     p_details jsonb)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dw.executions e SET compensation_status = 'Compensating' WHERE e.id = p_execution_id;
    INSERT INTO dw.execution_events (tenant_id, execution_id, type, details)
    VALUES (p_tenant, p_execution_id, 'compensation_started',
            p_details || jsonb_build_object(
                'steps', p_steps,
                'nodes', (SELECT jsonb_agg(c.node_id ORDER BY c.position) FROM dw.compensations c
                           WHERE c.execution_id = p_execution_id)));
    PERFORM dw.defer_compensation_job_v1(p_execution_id, NULL);
END;
$$;

-- Called by dw.finish_execution_v1 as a run ends otherwise than Succeeded (after its row's update, in
-- its transaction). When the run's plan compensates on that end, its steps
-- (dw.queue_compensation_steps_v1) and the job that runs them. A plan with neither a compensation
-- nor a compensateOn (workflow_plans.compensate_on NULL) compensates on all three ends when the run
-- has a child that succeeded or has not ended (whose own plan says what it undoes). A run whose
-- compensation was queued before (it ended, was redriven, and ended again) queues none:
-- dw.redrive_dead_letter_v1 refuses to redrive a compensated run. Returns how many steps were
-- queued.
CREATE OR REPLACE FUNCTION dw.queue_compensations_v1(p_execution_id uuid, p_status text)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_on text[];
    v_plan jsonb;
    v_tenant text;
    v_workflow text;
    v_version integer;
    v_count integer;
BEGIN
    -- The plan's compensateOn as stored beside it (migration 0071): a plan without compensations,
    -- most, is not read at all.
    SELECT p.compensate_on, e.tenant_id, e.workflow_id, e.workflow_version
      INTO v_on, v_tenant, v_workflow, v_version
      FROM dw.executions e
      JOIN dw.workflow_plans p ON p.tenant_id = e.tenant_id AND p.workflow_id = e.workflow_id
                              AND p.version = e.workflow_version
     WHERE e.id = p_execution_id AND e.compensation_status IS NULL;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF v_on IS NULL THEN
        -- A child that succeeded, or one not ended (the end's cascade cancels it, or it ends
        -- Succeeded after all: its step waits for its end).
        IF p_status NOT IN ('Failed', 'TimedOut', 'Cancelled')
           OR NOT EXISTS (SELECT 1 FROM dw.executions k
                           WHERE k.parent_execution_id = p_execution_id
                             AND k.status NOT IN ('Failed', 'TimedOut', 'Cancelled')) THEN
            RETURN 0;
        END IF;
    ELSIF NOT p_status = ANY (v_on) THEN
        RETURN 0;
    ELSE
        SELECT p.plan INTO v_plan FROM dw.workflow_plans p
         WHERE p.tenant_id = v_tenant AND p.workflow_id = v_workflow AND p.version = v_version;
    END IF;
    v_count := dw.queue_compensation_steps_v1(p_execution_id, p_status, v_tenant, v_plan);
    IF v_count > 0 THEN
        PERFORM dw.begin_compensation_v1(p_execution_id, v_tenant, v_count,
                                         jsonb_build_object('runStatus', p_status));
    END IF;
    RETURN v_count;
END;
$$;

-- A parent's step for a child run (claimed by dw.claim_compensation_v1): the child's compensation,
-- as if the child had ended as its parent did (p_status). Returns
--   started:     it is under way (begun now, begun before, or its failed steps run again: a child's
--                CompensationFailed whose parent's letter was redriven); its end records the step;
--   Compensated: it had ended so before;
--   nothing:     the child has nothing to undo.
CREATE OR REPLACE FUNCTION dw.start_child_compensation_v1(p_child uuid, p_status text, p_parent uuid,
                                                           p_node_id text)
    RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_tenant text;
    v_on text[];
    v_plan jsonb;
    v_count integer;
    v_steps jsonb;
BEGIN
    SELECT e.compensation_status, e.tenant_id, p.compensate_on
      INTO v_state, v_tenant, v_on
      FROM dw.executions e
      JOIN dw.workflow_plans p ON p.tenant_id = e.tenant_id AND p.workflow_id = e.workflow_id
                              AND p.version = e.workflow_version
     WHERE e.id = p_child
       FOR NO KEY UPDATE OF e;
    IF NOT FOUND THEN
        RETURN 'nothing';
    ELSIF v_state = 'Compensating' THEN
        RETURN 'started';
    ELSIF v_state = 'Compensated' THEN
        RETURN 'Compensated';
    ELSIF v_state = 'CompensationFailed' THEN
        v_steps := dw.rerun_failed_compensation_steps_v1(p_child);
        -- Its own letter, if it filed one (not while its parent waited for it), is redriven with it.
        UPDATE dw.dead_letters d SET redriven_at = now(), redriven_by = 'compensation of ' || p_parent
         WHERE d.execution_id = p_child AND d.kind = 'compensation_failed'
           AND d.redriven_at IS NULL AND d.closed_at IS NULL;
        INSERT INTO dw.execution_events (tenant_id, execution_id, type, details)
        VALUES (v_tenant, p_child, 'compensation_redriven',
                jsonb_build_object('parentExecutionId', p_parent, 'steps', v_steps));
        PERFORM dw.defer_compensation_job_v1(p_child, NULL);
        RETURN 'started';
    END IF;
    IF v_on IS NOT NULL AND NOT p_status = ANY (v_on) THEN
        RETURN 'nothing';
    ELSIF v_on IS NOT NULL THEN
        SELECT p.plan INTO v_plan FROM dw.workflow_plans p
          JOIN dw.executions e ON p.tenant_id = e.tenant_id AND p.workflow_id = e.workflow_id
                              AND p.version = e.workflow_version
         WHERE e.id = p_child;
    END IF;
    v_count := dw.queue_compensation_steps_v1(p_child, p_status, v_tenant, v_plan);
    IF v_count = 0 THEN
        RETURN 'nothing';
    END IF;
    PERFORM dw.begin_compensation_v1(p_child, v_tenant, v_count,
                                     jsonb_build_object('runStatus', 'Succeeded', 'parentExecutionId', p_parent,
                                                        'parentNodeId', p_node_id, 'parentStatus', p_status));
    RETURN 'started';
END;
$$;

-- A child step ends with its child's compensation: Succeeded when it ended Compensated (or the child
-- had nothing to undo: p_child_status 'nothing', its outputs' compensation null), Failed otherwise.
CREATE OR REPLACE FUNCTION dw.end_child_step_v1(p_execution_id uuid, p_position integer, p_child uuid,
                                                 p_child_status text)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_c dw.compensations;
    v_failed text;
BEGIN
    IF p_child_status IN ('Compensated', 'nothing') THEN
        UPDATE dw.compensations c
           SET status = 'Succeeded', ended_at = now(), error = NULL,
               outputs = jsonb_build_object('childExecutionId', p_child,
                                            'compensation', NULLIF(p_child_status, 'nothing'))
         WHERE c.execution_id = p_execution_id AND c.position = p_position
        RETURNING * INTO v_c;
    ELSE
        SELECT string_agg(format('%s (%s: %s)', c.node_id, c.error ->> 'code', c.error ->> 'message'), '; '
                          ORDER BY c.position)
          INTO v_failed
          FROM dw.compensations c WHERE c.execution_id = p_child AND c.status = 'Failed';
        UPDATE dw.compensations c
           SET status = 'Failed', ended_at = now(), outputs = NULL,
               error = jsonb_build_object(
                   'code', 'child_compensation_failed',
                   'message', left(format('child run %s''s compensation ended %s: %s', p_child,
                                          COALESCE(p_child_status, 'none'), COALESCE(v_failed, 'no step failed')),
                                   2000),
                   'childExecutionId', p_child)
         WHERE c.execution_id = p_execution_id AND c.position = p_position
        RETURNING * INTO v_c;
    END IF;
    INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
    VALUES (v_c.tenant_id, p_execution_id, v_c.node_id,
            CASE v_c.status WHEN 'Succeeded' THEN 'compensation_succeeded' ELSE 'compensation_failed' END,
            jsonb_strip_nulls(jsonb_build_object('attempt', v_c.attempts, 'childExecutionId', p_child,
                                                 'code', v_c.error ->> 'code')));
END;
$$;

-- A child's step, locked by dw.claim_compensation_v1: true when it has ended (the claim goes on to
-- the next step), false when it waits (Waiting: for the child's end, which queues the parent's job
-- (dw.child_ended_v1), or for its compensation's, which records the step (dw.end_compensation_v1)).
-- The child's state is read, not locked: its end, or its compensation's, queues the parent's job
-- once committed, and that job reads it again.
CREATE OR REPLACE FUNCTION dw.take_child_step_v1(p_c dw.compensations, p_worker text)
    RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_compensation text;
    v_started text;
BEGIN
    SELECT e.status, e.compensation_status INTO v_status, v_compensation
      FROM dw.executions e WHERE e.id = p_c.child_execution_id;
    IF (v_status = 'Succeeded' AND v_compensation IS NULL)
       -- The parent's compensation_failed letter was redriven: the child's failed steps again.
       OR (v_compensation = 'CompensationFailed' AND p_c.status = 'Pending' AND p_c.attempts > 0) THEN
        v_started := dw.start_child_compensation_v1(p_c.child_execution_id, p_c.parameters ->> 'compensateAs',
                                                    p_c.execution_id, p_c.node_id);
    ELSIF v_status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') OR v_compensation = 'Compensating' THEN
        v_started := 'started';
    ELSE
        -- Ended, and its compensation too, or it had nothing to undo.
        IF p_c.status = 'Pending' THEN
            PERFORM dw.wait_child_step_v1(p_c, p_worker);
        END IF;
        PERFORM dw.end_child_step_v1(p_c.execution_id, p_c.position, p_c.child_execution_id,
                                     COALESCE(v_compensation, 'nothing'));
        RETURN true;
    END IF;
    IF p_c.status = 'Pending' OR v_started <> 'started' THEN
        PERFORM dw.wait_child_step_v1(p_c, p_worker);
    END IF;
    IF v_started <> 'started' THEN
        -- Nothing to undo, or undone before: ended now.
        PERFORM dw.end_child_step_v1(p_c.execution_id, p_c.position, p_c.child_execution_id, v_started);
        RETURN true;
    END IF;
    RETURN false;
END;
$$;

-- A child's step is taken: Waiting, an attempt more, and its event.
CREATE OR REPLACE FUNCTION dw.wait_child_step_v1(p_c dw.compensations, p_worker text)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dw.compensations c
       SET status = 'Waiting', attempts = p_c.attempts + 1, started_at = COALESCE(c.started_at, now()),
           next_attempt_at = NULL
     WHERE c.execution_id = p_c.execution_id AND c.position = p_c.position;
    INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
    VALUES (p_c.tenant_id, p_c.execution_id, p_c.node_id, 'compensation_attempt_started',
            jsonb_build_object('attempt', p_c.attempts + 1, 'actionType', p_c.action_type,
                               'childExecutionId', p_c.child_execution_id, 'worker', p_worker));
END;
$$;

-- The next step of a run's compensation for a worker to attempt, in order. outcome:
--   claimed: the step is the caller's (attempt `attempt`, until `due_at`); run it and record it;
--   later:   the next step waits for its retry until `due_at`;
--   held:    another worker holds the step until `due_at`;
--   waiting: the next step is a child's compensation, under way, and with it up to its `concurrency` of its
--            node's children's steps after it (each one's end queues this run's job);
--   done:    every step has ended (the run's compensation_status is now Compensated or
--            CompensationFailed); nothing was claimed.
-- A child's step is taken here, not by the caller: its compensation is started
-- (dw.start_child_compensation_v1; a child with nothing left to undo ends its step at once).
-- A step whose claim ran out (its worker died or was cut off, its database connection lost) is its
-- attempt interrupted: tried again without using its retry budget (as a node's interrupted attempt
-- is), or Failed (too_many_interruptions) once interrupted more than 10 times (DW_MAX_INTERRUPTIONS'
-- default: a step whose action kills its worker each time must not go on for ever).
-- `attempt` is the step's attempt number (the record's fence); `tries` the attempts since its latest
-- redrive, what its retry policy counts.
CREATE OR REPLACE FUNCTION dw.claim_compensation_v1(p_execution_id uuid, p_worker text)
    RETURNS TABLE (outcome text, node_id text, action_type text, attempt integer, tries integer,
                   due_at timestamptz)
    LANGUAGE plpgsql AS $$
DECLARE
    v_c dw.compensations;
    -- Where the next step is looked for: the step last taken once it has ended (CONTINUE), the one
    -- after it when it waits (a child's, among those under way at once); the steps before are ended
    -- or waiting, and locked by this transaction (the ended steps' versions of this transaction are
    -- in the index until it ends: from the first, a forEach's children made the loop quadratic,
    -- 4,000 children with nothing to undo 13 s in one claim; a review).
    v_from integer := 0;
    -- The children's steps in a row, of one node, that wait (their compensations under way): up to
    -- the step's `concurrency` (a forEach's) are under way at once; the step after them, of
    -- another node, waits for them all.
    v_waiting integer := 0;
    v_first dw.compensations;
BEGIN
    LOOP
        SELECT * INTO v_c FROM dw.compensations c
         WHERE c.execution_id = p_execution_id AND c.status IN ('Pending', 'Running', 'Waiting')
           AND c.position >= v_from
         ORDER BY c.position LIMIT 1
           FOR UPDATE;
        EXIT WHEN NOT FOUND;
        IF v_waiting > 0 AND (v_c.child_execution_id IS NULL OR v_c.node_id <> v_first.node_id) THEN
            EXIT;
        END IF;
        v_from := v_c.position;
        IF v_c.child_execution_id IS NOT NULL THEN
            CONTINUE WHEN dw.take_child_step_v1(v_c, p_worker);
            IF v_waiting = 0 THEN
                v_first := v_c;
            END IF;
            v_waiting := v_waiting + 1;
            EXIT WHEN v_waiting >= COALESCE((v_c.parameters ->> 'concurrency')::integer, 1);
            -- Past it: the steps after it of the same node's children may start too.
            v_from := v_c.position + 1;
            CONTINUE;
        END IF;
        IF v_c.status = 'Running' AND v_c.claimed_until > now() THEN
            RETURN QUERY SELECT 'held'::text, v_c.node_id, v_c.action_type, v_c.attempts,
                                v_c.attempts - v_c.attempt_base, v_c.claimed_until;
            RETURN;
        END IF;
        IF v_c.status = 'Running' THEN
            INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
            VALUES (v_c.tenant_id, p_execution_id, v_c.node_id, 'compensation_attempt_interrupted',
                    jsonb_build_object('attempt', v_c.attempts, 'worker', v_c.claimed_by));
            IF v_c.interruptions >= 10 THEN
                UPDATE dw.compensations c
                   SET status = 'Failed', ended_at = now(), claimed_by = NULL, claimed_until = NULL,
                       interruptions = v_c.interruptions + 1,
                       error = jsonb_build_object('code', 'too_many_interruptions',
                                                  'message', format('its attempts were interrupted %s times (their '
                                                                    'worker lost or stopped each time)',
                                                                    v_c.interruptions + 1))
                 WHERE c.execution_id = p_execution_id AND c.position = v_c.position;
                INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
                VALUES (v_c.tenant_id, p_execution_id, v_c.node_id, 'compensation_failed',
                        jsonb_build_object('attempts', v_c.attempts, 'code', 'too_many_interruptions'));
                CONTINUE;
            END IF;
            -- Not counted against its retries: the attempt after it has the same try number.
            v_c.interruptions := v_c.interruptions + 1;
            v_c.attempt_base := v_c.attempt_base + 1;
        ELSIF v_c.next_attempt_at > now() THEN
            RETURN QUERY SELECT 'later'::text, v_c.node_id, v_c.action_type, v_c.attempts,
                                v_c.attempts - v_c.attempt_base, v_c.next_attempt_at;
            RETURN;
        END IF;
        UPDATE dw.compensations c
           SET status = 'Running', attempts = v_c.attempts + 1, next_attempt_at = NULL,
               attempt_base = v_c.attempt_base, interruptions = v_c.interruptions,
               claimed_by = p_worker,
               -- Its attempt's timeout, and a minute for the worker to render and record it.
               claimed_until = now() + make_interval(secs => v_c.timeout_seconds + 60),
               started_at = COALESCE(c.started_at, now())
         WHERE c.execution_id = p_execution_id AND c.position = v_c.position;
        INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
        VALUES (v_c.tenant_id, p_execution_id, v_c.node_id, 'compensation_attempt_started',
                jsonb_build_object('attempt', v_c.attempts + 1, 'actionType', v_c.action_type, 'worker', p_worker));
        RETURN QUERY SELECT 'claimed'::text, v_c.node_id, v_c.action_type, v_c.attempts + 1,
                            v_c.attempts + 1 - v_c.attempt_base, now() + make_interval(secs => v_c.timeout_seconds + 60);
        RETURN;
    END LOOP;

    IF v_waiting > 0 THEN
        -- Children's compensations under way: each one's end records its step and queues this job.
        RETURN QUERY SELECT 'waiting'::text, v_first.node_id, v_first.action_type, v_first.attempts,
                            v_first.attempts - v_first.attempt_base, NULL::timestamptz;
        RETURN;
    END IF;
    PERFORM dw.end_compensation_v1(p_execution_id);
    RETURN QUERY SELECT 'done'::text, NULL::text, NULL::text, NULL::integer, NULL::integer, NULL::timestamptz;
END;
$$;

-- A run's failed compensation steps, in order, each as its node and (a child's step) its child run:
-- what the compensation_ended event lists.
CREATE OR REPLACE FUNCTION dw.failed_compensation_steps_v1(p_execution_id uuid)
    RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_strip_nulls(jsonb_build_object('nodeId', c.node_id,
                                                                   'childExecutionId', c.child_execution_id,
                                                                   'code', c.error ->> 'code'))
                              ORDER BY c.position), '[]')
      FROM dw.compensations c WHERE c.execution_id = p_execution_id AND c.status = 'Failed';
$$;

-- What failed in a child run's compensation, for its parent's letter: its failed steps, each with its
-- error (NULL: none failed), at most 2,000 characters, as the parent's step's own error
-- (dw.end_child_step_v1): taken whole, a child whose forEach had 1,000 failed undos made its parent's
-- message megabytes (a review).
CREATE OR REPLACE FUNCTION dw.child_compensation_failures_v1(p_child uuid)
    RETURNS text LANGUAGE sql STABLE AS $$
    SELECT left(string_agg(format('%s (%s: %s)', k.node_id, k.error ->> 'code', k.error ->> 'message'), '; '
                           ORDER BY k.position), 2000)
      FROM dw.compensations k WHERE k.execution_id = p_child AND k.status = 'Failed';
$$;

-- Every step of a run's compensation has ended: the compensation ends (once: a second worker finds it
-- ended). A child's, whose parent's step waits for it, records that step and queues the parent's
-- job; otherwise, when a step failed, it files a compensation_failed letter (a child whose parent
-- has a step for it, waiting or not reached yet, files none: the parent's letter names it, and its
-- redrive runs the child's failed steps).
CREATE OR REPLACE FUNCTION dw.end_compensation_v1(p_execution_id uuid)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_failed integer;
    v_succeeded integer;
    v_status text;
    v_parent dw.compensations;
BEGIN
    SELECT count(*) FILTER (WHERE c.status = 'Failed'), count(*) FILTER (WHERE c.status = 'Succeeded')
      INTO v_failed, v_succeeded
      FROM dw.compensations c WHERE c.execution_id = p_execution_id;
    v_status := CASE WHEN v_failed > 0 THEN 'CompensationFailed' ELSE 'Compensated' END;
    UPDATE dw.executions e SET compensation_status = v_status
     WHERE e.id = p_execution_id AND e.compensation_status = 'Compensating';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The failed steps by name, a child's with its run: a forEach's children are steps of one node,
    -- which alone did not say whose undo failed.
    INSERT INTO dw.execution_events (execution_id, type, details)
    VALUES (p_execution_id, 'compensation_ended',
            jsonb_build_object('status', v_status, 'succeeded', v_succeeded, 'failed', v_failed)
            || CASE WHEN v_failed > 0 THEN jsonb_build_object('failedSteps', dw.failed_compensation_steps_v1(p_execution_id))
                    ELSE '{}' END);
    -- Pending too: a parent's claim that is making the step Waiting (it read this compensation under
    -- way) holds it; looking for Waiting alone saw it Pending, as before that claim, and went by:
    -- the step stayed Waiting and nothing queued the parent's job (a review). Locked, it is read
    -- again once that claim has committed. Still Pending, the parent has not reached it: its claim
    -- will read this end and fail or end the step, so no letter is filed here either.
    SELECT * INTO v_parent FROM dw.compensations c
     WHERE c.child_execution_id = p_execution_id AND c.status IN ('Pending', 'Waiting')
       FOR UPDATE;
    IF FOUND AND v_parent.status = 'Pending' THEN
        RETURN;
    ELSIF FOUND THEN
        PERFORM dw.end_child_step_v1(v_parent.execution_id, v_parent.position, p_execution_id, v_status);
        PERFORM dw.defer_compensation_job_v1(v_parent.execution_id, NULL);
        RETURN;
    END IF;
    IF v_failed > 0 THEN
        -- Someone has to undo what the failed steps' nodes did, or redrive this letter to run
        -- those steps again (dw.redrive_compensation_v1); it keeps the run from retention.
        -- A child's step names its run, first in its part of the message, and what failed in it: a
        -- forEach's children are steps of one node, and its name once per failed child (the child's id
        -- deep in each one's error) did not say whose undo failed (a review).
        INSERT INTO dw.dead_letters (kind, execution_id, payload, error, attempts)
        SELECT 'compensation_failed', e.id,
               jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version,
                                  'runStatus', e.status,
                                  'failedSteps', (SELECT jsonb_agg(c.node_id ORDER BY c.position)
                                                    FROM dw.compensations c
                                                   WHERE c.execution_id = e.id AND c.status = 'Failed'),
                                  'failedChildren', COALESCE(
                                      (SELECT jsonb_agg(jsonb_build_object(
                                                  'nodeId', c.node_id, 'childExecutionId', c.child_execution_id,
                                                  'failedSteps', COALESCE(
                                                      (SELECT jsonb_agg(k.node_id ORDER BY k.position)
                                                         FROM dw.compensations k
                                                        WHERE k.execution_id = c.child_execution_id
                                                          AND k.status = 'Failed'), '[]'))
                                                ORDER BY c.position)
                                         FROM dw.compensations c
                                        WHERE c.execution_id = e.id AND c.status = 'Failed'
                                          AND c.child_execution_id IS NOT NULL), '[]')),
               jsonb_build_object(
                   'code', 'compensation_failed',
                   'message', format('%s of %s compensation steps failed: %s', v_failed, v_failed + v_succeeded,
                                     (SELECT string_agg(
                                                 CASE WHEN c.child_execution_id IS NULL
                                                      THEN format('%s (%s: %s)', c.node_id, c.error ->> 'code',
                                                                  c.error ->> 'message')
                                                      ELSE format('%s child run %s (%s)', c.node_id,
                                                                  c.child_execution_id,
                                                                  COALESCE(dw.child_compensation_failures_v1(
                                                                               c.child_execution_id),
                                                                           c.error ->> 'code'))
                                                 END, '; ' ORDER BY c.position)
                                        FROM dw.compensations c
                                       WHERE c.execution_id = e.id AND c.status = 'Failed'))),
               (SELECT sum(c.attempts - c.attempt_base)::integer FROM dw.compensations c
                 WHERE c.execution_id = e.id AND c.status = 'Failed')
          FROM dw.executions e WHERE e.id = p_execution_id;
    END IF;
END;
$$;

-- Records an attempt of a step the caller claimed (fenced: the step must still be Running at that
-- attempt; a claim that ran out and was taken over is refused, and nothing is written). p_outcome:
-- Succeeded, Failed (for good), or Retry (a retriable failure with attempts left: the step waits
-- until p_retry_at). Returns whether it was recorded. Succeeded releases the resources its node
-- created (dw.release_node_resources_v1: they were undone); p_resource_links, the resources the
-- compensation's own action reported, are linked under its node, as a node's attempt's are.
CREATE OR REPLACE FUNCTION dw.record_compensation_v2(
    p_execution_id uuid, p_node_id text, p_attempt integer, p_outcome text,
    p_parameters jsonb, p_outputs jsonb, p_error jsonb, p_retry_at timestamptz, p_resource_links jsonb
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_tenant text;
    v_started timestamptz;
    v_released integer := 0;
    v_link jsonb;
BEGIN
    IF p_outcome NOT IN ('Succeeded', 'Failed', 'Retry') THEN
        RAISE EXCEPTION 'unknown compensation outcome %', p_outcome USING ERRCODE = '22023';
    END IF;
    UPDATE dw.compensations c
       SET status = CASE p_outcome WHEN 'Retry' THEN 'Pending' ELSE p_outcome END,
           parameters = p_parameters, outputs = p_outputs, error = p_error,
           next_attempt_at = CASE WHEN p_outcome = 'Retry' THEN p_retry_at END,
           ended_at = CASE WHEN p_outcome <> 'Retry' THEN now() END,
           claimed_by = NULL, claimed_until = NULL
     WHERE c.execution_id = p_execution_id AND c.node_id = p_node_id AND c.attempts = p_attempt
       AND c.status = 'Running' AND c.child_execution_id IS NULL
    RETURNING c.tenant_id, c.started_at INTO v_tenant, v_started;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_outcome = 'Succeeded' THEN
        v_released := dw.release_node_resources_v1(p_execution_id, p_node_id, v_started);
    END IF;
    IF p_resource_links IS NOT NULL THEN
        FOR v_link IN SELECT * FROM jsonb_array_elements(p_resource_links) LOOP
            PERFORM dw.link_external_resource_v1(
                v_tenant, v_link ->> 'resourceType', v_link ->> 'resourceKey', v_link ->> 'externalId',
                (SELECT e.workflow_id FROM dw.executions e WHERE e.id = p_execution_id), p_execution_id, p_node_id,
                v_link -> 'data');
        END LOOP;
    END IF;
    INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
    VALUES (v_tenant, p_execution_id, p_node_id,
            CASE p_outcome WHEN 'Succeeded' THEN 'compensation_succeeded'
                           WHEN 'Failed' THEN 'compensation_failed'
                           ELSE 'compensation_attempt_failed' END,
            jsonb_strip_nulls(jsonb_build_object('attempt', p_attempt, 'code', p_error ->> 'code',
                                                 'message', p_error ->> 'message', 'retryAt', p_retry_at,
                                                 'resourcesReleased', NULLIF(v_released, 0))));
    RETURN true;
END;
$$;

-- v2 without the compensation's own resource links (the first form of this release's workers).
CREATE OR REPLACE FUNCTION dw.record_compensation_v1(
    p_execution_id uuid, p_node_id text, p_attempt integer, p_outcome text,
    p_parameters jsonb, p_outputs jsonb, p_error jsonb, p_retry_at timestamptz
) RETURNS boolean LANGUAGE sql AS $$
    SELECT dw.record_compensation_v2(p_execution_id, p_node_id, p_attempt, p_outcome, p_parameters, p_outputs,
                                     p_error, p_retry_at, NULL);
$$;

-- What a step's templates read: the run, and its nodes' outputs (Succeeded) and errors (Failed).
-- Only the outputs a template, condition or expression of the run can read (node_states.outputs_used:
-- the plan counts compensations' templates among them), as a run's acquire loads them: every step's
-- attempt loaded every node's, the unread ones among them (not bounded by DW_MAX_RUN_SCOPE_BYTES).
CREATE OR REPLACE FUNCTION dw.compensation_scope_v1(p_execution_id uuid)
    RETURNS TABLE (workflow_id text, workflow_version integer, status text, trigger jsonb, principal_id text,
                   error jsonb, nodes jsonb, errors jsonb)
    LANGUAGE sql STABLE AS $$
    SELECT e.workflow_id, e.workflow_version, e.status, e.trigger, e.principal_id, e.error,
           COALESCE((SELECT jsonb_object_agg(n.node_id, n.outputs) FROM dw.node_states n
                      WHERE n.execution_id = e.id AND n.status = 'Succeeded' AND n.outputs_used
                        AND n.outputs IS NOT NULL), '{}'),
           COALESCE((SELECT jsonb_object_agg(n.node_id, n.error) FROM dw.node_states n
                      WHERE n.execution_id = e.id AND n.status = 'Failed' AND n.error IS NOT NULL), '{}')
      FROM dw.executions e WHERE e.id = p_execution_id;
$$;

-- v1 and `compensation`, what a step's templates read of why it runs (README "Compensation"):
--   cause:  the run whose end the compensation undoes: the run itself, or, for a run its parent's
--           compensation undoes (a succeeded child, or one its parent's end cancelled), that parent's
--           cause, and so on up the tree (a grandchild's is its root's end);
--   parent: the run's parent as it is now (null for a root): a child's own `execution.status` is
--           its end (a succeeded child's Succeeded), not why it is undone.
-- Each as {executionId, workflowId, status, error} (parent: and nodeId, its node that started the
-- child).
CREATE OR REPLACE FUNCTION dw.compensation_scope_v2(p_execution_id uuid)
    RETURNS TABLE (workflow_id text, workflow_version integer, status text, trigger jsonb, principal_id text,
                   error jsonb, nodes jsonb, errors jsonb, compensation jsonb)
    LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up AS (
        SELECT p_execution_id AS id, 0 AS depth
        UNION ALL
        -- A parent whose compensation has a step for the run: its end is the cause. The depth bound is
        -- the tree's (DW_MAX_DEPTH is at most 10), against a cycle that cannot be.
        SELECT c.execution_id, up.depth + 1
          FROM up JOIN dw.compensations c ON c.child_execution_id = up.id
         WHERE up.depth < 50
    ), cause AS (
        SELECT up.id FROM up ORDER BY up.depth DESC LIMIT 1
    )
    SELECT s.workflow_id, s.workflow_version, s.status, s.trigger, s.principal_id, s.error, s.nodes, s.errors,
           jsonb_build_object(
               'cause', (SELECT jsonb_build_object('executionId', r.id, 'workflowId', r.workflow_id,
                                                   'status', r.status, 'error', r.error)
                           FROM dw.executions r JOIN cause ON cause.id = r.id),
               'parent', (SELECT jsonb_build_object('executionId', p.id, 'workflowId', p.workflow_id,
                                                    'nodeId', e.parent_node_id, 'status', p.status, 'error', p.error)
                            FROM dw.executions e JOIN dw.executions p ON p.id = e.parent_execution_id
                           WHERE e.id = p_execution_id))
      FROM dw.compensation_scope_v1(p_execution_id) s;
$$;

-- The steps of a run's compensation that failed for good run again, each with a fresh retry budget,
-- in their order, and the run is Compensating again (a letter's redrive, or a parent's step that
-- redrives its child's): the steps redone, in order. The caller queues the job.
CREATE OR REPLACE FUNCTION dw.rerun_failed_compensation_steps_v1(p_execution_id uuid)
    RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_steps jsonb;
BEGIN
    WITH again AS (
        UPDATE dw.compensations c
           SET status = 'Pending', attempt_base = c.attempts, interruptions = 0, error = NULL, outputs = NULL,
               ended_at = NULL, next_attempt_at = NULL
         WHERE c.execution_id = p_execution_id AND c.status = 'Failed'
        RETURNING c.node_id, c.position
    )
    SELECT jsonb_agg(again.node_id ORDER BY again.position) INTO v_steps FROM again;
    UPDATE dw.executions e SET compensation_status = 'Compensating' WHERE e.id = p_execution_id;
    RETURN v_steps;
END;
$$;

-- Redrives a compensation_failed letter (called by dw.redrive_dead_letter_v1, which has locked the
-- run and the letter): the steps that failed for good run again, each with a fresh retry budget, in
-- their order; the run is Compensating again and its job queued. The steps that succeeded are not
-- run again.
CREATE OR REPLACE FUNCTION dw.redrive_compensation_v1(p_id bigint, p_execution_id uuid, p_principal text)
    RETURNS TABLE (dead_letter_id bigint, execution_id uuid, action text) LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_steps jsonb;
BEGIN
    SELECT e.compensation_status INTO v_status FROM dw.executions e WHERE e.id = p_execution_id;
    IF v_status IS DISTINCT FROM 'CompensationFailed' THEN
        RAISE EXCEPTION 'execution %''s compensation is %, not CompensationFailed: nothing to redrive', p_execution_id,
            COALESCE(v_status, 'none') USING ERRCODE = 'DW005';
    END IF;
    v_steps := dw.rerun_failed_compensation_steps_v1(p_execution_id);
    UPDATE dw.dead_letters d SET redriven_at = now(), redriven_by = p_principal WHERE d.id = p_id;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_execution_id, 'compensation_redriven', p_principal,
            jsonb_build_object('deadLetterId', p_id, 'steps', v_steps));
    PERFORM dw.defer_compensation_job_v1(p_execution_id, NULL);
    RETURN QUERY SELECT p_id, p_execution_id, 'requeued'::text;
END;
$$;
