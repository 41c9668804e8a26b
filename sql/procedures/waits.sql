-- Waits (timers, signals, approvals) and control of running executions (cancel, suspend, resume).
-- Callers: workers (begin a wait, fire due ones, suspend or cancel the run they hold) and the API
-- (deliver a signal, decide an approval, request cancel/suspend/resume). Error codes as in
-- executions.sql, plus:
--   DW014 the execution has already ended      DW015 the control request does not apply now
--   DW016 approval not found                   DW017 the caller is not one of the approvers
--   DW018 the approval is already decided (by this person, or for good)
--
-- A wait is resolved (consumed) once: its state leaves 'open' under the execution row's lock, in
-- the same transaction that re-queues the run (or tells the worker holding it, on dw_control). The
-- worker then writes the node's outcome from the wait's result with dw.record_attempt_v4, which
-- also evaluates the node's edge conditions (JavaScript, which only workers run).

-- The execution row, locked as every control request and signal takes it (DW012 when there is none).
CREATE OR REPLACE FUNCTION dw.lock_execution_v1(p_execution_id uuid) RETURNS dw.executions LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = p_execution_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'execution % not found', p_execution_id USING ERRCODE = 'DW012';
    END IF;
    RETURN v_e;
END;
$$;

-- Whether a live worker holds the run (it must be told; nobody else may end or suspend it).
CREATE OR REPLACE FUNCTION dw.held_by_live_worker_v1(p_e dw.executions) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_e.status = 'Running' AND p_e.lease_owner IS NOT NULL AND p_e.lease_expires_at > now();
$$;

-- The JSON a worker reads for a wait (dataworkflows.checkpoints.WaitCheckpoint).
CREATE OR REPLACE FUNCTION dw.wait_json_v1(w dw.waits) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', w.id, 'nodeId', w.node_id, 'kind', w.kind, 'state', w.state, 'attempt', w.attempt,
                              'name', w.name, 'correlationKey', w.correlation_key, 'parameters', w.parameters,
                              'createdAt', w.created_at, 'dueAt', w.due_at, 'expiresAt', w.expires_at,
                              'result', w.result);
$$;

-- Resolves an open wait (state open -> p_state) and logs it; NULL when it was not open any more.
CREATE OR REPLACE FUNCTION dw.resolve_wait_v1(
    p_wait_id uuid, p_state text, p_by text, p_result jsonb, p_principal text
) RETURNS dw.waits LANGUAGE plpgsql AS $$
DECLARE
    v_w dw.waits;
BEGIN
    UPDATE dw.waits w SET state = p_state, consumed_at = now(), consumed_by = p_by, result = p_result
     WHERE w.id = p_wait_id AND w.state = 'open'
    RETURNING w.* INTO v_w;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO dw.execution_events (execution_id, node_id, type, principal, details)
    VALUES (v_w.execution_id, v_w.node_id,
            CASE p_state WHEN 'fired' THEN 'timer_fired' WHEN 'received' THEN 'signal_consumed'
                         WHEN 'timed_out' THEN 'wait_timed_out' WHEN 'withdrawn' THEN 'wait_withdrawn'
                         WHEN 'approved' THEN 'approval_approved' WHEN 'rejected' THEN 'approval_rejected'
                         WHEN 'completed' THEN 'child_ended' ELSE 'child_detached' END,
            p_principal,
            jsonb_strip_nulls(jsonb_build_object('waitId', v_w.id, 'kind', v_w.kind, 'name', v_w.name,
                                                 'dueAt', v_w.due_at, 'expiresAt', v_w.expires_at,
                                                 'by', p_by)));
    RETURN v_w;
END;
$$;

-- Timers that came due fire (when p_timers); signal and approval waits past their timeout time out.
-- Callers hold the execution row (the worker through its lease, or acquire). A Suspended run's
-- timers do not fire: a signal to it times out the waits past their timeout, so that none of those
-- takes it, and leaves the timers that came due to fire when the run is resumed (until 2026-12-07 it
-- fired them, with the signal's time).
CREATE OR REPLACE FUNCTION dw.fire_due_waits_internal_v2(p_execution_id uuid, p_timers boolean)
    RETURNS SETOF dw.waits LANGUAGE plpgsql AS $$
DECLARE
    v_w dw.waits;
BEGIN
    FOR v_w IN
        SELECT * FROM dw.waits w
         WHERE w.execution_id = p_execution_id AND w.state = 'open'
           AND ((p_timers AND w.due_at <= now()) OR w.expires_at <= now())
         ORDER BY w.created_at
         FOR UPDATE
    LOOP
        IF v_w.kind = 'timer' THEN
            RETURN NEXT dw.resolve_wait_v1(v_w.id, 'fired', 'timer',
                jsonb_build_object('dueAt', v_w.due_at, 'firedAt', now(),
                                   'lateSeconds', extract(epoch FROM now() - v_w.due_at)), NULL);
        ELSE
            RETURN NEXT dw.resolve_wait_v1(v_w.id, 'timed_out', 'timeout',
                jsonb_build_object('code', 'wait_timeout',
                                   'message', format('the %s wait%s timed out at %s (waiting since %s)', v_w.kind,
                                                     COALESCE(' for ' || quote_literal(v_w.name), ''),
                                                     dw.iso_time_v1(v_w.expires_at),
                                                     dw.iso_time_v1(v_w.created_at))), NULL);
        END IF;
    END LOOP;
END;
$$;

-- Timers included (a run that is not Suspended).
CREATE OR REPLACE FUNCTION dw.fire_due_waits_internal_v1(p_execution_id uuid)
    RETURNS SETOF dw.waits LANGUAGE sql AS $$
    SELECT * FROM dw.fire_due_waits_internal_v2(p_execution_id, true);
$$;

-- The worker's call for the same, fenced; answers every resolved wait not yet recorded.
CREATE OR REPLACE FUNCTION dw.fire_due_waits_v1(p_execution_id uuid, p_token bigint)
    RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    PERFORM dw.fire_due_waits_internal_v1(p_execution_id);
    -- Every wait resolved and not recorded, not only those fired now: one a signal resolved just
    -- before its timeout, whose NOTIFY this worker has not handled yet, comes back too.
    RETURN QUERY SELECT dw.wait_json_v1(w) FROM dw.waits w
                  WHERE w.execution_id = p_execution_id AND w.state NOT IN ('open', 'withdrawn')
                    AND w.recorded_at IS NULL
                  ORDER BY w.consumed_at;
END;
$$;

-- A buffered signal is consumed by a wait: the signal row names the wait, the wait holds the signal.
CREATE OR REPLACE FUNCTION dw.consume_signal_v1(p_wait_id uuid, p_signal dw.signals)
    RETURNS dw.waits LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dw.signals s SET consumed_at = now(), wait_id = p_wait_id WHERE s.id = p_signal.id;
    RETURN dw.resolve_wait_v1(p_wait_id, 'received', 'signal:' || p_signal.signal_id,
        jsonb_strip_nulls(jsonb_build_object('signalId', p_signal.signal_id, 'name', p_signal.name,
                                             'correlationKey', p_signal.correlation_key,
                                             'payload', p_signal.payload, 'sentBy', p_signal.sent_by,
                                             'receivedAt', p_signal.received_at)),
        p_signal.sent_by);
END;
$$;

-- The run learns that a wait was resolved: a parked run gets a run job now (unless one is already
-- due), a run a worker holds gets a NOTIFY on dw_control (its lease renewal would tell it too).
-- A Suspended run stays put: resuming it queues the job. The job goes to the run's own queue, not
-- to the caller's (p_queue, which the API passes, is not read; see dw.release_execution_v1).
CREATE OR REPLACE FUNCTION dw.wake_run_v1(p_e dw.executions, p_queue text)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_e.status = 'Waiting' THEN
        -- Due now: recovery re-queues it if the job is lost (a worker dies as it takes it).
        UPDATE dw.executions e SET wake_at = now() WHERE e.id = p_e.id;
        IF NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                        WHERE (j.args ->> 'execution_id') = p_e.id::text AND j.status = 'todo'
                          AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())) THEN
            PERFORM dw.defer_run_job_v1(p_e.id, p_e.queue, NULL);
        END IF;
    ELSIF p_e.status = 'Running' AND p_e.lease_owner IS NOT NULL THEN
        -- Kept for dw.park_execution_v2, in case the holder parks before it hears the NOTIFY.
        UPDATE dw.executions e SET wake_requested_at = now() WHERE e.id = p_e.id;
        PERFORM pg_notify('dw_control', p_e.id::text);
    END IF;
