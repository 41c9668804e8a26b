-- Compensation (migration 0071, README "Compensation"): after a run ends Failed, TimedOut or
-- Cancelled, the compensations of the nodes that had Succeeded run, the last to succeed first, one at
-- a time, each with its own retries, under a dw.compensate job.

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

-- Called by dw.finish_execution_v1 as a run ends otherwise than Succeeded (after its row's update, in
-- its transaction). When the run's plan compensates on that end, a step for each node that had
-- Succeeded and has a compensation, the last to succeed first (its record's time; the later node in
-- the definition among equals), and the job that runs them. A run whose compensation was queued
-- before (it ended, was redriven, and ended again) queues none: dw.redrive_dead_letter_v1 refuses to
-- redrive a compensated run. Returns how many steps were queued.
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
    IF v_on IS NULL OR NOT p_status = ANY (v_on) THEN
        RETURN 0;
    END IF;
    SELECT p.plan INTO v_plan FROM dw.workflow_plans p
     WHERE p.tenant_id = v_tenant AND p.workflow_id = v_workflow AND p.version = v_version;
    -- The plan's compensations read once, joined to the run's nodes by id (a plan of 1,000 nodes is
    -- not walked once per node).
    WITH planned AS (
        SELECT pn ->> 'id' AS node_id, pn -> 'compensation' AS compensation
          FROM jsonb_array_elements(v_plan -> 'nodes') pn
         WHERE jsonb_typeof(pn -> 'compensation') = 'object'
    )
    INSERT INTO dw.compensations (tenant_id, execution_id, node_id, position, action_type, max_attempts,
                                  timeout_seconds)
    SELECT v_tenant, p_execution_id, n.node_id,
           row_number() OVER (ORDER BY n.ended_at DESC, n.position DESC),
           c.compensation ->> 'actionType',
           (c.compensation -> 'retry' ->> 'maxAttempts')::integer,
           (c.compensation ->> 'timeoutSeconds')::double precision
      FROM dw.node_states n
      JOIN planned c ON c.node_id = n.node_id
     WHERE n.execution_id = p_execution_id AND n.status = 'Succeeded';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 THEN
        RETURN 0;
    END IF;
    UPDATE dw.executions e SET compensation_status = 'Compensating' WHERE e.id = p_execution_id;
    INSERT INTO dw.execution_events (tenant_id, execution_id, type, details)
    VALUES (v_tenant, p_execution_id, 'compensation_started',
            jsonb_build_object('runStatus', p_status, 'steps', v_count,
                               'nodes', (SELECT jsonb_agg(c.node_id ORDER BY c.position) FROM dw.compensations c
                                          WHERE c.execution_id = p_execution_id)));
    PERFORM dw.defer_compensation_job_v1(p_execution_id, NULL);
    RETURN v_count;
END;
$$;

-- The next step of a run's compensation for a worker to attempt, in order. outcome:
--   claimed: the step is the caller's (attempt `attempt`, until `due_at`); run it and record it;
--   later:   the next step waits for its retry until `due_at`;
--   held:    another worker holds the step until `due_at`;
--   done:    every step has ended (the run's compensation_status is now Compensated or
--            CompensationFailed); nothing was claimed.
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
    v_failed integer;
    v_succeeded integer;
    v_status text;