END;
$$;

-- When a parked run must next wake up: now if a resolved wait or a Ready node waits for a worker,
-- else the earliest retry, timer, wait timeout or the workflow's deadline. NULL when only signals
-- and approvals without a timeout remain: nothing but their arrival wakes the run.
CREATE OR REPLACE FUNCTION dw.run_wake_at_v1(p_execution_id uuid)
    RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT min(t) FROM (
        SELECT now() AS t FROM dw.waits w
         WHERE w.execution_id = p_execution_id AND w.state NOT IN ('open', 'withdrawn') AND w.recorded_at IS NULL
        UNION ALL
        SELECT now() FROM dw.node_states n
         WHERE n.execution_id = p_execution_id
           AND (n.status = 'Ready'
                -- A Running node is a forEach a worker must carry on now, unless it waits for the
                -- children of its items (their end wakes the run) or only for its items' retries
                -- (their times come next).
                OR (n.status = 'Running'
                    AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i
                                     WHERE i.execution_id = n.execution_id AND i.node_id = n.node_id
                                       AND i.status = 'Running' AND i.child_execution_id IS NOT NULL)
                    AND (EXISTS (SELECT 1 FROM dw.foreach_items i
                                  WHERE i.execution_id = n.execution_id AND i.node_id = n.node_id
                                    AND (i.status = 'Pending' OR (i.status = 'Running' AND i.child_execution_id IS NULL)))
                         OR NOT EXISTS (SELECT 1 FROM dw.foreach_items i
                                         WHERE i.execution_id = n.execution_id AND i.node_id = n.node_id
                                           AND i.status = 'Waiting'))))
        UNION ALL
        SELECT i.next_attempt_at FROM dw.foreach_items i
         WHERE i.execution_id = p_execution_id AND i.status = 'Waiting'
        UNION ALL
        SELECT n.next_attempt_at FROM dw.node_states n
         WHERE n.execution_id = p_execution_id AND n.status = 'Waiting' AND n.next_attempt_at IS NOT NULL
        UNION ALL
        SELECT COALESCE(w.due_at, w.expires_at) FROM dw.waits w
         WHERE w.execution_id = p_execution_id AND w.state = 'open'
        UNION ALL
        SELECT e.deadline_at FROM dw.executions e WHERE e.id = p_execution_id
    ) due;
$$;

-- A node starts waiting: the wait row, the node Waiting, the event, in the node attempt's fenced
-- transaction. A signal buffered before the wait started is consumed at once, and a timer already
-- due fires at once; the answer says which (state other than 'open').
CREATE OR REPLACE FUNCTION dw.begin_wait_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_kind text, p_name text,
    p_correlation_key text, p_parameters jsonb, p_details jsonb, p_due_at timestamptz, p_expires_at timestamptz
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_w dw.waits;
    v_s dw.signals;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    UPDATE dw.node_states n SET status = 'Waiting', next_attempt_at = NULL
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id AND n.status = 'Running'
       AND n.attempts = p_attempt;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % of execution % has no attempt % in flight', p_node_id, p_execution_id, p_attempt
            USING ERRCODE = 'DW011';
    END IF;
    INSERT INTO dw.waits (tenant_id, execution_id, node_id, attempt, kind, name, correlation_key, parameters,
                          details, due_at, expires_at)
    VALUES (v_e.tenant_id, p_execution_id, p_node_id, p_attempt, p_kind, p_name, p_correlation_key, p_parameters,
            COALESCE(p_details, '{}'::jsonb), p_due_at, p_expires_at)
    RETURNING * INTO v_w;
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, 'wait_started',
            jsonb_strip_nulls(jsonb_build_object('waitId', v_w.id, 'kind', p_kind, 'name', p_name,
                                                 'correlationKey', p_correlation_key, 'attempt', p_attempt,
                                                 'dueAt', p_due_at, 'expiresAt', p_expires_at)));

    IF p_kind = 'signal' THEN
        SELECT * INTO v_s FROM dw.signals s
         WHERE s.execution_id = p_execution_id AND s.name = p_name AND s.consumed_at IS NULL
           AND (p_correlation_key IS NULL OR s.correlation_key = p_correlation_key)
         ORDER BY s.id LIMIT 1
         FOR UPDATE;
        IF FOUND THEN
            v_w := dw.consume_signal_v1(v_w.id, v_s);
        END IF;
    END IF;
    IF v_w.state = 'open' AND (v_w.due_at <= now() OR v_w.expires_at <= now()) THEN
        PERFORM dw.fire_due_waits_internal_v1(p_execution_id);
        SELECT * INTO v_w FROM dw.waits w WHERE w.id = v_w.id;
    END IF;
    RETURN dw.wait_json_v1(v_w);
END;
$$;

-- POST /executions/{id}/signals/{name}. Idempotent on the signal id: the same signal again (the
-- same name, correlation key and payload) answers 'duplicate' with what the first delivery did; the
-- id reused for another signal is refused (DW019), as a requestId reused for another trigger is
-- (p_check false: not compared, v1's contract). A signal with no wait for it yet is buffered. A wait
-- past its timeout takes no signal, though no worker has timed it out yet (the run is Suspended, or
-- parked and its waker not come): it times out here, the run is woken to follow its failure edge,
-- and the signal is buffered as for no wait.
CREATE OR REPLACE FUNCTION dw.deliver_signal_v2(
    p_execution_id uuid, p_name text, p_signal_id text, p_correlation_key text, p_payload jsonb,
    p_principal text, p_queue text, p_check boolean
) RETURNS TABLE (signal_id text, outcome text, wait_id uuid, node_id text, execution_status text)
    LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_s dw.signals;
    v_w dw.waits;
    v_id text := COALESCE(p_signal_id, gen_random_uuid()::text);
    v_differs text;
BEGIN
    -- The execution row serializes deliveries: concurrent copies of one signal wait here, then
    -- find the first one's row.
    v_e := dw.lock_execution_v1(p_execution_id);
    SELECT * INTO v_s FROM dw.signals s WHERE s.execution_id = p_execution_id AND s.signal_id = v_id;
    IF FOUND THEN
        v_differs := CASE
            WHEN NOT p_check THEN NULL
            WHEN v_s.name IS DISTINCT FROM p_name THEN 'name'
            WHEN v_s.correlation_key IS DISTINCT FROM p_correlation_key THEN 'correlation key'
            WHEN v_s.payload IS DISTINCT FROM COALESCE(p_payload, 'null'::jsonb) THEN 'payload'
        END;
        IF v_differs IS NOT NULL THEN
            RAISE EXCEPTION 'signal id % was already used for a signal with another %', v_id, v_differs
                USING ERRCODE = 'DW019', HINT = 'use a new signalId for a different signal';
        END IF;
        RETURN QUERY SELECT v_s.signal_id, 'duplicate'::text, v_s.wait_id,
                            (SELECT w.node_id FROM dw.waits w WHERE w.id = v_s.wait_id), v_e.status;
        RETURN;
    END IF;
    IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RAISE EXCEPTION 'execution % has already ended (%); it takes no more signals', p_execution_id, v_e.status
            USING ERRCODE = 'DW014';
    END IF;
    INSERT INTO dw.signals (execution_id, name, signal_id, correlation_key, payload, sent_by)
    VALUES (p_execution_id, p_name, v_id, p_correlation_key, COALESCE(p_payload, 'null'::jsonb), p_principal)
    RETURNING * INTO v_s;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_execution_id, 'signal_received', p_principal,
            jsonb_strip_nulls(jsonb_build_object('signalId', v_id, 'name', p_name,
                                                 'correlationKey', p_correlation_key)));

    IF EXISTS (SELECT 1 FROM dw.waits w
                WHERE w.execution_id = p_execution_id AND w.state = 'open' AND w.expires_at <= now()) THEN
        PERFORM dw.fire_due_waits_internal_v2(p_execution_id, v_e.status <> 'Suspended');
        PERFORM dw.wake_run_v1(v_e, p_queue);
    END IF;
    SELECT * INTO v_w FROM dw.waits w
     WHERE w.execution_id = p_execution_id AND w.kind = 'signal' AND w.state = 'open' AND w.name = p_name
       AND (w.correlation_key IS NULL OR w.correlation_key = p_correlation_key)
     ORDER BY w.created_at LIMIT 1
     FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT v_id, 'buffered'::text, NULL::uuid, NULL::text, v_e.status;
        RETURN;
    END IF;
    v_w := dw.consume_signal_v1(v_w.id, v_s);
    PERFORM dw.wake_run_v1(v_e, p_queue);
    RETURN QUERY SELECT v_id, 'consumed'::text, v_w.id, v_w.node_id, v_e.status;