BEGIN
    LOOP
        SELECT * INTO v_c FROM dw.compensations c
         WHERE c.execution_id = p_execution_id AND c.status IN ('Pending', 'Running')
         ORDER BY c.position LIMIT 1
           FOR UPDATE;
        EXIT WHEN NOT FOUND;
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
                 WHERE c.execution_id = p_execution_id AND c.node_id = v_c.node_id;
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
         WHERE c.execution_id = p_execution_id AND c.node_id = v_c.node_id;
        INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
        VALUES (v_c.tenant_id, p_execution_id, v_c.node_id, 'compensation_attempt_started',
                jsonb_build_object('attempt', v_c.attempts + 1, 'actionType', v_c.action_type, 'worker', p_worker));
        RETURN QUERY SELECT 'claimed'::text, v_c.node_id, v_c.action_type, v_c.attempts + 1,
                            v_c.attempts + 1 - v_c.attempt_base, now() + make_interval(secs => v_c.timeout_seconds + 60);
        RETURN;
    END LOOP;

    -- Every step has ended: the run's compensation ends (once: a second worker finds it ended).
    SELECT count(*) FILTER (WHERE c.status = 'Failed'), count(*) FILTER (WHERE c.status = 'Succeeded')
      INTO v_failed, v_succeeded
      FROM dw.compensations c WHERE c.execution_id = p_execution_id;
    v_status := CASE WHEN v_failed > 0 THEN 'CompensationFailed' ELSE 'Compensated' END;
    UPDATE dw.executions e SET compensation_status = v_status
     WHERE e.id = p_execution_id AND e.compensation_status = 'Compensating';
    IF FOUND THEN
        INSERT INTO dw.execution_events (execution_id, type, details)
        VALUES (p_execution_id, 'compensation_ended',
                jsonb_build_object('status', v_status, 'succeeded', v_succeeded, 'failed', v_failed));
        IF v_failed > 0 THEN
            -- Someone has to undo what the failed steps' nodes did, or redrive this letter to run
            -- those steps again (dw.redrive_compensation_v1); it keeps the run from retention.
            INSERT INTO dw.dead_letters (kind, execution_id, payload, error, attempts)
            SELECT 'compensation_failed', e.id,
                   jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version,
                                      'runStatus', e.status,
                                      'failedSteps', (SELECT jsonb_agg(c.node_id ORDER BY c.position)
                                                        FROM dw.compensations c
                                                       WHERE c.execution_id = e.id AND c.status = 'Failed')),
                   jsonb_build_object(
                       'code', 'compensation_failed',
                       'message', format('%s of %s compensation steps failed: %s', v_failed, v_failed + v_succeeded,
                                         (SELECT string_agg(format('%s (%s: %s)', c.node_id, c.error ->> 'code',
                                                                   c.error ->> 'message'), '; ' ORDER BY c.position)
                                            FROM dw.compensations c
                                           WHERE c.execution_id = e.id AND c.status = 'Failed'))),
                   (SELECT sum(c.attempts - c.attempt_base)::integer FROM dw.compensations c
                     WHERE c.execution_id = e.id AND c.status = 'Failed')
              FROM dw.executions e WHERE e.id = p_execution_id;
        END IF;
    END IF;
    RETURN QUERY SELECT 'done'::text, NULL::text, NULL::text, NULL::integer, NULL::integer, NULL::timestamptz;
END;
$$;

-- Records an attempt of a step the caller claimed (fenced: the step must still be Running at that
-- attempt; a claim that ran out and was taken over is refused, and nothing is written). p_outcome:
-- Succeeded, Failed (for good), or Retry (a retriable failure with attempts left: the step waits
-- until p_retry_at). Returns whether it was recorded.
CREATE OR REPLACE FUNCTION dw.record_compensation_v1(
    p_execution_id uuid, p_node_id text, p_attempt integer, p_outcome text,
    p_parameters jsonb, p_outputs jsonb, p_error jsonb, p_retry_at timestamptz
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_tenant text;
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
       AND c.status = 'Running'
    RETURNING c.tenant_id INTO v_tenant;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, details)
    VALUES (v_tenant, p_execution_id, p_node_id,
            CASE p_outcome WHEN 'Succeeded' THEN 'compensation_succeeded'
                           WHEN 'Failed' THEN 'compensation_failed'
                           ELSE 'compensation_attempt_failed' END,
            jsonb_strip_nulls(jsonb_build_object('attempt', p_attempt, 'code', p_error ->> 'code',
                                                 'message', p_error ->> 'message', 'retryAt', p_retry_at)));
    RETURN true;
END;
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
    WITH again AS (
        UPDATE dw.compensations c
           SET status = 'Pending', attempt_base = c.attempts, interruptions = 0, error = NULL, outputs = NULL,
               ended_at = NULL,
               next_attempt_at = NULL
         WHERE c.execution_id = p_execution_id AND c.status = 'Failed'
        RETURNING c.node_id, c.position
    )
    SELECT jsonb_agg(again.node_id ORDER BY again.position) INTO v_steps FROM again;
    UPDATE dw.executions e SET compensation_status = 'Compensating' WHERE e.id = p_execution_id;
    UPDATE dw.dead_letters d SET redriven_at = now(), redriven_by = p_principal WHERE d.id = p_id;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_execution_id, 'compensation_redriven', p_principal,
            jsonb_build_object('deadLetterId', p_id, 'steps', v_steps));
    PERFORM dw.defer_compensation_job_v1(p_execution_id, NULL);
    RETURN QUERY SELECT p_id, p_execution_id, 'requeued'::text;
END;
$$;