END;
$$;

-- v1 (the previous release's API): a reused signal id answers 'duplicate', whatever it carries.
CREATE OR REPLACE FUNCTION dw.deliver_signal_v1(
    p_execution_id uuid, p_name text, p_signal_id text, p_correlation_key text, p_payload jsonb,
    p_principal text, p_queue text
) RETURNS TABLE (signal_id text, outcome text, wait_id uuid, node_id text, execution_status text)
    LANGUAGE sql AS $$
    SELECT * FROM dw.deliver_signal_v2(p_execution_id, p_name, p_signal_id, p_correlation_key, p_payload,
                                       p_principal, p_queue, false);
$$;

-- POST /approvals/{id}/decision. Approved once `required` approvers approve; rejected as soon as
-- that can no longer happen (so one rejection rejects an approval that needs everyone). Refused
-- once the approval is past its timeout. From its escalation's time (details.escalation.at), its
-- escalation's approvers may decide too, and count among those who still could approve (with
-- quorum all they stand in for approvers who have not decided: one rejection still rejects).
CREATE OR REPLACE FUNCTION dw.decide_approval_v1(
    p_wait_id uuid, p_principal text, p_decision text, p_comment text, p_queue text
) RETURNS TABLE (approval_id uuid, execution_id uuid, node_id text, state text, approvals integer,
                 rejections integer, required integer)
    LANGUAGE plpgsql AS $$
DECLARE
    v_execution uuid;
    v_e dw.executions;
    v_w dw.waits;
    v_yes integer;
    v_no integer;
    v_required integer;
    v_total integer;
    v_state text := 'open';
    v_result jsonb;
    v_escalated boolean;
BEGIN
    IF p_decision IS NULL OR p_decision NOT IN ('approve', 'reject') THEN
        RAISE EXCEPTION 'decision must be approve or reject, not %', COALESCE(p_decision, 'nothing')
            USING ERRCODE = '22023';
    END IF;
    SELECT w.execution_id INTO v_execution FROM dw.waits w WHERE w.id = p_wait_id AND w.kind = 'approval';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'approval % not found', p_wait_id USING ERRCODE = 'DW016';
    END IF;
    -- Lock order as everywhere: the execution, then its rows.
    v_e := dw.lock_execution_v1(v_execution);
    SELECT * INTO v_w FROM dw.waits w WHERE w.id = p_wait_id FOR UPDATE;
    v_escalated := COALESCE((v_w.details #>> '{escalation,at}')::timestamptz <= now(), false);
    IF p_principal IS NULL OR NOT ((v_w.details -> 'approvers') ? p_principal
                                   OR (v_escalated AND (v_w.details #> '{escalation,approvers}') ? p_principal)) THEN
        IF (v_w.details #> '{escalation,approvers}') ? p_principal THEN
            RAISE EXCEPTION '% decides approval % from %, its escalation', quote_literal(p_principal), p_wait_id,
                dw.iso_time_v1((v_w.details #>> '{escalation,at}')::timestamptz) USING ERRCODE = 'DW017';
        END IF;
        RAISE EXCEPTION '% is not an approver of approval %', COALESCE(quote_literal(p_principal), 'an anonymous caller'),
            p_wait_id USING ERRCODE = 'DW017';
    END IF;
    IF v_w.state <> 'open' THEN
        RAISE EXCEPTION 'approval % is already %', p_wait_id, v_w.state USING ERRCODE = 'DW018';
    END IF;
    -- Past its timeout, though no worker has timed it out yet (the run is Suspended, or parked and
    -- its waker not come): no decision counts any more. (Refused, so nothing here is kept: the
    -- worker times it out as it would have.)
    IF v_w.expires_at <= now() THEN
        RAISE EXCEPTION 'approval % expired at % (its timeout); it takes no more decisions', p_wait_id,
            dw.iso_time_v1(v_w.expires_at)
            USING ERRCODE = 'DW018';
    END IF;
    INSERT INTO dw.approval_decisions (wait_id, principal, decision, comment)
    VALUES (p_wait_id, p_principal, p_decision, p_comment)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has already decided approval %', quote_literal(p_principal), p_wait_id
            USING ERRCODE = 'DW018';
    END IF;
    INSERT INTO dw.execution_events (execution_id, node_id, type, principal, details)
    VALUES (v_w.execution_id, v_w.node_id, 'approval_decided', p_principal,
            jsonb_strip_nulls(jsonb_build_object('approvalId', p_wait_id, 'decision', p_decision,
                                                 'comment', p_comment)));

    SELECT count(*) FILTER (WHERE d.decision = 'approve'), count(*) FILTER (WHERE d.decision = 'reject')
      INTO v_yes, v_no FROM dw.approval_decisions d WHERE d.wait_id = p_wait_id;
    v_required := (v_w.details ->> 'required')::integer;
    -- Those who may decide: its approvers, and once it has escalated, its escalation's too.
    v_total := jsonb_array_length(v_w.details -> 'approvers')
               + CASE WHEN v_escalated
                      THEN (SELECT count(*) FROM jsonb_array_elements_text(v_w.details #> '{escalation,approvers}') x
                             WHERE NOT (v_w.details -> 'approvers') ? x)::integer
                      ELSE 0 END;
    IF v_yes >= v_required THEN
        v_state := 'approved';
    ELSIF v_no > 0 AND v_w.details ->> 'quorum' = 'all' THEN
        -- Everyone had to approve: one rejection decides, escalated or not (an escalation's
        -- approvers stand in for those who have not decided, not for one who rejected).
        v_state := 'rejected';
    ELSIF v_yes + (v_total - v_yes - v_no) < v_required THEN
        v_state := 'rejected';
    END IF;
    IF v_state <> 'open' THEN
        SELECT jsonb_build_object(
                   'decision', v_state, 'approvals', v_yes, 'rejections', v_no, 'required', v_required,
                   'decisions', COALESCE(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'principal', d.principal, 'decision', d.decision, 'comment', d.comment,
                       'decidedAt', d.decided_at)) ORDER BY d.decided_at, d.principal), '[]'::jsonb),
                   'comments', COALESCE(jsonb_agg(d.comment ORDER BY d.decided_at, d.principal)
                                            FILTER (WHERE d.comment IS NOT NULL), '[]'::jsonb))
          INTO v_result
          FROM dw.approval_decisions d WHERE d.wait_id = p_wait_id;
        PERFORM dw.resolve_wait_v1(p_wait_id, v_state, 'approval', v_result, p_principal);
        PERFORM dw.wake_run_v1(v_e, p_queue);
    END IF;
    RETURN QUERY SELECT p_wait_id, v_w.execution_id, v_w.node_id, v_state, v_yes, v_no, v_required;
END;
$$;

-- Ends a run as Cancelled, with the error saying who asked and why. Callers hold the row.
CREATE OR REPLACE FUNCTION dw.finish_cancelled_v1(p_e dw.executions) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dw.finish_execution_v1(p_e.id, 'Cancelled',
        jsonb_strip_nulls(jsonb_build_object(
            'code', 'cancelled',
            'message', 'cancelled' || COALESCE(' by ' || p_e.cancel_requested_by, '')
                       || COALESCE(': ' || p_e.cancel_reason, ''),
            'reason', p_e.cancel_reason, 'by', p_e.cancel_requested_by,
            'requestedAt', p_e.cancel_requested_at)),
        'execution_cancelled');
END;
$$;

-- Whether the run's outcome is decided though the run has not ended: every node has ended (it
-- succeeds, with the outputs its worker renders, or fails if they cannot be rendered), or a node
-- failed with nothing to handle the failure (it fails, fail fast: that node's dead letter, and the
-- run's end stops whatever else is in flight). Its worker ends it so; if that worker stopped first,
-- the one that takes it back does (the node checkpoints say which node failed unhandled:
-- dw.run_checkpoints_v1). Callers hold the run's row. Only cancel and suspension branches call it.
CREATE OR REPLACE FUNCTION dw.outcome_decided_v1(p_execution_id uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (SELECT 1 FROM dw.node_states n
                        WHERE n.execution_id = p_execution_id
                          AND n.status NOT IN ('Succeeded', 'Failed', 'Skipped', 'Cancelled'))
        OR EXISTS (SELECT 1 FROM dw.node_states n
                    WHERE n.execution_id = p_execution_id AND n.end_reason = 'unhandled_failure');
$$;

-- Whether a cancel of this run comes too late: its outcome is decided (dw.outcome_decided_v1), so
-- nothing is left to stop. Such a cancel stays requested (its cancel_requested event,
-- executions.cancel_requested_at) but ends nothing: the run ends as it would have, and that end
-- records cancel_too_late (dw.complete_execution_v2). As Temporal and Conductor do: a cancel
-- request is a request to stop work, and a run whose work is all done completes. Callers hold the
-- run's row. Only cancel branches call it.
-- (Before, a run with a node failed unhandled was not "too late": its worker's successor could not
-- tell from the checkpoints that the run had failed, and would have ended it Succeeded.)
CREATE OR REPLACE FUNCTION dw.cancel_too_late_v1(p_execution_id uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT dw.outcome_decided_v1(p_execution_id);
$$;

-- A suspension that comes when the run's outcome is decided (dw.outcome_decided_v1) is too late,
-- as a cancel then is: nothing is left to hold back, and the run ends as it would have. The request
-- is answered (suspend_requested_at cleared, as a resume withdraws one) and the log says so
-- (suspend_too_late); the run's own end follows. Callers hold the run's row.
CREATE OR REPLACE FUNCTION dw.refuse_late_suspension_v1(p_e dw.executions, p_reason text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dw.executions e SET suspend_requested_at = NULL, suspend_requested_by = NULL WHERE e.id = p_e.id;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_e.id, 'suspend_too_late', p_e.suspend_requested_by,
            jsonb_strip_nulls(jsonb_build_object('reason', p_reason, 'requestedAt', p_e.suspend_requested_at,
                                                 'status', p_e.status)));
END;
$$;

-- POST /executions/{id}/cancel. A run nobody holds (Pending, Waiting, Suspended, or its worker
-- gone) ends here; a run a worker holds is told (NOTIFY dw_control, and its lease renewal) and
-- its worker cancels the running attempts and ends it. A run whose outcome is decided (every node
-- has ended, or one failed unhandled) is not cancelled (dw.cancel_too_late_v1): its worker, or the
-- one that takes it back, ends it as it would have. outcome: cancelled | requested | too_late |
-- already_requested | already_cancelled.
CREATE OR REPLACE FUNCTION dw.request_cancel_v1(
    p_execution_id uuid, p_principal text, p_reason text
) RETURNS TABLE (status text, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.lock_execution_v1(p_execution_id);
    IF v_e.status = 'Cancelled' THEN
        RETURN QUERY SELECT v_e.status, 'already_cancelled'::text;
        RETURN;
    END IF;
    IF v_e.status IN ('Succeeded', 'Failed', 'TimedOut') THEN
        RAISE EXCEPTION 'execution % has already ended (%); there is nothing to cancel', p_execution_id, v_e.status
            USING ERRCODE = 'DW014';
    END IF;
    IF v_e.cancel_requested_at IS NOT NULL THEN
        RETURN QUERY SELECT v_e.status, 'already_requested'::text;
        RETURN;
    END IF;
    UPDATE dw.executions e
       SET cancel_requested_at = now(), cancel_requested_by = p_principal, cancel_reason = p_reason
     WHERE e.id = p_execution_id
    RETURNING * INTO v_e;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_execution_id, 'cancel_requested', p_principal,
            jsonb_strip_nulls(jsonb_build_object('reason', p_reason, 'status', v_e.status)));
    -- Not for a Suspended run: no worker would end it until someone resumed it. (A run whose outcome
    -- is decided is not suspended, dw.refuse_late_suspension_v1, but one suspended before that rule may be.)
    IF v_e.status <> 'Suspended' AND dw.cancel_too_late_v1(p_execution_id) THEN
        -- Nothing to stop, and nobody to tell: a worker holding it ends it now, one that takes it
        -- back later (recovery) ends it then.
        RETURN QUERY SELECT v_e.status, 'too_late'::text;
        RETURN;
    END IF;
    IF dw.held_by_live_worker_v1(v_e) THEN
        PERFORM pg_notify('dw_control', p_execution_id::text);
        RETURN QUERY SELECT v_e.status, 'requested'::text;
        RETURN;
    END IF;
    PERFORM dw.finish_cancelled_v1(v_e);
    RETURN QUERY SELECT 'Cancelled'::text, 'cancelled'::text;
END;
$$;

-- The worker holding a run whose cancel was requested: its running attempts are stopped, it ends
-- the run (fenced). Kept for the previous release's workers (and, through v2, earlier commits'),
-- which stop their node tasks before they call it and read no answer: they log the run cancelled and
-- leave it. A cancel that comes too late (dw.cancel_too_late_v1: the run's outcome is decided) ends
-- nothing here either: the run is handed back (dw.release_execution_v1, reason cancel_too_late) as
-- dw.cancel_execution_v3's caller hands it back when it stopped node tasks, and the worker that
-- takes it ends it as it would have (Succeeded with its outputs, or Failed), recording
-- cancel_too_late.
CREATE OR REPLACE FUNCTION dw.cancel_execution_v1(p_execution_id uuid, p_token bigint)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NULL THEN
        RAISE EXCEPTION 'execution % has no cancel request', p_execution_id USING ERRCODE = 'DW013';
    END IF;
    IF dw.cancel_too_late_v1(p_execution_id) THEN
        PERFORM dw.release_execution_v1(p_execution_id, p_token, NULL, 'cancel_too_late');
        RETURN;
    END IF;
    PERFORM dw.finish_cancelled_v1(v_e);
END;
$$;

-- POST /executions/{id}/suspend. A run nobody holds is Suspended here; a held one is told, and its
-- worker lets running attempts finish, starts nothing new, and suspends it (suspend_execution_v1).
-- A run whose outcome is decided is not suspended (dw.refuse_late_suspension_v1): it ends as it would
-- have. outcome: suspended | requested | too_late | already_suspended | already_requested.
CREATE OR REPLACE FUNCTION dw.request_suspend_v1(
    p_execution_id uuid, p_principal text, p_reason text
) RETURNS TABLE (status text, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.lock_execution_v1(p_execution_id);
    IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RAISE EXCEPTION 'execution % has already ended (%); there is nothing to suspend', p_execution_id, v_e.status
            USING ERRCODE = 'DW014';
    END IF;
    IF v_e.cancel_requested_at IS NOT NULL THEN
        RAISE EXCEPTION 'execution % is being cancelled', p_execution_id USING ERRCODE = 'DW015';
    END IF;
    IF v_e.status = 'Suspended' THEN
        RETURN QUERY SELECT v_e.status, 'already_suspended'::text;
        RETURN;
    END IF;
    IF v_e.suspend_requested_at IS NOT NULL THEN
        RETURN QUERY SELECT v_e.status, 'already_requested'::text;
        RETURN;
    END IF;
    UPDATE dw.executions e SET suspend_requested_at = now(), suspend_requested_by = p_principal
     WHERE e.id = p_execution_id
    RETURNING * INTO v_e;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_execution_id, 'suspend_requested', p_principal,
            jsonb_strip_nulls(jsonb_build_object('reason', p_reason, 'status', v_e.status)));
    IF dw.outcome_decided_v1(p_execution_id) THEN
        -- Nothing to hold back: a worker holding it ends it now, one that takes it back later ends it then.
        PERFORM dw.refuse_late_suspension_v1(v_e, p_reason);
        RETURN QUERY SELECT v_e.status, 'too_late'::text;
        RETURN;
    END IF;
    IF dw.held_by_live_worker_v1(v_e) THEN
        PERFORM pg_notify('dw_control', p_execution_id::text);
        RETURN QUERY SELECT v_e.status, 'requested'::text;
        RETURN;
    END IF;
    IF dw.has_abandoned_attempt_v1(p_execution_id) THEN
        -- Its worker stopped mid-attempt: the run is queued again (handed back) or will be (recovery);
        -- the next holder records the attempt as interrupted, then suspends the run.
        RETURN QUERY SELECT v_e.status, 'requested'::text;
        RETURN;
    END IF;
    PERFORM dw.suspend_now_v1(v_e, NULL);
    RETURN QUERY SELECT 'Suspended'::text, 'suspended'::text;
END;
$$;

-- Changes a run's priority (README "Run priority"): its row, so that every job it gets from now on
-- carries the new one (dw.defer_run_job_v1), and its queued jobs (todo), so that it moves in line at
-- once. An ended run refuses (DW014: there is nothing to move). Children it already started keep
-- theirs (each is changed on its own: locking them here, after the parent's row, would break the
-- lock order, composition.sql); children it starts later take the new one. The run's row first, as
-- every control request; then its queued jobs (dw.move_queued_run_jobs_v1). The same priority again
-- changes and logs nothing (changed false), but still moves a queued job left at another one (a
-- fetch held it past dw.move_queued_run_jobs_v1's wait, then rolled back). A job 'doing' is left: a
-- worker that hands it back after a lost answer gives it the run's (dw.release_fetched_lease_v1).
CREATE OR REPLACE FUNCTION dw.set_execution_priority_v1(p_execution_id uuid, p_priority integer, p_principal text)
    RETURNS TABLE (status text, priority integer, previous integer, changed boolean, jobs integer)
    LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_promised timestamptz;
BEGIN
    IF p_priority IS NULL OR p_priority NOT BETWEEN -100 AND 100 THEN
        RAISE EXCEPTION 'a run''s priority is between -100 and 100, not %', COALESCE(p_priority::text, 'null')
            USING ERRCODE = '22023';
    END IF;
    v_e := dw.lock_execution_v1(p_execution_id);
    IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RAISE EXCEPTION 'execution % has already ended (%); its priority no longer matters', p_execution_id, v_e.status
            USING ERRCODE = 'DW014';
    END IF;
    IF v_e.priority = p_priority THEN
        RETURN QUERY SELECT v_e.status, p_priority, p_priority, false, dw.move_queued_run_jobs_v1(p_execution_id, p_priority);
        RETURN;
    END IF;
    UPDATE dw.executions e SET priority = p_priority WHERE e.id = p_execution_id;
    -- A raised run waiting for a promised start time under its workflow's rate is promised again, as
    -- a run held back now at that priority would be (until this release it kept its time until its
    -- next promise).
    v_promised := dw.repromise_raised_run_v1(v_e, p_priority);
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_execution_id, 'priority_changed', p_principal,
            jsonb_build_object('priority', p_priority, 'previous', v_e.priority, 'status', v_e.status)
            || CASE WHEN v_promised IS NOT NULL
                    THEN jsonb_build_object('promisedAt', v_promised, 'previousPromisedAt', v_e.rate_slot_at)
                    ELSE '{}' END);
    RETURN QUERY SELECT v_e.status, p_priority, v_e.priority::integer, true,
                        dw.move_queued_run_jobs_v1(p_execution_id, p_priority);
END;
$$;

-- The unfinished runs below a run (its children, theirs, detached ones too) take priority p_priority
-- (PUT /executions/{id}/priority with descendants: after the run's own change, in a transaction of
-- its own: this locks no ancestor, so a child's end, which locks the child and then its parent,
-- does not wait in a cycle with it). A run whose row is locked at that moment (a worker's record or
-- fetch, an end; or one that ended meanwhile) is skipped and counted (the same request again changes
-- it, if it has not ended), as is a queued job a fetch holds (it runs now; or, the fetch rolled
-- back, it stays queued at its old priority). A run
-- already at p_priority with a queued job at another (one a fetch held then) is taken too: its job
-- moves, as a single run's same priority again moves one (until this release the same request
-- again left it, the run no longer below the priority asked). Each run changed logs
-- priority_changed (byAncestor: the run asked).
CREATE OR REPLACE FUNCTION dw.set_descendants_priority_v1(p_execution_id uuid, p_priority integer, p_principal text)
    RETURNS TABLE (changed integer, skipped integer, jobs integer)
    LANGUAGE plpgsql AS $$
DECLARE
    v_root uuid;
BEGIN
    IF p_priority IS NULL OR p_priority NOT BETWEEN -100 AND 100 THEN
        RAISE EXCEPTION 'a run''s priority is between -100 and 100, not %', COALESCE(p_priority::text, 'null')
            USING ERRCODE = '22023';
    END IF;
    SELECT e.root_execution_id INTO v_root FROM dw.executions e WHERE e.id = p_execution_id;
    RETURN QUERY
    WITH candidates AS (
        -- Its tree's runs (the root's index), those below it by their path: at another priority, or
        -- with a queued job left at another.
        SELECT m.id FROM dw.executions m
         WHERE m.root_execution_id = v_root AND m.id <> p_execution_id AND p_execution_id = ANY (m.path)
           AND m.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
           AND (m.priority <> p_priority
                OR EXISTS (SELECT 1 FROM procrastinate_jobs j
                            WHERE (j.args ->> 'execution_id') = m.id::text AND j.status = 'todo'
                              AND j.task_name = 'dw.run_execution' AND j.priority <> p_priority))
    ), locked AS (
        -- Not ended, checked again on the row locked: a run that ended after this statement began
        -- (its candidates were read then) was locked in its ended version, and changed and logged
        -- after its end (a review: priority_changed after execution_succeeded).
        SELECT m.id, m.priority AS previous, m.status FROM dw.executions m
         WHERE m.id IN (SELECT c.id FROM candidates c)
           AND m.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
         ORDER BY m.id
           FOR NO KEY UPDATE OF m SKIP LOCKED
    ), raised AS (
        UPDATE dw.executions e SET priority = p_priority FROM locked l
         WHERE e.id = l.id AND l.previous <> p_priority
        RETURNING e.id, l.previous, l.status
    ), logged AS (
        INSERT INTO dw.execution_events (execution_id, type, principal, details)
        SELECT r.id, 'priority_changed', p_principal,
               jsonb_build_object('priority', p_priority, 'previous', r.previous, 'status', r.status,
                                  'byAncestor', p_execution_id)
          FROM raised r
    ), waiting AS (
        -- The queued jobs of the runs it holds.
        SELECT j.id FROM procrastinate_jobs j
         WHERE (j.args ->> 'execution_id') IN (SELECT l.id::text FROM locked l) AND j.status = 'todo'
           AND j.task_name = 'dw.run_execution' AND j.priority <> p_priority
    ), queued AS (
        SELECT j.id FROM procrastinate_jobs j
         WHERE j.id IN (SELECT w.id FROM waiting w)
           FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE procrastinate_jobs j SET priority = p_priority FROM queued q WHERE j.id = q.id RETURNING j.id
    )
    SELECT (SELECT count(*) FROM raised)::integer,
           ((SELECT count(*) FROM candidates) - (SELECT count(*) FROM locked)
            + (SELECT count(*) FROM waiting) - (SELECT count(*) FROM moved))::integer,
           (SELECT count(*) FROM moved)::integer;
END;
$$;

-- Gives the run's queued jobs (todo) priority p_priority; how many it changed. The caller holds the
-- run's row. First the jobs nobody holds (SKIP LOCKED). A job a worker's fetch holds at that moment
-- (it locks a job and then only tries the run's row, which this transaction holds) is then waited
-- for, a moment at most: a fetch that commits takes it ('doing': it runs now, where it stands, and
-- is not changed), one that rolls back (an acquire that raised, a lost connection) leaves it queued,
-- and it is changed, instead of waiting at its old priority for as long as it is queued. Past the
-- moment (a fetch may wait for other runs' rows while it holds its jobs), or on a deadlock, it is
-- left as it is: the same priority again moves it.
CREATE OR REPLACE FUNCTION dw.move_queued_run_jobs_v1(p_execution_id uuid, p_priority integer)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_moved integer;
    v_held integer;
    v_lock_timeout text;
BEGIN
    WITH queued AS (
        SELECT j.id FROM procrastinate_jobs j
         WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo'
           AND j.task_name = 'dw.run_execution' AND j.priority <> p_priority
         FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE procrastinate_jobs j SET priority = p_priority FROM queued WHERE j.id = queued.id RETURNING j.id
    )
    SELECT count(*) INTO v_moved FROM moved;
    IF NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                    WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo'
                      AND j.task_name = 'dw.run_execution' AND j.priority <> p_priority) THEN
        RETURN v_moved;
    END IF;
    v_lock_timeout := current_setting('lock_timeout');
    BEGIN
        PERFORM set_config('lock_timeout', '100ms', true);
        -- Rechecked once the lock is granted: a job the fetch took is 'doing' and left alone.
        UPDATE procrastinate_jobs j SET priority = p_priority
         WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo'
           AND j.task_name = 'dw.run_execution' AND j.priority <> p_priority;
        GET DIAGNOSTICS v_held = ROW_COUNT;
        PERFORM set_config('lock_timeout', v_lock_timeout, true);
        RETURN v_moved + v_held;
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        -- Rolled back (the setting with it); the run's row and the jobs moved above stay.
        RETURN v_moved;
    END;
END;
$$;

-- Whether a node of the run is Running with nobody running it (the caller knows no live worker
-- holds the run): an attempt its worker was cut off from. Not a forEach node: its Running attempt
-- is the checkpoint its items resume from, kept while suspended.
CREATE OR REPLACE FUNCTION dw.has_abandoned_attempt_v1(p_execution_id uuid) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM dw.node_states n
                    WHERE n.execution_id = p_execution_id AND n.status = 'Running'
                      AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i
                                       WHERE i.execution_id = n.execution_id AND i.node_id = n.node_id));
$$;

-- The run becomes Suspended, holding nothing; its open timers keep their due times and fire when
-- it is resumed if they came due meanwhile.
CREATE OR REPLACE FUNCTION dw.suspend_now_v1(p_e dw.executions, p_worker text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dw.executions e
       SET status = 'Suspended', suspended_at = now(), lease_owner = NULL, lease_expires_at = NULL
     WHERE e.id = p_e.id;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_e.id, 'execution_suspended', p_e.suspend_requested_by,
            jsonb_strip_nulls(jsonb_build_object('previousStatus', p_e.status, 'worker', p_worker)));
END;
$$;

-- The worker holding a run whose suspension was requested, once its running attempts ended.
-- outcome: suspended; cancelled (a cancel came meanwhile, and wins, unless it came too late:
-- dw.cancel_too_late_v1); withdrawn (resumed meanwhile: the worker carries on); too_late (the last
-- node ended while the request was pending: the outcome is decided, dw.refuse_late_suspension_v1
-- answers the request, and the worker carries on to end the run as it would have; a previous
-- release's worker reads it as withdrawn, and does the same).
DROP FUNCTION IF EXISTS dw.suspend_execution_v1(uuid, bigint, text);  -- returned boolean before
CREATE OR REPLACE FUNCTION dw.suspend_execution_v1(p_execution_id uuid, p_token bigint, p_worker text)
    RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NOT NULL THEN
        IF NOT dw.cancel_too_late_v1(p_execution_id) THEN
            PERFORM dw.finish_cancelled_v1(v_e);
            RETURN 'cancelled';
        END IF;
    END IF;
    IF v_e.suspend_requested_at IS NULL THEN
        RETURN 'withdrawn';
    END IF;
    IF dw.outcome_decided_v1(p_execution_id) THEN
        PERFORM dw.refuse_late_suspension_v1(v_e, NULL);
        RETURN 'too_late';
    END IF;
    PERFORM dw.suspend_now_v1(v_e, p_worker);
    RETURN 'suspended';
END;
$$;

-- v2 of the two above: p_job_id and p_job_worker_id, the Procrastinate job the worker runs the run
-- under and the Procrastinate worker that fetched it. When the run ends (cancelled) or is suspended,
-- the job ends in the same transaction (dw.end_run_job_v1, as a record, a park and a completion end
-- it); a suspension withdrawn meanwhile leaves it (the run goes on under it). job_finished says
-- whether it ended it; the worker then does not finish it again.
CREATE OR REPLACE FUNCTION dw.cancel_execution_v2(
    p_execution_id uuid, p_token bigint, p_job_id bigint, p_job_worker_id bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dw.cancel_execution_v1(p_execution_id, p_token);
    RETURN dw.end_run_job_v1(p_job_id, p_job_worker_id, p_execution_id);
END;
$$;

-- v3 (over v2): a cancel that comes too late (dw.cancel_too_late_v1: every node has ended, the
-- last of them perhaps while the request was on its way) ends nothing: outcome too_late, and the
-- worker ends the run as it would have (dw.complete_execution_v4, which records cancel_too_late);
-- the job goes on. Otherwise as v2: outcome cancelled, the run and its job ended.
CREATE OR REPLACE FUNCTION dw.cancel_execution_v3(
    p_execution_id uuid, p_token bigint, p_job_id bigint, p_job_worker_id bigint
) RETURNS TABLE (outcome text, job_finished boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NULL THEN
        RAISE EXCEPTION 'execution % has no cancel request', p_execution_id USING ERRCODE = 'DW013';
    END IF;
    IF dw.cancel_too_late_v1(p_execution_id) THEN
        RETURN QUERY SELECT 'too_late'::text, false;
        RETURN;
    END IF;
    PERFORM dw.finish_cancelled_v1(v_e);
    RETURN QUERY SELECT 'cancelled'::text, dw.end_run_job_v1(p_job_id, p_job_worker_id, p_execution_id);
END;
$$;

CREATE OR REPLACE FUNCTION dw.suspend_execution_v2(
    p_execution_id uuid, p_token bigint, p_worker text, p_job_id bigint, p_job_worker_id bigint
) RETURNS TABLE (outcome text, job_finished boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_outcome text;
    v_ended boolean := false;
BEGIN
    v_outcome := dw.suspend_execution_v1(p_execution_id, p_token, p_worker);
    IF v_outcome IN ('suspended', 'cancelled') THEN
        v_ended := dw.end_run_job_v1(p_job_id, p_job_worker_id, p_execution_id);
    END IF;
    RETURN QUERY SELECT v_outcome, v_ended;
END;
$$;

-- Whether a Suspended run was suspended Pending, before a worker admitted it: one that never started,
-- or a redriven one (Pending again, its started_at its first start's). Its latest execution_suspended
-- event says (previousStatus). Such a run holds no place under its workflow's maxConcurrentExecutions
-- (dw.admit_root_run_v1) and is resumed Pending, to pass admission then: resumed Waiting, a redriven
-- run ran beside the run that held the only slot (a review).
CREATE OR REPLACE FUNCTION dw.suspended_pending_v1(p_execution_id uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT ev.details ->> 'previousStatus' = 'Pending' FROM dw.execution_events ev
                      WHERE ev.execution_id = p_execution_id AND ev.type = 'execution_suspended'
                      ORDER BY ev.id DESC LIMIT 1), false);
$$;

-- POST /executions/{id}/resume. A Suspended run is queued again (timers that came due meanwhile
-- fire as soon as a worker takes it); a suspension requested but not yet in effect is withdrawn.
-- outcome: resumed | withdrawn.
CREATE OR REPLACE FUNCTION dw.resume_execution_v1(p_execution_id uuid, p_principal text, p_queue text)
    RETURNS TABLE (status text, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_status text;
BEGIN
    v_e := dw.lock_execution_v1(p_execution_id);
    IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RAISE EXCEPTION 'execution % has already ended (%)', p_execution_id, v_e.status USING ERRCODE = 'DW014';
    END IF;
    IF v_e.status = 'Suspended' THEN
        v_status := CASE WHEN v_e.started_at IS NULL OR dw.suspended_pending_v1(p_execution_id) THEN 'Pending'
                         ELSE 'Waiting' END;
        UPDATE dw.executions e
           SET status = v_status, suspended_at = NULL, suspend_requested_at = NULL, suspend_requested_by = NULL,
               wake_at = now(),
               -- A start time its workflow's rateLimitPerMinute promised it, held back when it was
               -- suspended, was given back then (the next run held back was promised it): resumed
               -- Pending, it is held back anew (dw.admit_root_run_v1), not on that time beside that
               -- run's. A run that had started has none.
               rate_slot_at = NULL, rate_first_slot_at = NULL
         WHERE e.id = p_execution_id;
        INSERT INTO dw.execution_events (execution_id, type, principal, details)
        VALUES (p_execution_id, 'execution_resumed', p_principal,
                jsonb_build_object('suspendedSeconds', extract(epoch FROM now() - v_e.suspended_at)));
        PERFORM dw.defer_run_job_v1(p_execution_id, v_e.queue, NULL);
        RETURN QUERY SELECT v_status, 'resumed'::text;
        RETURN;
    END IF;
    IF v_e.suspend_requested_at IS NOT NULL THEN
        UPDATE dw.executions e SET suspend_requested_at = NULL, suspend_requested_by = NULL
         WHERE e.id = p_execution_id;
        INSERT INTO dw.execution_events (execution_id, type, principal, details)
        VALUES (p_execution_id, 'execution_resumed', p_principal,
                jsonb_build_object('suspendWithdrawn', true));
        IF v_e.lease_owner IS NOT NULL THEN
            PERFORM pg_notify('dw_control', p_execution_id::text);
        END IF;
        RETURN QUERY SELECT v_e.status, 'withdrawn'::text;
        RETURN;
    END IF;
    RAISE EXCEPTION 'execution % is %, not Suspended: nothing to resume', p_execution_id, v_e.status
        USING ERRCODE = 'DW015';
END;
$$;

-- Parks a run that has nothing to run now: gives up the lease and keeps the time it must next wake
-- up (dw.run_wake_at_v1) on the execution (wake_at), NULL when only signals and approvals without
-- a timeout remain. A run due now gets its job now; a later one gets it from dw.wake_due_runs_v1
-- when the time comes (no job waits in procrastinate_jobs meanwhile). A cancel or suspend request that came while the worker decided to park takes effect here
-- instead (nobody would hold the run to act on it). outcome: parked | cancelled | suspended.
CREATE OR REPLACE FUNCTION dw.park_execution_v2(p_execution_id uuid, p_token bigint, p_queue text)
    RETURNS TABLE (wake_at timestamptz, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_wake timestamptz;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NOT NULL THEN
        PERFORM dw.finish_cancelled_v1(v_e);
        RETURN QUERY SELECT NULL::timestamptz, 'cancelled'::text;
        RETURN;
    END IF;
    IF v_e.suspend_requested_at IS NOT NULL THEN
        PERFORM dw.suspend_now_v1(v_e, v_e.lease_owner);
        RETURN QUERY SELECT NULL::timestamptz, 'suspended'::text;
        RETURN;
    END IF;
    v_wake := dw.run_wake_at_v1(p_execution_id);
    IF v_e.wake_requested_at IS NOT NULL THEN
        -- Woken while it held the run (dw.wake_run_v1): look again at once (one extra hop at most).
        v_wake := now();
    END IF;
    UPDATE dw.executions e SET status = 'Waiting', lease_owner = NULL, lease_expires_at = NULL, wake_at = v_wake,
                               wake_requested_at = NULL
     WHERE e.id = p_execution_id;
    INSERT INTO dw.execution_events (execution_id, type, details)
    VALUES (p_execution_id, 'execution_parked', jsonb_build_object('wakeAt', v_wake));
    -- Jobs queued for later (by a release before this one) would wake it for nothing.
    DELETE FROM procrastinate_jobs j
     WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo' AND j.scheduled_at > now();
    -- Due now: the job now. Due later: dw.wake_due_runs_v1 queues it when the time comes.
    IF v_wake <= now() AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs j
         WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo') THEN
        PERFORM dw.defer_run_job_v1(p_execution_id, v_e.queue, NULL);
    END IF;
    RETURN QUERY SELECT v_wake, 'parked'::text;
END;
$$;

-- v3 (over v2): p_job_id and p_job_worker_id, the Procrastinate job the worker runs the run under
-- and the Procrastinate worker that fetched it: the job ends in the same transaction (deleted, as
-- Procrastinate's finish_job does for a job that succeeded, when it is still 'doing' for that
-- worker), and job_finished says so: the worker does not finish it again. One transaction fewer per
-- park, and no window in which a worker killed after parking leaves its job 'doing', which kept the
-- run's wake-up (dw.wake_due_runs_v1) waiting until recovery found the worker dead.
CREATE OR REPLACE FUNCTION dw.park_execution_v3(
    p_execution_id uuid, p_token bigint, p_queue text, p_job_id bigint, p_job_worker_id bigint
) RETURNS TABLE (wake_at timestamptz, outcome text, job_finished boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_wake timestamptz;
    v_outcome text;
BEGIN
    SELECT p.wake_at, p.outcome INTO v_wake, v_outcome FROM dw.park_execution_v2(p_execution_id, p_token, p_queue) p;
    job_finished := dw.end_run_job_v1(p_job_id, p_job_worker_id, p_execution_id);
    wake_at := v_wake;
    outcome := v_outcome;
    RETURN NEXT;
END;
$$;

-- Queues one run job for each parked run whose wake-up time has come and that has no job yet
-- (at most p_limit, oldest due first; SKIP LOCKED, so every worker's waker can run it at once).
-- Parked: Waiting (dw.park_execution_v3), or Pending and throttled by its workflow's limits until
-- its turn (dw.park_throttled_run_v1). Each job goes to its run's own queue: a worker wakes the
-- runs of every queue, not only of the one it reads (p_queue is not read any more).
-- Returns how many it queued.
CREATE OR REPLACE FUNCTION dw.wake_due_runs_v1(p_limit integer, p_queue text)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_ids uuid[];
BEGIN
    SELECT array_agg(due.id) INTO v_ids FROM (
        SELECT e.id FROM dw.executions e
         -- One arm per partial index (executions_parked_wake_idx, executions_throttled_wake_idx).
         WHERE ((e.status = 'Waiting' AND e.wake_at <= now()) OR (e.status = 'Pending' AND e.wake_at <= now()))
           AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                            WHERE (j.args ->> 'execution_id') = e.id::text AND j.status IN ('todo', 'doing'))
         ORDER BY e.wake_at
         LIMIT p_limit
         FOR NO KEY UPDATE OF e SKIP LOCKED) due;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    -- A throttled run's turn is spent once its job is queued: if that job ends without taking the
    -- run (its acquire failed), the run is not queued again every pass, but by recovery, which
    -- counts it against DW_MAX_RECOVERIES.
    UPDATE dw.executions e SET wake_at = NULL WHERE e.id = ANY (v_ids) AND e.status = 'Pending';
    PERFORM procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW(e.queue, 'dw.run_execution', e.priority, NULL, NULL,
                   jsonb_build_object('execution_id', e.id::text, 'tenant_id', e.tenant_id),
                   NULL)::procrastinate_job_to_defer_v1
          FROM dw.executions e WHERE e.id = ANY (v_ids)));
    RETURN array_length(v_ids, 1);
END;
$$;

-- Lease renewal that also answers what the holder must know: a control request ('cancel' or
-- 'suspend') and waits resolved by someone else (a signal, an approval) whose outcome it has
-- not written yet.
-- v3 (over v2): `ended`, when the lease is not renewed because the run ended under it (its token
-- still this one, its status final). That is the holder's own end: its last record, completion,
-- cancel or timeout (every end of a held run goes through the holder's lease, except a cancel of
-- a run whose worker stopped beating, dw.request_cancel_v1). A renewal that runs between that
-- end's commit and the moment the run takes in its answer must not read as a lease taken by
-- another worker (the runtime's heartbeat, dataworkflows.runtime).
CREATE OR REPLACE FUNCTION dw.renew_lease_v3(p_execution_id uuid, p_token bigint, p_lease_seconds double precision)
    RETURNS TABLE (renewed boolean, ended boolean, control text, waits jsonb)
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_control text;
BEGIN
    UPDATE dw.executions e SET lease_expires_at = now() + make_interval(secs => p_lease_seconds)
     WHERE e.id = p_execution_id AND e.lease_token = p_token AND e.lease_owner IS NOT NULL
       AND e.status = 'Running'
    RETURNING CASE WHEN e.cancel_requested_at IS NOT NULL THEN 'cancel'
                   WHEN e.suspend_requested_at IS NOT NULL THEN 'suspend' END
      INTO v_control;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT false,
               EXISTS (SELECT 1 FROM dw.executions e
                        WHERE e.id = p_execution_id AND e.lease_token = p_token
                          AND e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')),
               NULL::text, '[]'::jsonb;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT true, false, v_control,
           COALESCE((SELECT jsonb_agg(dw.wait_json_v1(w) ORDER BY w.consumed_at) FROM dw.waits w
                      WHERE w.execution_id = p_execution_id AND w.state NOT IN ('open', 'withdrawn')
                        AND w.recorded_at IS NULL), '[]'::jsonb);
END;
$$;

-- v2: kept for workers of the previous release during a rolling upgrade.
CREATE OR REPLACE FUNCTION dw.renew_lease_v2(p_execution_id uuid, p_token bigint, p_lease_seconds double precision)
    RETURNS TABLE (renewed boolean, control text, waits jsonb) LANGUAGE sql AS $$
    SELECT r.renewed, r.control, r.waits FROM dw.renew_lease_v3(p_execution_id, p_token, p_lease_seconds) r;
$$;

-- The runs of the session's tenant that a broadcast (dw.broadcast_signal_v1) reaches: each with an
-- open signal wait of the name and key, not past its timeout, of the workflow when one is named, that
-- has not had this signal (its id under this name and key); since: its oldest such wait's creation.
CREATE OR REPLACE FUNCTION dw.broadcast_matches_v1(
    p_name text, p_signal_id text, p_correlation_key text, p_workflow_id text
) RETURNS TABLE (execution_id uuid, since timestamptz) LANGUAGE sql STABLE AS $$
    SELECT w.execution_id, min(w.created_at)
      FROM dw.waits w
     WHERE w.kind = 'signal' AND w.state = 'open' AND w.name = p_name
       AND w.tenant_id = current_setting('dw.tenant_id', true)
       AND (w.correlation_key = p_correlation_key OR (p_correlation_key IS NULL AND w.correlation_key IS NULL))
       AND (w.expires_at IS NULL OR w.expires_at > now())
       AND (p_workflow_id IS NULL
            OR EXISTS (SELECT 1 FROM dw.executions e WHERE e.id = w.execution_id AND e.workflow_id = p_workflow_id))
       AND NOT EXISTS (SELECT 1 FROM dw.signals s
                        WHERE s.execution_id = w.execution_id AND s.signal_id = p_signal_id AND s.name = p_name
                          AND s.correlation_key IS NOT DISTINCT FROM p_correlation_key)
     GROUP BY w.execution_id;
$$;

-- POST /api/v1/signals/{name}: one signal, by name and correlation key, to every run of the tenant
-- with an open signal wait of that name and that key (without a key: the waits that have none; a
-- wait without a key takes any key from a run's own signal, but not a key sent to every run, which
-- would hand one order's payment to every run waiting for a payment), optionally only the runs of one
-- workflow; at most p_limit runs, those waiting longest first. Each run gets it as from
-- dw.deliver_signal_v2 (under the same signal id: sent again, it reaches the runs that waited since or
-- past the limit). A run that had this signal (its id, name and key) is not a match, though it waits
-- for the name again in another branch: it takes a signal once, as from its own POST, and it stayed a
-- match, counted in `remaining` for ever and, with a limit, first again at every resend, before the
-- runs the resend was for. A run that ended between the look and its delivery is passed over
-- (outcome `ended`). A wait past its timeout is not a match. Returns each delivery; `remaining` (on
-- every row) counts the matching runs left after them: more runs to reach with the same signal id.
--
-- The runs' rows are locked up front, from a child up as everywhere (composition.sql: a child's end
-- locks the child, then its parent), then in id order: each in the order its waits were made, a
-- broadcast of "paid" and one of "shipped" reaching the same runs took them in opposite orders and
-- deadlocked; by id alone, one holding a parent and waiting for its child deadlocked with the
-- child's end.
CREATE OR REPLACE FUNCTION dw.broadcast_signal_v1(
    p_name text, p_signal_id text, p_correlation_key text, p_payload jsonb, p_principal text, p_queue text,
    p_workflow_id text, p_limit integer
) RETURNS TABLE (execution_id uuid, workflow_id text, signal_id text, outcome text, wait_id uuid, node_id text,
                 remaining bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    v_runs uuid[];
    v_run uuid;
    v_d record;
    v_deliveries jsonb := '[]'::jsonb;
    v_remaining bigint;
BEGIN
    v_runs := ARRAY(
        SELECT m.execution_id FROM dw.broadcast_matches_v1(p_name, p_signal_id, p_correlation_key, p_workflow_id) m
         ORDER BY m.since, m.execution_id
         LIMIT p_limit);
    PERFORM 1 FROM dw.executions e WHERE e.id = ANY (v_runs) ORDER BY e.depth DESC, e.id FOR NO KEY UPDATE;
    FOREACH v_run IN ARRAY v_runs LOOP
        BEGIN
            SELECT * INTO v_d FROM dw.deliver_signal_v2(v_run, p_name, p_signal_id, p_correlation_key, p_payload,
                                                        p_principal, p_queue, true) d;
            v_deliveries := v_deliveries || jsonb_build_object('run', v_run, 'outcome', v_d.outcome,
                                                               'wait', v_d.wait_id, 'node', v_d.node_id);
        EXCEPTION
            WHEN SQLSTATE 'DW014' THEN
                v_deliveries := v_deliveries || jsonb_build_object('run', v_run, 'outcome', 'ended');
            -- The run took another signal under this signal id (another name, key or payload): it is
            -- passed over and named, the others get theirs (the whole broadcast was refused, 409,
            -- naming no run).
            WHEN SQLSTATE 'DW019' THEN
                v_deliveries := v_deliveries || jsonb_build_object('run', v_run, 'outcome', 'signal_id_reused');
        END;
    END LOOP;
    SELECT count(*) INTO v_remaining
      FROM dw.broadcast_matches_v1(p_name, p_signal_id, p_correlation_key, p_workflow_id);
    RETURN QUERY
    SELECT (d ->> 'run')::uuid, e.workflow_id, p_signal_id, d ->> 'outcome', (d ->> 'wait')::uuid, d ->> 'node',
           v_remaining
      FROM jsonb_array_elements(v_deliveries) WITH ORDINALITY AS x(d, n)
      LEFT JOIN dw.executions e ON e.id = (d ->> 'run')::uuid
     ORDER BY x.n;
    IF jsonb_array_length(v_deliveries) = 0 THEN
        RETURN QUERY SELECT NULL::uuid, NULL::text, p_signal_id, 'none'::text, NULL::uuid, NULL::text, v_remaining;
    END IF;
END;
$$;
