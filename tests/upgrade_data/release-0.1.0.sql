-- The database of DataWorkflows 0.1.0 (commit ce10516) with runs in flight, made by
-- scripts/release_fixture.py; see release-0.1.0.json. Do not edit: make it again.
--
-- PostgreSQL database dump
--


-- Dumped from database version 18.6
-- Dumped by pg_dump version 18.6

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: dw; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA dw;


--
-- Name: procrastinate_job_event_type; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.procrastinate_job_event_type AS ENUM (
    'deferred',
    'started',
    'deferred_for_retry',
    'failed',
    'succeeded',
    'cancelled',
    'abort_requested',
    'aborted',
    'scheduled',
    'retried'
);


--
-- Name: procrastinate_job_status; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.procrastinate_job_status AS ENUM (
    'todo',
    'doing',
    'succeeded',
    'failed',
    'cancelled',
    'aborting',
    'aborted'
);


--
-- Name: procrastinate_job_to_defer_v1; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.procrastinate_job_to_defer_v1 AS (
	queue_name character varying,
	task_name character varying,
	priority integer,
	lock text,
	queueing_lock text,
	args jsonb,
	scheduled_at timestamp with time zone
);


--
-- Name: accept_webhook_delivery_v1(uuid, text, text, jsonb, text, integer, timestamp with time zone); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.accept_webhook_delivery_v1(p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_payload jsonb, p_queue text, p_body_bytes integer, p_received_at timestamp with time zone) RETURNS TABLE(outcome text, execution_id uuid, first_outcome text, created boolean)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_claim record;
    v_started record;
BEGIN
    PERFORM dw.lock_webhook_trigger_v1(p_trigger_id, true);
    SELECT * INTO v_claim FROM dw.claim_webhook_delivery_v1(
        p_trigger_id, p_delivery_id, p_content_hash, 'accepted', NULL, 202, p_body_bytes, p_received_at);
    IF v_claim.o_id IS NULL THEN
        RETURN QUERY SELECT 'duplicate'::text, v_claim.o_first_execution_id, v_claim.o_first_outcome, false;
        RETURN;
    END IF;
    SELECT * INTO v_started
      FROM dw.start_triggered_v1(p_trigger_id, 'hook:' || p_trigger_id || ':' || p_delivery_id, p_payload, p_queue);
    UPDATE dw.webhook_deliveries d
       SET execution_id = v_started.execution_id,
           reason = CASE WHEN v_started.created THEN NULL ELSE 'the run of this delivery id was started before' END
     WHERE d.id = v_claim.o_id;
    RETURN QUERY SELECT 'accepted'::text, v_started.execution_id, 'accepted'::text, v_started.created;
END;
$$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: dead_letters; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.dead_letters (
    id bigint NOT NULL,
    kind text NOT NULL,
    execution_id uuid,
    node_id text,
    job_id bigint,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    error jsonb,
    attempts integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    redriven_at timestamp with time zone,
    redriven_by text,
    closed_at timestamp with time zone,
    closed_by text,
    close_reason text,
    close_note text,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT dead_letters_close_reason_check CHECK (((close_reason IS NULL) OR (close_reason = ANY (ARRAY['acknowledged'::text, 'run_ended'::text])))),
    CONSTRAINT dead_letters_closed_consistent_check CHECK (((closed_at IS NULL) = (close_reason IS NULL))),
    CONSTRAINT dead_letters_kind_check CHECK ((kind = ANY (ARRAY['node_failed'::text, 'worker_lost'::text, 'job_failed'::text]))),
    CONSTRAINT dead_letters_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.dead_letters FORCE ROW LEVEL SECURITY;


--
-- Name: acknowledge_dead_letter_v1(bigint, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.acknowledge_dead_letter_v1(p_id bigint, p_principal text, p_note text) RETURNS SETOF dw.dead_letters
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_d dw.dead_letters%ROWTYPE;
BEGIN
    SELECT * INTO v_d FROM dw.dead_letters d WHERE d.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % not found', p_id USING ERRCODE = 'DW006';
    END IF;
    IF v_d.redriven_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was redriven at %; nothing to acknowledge', p_id, v_d.redriven_at
            USING ERRCODE = 'DW005';
    END IF;
    IF v_d.closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already closed at % (%)', p_id, v_d.closed_at, v_d.close_reason
            USING ERRCODE = 'DW005';
    END IF;
    UPDATE dw.dead_letters d
       SET closed_at = now(), closed_by = p_principal, close_reason = 'acknowledged', close_note = p_note
     WHERE d.id = p_id
    RETURNING * INTO v_d;
    IF v_d.execution_id IS NOT NULL THEN
        INSERT INTO dw.execution_events (execution_id, node_id, type, principal, details)
        VALUES (v_d.execution_id, v_d.node_id, 'dead_letter_acknowledged', p_principal,
                jsonb_strip_nulls(jsonb_build_object('deadLetterId', p_id, 'kind', v_d.kind, 'note', p_note)));
    END IF;
    RETURN NEXT v_d;
END;
$$;


--
-- Name: executions; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.executions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    workflow_id text NOT NULL,
    workflow_version integer NOT NULL,
    request_id text NOT NULL,
    status text DEFAULT 'Pending'::text NOT NULL,
    trigger jsonb DEFAULT '{}'::jsonb NOT NULL,
    principal_id text,
    principal_type text,
    correlation_id text,
    parent_execution_id uuid,
    parent_node_id text,
    depth integer DEFAULT 0 NOT NULL,
    lease_owner text,
    lease_token bigint DEFAULT 0 NOT NULL,
    lease_expires_at timestamp with time zone,
    recovery_count integer DEFAULT 0 NOT NULL,
    deadline_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    ended_at timestamp with time zone,
    error jsonb,
    cancel_requested_at timestamp with time zone,
    cancel_requested_by text,
    cancel_reason text,
    suspend_requested_at timestamp with time zone,
    suspend_requested_by text,
    suspended_at timestamp with time zone,
    wake_at timestamp with time zone,
    outputs jsonb,
    root_execution_id uuid NOT NULL,
    path uuid[] NOT NULL,
    queue text DEFAULT 'executions'::text NOT NULL,
    wake_requested_at timestamp with time zone,
    trigger_id uuid,
    rate_slot_at timestamp with time zone,
    CONSTRAINT executions_final_has_end_check CHECK (((status <> ALL (ARRAY['Succeeded'::text, 'Failed'::text, 'Cancelled'::text, 'TimedOut'::text])) OR (ended_at IS NOT NULL))),
    CONSTRAINT executions_status_check CHECK ((status = ANY (ARRAY['Pending'::text, 'Running'::text, 'Waiting'::text, 'Suspended'::text, 'Succeeded'::text, 'Failed'::text, 'Cancelled'::text, 'TimedOut'::text]))),
    CONSTRAINT executions_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.executions FORCE ROW LEVEL SECURITY;


--
-- Name: admit_root_run_v1(dw.executions); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.admit_root_run_v1(p_e dw.executions) RETURNS TABLE(throttled_by text, retry_at timestamp with time zone)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_concurrent integer;
    v_rate integer;
    v_next timestamptz;
    v_last timestamptz;
    v_running integer;
    v_spacing interval;
    v_slot timestamptz;
    v_earliest timestamptz;
BEGIN
    SELECT w.max_concurrent_executions, w.rate_limit_per_minute INTO v_concurrent, v_rate
      FROM dw.workflows w WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id;
    IF v_concurrent IS NULL AND v_rate IS NULL THEN
        RETURN QUERY SELECT NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    -- One admission at a time per limited workflow: the count and the spacing hold.
    SELECT w.max_concurrent_executions, w.rate_limit_per_minute, w.rate_next_slot_at, w.rate_last_start_at
      INTO v_concurrent, v_rate, v_next, v_last
      FROM dw.workflows w WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id FOR NO KEY UPDATE;
    IF v_concurrent IS NOT NULL THEN
        -- A suspended run that had started keeps its place: resuming it does not pass through
        -- here again.
        SELECT count(*) INTO v_running FROM dw.executions e
         WHERE e.workflow_id = p_e.workflow_id AND e.tenant_id = p_e.tenant_id AND e.depth = 0
           AND (e.status IN ('Running', 'Waiting') OR (e.status = 'Suspended' AND e.started_at IS NOT NULL));
        IF v_running >= v_concurrent THEN
            RETURN QUERY SELECT 'concurrency'::text, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;
    IF v_rate IS NOT NULL THEN
        v_spacing := make_interval(secs => 60.0 / v_rate);
        v_slot := p_e.rate_slot_at;
        IF v_slot IS NULL THEN
            -- After the last start promised to a run still waiting: a promised run that ended
            -- meanwhile (cancelled while Pending) gives its turn back.
            SELECT max(e.rate_slot_at) + v_spacing INTO v_next FROM dw.executions e
             WHERE e.tenant_id = p_e.tenant_id AND e.workflow_id = p_e.workflow_id AND e.status = 'Pending'
               AND e.rate_slot_at IS NOT NULL AND e.id <> p_e.id;
            v_slot := GREATEST(v_next, v_last + v_spacing, now());
            UPDATE dw.workflows w SET rate_next_slot_at = v_slot + v_spacing
             WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id;
        END IF;
        -- GREATEST ignores NULL: the first start of a workflow waits for nobody.
        v_earliest := GREATEST(v_slot, v_last + v_spacing);
        IF v_earliest > now() THEN
            IF p_e.rate_slot_at IS DISTINCT FROM v_slot THEN
                UPDATE dw.executions e SET rate_slot_at = v_slot WHERE e.id = p_e.id;
            END IF;
            RETURN QUERY SELECT 'rate'::text, v_earliest;
            RETURN;
        END IF;
        UPDATE dw.workflows w SET rate_last_start_at = now()
         WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id;
        IF p_e.rate_slot_at IS NOT NULL THEN
            UPDATE dw.executions e SET rate_slot_at = NULL WHERE e.id = p_e.id;
        END IF;
    END IF;
    RETURN QUERY SELECT NULL::text, NULL::timestamptz;
END;
$$;


--
-- Name: api_bucket_level_v1(double precision, timestamp with time zone, double precision, double precision); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.api_bucket_level_v1(p_tokens double precision, p_since timestamp with time zone, p_burst double precision, p_per_second double precision) RETURNS double precision
    LANGUAGE sql STABLE
    AS $$
    SELECT LEAST(p_burst, p_tokens + GREATEST(0, extract(epoch FROM now() - p_since)) * p_per_second);
$$;


--
-- Name: archive_workflow_v1(text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.archive_workflow_v1(p_workflow_id text, p_principal text) RETURNS TABLE(workflow_id text, status text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_status text;
BEGIN
    SELECT w.status INTO v_status FROM dw.workflows w WHERE w.id = p_workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    IF v_status = 'Draft' THEN
        RAISE EXCEPTION 'workflow % is a Draft that was never published; there is nothing to archive', p_workflow_id
            USING ERRCODE = 'DW004';
    END IF;
    IF v_status = 'Active' THEN
        UPDATE dw.workflows w SET status = 'Archived', archived_at = now(), archived_by = p_principal,
                                  updated_at = now()
         WHERE w.id = p_workflow_id;
    END IF;
    RETURN QUERY SELECT p_workflow_id, 'Archived'::text;
END;
$$;


--
-- Name: begin_child_v1(uuid, bigint, text, integer, text, integer, jsonb, jsonb, boolean, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.begin_child_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_workflow_id text, p_version integer, p_input jsonb, p_parameters jsonb, p_wait boolean, p_max_depth integer) RETURNS TABLE(wait jsonb, error jsonb)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
    v_w dw.waits;
    v_child record;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    SELECT * INTO v_w FROM dw.waits w
     WHERE w.execution_id = p_execution_id AND w.node_id = p_node_id AND w.attempt = p_attempt AND w.kind = 'child';
    IF FOUND THEN
        RETURN QUERY SELECT dw.wait_json_v1(v_w), NULL::jsonb;
        RETURN;
    END IF;
    PERFORM dw.lock_running_attempt_v1(p_execution_id, p_node_id, p_attempt);
    SELECT * INTO v_child FROM dw.start_child_v1(
        v_e, p_node_id, format('child:%s:%s:%s', p_execution_id, p_node_id, p_attempt), p_workflow_id, p_version,
        p_input, p_max_depth);
    IF v_child.o_error IS NOT NULL THEN
        RETURN QUERY SELECT NULL::jsonb, v_child.o_error;
        RETURN;
    END IF;

    UPDATE dw.node_states n SET status = 'Waiting', next_attempt_at = NULL
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id;
    INSERT INTO dw.waits (tenant_id, execution_id, node_id, attempt, kind, name, parameters, details,
                          child_execution_id)
    VALUES (v_e.tenant_id, p_execution_id, p_node_id, p_attempt, 'child', p_workflow_id, p_parameters,
            jsonb_build_object('childExecutionId', v_child.o_execution_id, 'workflowId', p_workflow_id,
                               'version', v_child.o_version, 'waitForCompletion', p_wait),
            v_child.o_execution_id)
    RETURNING * INTO v_w;
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, 'child_started',
            jsonb_build_object('waitId', v_w.id, 'childExecutionId', v_child.o_execution_id,
                               'workflowId', p_workflow_id, 'version', v_child.o_version,
                               'attempt', p_attempt, 'waitForCompletion', p_wait));
    IF NOT p_wait THEN
        v_w := dw.resolve_wait_v1(v_w.id, 'started', 'child',
            jsonb_build_object('executionId', v_child.o_execution_id, 'workflowId', p_workflow_id,
                               'version', v_child.o_version), NULL);
    END IF;
    RETURN QUERY SELECT dw.wait_json_v1(v_w), NULL::jsonb;
END;
$$;


--
-- Name: begin_item_child_v1(uuid, bigint, text, integer, integer, text, integer, jsonb, boolean, integer, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.begin_item_child_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_index integer, p_attempt integer, p_workflow_id text, p_version integer, p_input jsonb, p_wait boolean, p_max_depth integer, p_worker text) RETURNS TABLE(item jsonb, error jsonb)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
    v_i dw.foreach_items;
    v_child record;
    v_outputs jsonb;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    SELECT * INTO v_i FROM dw.foreach_items i
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = p_index
       AND i.status = 'Running' AND i.attempts = p_attempt
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'item % of node % of execution % has no attempt % in flight', p_index, p_node_id,
            p_execution_id, p_attempt USING ERRCODE = 'DW011';
    END IF;
    IF v_i.child_execution_id IS NOT NULL THEN
        RETURN QUERY SELECT dw.foreach_item_json_v1(v_i), NULL::jsonb;  -- a repeated call
        RETURN;
    END IF;
    SELECT * INTO v_child FROM dw.start_child_v1(
        v_e, p_node_id, format('item:%s:%s:%s:%s', p_execution_id, p_node_id, p_index, p_attempt), p_workflow_id,
        p_version, p_input, p_max_depth);
    IF v_child.o_error IS NOT NULL THEN
        RETURN QUERY SELECT NULL::jsonb, v_child.o_error;
        RETURN;
    END IF;
    UPDATE dw.foreach_items i SET child_execution_id = v_child.o_execution_id
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = p_index
    RETURNING * INTO v_i;
    IF NOT p_wait THEN
        v_outputs := jsonb_build_object('executionId', v_child.o_execution_id, 'workflowId', p_workflow_id,
                                        'version', v_child.o_version);
        UPDATE dw.foreach_items i SET status = 'Succeeded', outputs = v_outputs, ended_at = now()
         WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = p_index
        RETURNING * INTO v_i;
        INSERT INTO dw.action_executions (execution_id, node_id, item_index, action_type, attempt, status,
                                          parameters, outputs, worker, start_time, end_time)
        VALUES (p_execution_id, p_node_id, p_index, 'subworkflow', p_attempt, 'Succeeded',
                jsonb_build_object('workflowId', p_workflow_id, 'version', p_version, 'input', p_input,
                                   'waitForCompletion', false),
                v_outputs, p_worker, COALESCE(v_i.started_at, now()), now());
    END IF;
    RETURN QUERY SELECT dw.foreach_item_json_v1(v_i), NULL::jsonb;
END;
$$;


--
-- Name: begin_items_v1(uuid, bigint, text, integer, text, jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.begin_items_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_action_type text, p_items jsonb) RETURNS SETOF jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_count integer := jsonb_array_length(p_items);
    v_kept integer;
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    PERFORM dw.lock_running_attempt_v1(p_execution_id, p_node_id, p_attempt);
    DELETE FROM dw.foreach_items i
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index >= v_count;
    INSERT INTO dw.foreach_items AS i (execution_id, node_id, item_index, item, node_attempt, action_type)
    SELECT p_execution_id, p_node_id, (t.ord - 1)::integer, t.value, p_attempt, p_action_type
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(value, ord)
    ON CONFLICT (execution_id, node_id, item_index) DO UPDATE
       SET node_attempt = EXCLUDED.node_attempt, item = EXCLUDED.item, action_type = EXCLUDED.action_type,
           status = CASE WHEN i.status = 'Succeeded' AND i.item = EXCLUDED.item THEN 'Succeeded' ELSE 'Pending' END,
           attempt_base = CASE WHEN i.status = 'Succeeded' AND i.item = EXCLUDED.item THEN i.attempt_base
                               ELSE i.attempts END,
           outputs = CASE WHEN i.status = 'Succeeded' AND i.item = EXCLUDED.item THEN i.outputs END,
           error = NULL, next_attempt_at = NULL,
           ended_at = CASE WHEN i.status = 'Succeeded' AND i.item = EXCLUDED.item THEN i.ended_at END,
           -- An item that starts again starts a child of its own (dw.children_to_cancel_v1 cancels
           -- the previous one if it still runs).
           child_execution_id = CASE WHEN i.status = 'Succeeded' AND i.item = EXCLUDED.item
                                     THEN i.child_execution_id END
     WHERE i.node_attempt < EXCLUDED.node_attempt;
    SELECT count(*) INTO v_kept FROM dw.foreach_items i
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.status = 'Succeeded';
    PERFORM dw.queue_cancel_children_v1(p_execution_id, (SELECT e.queue FROM dw.executions e WHERE e.id = p_execution_id));
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, 'items_started',
            jsonb_build_object('attempt', p_attempt, 'items', v_count, 'alreadySucceeded', v_kept));
    RETURN QUERY SELECT dw.foreach_item_json_v1(i) FROM dw.foreach_items i
                  WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id
                  ORDER BY i.item_index;
END;
$$;


--
-- Name: begin_wait_v1(uuid, bigint, text, integer, text, text, text, jsonb, jsonb, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.begin_wait_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_kind text, p_name text, p_correlation_key text, p_parameters jsonb, p_details jsonb, p_due_at timestamp with time zone, p_expires_at timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: cancel_execution_v1(uuid, bigint); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.cancel_execution_v1(p_execution_id uuid, p_token bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NULL THEN
        RAISE EXCEPTION 'execution % has no cancel request', p_execution_id USING ERRCODE = 'DW013';
    END IF;
    PERFORM dw.finish_cancelled_v1(v_e);
END;
$$;


--
-- Name: check_lease_v1(uuid, bigint); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.check_lease_v1(p_execution_id uuid, p_token bigint) RETURNS dw.executions
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: check_resource_exists_v1(text, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.check_resource_exists_v1(p_tenant text, p_type text, p_key text) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT l.external_id FROM dw.resource_links l
     WHERE l.tenant_id = p_tenant AND l.resource_type = p_type AND l.resource_key = p_key
       AND l.external_id IS NOT NULL;
$$;


--
-- Name: check_schedule_v1(text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.check_schedule_v1(p_cron text, p_timezone text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_problem text := dw.cron_problem_v1(p_cron);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'invalid cron expression "%": %', p_cron, v_problem USING ERRCODE = 'DW031';
    END IF;
    -- Names whose meaning depends on the host (localtime, posix/..., right/...) are refused, as
    -- dataworkflows.schedules.zone_problem does.
    IF p_timezone IS NULL OR p_timezone IN ('localtime', 'posixrules') OR p_timezone LIKE 'posix/%'
       OR p_timezone LIKE 'right/%'
       OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = p_timezone) THEN
        RAISE EXCEPTION 'unknown time zone "%"; use an IANA name such as Europe/Berlin or UTC', p_timezone
            USING ERRCODE = 'DW031';
    END IF;
END;
$$;


--
-- Name: child_ended_v1(uuid, uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.child_ended_v1(p_child_id uuid, p_parent_id uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_parent dw.executions;
    v_child dw.executions;
    v_w dw.waits;
BEGIN
    IF EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = p_child_id AND i.status = 'Running') THEN
        PERFORM dw.item_child_ended_v1(p_child_id, p_parent_id);
        RETURN;
    END IF;
    -- A parent that ended withdrew its waits: nothing is owed to it, and its row is not locked.
    IF NOT EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = p_child_id AND w.state = 'open') THEN
        RETURN;
    END IF;
    v_parent := dw.lock_execution_v1(p_parent_id);
    SELECT * INTO v_w FROM dw.waits w WHERE w.child_execution_id = p_child_id AND w.state = 'open' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO v_child FROM dw.executions e WHERE e.id = p_child_id;
    PERFORM dw.resolve_wait_v1(v_w.id, 'completed', 'child',
        jsonb_strip_nulls(jsonb_build_object(
            'executionId', v_child.id, 'workflowId', v_child.workflow_id, 'version', v_child.workflow_version,
            'status', v_child.status, 'outputs', v_child.outputs, 'error', v_child.error)), NULL);
    PERFORM dw.wake_run_v1(v_parent, v_parent.queue);
END;
$$;


--
-- Name: child_request_taken_v1(uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.child_request_taken_v1(p_other uuid) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT jsonb_build_object('code', 'child_request_conflict',
        'message', format('the child''s request id is taken by execution %s, which this node did not start', p_other));
$$;


--
-- Name: children_to_cancel_v1(uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.children_to_cancel_v1(p_parent_id uuid) RETURNS TABLE(execution_id uuid)
    LANGUAGE sql STABLE
    AS $$
    SELECT c.id FROM dw.executions c
      JOIN dw.executions p ON p.id = c.parent_execution_id
     WHERE c.parent_execution_id = p_parent_id
       AND c.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
       AND (p.status = 'Cancelled'
            -- Withdrawn: its parent ended while waiting for it (also when the parent was redriven
            -- since: the redriven node starts a child of its own).
            OR EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = c.id AND w.state = 'withdrawn')
            OR EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = c.id AND i.status = 'Cancelled')
            -- An item's child that its item no longer names (the item started again after a redrive).
            OR (c.request_id LIKE 'item:%'
                AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = c.id)))
     ORDER BY c.created_at;
$$;


--
-- Name: claim_resource_v2(text, text, text, text, uuid, text, text, double precision); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.claim_resource_v2(p_tenant text, p_type text, p_key text, p_workflow_id text, p_execution_id uuid, p_node_id text, p_owner text, p_claim_seconds double precision) RETURNS TABLE(state text, external_id text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_l dw.resource_links%ROWTYPE;
BEGIN
    INSERT INTO dw.resource_links AS l (tenant_id, resource_type, resource_key, workflow_id, execution_id, node_id,
                                        claim_owner, claimed_until)
    VALUES (p_tenant, p_type, p_key, p_workflow_id, p_execution_id, p_node_id, p_owner,
            now() + make_interval(secs => p_claim_seconds))
    ON CONFLICT ON CONSTRAINT resource_links_key DO NOTHING
    RETURNING l.* INTO v_l;
    IF FOUND THEN
        RETURN QUERY SELECT 'claimed'::text, NULL::text;
        RETURN;
    END IF;

    SELECT * INTO v_l FROM dw.resource_links l
     WHERE l.tenant_id = p_tenant AND l.resource_type = p_type AND l.resource_key = p_key FOR UPDATE;
    IF v_l.external_id IS NOT NULL THEN
        INSERT INTO dw.resource_touches (resource_link_id, execution_id, node_id, action)
        VALUES (v_l.id, p_execution_id, p_node_id, 'found');
        RETURN QUERY SELECT 'exists'::text, v_l.external_id;
    ELSIF v_l.claim_owner IS NOT DISTINCT FROM p_owner OR v_l.claimed_until < now()
          -- The owning attempt has a recorded outcome, so it is over (cancelled by its timeout,
          -- say): its claim need not be waited out. (Owner: execution:node:attempt; for a forEach
          -- item, execution:node#index:attempt.)
          OR EXISTS (SELECT 1 FROM dw.action_executions a
                      WHERE a.execution_id::text = split_part(v_l.claim_owner, ':', 1)
                        AND a.node_id || COALESCE('#' || a.item_index, '') = split_part(v_l.claim_owner, ':', 2)
                        AND a.attempt::text = split_part(v_l.claim_owner, ':', 3)) THEN
        UPDATE dw.resource_links l
           SET execution_id = p_execution_id, node_id = p_node_id, workflow_id = p_workflow_id,
               claim_owner = p_owner, claimed_until = now() + make_interval(secs => p_claim_seconds)
         WHERE l.id = v_l.id;
        RETURN QUERY SELECT 'claimed'::text, NULL::text;
    ELSE
        RETURN QUERY SELECT 'pending'::text, NULL::text;
    END IF;
END;
$$;


--
-- Name: claim_webhook_delivery_v1(uuid, text, text, text, text, integer, integer, timestamp with time zone); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.claim_webhook_delivery_v1(p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_outcome text, p_reason text, p_status_code integer, p_body_bytes integer, p_received_at timestamp with time zone, OUT o_id bigint, OUT o_first_outcome text, OUT o_first_execution_id uuid) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_first dw.webhook_deliveries;
BEGIN
    -- Three tries: the first delivery's row may be pruned between the conflict and the read.
    FOR i IN 1..3 LOOP
        -- Either unique index (delivery id, content hash) may refuse it.
        INSERT INTO dw.webhook_deliveries AS d (trigger_id, delivery_id, content_hash, received_at, outcome, reason,
                                                status_code, body_bytes)
        VALUES (p_trigger_id, p_delivery_id, p_content_hash, p_received_at, p_outcome, p_reason, p_status_code,
                p_body_bytes)
        ON CONFLICT DO NOTHING
        RETURNING d.id INTO o_id;
        IF o_id IS NOT NULL THEN
            RETURN;
        END IF;
        SELECT * INTO v_first FROM dw.webhook_deliveries d
         WHERE d.trigger_id = p_trigger_id
           AND (d.delivery_id = p_delivery_id OR d.content_hash = p_content_hash)
           AND d.outcome IN ('accepted', 'not_activated')
         ORDER BY d.id LIMIT 1;
        IF FOUND THEN
            INSERT INTO dw.webhook_deliveries (trigger_id, delivery_id, received_at, outcome, reason, status_code,
                                               execution_id, body_bytes)
            VALUES (p_trigger_id, p_delivery_id, p_received_at, 'duplicate',
                    format('delivery id first received at %s (%s)', v_first.received_at, v_first.outcome), 200,
                    v_first.execution_id, p_body_bytes);
            o_first_outcome := v_first.outcome;
            o_first_execution_id := v_first.execution_id;
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'delivery % of trigger % could not be claimed', p_delivery_id, p_trigger_id
        USING ERRCODE = '40001';
END;
$$;


--
-- Name: complete_execution_v2(uuid, bigint, text, jsonb, text, jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.complete_execution_v2(p_execution_id uuid, p_token bigint, p_status text, p_error jsonb, p_dead_letter_node text, p_dead_letter_error jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RAISE EXCEPTION 'not a final status: %', p_status USING ERRCODE = 'DW013';
    END IF;
    IF p_dead_letter_node IS NOT NULL AND p_status <> 'Failed' THEN
        RAISE EXCEPTION 'a dead-letter node for a % run', p_status USING ERRCODE = 'DW013';
    END IF;
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    PERFORM dw.finish_execution_v1(p_execution_id, p_status, p_error, 'execution_' || lower(p_status));
    IF p_dead_letter_node IS NOT NULL THEN
        INSERT INTO dw.dead_letters (kind, execution_id, node_id, payload, error, attempts)
        SELECT 'node_failed', p_execution_id, n.node_id,
               jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version,
                                  'actionType', n.action_type, 'trigger', e.trigger),
               p_dead_letter_error, n.attempts
          FROM dw.node_states n JOIN dw.executions e ON e.id = n.execution_id
         WHERE n.execution_id = p_execution_id AND n.node_id = p_dead_letter_node;
    END IF;
END;
$$;


--
-- Name: complete_execution_v3(uuid, bigint, text, jsonb, text, jsonb, jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.complete_execution_v3(p_execution_id uuid, p_token bigint, p_status text, p_error jsonb, p_dead_letter_node text, p_dead_letter_error jsonb, p_outputs jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: signals; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.signals (
    id bigint NOT NULL,
    execution_id uuid NOT NULL,
    name text NOT NULL,
    signal_id text NOT NULL,
    correlation_key text,
    payload jsonb DEFAULT 'null'::jsonb NOT NULL,
    sent_by text,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    consumed_at timestamp with time zone,
    wait_id uuid,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT signals_consumed_consistent_check CHECK (((consumed_at IS NULL) = (wait_id IS NULL))),
    CONSTRAINT signals_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.signals FORCE ROW LEVEL SECURITY;


--
-- Name: waits; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.waits (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    kind text NOT NULL,
    name text,
    correlation_key text,
    parameters jsonb,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    due_at timestamp with time zone,
    expires_at timestamp with time zone,
    state text DEFAULT 'open'::text NOT NULL,
    consumed_at timestamp with time zone,
    consumed_by text,
    result jsonb,
    recorded_at timestamp with time zone,
    child_execution_id uuid,
    CONSTRAINT waits_attempt_check CHECK ((attempt > 0)),
    CONSTRAINT waits_consumed_consistent_check CHECK (((state = 'open'::text) = (consumed_at IS NULL))),
    CONSTRAINT waits_kind_check CHECK ((kind = ANY (ARRAY['timer'::text, 'signal'::text, 'approval'::text, 'child'::text]))),
    CONSTRAINT waits_state_check CHECK ((state = ANY (ARRAY['open'::text, 'fired'::text, 'received'::text, 'approved'::text, 'rejected'::text, 'timed_out'::text, 'withdrawn'::text, 'completed'::text, 'started'::text]))),
    CONSTRAINT waits_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text)),
    CONSTRAINT waits_timer_due_check CHECK (((kind <> 'timer'::text) OR (due_at IS NOT NULL)))
);

ALTER TABLE ONLY dw.waits FORCE ROW LEVEL SECURITY;


--
-- Name: consume_signal_v1(uuid, dw.signals); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.consume_signal_v1(p_wait_id uuid, p_signal dw.signals) RETURNS dw.waits
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: cron_field_v1(text, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.cron_field_v1(p_part text, p_field integer, OUT o_values integer[], OUT o_problem text) RETURNS record
    LANGUAGE plpgsql IMMUTABLE
    AS $_$
DECLARE
    v_label text := (ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week', 'second'])[p_field];
    v_low integer := (ARRAY[0, 0, 1, 1, 0, 0])[p_field];
    v_high integer := (ARRAY[59, 23, 31, 12, 7, 59])[p_field];
    v_names text[] := CASE p_field
        WHEN 4 THEN ARRAY['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
        WHEN 5 THEN ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']
        ELSE ARRAY[]::text[] END;
    v_names_from integer := CASE p_field WHEN 4 THEN 1 ELSE 0 END;
    v_item text;
    v_match text[];
    v_bounds integer[];
    v_text text;
    v_step integer := 1;
    v_first integer;
    v_last integer;
BEGIN
    o_values := ARRAY[]::integer[];
    FOREACH v_item IN ARRAY string_to_array(p_part, ',') LOOP
        v_match := regexp_match(v_item, '^(?:\*|([0-9]+|[A-Za-z]+)(?:-([0-9]+|[A-Za-z]+))?)(?:/([0-9]+))?$');
        IF v_match IS NULL THEN
            o_problem := format('%s field: "%s" is not *, a value or a range a-b, each with an optional step /n',
                                v_label, v_item);
            RETURN;
        END IF;
        -- The range's ends, as numbers: names looked up, digits range-checked.
        v_bounds := ARRAY[]::integer[];
        FOREACH v_text IN ARRAY ARRAY[v_match[1], v_match[2]] LOOP
            CONTINUE WHEN v_text IS NULL;
            IF v_text ~ '^[0-9]+$' THEN
                IF v_text::numeric NOT BETWEEN v_low AND v_high THEN
                    o_problem := format('%s field: %s is out of range %s-%s', v_label, v_text, v_low, v_high);
                    RETURN;
                END IF;
                v_bounds := v_bounds || v_text::integer;
            ELSIF array_position(v_names, lower(v_text)) IS NULL THEN
                o_problem := format('%s field: unknown name "%s"', v_label, v_text);
                RETURN;
            ELSE
                v_bounds := v_bounds || (array_position(v_names, lower(v_text)) - 1 + v_names_from);
            END IF;
        END LOOP;
        IF v_match[1] IS NULL THEN
            v_first := v_low;
            v_last := v_high;
        ELSE
            v_first := v_bounds[1];
            v_last := COALESCE(v_bounds[2], CASE WHEN v_match[3] IS NOT NULL THEN v_high ELSE v_first END);
            IF v_last < v_first THEN
                o_problem := format('%s field: the range "%s-%s" goes backwards', v_label, v_match[1], v_match[2]);
                RETURN;
            END IF;
        END IF;
        IF v_match[3] IS NOT NULL THEN
            IF v_match[3]::numeric NOT BETWEEN 1 AND v_high - v_low + 1 THEN
                o_problem := format('%s field: step %s is out of range 1-%s', v_label, v_match[3], v_high - v_low + 1);
                RETURN;
            END IF;
            v_step := v_match[3]::integer;
        ELSE
            v_step := 1;
        END IF;
        o_values := o_values || ARRAY(SELECT generate_series(v_first, v_last, v_step));
    END LOOP;
    IF p_field = 5 THEN
        o_values := array_replace(o_values, 7, 0);
    END IF;
    o_values := ARRAY(SELECT DISTINCT v FROM unnest(o_values) v ORDER BY v);
END;
$_$;


--
-- Name: cron_problem_v1(text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.cron_problem_v1(p_cron text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    AS $_$
DECLARE
    v_text text := btrim(COALESCE(p_cron, ''), E' \t\n\r\f\x0B');
    v_parts text[];
    v_field record;
    v_days integer[];
    v_months integer[];
    v_weekdays integer[];
BEGIN
    IF v_text = '' THEN
        RETURN 'the cron expression is empty';
    END IF;
    IF length(p_cron) > 200 THEN
        RETURN 'the cron expression is longer than 200 characters';
    END IF;
    IF left(v_text, 1) = '@' THEN
        IF v_text !~ '^@[A-Za-z]+$' OR lower(v_text) NOT IN ('@yearly', '@annually', '@monthly', '@weekly', '@daily',
                                                              '@midnight', '@hourly') THEN
            RETURN format('unknown cron name "%s"; use one of @yearly, @annually, @monthly, @weekly, @daily, '
                          '@midnight, @hourly', v_text);
        END IF;
        RETURN NULL;
    END IF;
    v_parts := regexp_split_to_array(v_text, '[ \t\n\r\f\v]+');
    IF array_length(v_parts, 1) NOT IN (5, 6) THEN
        RETURN format('a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with '
                      'seconds last; this one has %s', array_length(v_parts, 1));
    END IF;
    FOR i IN 1 .. array_length(v_parts, 1) LOOP
        v_field := dw.cron_field_v1(v_parts[i], i);
        IF v_field.o_problem IS NOT NULL THEN
            RETURN v_field.o_problem;
        END IF;
        CASE i
            WHEN 3 THEN v_days := v_field.o_values;
            WHEN 4 THEN v_months := v_field.o_values;
            WHEN 5 THEN v_weekdays := v_field.o_values;
            ELSE NULL;
        END CASE;
    END LOOP;
    -- A day-of-month none of the months has (30 2 *: February 30th), the day of the week open.
    IF cardinality(v_days) < 31 AND cardinality(v_weekdays) = 7
       AND v_days[1] > (SELECT max((ARRAY[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[m]) FROM unnest(v_months) m) THEN
        RETURN format('the schedule never fires: none of its months has a day %s', v_days[1]);
    END IF;
    RETURN NULL;
END;
$_$;


--
-- Name: decide_approval_v1(uuid, text, text, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.decide_approval_v1(p_wait_id uuid, p_principal text, p_decision text, p_comment text, p_queue text) RETURNS TABLE(approval_id uuid, execution_id uuid, node_id text, state text, approvals integer, rejections integer, required integer)
    LANGUAGE plpgsql
    AS $$
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
    IF p_principal IS NULL OR NOT (v_w.details -> 'approvers') ? p_principal THEN
        RAISE EXCEPTION '% is not an approver of approval %', COALESCE(quote_literal(p_principal), 'an anonymous caller'),
            p_wait_id USING ERRCODE = 'DW017';
    END IF;
    IF v_w.state <> 'open' THEN
        RAISE EXCEPTION 'approval % is already %', p_wait_id, v_w.state USING ERRCODE = 'DW018';
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
    v_total := jsonb_array_length(v_w.details -> 'approvers');
    IF v_yes >= v_required THEN
        v_state := 'approved';
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


--
-- Name: decide_edges_v1(uuid, text[], boolean[]); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.decide_edges_v1(p_execution_id uuid, p_targets text[], p_fired boolean[]) RETURNS TABLE(node_id text, status text)
    LANGUAGE plpgsql
    AS $$
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

        UPDATE dw.node_states n
           SET decided_incoming = n.decided_incoming + 1,
               satisfied_incoming = n.satisfied_incoming + CASE WHEN v_is_fired THEN 1 ELSE 0 END
         WHERE n.execution_id = p_execution_id AND n.node_id = v_target AND n.status = 'Pending'
        RETURNING n.* INTO v_n;
        CONTINUE WHEN NOT FOUND OR v_n.decided_incoming < v_n.expected_incoming;

        IF v_n.satisfied_incoming > 0 THEN
            UPDATE dw.node_states n SET status = 'Ready'
             WHERE n.execution_id = p_execution_id AND n.node_id = v_target;
            node_id := v_target; status := 'Ready';
            RETURN NEXT;
        ELSE
            UPDATE dw.node_states n SET status = 'Skipped', ended_at = now()
             WHERE n.execution_id = p_execution_id AND n.node_id = v_target;
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


--
-- Name: defer_run_job_v1(uuid, text, timestamp with time zone); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.defer_run_job_v1(p_execution_id uuid, p_queue text, p_scheduled_at timestamp with time zone) RETURNS bigint
    LANGUAGE sql
    AS $$
    SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
        p_queue, 'dw.run_execution', 0, NULL, NULL,
        jsonb_build_object('execution_id', p_execution_id::text,
                           'tenant_id', (SELECT e.tenant_id FROM dw.executions e WHERE e.id = p_execution_id)),
        p_scheduled_at
    )::procrastinate_job_to_defer_v1]))[1];
$$;


--
-- Name: deliver_signal_v1(uuid, text, text, text, jsonb, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.deliver_signal_v1(p_execution_id uuid, p_name text, p_signal_id text, p_correlation_key text, p_payload jsonb, p_principal text, p_queue text) RETURNS TABLE(signal_id text, outcome text, wait_id uuid, node_id text, execution_status text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
    v_s dw.signals;
    v_w dw.waits;
    v_id text := COALESCE(p_signal_id, gen_random_uuid()::text);
BEGIN
    -- The execution row serializes deliveries: concurrent copies of one signal wait here, then
    -- find the first one's row.
    v_e := dw.lock_execution_v1(p_execution_id);
    SELECT * INTO v_s FROM dw.signals s WHERE s.execution_id = p_execution_id AND s.signal_id = v_id;
    IF FOUND THEN
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


--
-- Name: document_template_versions_immutable(); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.document_template_versions_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'document template version %/%/% is immutable; save a new version instead',
        OLD.set_id, OLD.name, OLD.version USING ERRCODE = 'DW020';
END;
$$;


--
-- Name: enter_tenant_v1(text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.enter_tenant_v1(p_tenant text) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_previous text := current_setting('dw.tenant_id', true);
BEGIN
    IF v_previous IS DISTINCT FROM '*' AND v_previous IS DISTINCT FROM p_tenant THEN
        RAISE EXCEPTION 'a transaction of tenant % cannot work for tenant %', v_previous, p_tenant
            USING ERRCODE = 'DW040';
    END IF;
    PERFORM set_config('dw.tenant_id', p_tenant, true);
    RETURN v_previous;
END;
$$;


--
-- Name: execution_events_append_only(); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.execution_events_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'dw.execution_events is append-only (% refused)', TG_OP USING ERRCODE = 'DW021';
END;
$$;


--
-- Name: finish_cancelled_v1(dw.executions); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.finish_cancelled_v1(p_e dw.executions) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: finish_execution_v1(uuid, text, jsonb, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.finish_execution_v1(p_execution_id uuid, p_status text, p_error jsonb, p_event text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_parent uuid;
    v_queue text;
BEGIN
    -- Attempts in flight (running, or waiting on a wait) are recorded Cancelled: the attempt row
    -- says that the run's end stopped them, whatever they may already have done.
    INSERT INTO dw.action_executions (execution_id, node_id, action_type, attempt, status, parameters, error,
                                      start_time, end_time)
    SELECT n.execution_id, n.node_id, n.action_type, n.attempts, 'Cancelled', w.parameters,
           jsonb_build_object('code', 'run_ended',
                              'message', format('the run ended (%s) while this attempt was in flight', p_status)),
           COALESCE(w.created_at, n.started_at, now()), now()
      FROM dw.node_states n
      LEFT JOIN dw.waits w ON w.execution_id = n.execution_id AND w.node_id = n.node_id
                          AND w.attempt = n.attempts AND w.recorded_at IS NULL AND w.state <> 'withdrawn'
     WHERE n.execution_id = p_execution_id AND n.attempts > 0
       AND (n.status = 'Running' OR (n.status = 'Waiting' AND w.id IS NOT NULL))
    ON CONFLICT ON CONSTRAINT action_executions_attempt_key DO NOTHING;

    WITH ended AS (
        UPDATE dw.node_states n
           SET status = CASE WHEN n.status = 'Running' THEN 'Cancelled'
                             WHEN n.status = 'Waiting' AND EXISTS (
                                 SELECT 1 FROM dw.waits w
                                  WHERE w.execution_id = n.execution_id AND w.node_id = n.node_id
                                    AND w.attempt = n.attempts AND w.recorded_at IS NULL
                                    AND w.state <> 'withdrawn') THEN 'Cancelled'
                             ELSE 'Skipped' END,
               ended_at = now(), next_attempt_at = NULL, end_reason = 'run_ended'
         WHERE n.execution_id = p_execution_id AND n.status IN ('Pending', 'Ready', 'Running', 'Waiting')
        RETURNING n.node_id, n.status
    ), withdrawn AS (
        -- Open waits, and waits resolved whose outcome the run's end came before: their node is
        -- Cancelled, and a redrive starts it again with a new wait.
        UPDATE dw.waits w SET state = 'withdrawn', consumed_at = now(), consumed_by = 'run_ended'
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

    -- forEach items in flight are recorded Cancelled like the node's attempt; those that never ran
    -- are Cancelled too.
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

    UPDATE dw.executions e
       SET status = p_status, error = p_error, ended_at = now(),
           lease_owner = NULL, lease_expires_at = NULL
     WHERE e.id = p_execution_id
    RETURNING e.parent_execution_id, e.queue INTO v_parent, v_queue;
    -- Wake-up jobs still queued for it have nothing left to do.
    DELETE FROM procrastinate_jobs j
     WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo';

    INSERT INTO dw.execution_events (execution_id, type, details)
    VALUES (p_execution_id, p_event,
            jsonb_strip_nulls(jsonb_build_object('status', p_status, 'error', p_error)));

    -- A job of this run raised earlier and recovery resumed the run: now that it has ended, that
    -- letter needs nobody.
    UPDATE dw.dead_letters d SET closed_at = now(), close_reason = 'run_ended'
     WHERE d.execution_id = p_execution_id AND d.kind = 'job_failed'
       AND d.redriven_at IS NULL AND d.closed_at IS NULL;

    IF v_parent IS NOT NULL THEN
        PERFORM dw.child_ended_v1(p_execution_id, v_parent);
    END IF;
    PERFORM dw.queue_cancel_children_v1(p_execution_id, v_queue);
END;
$$;


--
-- Name: fire_due_waits_internal_v1(uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.fire_due_waits_internal_v1(p_execution_id uuid) RETURNS SETOF dw.waits
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_w dw.waits;
BEGIN
    FOR v_w IN
        SELECT * FROM dw.waits w
         WHERE w.execution_id = p_execution_id AND w.state = 'open'
           AND (w.due_at <= now() OR w.expires_at <= now())
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
                                                     v_w.expires_at, v_w.created_at)), NULL);
        END IF;
    END LOOP;
END;
$$;


--
-- Name: fire_due_waits_v1(uuid, bigint); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.fire_due_waits_v1(p_execution_id uuid, p_token bigint) RETURNS SETOF jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: fire_schedule_v1(uuid, timestamp with time zone[], integer[], timestamp with time zone, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.fire_schedule_v1(p_trigger_id uuid, p_ticks timestamp with time zone[], p_missed integer[], p_next_tick timestamp with time zone, p_queue text) RETURNS TABLE(tick_at timestamp with time zone, fired_at timestamp with time zone, execution_id uuid, outcome text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_t dw.triggers;
    v_refusal text;
    v_checked boolean := false;
    v_tick timestamptz;
    v_fired_at timestamptz;
    v_last timestamptz;
    v_error text;
    v_started record;
    v_payload jsonb;
    v_text text;
    v_previous_tenant text;
BEGIN
    SELECT * INTO v_t FROM dw.triggers t WHERE t.id = p_trigger_id AND t.kind = 'schedule';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The scheduler claims schedules of every tenant; each one fires as its own tenant.
    v_previous_tenant := dw.enter_tenant_v1(v_t.tenant_id);
    v_error := v_t.error;
    v_payload := CASE WHEN jsonb_typeof(v_t.config -> 'payload') = 'object' THEN v_t.config -> 'payload'
                      ELSE '{}'::jsonb END;
    FOR i IN 1 .. COALESCE(cardinality(p_ticks), 0) LOOP
        v_tick := p_ticks[i];
        INSERT INTO dw.schedule_ticks AS k (trigger_id, tick_at, fired_at, missed_ticks)
        VALUES (p_trigger_id, v_tick, clock_timestamp(), COALESCE(p_missed[i], 0))
        ON CONFLICT DO NOTHING
        RETURNING k.fired_at INTO v_fired_at;
        IF NOT FOUND THEN
            RETURN QUERY SELECT v_tick, k.fired_at, k.execution_id, 'duplicate'::text FROM dw.schedule_ticks k
                          WHERE k.trigger_id = p_trigger_id AND k.tick_at = v_tick;
            CONTINUE;
        END IF;
        v_last := GREATEST(v_last, v_tick);
        IF NOT v_checked THEN
            v_refusal := dw.schedule_refusal_v1(v_t.workflow_id);
            v_checked := true;
        END IF;
        IF v_refusal IS NOT NULL THEN
            v_error := v_refusal;
            RETURN QUERY SELECT v_tick, v_fired_at, NULL::uuid, 'refused'::text;
            CONTINUE;
        END IF;
        v_text := dw.schedule_tick_text_v1(v_tick);
        SELECT * INTO v_started FROM dw.start_triggered_v1(
            p_trigger_id, 'schedule:' || p_trigger_id || ':' || v_text,
            v_payload || jsonb_build_object('firedBy', jsonb_build_object(
                'kind', 'schedule', 'triggerId', p_trigger_id, 'name', v_t.name, 'tick', v_text,
                'missedTicks', COALESCE(p_missed[i], 0))),
            p_queue);
        UPDATE dw.schedule_ticks k SET execution_id = v_started.execution_id
         WHERE k.trigger_id = p_trigger_id AND k.tick_at = v_tick;
        v_error := NULL;
        RETURN QUERY SELECT v_tick, v_fired_at, v_started.execution_id,
                            CASE WHEN v_started.created THEN 'started' ELSE 'existing' END;
    END LOOP;
    UPDATE dw.triggers t
       SET next_tick_at = p_next_tick, last_tick_at = GREATEST(t.last_tick_at, v_last), error = v_error
     WHERE t.id = p_trigger_id;
    PERFORM dw.leave_tenant_v1(v_previous_tenant);
END;
$$;


--
-- Name: fire_schedules_v1(jsonb, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.fire_schedules_v1(p_plans jsonb, p_queue text) RETURNS TABLE(trigger_id uuid, tick_at timestamp with time zone, fired_at timestamp with time zone, execution_id uuid, outcome text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_plan jsonb;
    v_id uuid;
BEGIN
    FOR v_plan IN SELECT p.value FROM jsonb_array_elements(p_plans) p LOOP
        v_id := (v_plan ->> 'id')::uuid;
        IF v_plan ->> 'error' IS NOT NULL THEN
            PERFORM dw.schedule_failed_v1(v_id, v_plan ->> 'error', (v_plan ->> 'next')::timestamptz,
                                          COALESCE((v_plan ->> 'disable')::boolean, false),
                                          (v_plan ->> 'due')::timestamptz, (v_plan ->> 'updatedAt')::timestamptz);
            CONTINUE;
        END IF;
        RETURN QUERY
        SELECT v_id, f.tick_at, f.fired_at, f.execution_id, f.outcome
          FROM dw.fire_schedule_v1(
              v_id,
              ARRAY(SELECT jsonb_array_elements_text(COALESCE(v_plan -> 'ticks', '[]'::jsonb))::timestamptz),
              ARRAY(SELECT jsonb_array_elements_text(COALESCE(v_plan -> 'missed', '[]'::jsonb))::integer),
              (v_plan ->> 'next')::timestamptz, p_queue) f;
    END LOOP;
END;
$$;


--
-- Name: foreach_items; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.foreach_items (
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    item_index integer NOT NULL,
    item jsonb,
    node_attempt integer NOT NULL,
    action_type text NOT NULL,
    status text DEFAULT 'Pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    attempt_base integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone,
    outputs jsonb,
    error jsonb,
    started_at timestamp with time zone,
    ended_at timestamp with time zone,
    child_execution_id uuid,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT foreach_items_index_check CHECK ((item_index >= 0)),
    CONSTRAINT foreach_items_status_check CHECK ((status = ANY (ARRAY['Pending'::text, 'Running'::text, 'Waiting'::text, 'Succeeded'::text, 'Failed'::text, 'Cancelled'::text]))),
    CONSTRAINT foreach_items_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.foreach_items FORCE ROW LEVEL SECURITY;


--
-- Name: foreach_item_json_v1(dw.foreach_items); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.foreach_item_json_v1(i dw.foreach_items) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
    SELECT jsonb_build_object('index', i.item_index, 'item', i.item, 'status', i.status, 'attempts', i.attempts,
                              'attemptBase', i.attempt_base, 'nextAttemptAt', i.next_attempt_at,
                              'outputs', i.outputs, 'error', i.error, 'childExecutionId', i.child_execution_id);
$$;


--
-- Name: held_by_live_worker_v1(dw.executions); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.held_by_live_worker_v1(p_e dw.executions) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT p_e.status = 'Running' AND p_e.lease_owner IS NOT NULL AND p_e.lease_expires_at > now();
$$;


--
-- Name: is_child_of_v1(uuid, uuid, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.is_child_of_v1(p_child_id uuid, p_parent_id uuid, p_node_id text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT EXISTS (SELECT 1 FROM dw.executions e
                    WHERE e.id = p_child_id AND e.parent_execution_id = p_parent_id AND e.parent_node_id = p_node_id);
$$;


--
-- Name: item_child_ended_v1(uuid, uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.item_child_ended_v1(p_child_id uuid, p_parent_id uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_parent dw.executions;
    v_child dw.executions;
    v_i dw.foreach_items;
    v_error jsonb;
BEGIN
    v_parent := dw.lock_execution_v1(p_parent_id);
    SELECT * INTO v_i FROM dw.foreach_items i
     WHERE i.child_execution_id = p_child_id AND i.status = 'Running'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO v_child FROM dw.executions e WHERE e.id = p_child_id;
    IF v_child.status <> 'Succeeded' THEN
        v_error := jsonb_build_object(
            'code', CASE v_child.status WHEN 'Cancelled' THEN 'child_cancelled' WHEN 'TimedOut' THEN 'child_timed_out'
                                        ELSE 'child_failed' END,
            'message', left(format('child execution %s (%s) ended %s%s', v_child.id, v_child.workflow_id,
                                   v_child.status, COALESCE(': ' || (v_child.error ->> 'message'), '')), 2000),
            'details', jsonb_strip_nulls(jsonb_build_object('cause', v_child.error,
                                                            'childExecutionId', v_child.id)));
    END IF;
    UPDATE dw.foreach_items i
       SET status = CASE WHEN v_error IS NULL THEN 'Succeeded' ELSE 'Failed' END,
           outputs = CASE WHEN v_error IS NULL THEN COALESCE(v_child.outputs, '{}'::jsonb) END,
           error = v_error, ended_at = now()
     WHERE i.execution_id = v_i.execution_id AND i.node_id = v_i.node_id AND i.item_index = v_i.item_index;
    INSERT INTO dw.action_executions (execution_id, node_id, item_index, action_type, attempt, status,
                                      parameters, outputs, error, start_time, end_time)
    VALUES (v_i.execution_id, v_i.node_id, v_i.item_index, 'subworkflow', v_i.attempts,
            CASE WHEN v_error IS NULL THEN 'Succeeded' ELSE 'Failed' END,
            jsonb_build_object('workflowId', v_child.workflow_id, 'version', v_child.workflow_version,
                               'input', v_child.trigger, 'childExecutionId', v_child.id),
            CASE WHEN v_error IS NULL THEN COALESCE(v_child.outputs, '{}'::jsonb) END, v_error,
            COALESCE(v_child.created_at, now()), now())
    ON CONFLICT ON CONSTRAINT action_executions_attempt_key DO NOTHING;
    PERFORM dw.wake_run_v1(v_parent, v_parent.queue);
END;
$$;


--
-- Name: leave_tenant_v1(text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.leave_tenant_v1(p_previous text) RETURNS void
    LANGUAGE sql
    AS $$
    SELECT set_config('dw.tenant_id', COALESCE(p_previous, ''), true);
$$;


--
-- Name: link_external_resource_v1(text, text, text, text, text, uuid, text, jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.link_external_resource_v1(p_tenant text, p_type text, p_key text, p_external_id text, p_workflow_id text, p_execution_id uuid, p_node_id text, p_data jsonb) RETURNS TABLE(external_id text, created boolean)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_l dw.resource_links%ROWTYPE;
BEGIN
    INSERT INTO dw.resource_links AS l (tenant_id, resource_type, resource_key, external_id, workflow_id,
                                        execution_id, node_id, data, linked_at)
    VALUES (p_tenant, p_type, p_key, p_external_id, p_workflow_id, p_execution_id, p_node_id, p_data, now())
    ON CONFLICT ON CONSTRAINT resource_links_key DO UPDATE
       SET external_id = COALESCE(l.external_id, EXCLUDED.external_id),
           data = CASE WHEN l.external_id IS NULL THEN EXCLUDED.data ELSE l.data END,
           linked_at = COALESCE(l.linked_at, now()),
           claimed_until = NULL,
           execution_id = CASE WHEN l.external_id IS NULL THEN EXCLUDED.execution_id ELSE l.execution_id END,
           node_id = CASE WHEN l.external_id IS NULL THEN EXCLUDED.node_id ELSE l.node_id END
    RETURNING l.* INTO v_l;
    IF NOT EXISTS (SELECT 1 FROM dw.resource_touches t
                    WHERE t.resource_link_id = v_l.id AND t.execution_id IS NOT DISTINCT FROM p_execution_id
                      AND t.node_id IS NOT DISTINCT FROM p_node_id AND t.action = 'created') THEN
        INSERT INTO dw.resource_touches (resource_link_id, execution_id, node_id, action)
        VALUES (v_l.id, p_execution_id, p_node_id,
                CASE WHEN v_l.external_id = p_external_id THEN 'created' ELSE 'found' END);
    END IF;
    RETURN QUERY SELECT v_l.external_id, v_l.external_id = p_external_id;
END;
$$;


--
-- Name: load_items_v1(uuid, bigint, text, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.load_items_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer) RETURNS SETOF jsonb
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    RETURN QUERY SELECT dw.foreach_item_json_v1(i) FROM dw.foreach_items i
                  WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.node_attempt = p_attempt
                  ORDER BY i.item_index;
END;
$$;


--
-- Name: lock_execution_v1(uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.lock_execution_v1(p_execution_id uuid) RETURNS dw.executions
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: lock_running_attempt_v1(uuid, text, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.lock_running_attempt_v1(p_execution_id uuid, p_node_id text, p_attempt integer) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM 1 FROM dw.node_states n
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id AND n.status = 'Running'
       AND n.attempts = p_attempt
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % of execution % has no attempt % in flight', p_node_id, p_execution_id, p_attempt
            USING ERRCODE = 'DW011';
    END IF;
END;
$$;


--
-- Name: lock_webhook_trigger_v1(uuid, boolean); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.lock_webhook_trigger_v1(p_trigger_id uuid, p_enabled_only boolean) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM 1 FROM dw.triggers t
     WHERE t.id = p_trigger_id AND t.kind = 'webhook' AND (t.enabled OR NOT p_enabled_only)
       FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook trigger % not found (or disabled)', p_trigger_id USING ERRCODE = 'DW030';
    END IF;
END;
$$;


--
-- Name: notify_execution_event(); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.notify_execution_event() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM dw.event_listeners l WHERE l.execution_id = NEW.execution_id) THEN
        PERFORM pg_notify('dw_events_' || replace(NEW.execution_id::text, '-', ''), '');
    END IF;
    RETURN NULL;
END;
$$;


--
-- Name: park_execution_v2(uuid, bigint, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.park_execution_v2(p_execution_id uuid, p_token bigint, p_queue text) RETURNS TABLE(wake_at timestamp with time zone, outcome text)
    LANGUAGE plpgsql
    AS $$
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
        PERFORM dw.defer_run_job_v1(p_execution_id, p_queue, NULL);
    END IF;
    RETURN QUERY SELECT v_wake, 'parked'::text;
END;
$$;


--
-- Name: prune_api_rate_buckets_v1(integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.prune_api_rate_buckets_v1(p_limit integer) RETURNS integer
    LANGUAGE sql
    AS $$
    WITH full_again AS (
        SELECT b.tenant_id, b.subject FROM dw.api_rate_buckets b
         WHERE b.full_at < now()
         ORDER BY b.full_at
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), deleted AS (
        DELETE FROM dw.api_rate_buckets b USING full_again f
         WHERE b.tenant_id = f.tenant_id AND b.subject = f.subject AND b.full_at < now()
        RETURNING 1
    )
    SELECT count(*)::integer FROM deleted;
$$;


--
-- Name: prune_webhook_deliveries_v1(double precision, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.prune_webhook_deliveries_v1(p_keep_seconds double precision, p_limit integer) RETURNS integer
    LANGUAGE sql
    AS $$
    WITH doomed AS (
        SELECT d.id FROM dw.webhook_deliveries d
         WHERE d.received_at < now() - make_interval(secs => p_keep_seconds)
         ORDER BY d.received_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM dw.webhook_deliveries d USING doomed WHERE d.id = doomed.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone;
$$;


--
-- Name: publish_workflow_v1(text, integer, jsonb, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.publish_workflow_v1(p_workflow_id text, p_version integer, p_plan jsonb, p_principal text) RETURNS TABLE(workflow_id text, version integer, status text)
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM 1 FROM dw.workflows w WHERE w.id = p_workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    PERFORM 1 FROM dw.workflow_versions v WHERE v.workflow_id = p_workflow_id AND v.version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % has no version %', p_workflow_id, p_version USING ERRCODE = 'DW003';
    END IF;

    INSERT INTO dw.workflow_plans (workflow_id, version, plan)
    VALUES (p_workflow_id, p_version, p_plan)
    ON CONFLICT ON CONSTRAINT workflow_plans_pkey DO NOTHING;

    UPDATE dw.workflow_versions v
       SET published_at = COALESCE(v.published_at, now()),
           published_by = CASE WHEN v.published_at IS NULL THEN p_principal ELSE v.published_by END
     WHERE v.workflow_id = p_workflow_id AND v.version = p_version;

    -- The workflow's names follow the version that runs.
    UPDATE dw.workflows w
       SET status = 'Active', current_version = p_version, updated_at = now(),
           archived_at = NULL, archived_by = NULL,
           display_name = COALESCE(v.definition ->> 'displayName', w.display_name),
           description = v.definition ->> 'description'
      FROM dw.workflow_versions v
     WHERE w.id = p_workflow_id AND v.workflow_id = p_workflow_id AND v.version = p_version;

    RETURN QUERY SELECT p_workflow_id, p_version, 'Active'::text;
END;
$$;


--
-- Name: queue_cancel_children_v1(uuid, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.queue_cancel_children_v1(p_parent_id uuid, p_queue text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM dw.children_to_cancel_v1(p_parent_id)) THEN
        -- Not in this transaction: cancelling a child locks it, and a child that ends locks it and
        -- then its parent.
        PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
            p_queue, 'dw.cancel_children', 0, NULL, NULL,
            jsonb_build_object('parent_execution_id', p_parent_id::text), NULL
        )::procrastinate_job_to_defer_v1]);
    END IF;
END;
$$;


--
-- Name: record_attempt_v3(uuid, bigint, text, integer, text, text, jsonb, jsonb, jsonb, timestamp with time zone, timestamp with time zone, text, text, timestamp with time zone, boolean[], jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.record_attempt_v3(p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_action_type text, p_attempt_status text, p_parameters jsonb, p_outputs jsonb, p_error jsonb, p_start_time timestamp with time zone, p_end_time timestamp with time zone, p_worker text, p_outcome text, p_next_attempt_at timestamp with time zone, p_fired boolean[], p_resource_links jsonb) RETURNS TABLE(node_id text, status text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
    v_node_status text;
    v_edges text[];
    v_link jsonb;
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

    INSERT INTO dw.action_executions (execution_id, node_id, action_type, attempt, status, parameters,
                                      outputs, error, worker, start_time, end_time)
    VALUES (p_execution_id, p_node_id, p_action_type, p_attempt, p_attempt_status, p_parameters,
            p_outputs, p_error, p_worker, p_start_time, p_end_time);

    UPDATE dw.node_states n
       SET status = v_node_status,
           outputs = CASE WHEN v_node_status = 'Succeeded' THEN p_outputs ELSE n.outputs END,
           error = CASE WHEN v_node_status = 'Succeeded' THEN NULL ELSE p_error END,
           next_attempt_at = p_next_attempt_at,
           ended_at = CASE WHEN v_node_status IN ('Succeeded', 'Failed') THEN p_end_time END,
           -- A redrive restores an unhandled failure, also when another node's failure is the one
           -- that ended the run.
           end_reason = CASE WHEN p_outcome = 'failed_unhandled' THEN 'unhandled_failure' END
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id
       AND (n.status = 'Running'
            -- A node that waited: its wait was resolved (a signal, a decision, its timer, its
            -- timeout) and this writes the outcome, once.
            OR (n.status = 'Waiting' AND n.attempts = p_attempt AND EXISTS (
                    SELECT 1 FROM dw.waits w
                     WHERE w.execution_id = n.execution_id AND w.node_id = n.node_id AND w.attempt = p_attempt
                       AND w.state NOT IN ('open', 'withdrawn') AND w.recorded_at IS NULL)))
    RETURNING n.edge_targets INTO v_edges;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % of execution % has no attempt in flight', p_node_id, p_execution_id
            USING ERRCODE = 'DW011';
    END IF;
    UPDATE dw.waits w SET recorded_at = now()
     WHERE w.execution_id = p_execution_id AND w.node_id = p_node_id AND w.attempt = p_attempt
       AND w.state NOT IN ('open', 'withdrawn') AND w.recorded_at IS NULL;

    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id,
            CASE v_node_status WHEN 'Succeeded' THEN 'node_succeeded' WHEN 'Failed' THEN 'node_failed'
                               ELSE 'node_retry_scheduled' END,
            jsonb_strip_nulls(jsonb_build_object('attempt', p_attempt, 'attemptStatus', p_attempt_status,
                                                 'error', p_error, 'nextAttemptAt', p_next_attempt_at)));

    IF p_resource_links IS NOT NULL THEN
        FOR v_link IN SELECT * FROM jsonb_array_elements(p_resource_links) LOOP
            PERFORM dw.link_external_resource_v1(
                v_e.tenant_id, v_link ->> 'resourceType', v_link ->> 'resourceKey', v_link ->> 'externalId',
                v_e.workflow_id, p_execution_id, p_node_id, v_link -> 'data');
        END LOOP;
    END IF;

    IF p_outcome IN ('succeeded', 'failed_handled') AND COALESCE(array_length(v_edges, 1), 0) > 0 THEN
        IF COALESCE(array_length(p_fired, 1), 0) <> array_length(v_edges, 1) THEN
            RAISE EXCEPTION 'node % has % edges but % decisions', p_node_id, array_length(v_edges, 1),
                COALESCE(array_length(p_fired, 1), 0) USING ERRCODE = 'DW013';
        END IF;
        RETURN QUERY SELECT * FROM dw.decide_edges_v1(p_execution_id, v_edges, p_fired);
    END IF;
END;
$$;


--
-- Name: record_event_v1(uuid, bigint, text, text, jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.record_event_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_type text, p_details jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, p_type, COALESCE(p_details, '{}'::jsonb));
END;
$$;


--
-- Name: record_item_attempt_v2(uuid, bigint, text, integer, integer, text, text, text, jsonb, jsonb, jsonb, timestamp with time zone, timestamp with time zone, text, timestamp with time zone, jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.record_item_attempt_v2(p_execution_id uuid, p_token bigint, p_node_id text, p_index integer, p_attempt integer, p_action_type text, p_attempt_status text, p_item_status text, p_parameters jsonb, p_outputs jsonb, p_error jsonb, p_start_time timestamp with time zone, p_end_time timestamp with time zone, p_worker text, p_next_attempt_at timestamp with time zone, p_resource_links jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
    v_link jsonb;
BEGIN
    IF p_item_status NOT IN ('Succeeded', 'Failed', 'Waiting', 'Cancelled') THEN
        RAISE EXCEPTION 'not an item outcome: %', p_item_status USING ERRCODE = 'DW013';
    END IF;
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    UPDATE dw.foreach_items i
       SET status = p_item_status,
           outputs = CASE WHEN p_item_status = 'Succeeded' THEN p_outputs END,
           error = CASE WHEN p_item_status = 'Succeeded' THEN NULL ELSE p_error END,
           next_attempt_at = p_next_attempt_at,
           ended_at = CASE WHEN p_item_status <> 'Waiting' THEN p_end_time END
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = p_index
       AND i.status = 'Running' AND i.attempts = p_attempt;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'item % of node % of execution % has no attempt % in flight', p_index, p_node_id,
            p_execution_id, p_attempt USING ERRCODE = 'DW011';
    END IF;
    INSERT INTO dw.action_executions (execution_id, node_id, item_index, action_type, attempt, status, parameters,
                                      outputs, error, worker, start_time, end_time)
    VALUES (p_execution_id, p_node_id, p_index, p_action_type, p_attempt, p_attempt_status, p_parameters,
            p_outputs, p_error, p_worker, p_start_time, p_end_time);
    IF p_resource_links IS NOT NULL THEN
        FOR v_link IN SELECT * FROM jsonb_array_elements(p_resource_links) LOOP
            PERFORM dw.link_external_resource_v1(
                v_e.tenant_id, v_link ->> 'resourceType', v_link ->> 'resourceKey', v_link ->> 'externalId',
                v_e.workflow_id, p_execution_id, p_node_id || '#' || p_index, v_link -> 'data');
        END LOOP;
    END IF;
END;
$$;


--
-- Name: record_job_failure_v1(bigint, uuid, jsonb, jsonb, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.record_job_failure_v1(p_job_id bigint, p_execution_id uuid, p_payload jsonb, p_error jsonb, p_attempts integer) RETURNS bigint
    LANGUAGE sql
    AS $$
    INSERT INTO dw.dead_letters (kind, execution_id, job_id, payload, error, attempts, closed_at, close_reason)
    SELECT 'job_failed', e.id, p_job_id, p_payload, p_error, p_attempts,
           CASE WHEN e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN now() END,
           CASE WHEN e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN 'run_ended' END
      FROM (SELECT 1) one LEFT JOIN dw.executions e ON e.id = p_execution_id
    RETURNING id;
$$;


--
-- Name: record_webhook_delivery_v1(uuid, text, text, text, text, integer, integer, timestamp with time zone); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.record_webhook_delivery_v1(p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_outcome text, p_reason text, p_status_code integer, p_body_bytes integer, p_received_at timestamp with time zone) RETURNS TABLE(outcome text, execution_id uuid, first_outcome text, created boolean)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_claim record;
BEGIN
    IF p_outcome NOT IN ('refused', 'not_activated') THEN
        RAISE EXCEPTION 'a recorded delivery is refused or not_activated, not %', p_outcome USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM dw.triggers t WHERE t.id = p_trigger_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_outcome = 'refused' THEN
        INSERT INTO dw.webhook_deliveries (trigger_id, delivery_id, received_at, outcome, reason, status_code,
                                           body_bytes)
        VALUES (p_trigger_id, p_delivery_id, p_received_at, 'refused', p_reason, p_status_code, p_body_bytes);
        RETURN QUERY SELECT 'refused'::text, NULL::uuid, NULL::text, false;
        RETURN;
    END IF;
    SELECT * INTO v_claim FROM dw.claim_webhook_delivery_v1(
        p_trigger_id, p_delivery_id, p_content_hash, 'not_activated', p_reason, p_status_code, p_body_bytes,
        p_received_at);
    IF v_claim.o_id IS NULL THEN
        RETURN QUERY SELECT 'duplicate'::text, v_claim.o_first_execution_id, v_claim.o_first_outcome, false;
    ELSE
        RETURN QUERY SELECT 'not_activated'::text, NULL::uuid, 'not_activated'::text, false;
    END IF;
END;
$$;


--
-- Name: recover_executions_v1(integer, double precision, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.recover_executions_v1(p_max_recoveries integer, p_stalled_worker_seconds double precision, p_queue text) RETURNS TABLE(execution_id uuid, action text)
    LANGUAGE plpgsql
    AS $$
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

    FOR v_e IN
        SELECT e.id, e.status, e.recovery_count, e.lease_owner, e.parent_execution_id FROM dw.executions e
         WHERE ((e.status = 'Running' AND (e.lease_expires_at IS NULL OR e.lease_expires_at < now()))
                OR (e.status = 'Pending'
                    AND e.created_at < now() - make_interval(secs => p_stalled_worker_seconds))
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
        -- Close the dead worker's job so it does not stay 'doing' forever. A plain conditional
        -- update, not procrastinate_finish_job_v1, which raises if the job finished meanwhile.
        UPDATE procrastinate_jobs j SET status = 'failed'
         WHERE (j.args ->> 'execution_id') = v_e.id::text AND j.status = 'doing';

        IF v_e.recovery_count >= p_max_recoveries THEN
            -- A child's end locks its parent. Not waiting for it here, where other runs' rows are
            -- held (two sweeps could wait for each other): a parent locked now is tried next time.
            IF v_e.parent_execution_id IS NOT NULL THEN
                PERFORM 1 FROM dw.executions p WHERE p.id = v_e.parent_execution_id FOR NO KEY UPDATE SKIP LOCKED;
                CONTINUE WHEN NOT FOUND;
            END IF;
            -- Say what was running each time: an attempt that keeps killing its worker (a crash in
            -- an action, memory exhaustion) is named here, with how often it was interrupted.
            SELECT jsonb_agg(jsonb_build_object('nodeId', n.node_id, 'actionType', n.action_type,
                                                'attempt', n.attempts, 'startedAt', n.started_at,
                                                'interruptedAttempts', (
                       SELECT count(*) FROM dw.action_executions a
                        WHERE a.execution_id = n.execution_id AND a.node_id = n.node_id
                          AND a.error ->> 'code' = 'attempt_interrupted')) ORDER BY n.position)
              INTO v_in_flight
              FROM dw.node_states n WHERE n.execution_id = v_e.id AND n.status = 'Running';
            PERFORM dw.finish_execution_v1(v_e.id, 'Failed',
                jsonb_strip_nulls(jsonb_build_object(
                    'code', 'worker_lost',
                    'message', format('the run lost its worker %s times%s', v_e.recovery_count + 1,
                                      CASE WHEN v_in_flight IS NULL THEN ''
                                           ELSE '; in flight each time: ' || (
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
            execution_id := v_e.id; action := 'failed';
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
        PERFORM dw.defer_run_job_v1(v_e.id, p_queue, NULL);
        execution_id := v_e.id; action := 'requeued';
        RETURN NEXT;
    END LOOP;
END;
$$;


--
-- Name: redrive_dead_letter_v1(bigint, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.redrive_dead_letter_v1(p_id bigint, p_principal text, p_queue text) RETURNS TABLE(dead_letter_id bigint, execution_id uuid, action text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_d dw.dead_letters%ROWTYPE;
    v_e dw.executions%ROWTYPE;
    v_timeout double precision;
BEGIN
    SELECT * INTO v_d FROM dw.dead_letters d WHERE d.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % not found', p_id USING ERRCODE = 'DW006';
    END IF;
    IF v_d.redriven_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already redriven at % by %', p_id, v_d.redriven_at,
            COALESCE(v_d.redriven_by, 'an anonymous caller') USING ERRCODE = 'DW005';
    END IF;
    IF v_d.closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was closed at % (%)', p_id, v_d.closed_at, v_d.close_reason
            USING ERRCODE = 'DW005';
    END IF;
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = v_d.execution_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % has no execution to redrive', p_id USING ERRCODE = 'DW005';
    END IF;

    IF v_d.kind = 'job_failed' THEN
        IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
            RAISE EXCEPTION 'execution % already ended (%); redrive its node_failed or worker_lost letter instead',
                v_e.id, v_e.status USING ERRCODE = 'DW005';
        END IF;
        PERFORM dw.defer_run_job_v1(v_e.id, p_queue, NULL);
    ELSE
        IF v_e.status <> 'Failed' THEN
            RAISE EXCEPTION 'execution % is %, not Failed: nothing to redrive', v_e.id, v_e.status
                USING ERRCODE = 'DW005';
        END IF;
        UPDATE dw.node_states n
           SET status = CASE
                   WHEN n.status IN ('Failed', 'Cancelled') THEN 'Ready'
                   WHEN n.decided_incoming = n.expected_incoming AND (n.expected_incoming = 0 OR n.satisfied_incoming > 0)
                       THEN 'Ready'
                   ELSE 'Pending' END,
               -- Failed and interrupted nodes get a fresh retry budget.
               attempt_base = CASE WHEN n.status IN ('Failed', 'Cancelled') THEN n.attempts ELSE n.attempt_base END,
               error = NULL, ended_at = NULL, end_reason = NULL, next_attempt_at = NULL
         WHERE n.execution_id = v_e.id
           AND ((n.node_id = v_d.node_id AND n.status = 'Failed')
                OR (n.status = 'Failed' AND n.end_reason = 'unhandled_failure')
                OR n.end_reason = 'run_ended');

        SELECT (p.plan ->> 'workflowTimeoutSeconds')::double precision INTO v_timeout
          FROM dw.workflow_plans p WHERE p.workflow_id = v_e.workflow_id AND p.version = v_e.workflow_version;
        UPDATE dw.executions e
           SET status = 'Pending', ended_at = NULL, error = NULL, recovery_count = 0,
               lease_owner = NULL, lease_expires_at = NULL,
               deadline_at = CASE WHEN v_timeout IS NULL THEN NULL ELSE now() + make_interval(secs => v_timeout) END
         WHERE e.id = v_e.id;
        PERFORM dw.defer_run_job_v1(v_e.id, p_queue, NULL);
    END IF;

    UPDATE dw.dead_letters d SET redriven_at = now(), redriven_by = p_principal WHERE d.id = p_id;
    INSERT INTO dw.execution_events (execution_id, node_id, type, principal, details)
    VALUES (v_e.id, v_d.node_id, 'execution_redriven', p_principal,
            jsonb_build_object('deadLetterId', p_id, 'kind', v_d.kind));
    RETURN QUERY SELECT p_id, v_e.id, 'requeued'::text;
END;
$$;


--
-- Name: release_execution_v1(uuid, bigint, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.release_execution_v1(p_execution_id uuid, p_token bigint, p_queue text, p_reason text) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_rows integer;
BEGIN
    UPDATE dw.executions e SET lease_owner = NULL, lease_expires_at = NULL
     WHERE e.id = p_execution_id AND e.lease_token = p_token AND e.lease_owner IS NOT NULL
       AND e.status = 'Running';
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN
        RETURN false;
    END IF;
    INSERT INTO dw.execution_events (execution_id, type, details)
    VALUES (p_execution_id, 'execution_released', jsonb_build_object('reason', p_reason));
    PERFORM dw.defer_run_job_v1(p_execution_id, p_queue, NULL);
    RETURN true;
END;
$$;


--
-- Name: release_resource_claim_v2(text, text, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.release_resource_claim_v2(p_tenant text, p_type text, p_key text, p_owner text) RETURNS void
    LANGUAGE sql
    AS $$
    DELETE FROM dw.resource_links l
     WHERE l.tenant_id = p_tenant AND l.resource_type = p_type AND l.resource_key = p_key
       AND l.external_id IS NULL AND l.claim_owner = p_owner;
$$;


--
-- Name: renew_lease_v2(uuid, bigint, double precision); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.renew_lease_v2(p_execution_id uuid, p_token bigint, p_lease_seconds double precision) RETURNS TABLE(renewed boolean, control text, waits jsonb)
    LANGUAGE plpgsql
    AS $$
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
        RETURN QUERY SELECT false, NULL::text, '[]'::jsonb;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT true, v_control,
           COALESCE((SELECT jsonb_agg(dw.wait_json_v1(w) ORDER BY w.consumed_at) FROM dw.waits w
                      WHERE w.execution_id = p_execution_id AND w.state NOT IN ('open', 'withdrawn')
                        AND w.recorded_at IS NULL), '[]'::jsonb);
END;
$$;


--
-- Name: reporting_sees_v1(name, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.reporting_sees_v1(p_role name, p_tenant text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT EXISTS (SELECT 1 FROM dw.reporting_tenants r WHERE r.role_name = p_role AND r.tenant_id IN (p_tenant, '*'))
$$;


--
-- Name: request_cancel_v1(uuid, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.request_cancel_v1(p_execution_id uuid, p_principal text, p_reason text) RETURNS TABLE(status text, outcome text)
    LANGUAGE plpgsql
    AS $$
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
    IF dw.held_by_live_worker_v1(v_e) THEN
        PERFORM pg_notify('dw_control', p_execution_id::text);
        RETURN QUERY SELECT v_e.status, 'requested'::text;
        RETURN;
    END IF;
    PERFORM dw.finish_cancelled_v1(v_e);
    RETURN QUERY SELECT 'Cancelled'::text, 'cancelled'::text;
END;
$$;


--
-- Name: request_suspend_v1(uuid, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.request_suspend_v1(p_execution_id uuid, p_principal text, p_reason text) RETURNS TABLE(status text, outcome text)
    LANGUAGE plpgsql
    AS $$
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
    IF dw.held_by_live_worker_v1(v_e) THEN
        PERFORM pg_notify('dw_control', p_execution_id::text);
        RETURN QUERY SELECT v_e.status, 'requested'::text;
        RETURN;
    END IF;
    PERFORM dw.suspend_now_v1(v_e, NULL);
    RETURN QUERY SELECT 'Suspended'::text, 'suspended'::text;
END;
$$;


--
-- Name: resolve_wait_v1(uuid, text, text, jsonb, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.resolve_wait_v1(p_wait_id uuid, p_state text, p_by text, p_result jsonb, p_principal text) RETURNS dw.waits
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: resume_execution_v1(uuid, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.resume_execution_v1(p_execution_id uuid, p_principal text, p_queue text) RETURNS TABLE(status text, outcome text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
    v_status text;
BEGIN
    v_e := dw.lock_execution_v1(p_execution_id);
    IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RAISE EXCEPTION 'execution % has already ended (%)', p_execution_id, v_e.status USING ERRCODE = 'DW014';
    END IF;
    IF v_e.status = 'Suspended' THEN
        v_status := CASE WHEN v_e.started_at IS NULL THEN 'Pending' ELSE 'Waiting' END;
        UPDATE dw.executions e
           SET status = v_status, suspended_at = NULL, suspend_requested_at = NULL, suspend_requested_by = NULL,
               wake_at = now()
         WHERE e.id = p_execution_id;
        INSERT INTO dw.execution_events (execution_id, type, principal, details)
        VALUES (p_execution_id, 'execution_resumed', p_principal,
                jsonb_build_object('suspendedSeconds', extract(epoch FROM now() - v_e.suspended_at)));
        PERFORM dw.defer_run_job_v1(p_execution_id, p_queue, NULL);
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


--
-- Name: run_wake_at_v1(uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.run_wake_at_v1(p_execution_id uuid) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    AS $$
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


--
-- Name: schedule_failed_v1(uuid, text, timestamp with time zone, boolean, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.schedule_failed_v1(p_trigger_id uuid, p_error text, p_next_tick timestamp with time zone, p_disable boolean, p_due timestamp with time zone, p_updated_at timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE dw.triggers t
       SET error = left(p_error, 2000), next_tick_at = CASE WHEN p_disable THEN NULL ELSE p_next_tick END,
           enabled = t.enabled AND NOT p_disable
     WHERE t.id = p_trigger_id AND t.kind = 'schedule' AND t.next_tick_at IS NOT DISTINCT FROM p_due
       AND t.updated_at IS NOT DISTINCT FROM p_updated_at;
END;
$$;


--
-- Name: schedule_refusal_v1(text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.schedule_refusal_v1(p_workflow_id text) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_wf dw.workflows;
BEGIN
    SELECT * INTO v_wf FROM dw.workflows w
     WHERE w.tenant_id = dw.session_tenant_v1() AND w.id = p_workflow_id FOR SHARE;
    IF NOT FOUND THEN
        RETURN format('workflow %s not found', p_workflow_id);
    ELSIF v_wf.status = 'Archived' THEN
        RETURN format('workflow %s is Archived and refuses new executions', p_workflow_id);
    ELSIF v_wf.status <> 'Active' THEN
        RETURN format('workflow %s is a Draft; publish it to run it', p_workflow_id);
    ELSIF NOT v_wf.is_enabled THEN
        RETURN format('workflow %s is disabled', p_workflow_id);
    END IF;
    RETURN NULL;
END;
$$;


--
-- Name: schedule_tick_text_v1(timestamp with time zone); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.schedule_tick_text_v1(p_tick timestamp with time zone) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT to_char(p_tick AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;


--
-- Name: schedule_v1(text, text, text, text, jsonb); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.schedule_v1(p_name text, p_workflow_id text, p_cron text, p_timezone text DEFAULT 'UTC'::text, p_payload jsonb DEFAULT '{}'::jsonb) RETURNS uuid
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_cron text := btrim(p_cron, E' \t\n\r\f\x0B');
    v_timezone text := COALESCE(p_timezone, 'UTC');
    v_id uuid;
    v_tenant text := dw.session_tenant_v1();
BEGIN
    IF p_name IS NULL OR length(p_name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a schedule needs a name of 1 to 200 characters' USING ERRCODE = 'DW031';
    END IF;
    PERFORM dw.check_schedule_v1(v_cron, v_timezone);
    IF p_payload IS NOT NULL AND jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'the payload of schedule % must be a JSON object', p_name USING ERRCODE = 'DW031';
    END IF;
    PERFORM 1 FROM dw.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    INSERT INTO dw.triggers AS t (tenant_id, workflow_id, kind, name, config, created_by)
    VALUES (v_tenant, p_workflow_id, 'schedule', p_name,
            jsonb_build_object('cron', v_cron, 'timezone', v_timezone, 'payload', COALESCE(p_payload, '{}'::jsonb)),
            session_user)
    ON CONFLICT ON CONSTRAINT triggers_name_key DO UPDATE
       SET workflow_id = EXCLUDED.workflow_id, config = t.config || EXCLUDED.config,
           next_tick_at = CASE WHEN btrim(t.config ->> 'cron', E' \t\n\r\f\x0B') IS DISTINCT FROM v_cron
                                 OR COALESCE(t.config ->> 'timezone', 'UTC') IS DISTINCT FROM v_timezone
                               THEN NULL ELSE t.next_tick_at END,
           error = NULL, updated_at = now()
    RETURNING t.id INTO v_id;
    RETURN v_id;
END;
$$;


--
-- Name: session_tenant_v1(); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.session_tenant_v1() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT COALESCE(NULLIF(NULLIF(current_setting('dw.tenant_id', true), ''), '*'), 'default');
$$;


--
-- Name: set_workflow_limits_v1(text, boolean, integer, boolean, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.set_workflow_limits_v1(p_workflow_id text, p_set_concurrent boolean, p_concurrent integer, p_set_rate boolean, p_rate integer) RETURNS TABLE(workflow_id text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_tenant text;
    v_old_rate integer;
    v_requeued bigint;
BEGIN
    -- The session's tenant: a psql session that set none (or '*') means the default one.
    SELECT w.tenant_id, w.rate_limit_per_minute INTO v_tenant, v_old_rate
      FROM dw.workflows w WHERE w.tenant_id = dw.session_tenant_v1() AND w.id = p_workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE dw.workflows w
       SET max_concurrent_executions = CASE WHEN p_set_concurrent THEN p_concurrent
                                            ELSE w.max_concurrent_executions END,
           rate_limit_per_minute = CASE WHEN p_set_rate THEN p_rate ELSE w.rate_limit_per_minute END,
           updated_at = now()
     WHERE w.id = p_workflow_id AND w.tenant_id = v_tenant;
    IF p_set_rate AND p_rate IS DISTINCT FROM v_old_rate THEN
        UPDATE dw.workflows w SET rate_next_slot_at = NULL WHERE w.id = p_workflow_id AND w.tenant_id = v_tenant;
        WITH promised AS (
            SELECT e.id FROM dw.executions e
             WHERE e.workflow_id = p_workflow_id AND e.tenant_id = v_tenant AND e.status = 'Pending'
               AND e.rate_slot_at IS NOT NULL
             FOR NO KEY UPDATE SKIP LOCKED
        ), withdrawn AS (
            UPDATE dw.executions e SET rate_slot_at = NULL FROM promised p WHERE e.id = p.id
            RETURNING e.id, e.queue
        ), unscheduled AS (
            -- Their jobs were scheduled for the old start times.
            DELETE FROM procrastinate_jobs j USING withdrawn w
             WHERE (j.args ->> 'execution_id') = w.id::text AND j.status = 'todo' AND j.scheduled_at > now()
            RETURNING w.id, w.queue
        )
        SELECT count(dw.defer_run_job_v1(r.id, r.queue, NULL)) INTO v_requeued
          FROM (SELECT DISTINCT u.id, u.queue FROM unscheduled u) r;
    END IF;
    RETURN QUERY SELECT p_workflow_id;
END;
$$;


--
-- Name: start_child_v1(dw.executions, text, text, text, integer, jsonb, integer); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.start_child_v1(p_parent dw.executions, p_node_id text, p_request_id text, p_workflow_id text, p_version integer, p_input jsonb, p_max_depth integer, OUT o_execution_id uuid, OUT o_version integer, OUT o_error jsonb) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_child record;
    v_state text;
    v_message text;
BEGIN
    IF p_parent.depth + 1 > p_max_depth THEN
        o_error := jsonb_build_object(
            'code', 'nesting_too_deep',
            'message', format('starting workflow %s here would nest executions %s levels deep; the limit is %s '
                              '(DW_MAX_NESTING_DEPTH)', p_workflow_id, p_parent.depth + 1, p_max_depth),
            'depth', p_parent.depth + 1, 'maxDepth', p_max_depth);
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO v_child FROM dw.start_execution_v2(
            p_workflow_id, p_version, p_request_id, p_input, p_parent.principal_id, p_parent.principal_type,
            p_parent.correlation_id, p_parent.queue, p_parent, p_node_id);
    EXCEPTION WHEN SQLSTATE 'DW001' OR SQLSTATE 'DW002' OR SQLSTATE 'DW003' THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        o_error := jsonb_build_object(
            'code', CASE v_state WHEN 'DW002' THEN 'child_not_runnable' ELSE 'child_workflow_not_found' END,
            'message', v_message);
        RETURN;
    END;
    IF NOT dw.is_child_of_v1(v_child.execution_id, p_parent.id, p_node_id) THEN
        o_error := dw.child_request_taken_v1(v_child.execution_id);
        RETURN;
    END IF;
    o_execution_id := v_child.execution_id;
    o_version := v_child.workflow_version;
END;
$$;


--
-- Name: start_execution_v1(text, text, jsonb, text, text, text, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.start_execution_v1(p_workflow_id text, p_request_id text, p_trigger jsonb, p_principal_id text, p_principal_type text, p_correlation_id text, p_queue text) RETURNS TABLE(execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN QUERY SELECT * FROM dw.start_execution_v2(p_workflow_id, NULL, p_request_id, p_trigger, p_principal_id,
                                                     p_principal_type, p_correlation_id, p_queue,
                                                     NULL::dw.executions, NULL);
END;
$$;


--
-- Name: start_execution_v2(text, integer, text, jsonb, text, text, text, text, dw.executions, text, uuid); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.start_execution_v2(p_workflow_id text, p_version integer, p_request_id text, p_trigger jsonb, p_principal_id text, p_principal_type text, p_correlation_id text, p_queue text, p_parent dw.executions, p_parent_node_id text, p_trigger_id uuid DEFAULT NULL::uuid) RETURNS TABLE(execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_wf dw.workflows%ROWTYPE;
    v_version integer;
    v_plan jsonb;
    v_id uuid := gen_random_uuid();
    v_inserted uuid;
    v_timeout double precision;
    -- A child runs in its parent's tenant; anything else in the transaction's (dw.enter_tenant_v1).
    v_tenant text := COALESCE(p_parent.tenant_id, current_setting('dw.tenant_id', true));
BEGIN
    IF v_tenant IS NULL OR v_tenant IN ('', '*') THEN
        RAISE EXCEPTION 'starting a run needs a tenant (dw.tenant_id is %)', COALESCE(v_tenant, 'not set')
            USING ERRCODE = 'DW040';
    END IF;
    RETURN QUERY SELECT e.id, e.status, e.workflow_version, false FROM dw.executions e
        WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow_id AND e.request_id = p_request_id;
    IF FOUND THEN
        RETURN;
    END IF;

    -- FOR SHARE: an archive or publish running concurrently waits for this start to commit.
    SELECT * INTO v_wf FROM dw.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    IF v_wf.status = 'Archived' THEN
        RAISE EXCEPTION 'workflow % is Archived and refuses new executions; publish a version to activate it again',
            p_workflow_id USING ERRCODE = 'DW002', DETAIL = v_wf.status;
    ELSIF v_wf.status <> 'Active' THEN
        RAISE EXCEPTION 'workflow % is a Draft; publish it before executing it', p_workflow_id
            USING ERRCODE = 'DW002', DETAIL = v_wf.status;
    END IF;
    IF NOT v_wf.is_enabled THEN
        RAISE EXCEPTION 'workflow % is disabled', p_workflow_id USING ERRCODE = 'DW002', DETAIL = 'Disabled';
    END IF;

    v_version := COALESCE(p_version, v_wf.current_version);
    SELECT p.plan INTO v_plan FROM dw.workflow_plans p
        WHERE p.tenant_id = v_tenant AND p.workflow_id = p_workflow_id AND p.version = v_version;
    IF v_plan IS NULL AND p_version IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM dw.workflow_versions v WHERE v.tenant_id = v_tenant
                                                              AND v.workflow_id = p_workflow_id
                                                              AND v.version = p_version) THEN
        RAISE EXCEPTION 'workflow % has no version %', p_workflow_id, p_version USING ERRCODE = 'DW003';
    END IF;
    IF v_plan IS NULL THEN
        RAISE EXCEPTION 'workflow % version % has no compiled plan', p_workflow_id, v_version
            USING ERRCODE = 'DW002', DETAIL = 'NoPlan';
    END IF;
    -- The plan's field names below (nodes, id, actionType, incoming, edges/target,
    -- workflowTimeoutSeconds) are those of dataworkflows.planning's format 1.
    IF (v_plan ->> 'format') IS DISTINCT FROM '1' THEN
        RAISE EXCEPTION 'workflow % version % has a plan in format %, which this database cannot start',
            p_workflow_id, v_version, COALESCE(v_plan ->> 'format', 'none')
            USING ERRCODE = 'DW002', DETAIL = 'PlanFormat';
    END IF;
    v_timeout := (v_plan ->> 'workflowTimeoutSeconds')::double precision;

    INSERT INTO dw.executions AS e (id, workflow_id, workflow_version, request_id, trigger, principal_id,
                                    principal_type, correlation_id, tenant_id, deadline_at, queue,
                                    parent_execution_id, parent_node_id, root_execution_id, path, depth,
                                    trigger_id)
    VALUES (v_id, p_workflow_id, v_version, p_request_id, COALESCE(p_trigger, '{}'::jsonb),
            p_principal_id, p_principal_type, p_correlation_id, v_wf.tenant_id,
            CASE WHEN v_timeout IS NULL THEN NULL ELSE now() + make_interval(secs => v_timeout) END,
            p_queue, p_parent.id, p_parent_node_id, COALESCE(p_parent.root_execution_id, v_id),
            COALESCE(p_parent.path, ARRAY[]::uuid[]) || v_id, COALESCE(p_parent.depth + 1, 0), p_trigger_id)
    ON CONFLICT ON CONSTRAINT executions_request_key DO NOTHING
    RETURNING e.id INTO v_inserted;

    IF v_inserted IS NULL THEN
        -- A concurrent call with the same request id committed first.
        RETURN QUERY SELECT e.id, e.status, e.workflow_version, false FROM dw.executions e
            WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow_id AND e.request_id = p_request_id;
        RETURN;
    END IF;

    INSERT INTO dw.node_states (execution_id, node_id, position, action_type, status,
                                expected_incoming, edge_targets)
    SELECT v_id, n ->> 'id', (ord - 1)::integer, n ->> 'actionType',
           CASE WHEN (n ->> 'incoming')::integer = 0 THEN 'Ready' ELSE 'Pending' END,
           (n ->> 'incoming')::integer,
           ARRAY(SELECT jsonb_array_elements(n -> 'edges') ->> 'target')
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


--
-- Name: start_item_attempts_v1(uuid, bigint, text, integer[]); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.start_item_attempts_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_indexes integer[]) RETURNS TABLE(item_index integer, attempt integer)
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    RETURN QUERY
    UPDATE dw.foreach_items i
       SET status = 'Running', attempts = i.attempts + 1, started_at = COALESCE(i.started_at, now()),
           next_attempt_at = NULL, child_execution_id = NULL
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = ANY (p_indexes)
       AND i.status IN ('Pending', 'Waiting')
    RETURNING i.item_index, i.attempts;
END;
$$;


--
-- Name: start_node_attempt_v1(uuid, bigint, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.start_node_attempt_v1(p_execution_id uuid, p_token bigint, p_node_id text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: start_triggered_v1(uuid, text, jsonb, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.start_triggered_v1(p_trigger_id uuid, p_request_id text, p_payload jsonb, p_queue text) RETURNS TABLE(execution_id uuid, status text, workflow_version integer, created boolean)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_t dw.triggers;
    v_started record;
BEGIN
    SELECT * INTO v_t FROM dw.triggers t WHERE t.id = p_trigger_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'trigger % not found', p_trigger_id USING ERRCODE = 'DW030';
    END IF;
    SELECT * INTO v_started FROM dw.start_execution_v2(
        v_t.workflow_id, NULL, p_request_id, p_payload, v_t.created_by, v_t.kind, NULL, p_queue,
        NULL::dw.executions, NULL, p_trigger_id);
    RETURN QUERY SELECT v_started.execution_id, v_started.status, v_started.workflow_version, v_started.created;
END;
$$;


--
-- Name: stop_items_v1(uuid, bigint, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.stop_items_v1(p_execution_id uuid, p_token bigint, p_node_id text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
    v_rows integer;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    -- Items in flight: their attempt is Cancelled, and so is the child of one that has one.
    INSERT INTO dw.action_executions (execution_id, node_id, item_index, action_type, attempt, status, error,
                                      start_time, end_time)
    SELECT i.execution_id, i.node_id, i.item_index, i.action_type, i.attempts, 'Cancelled',
           jsonb_build_object('code', 'item_cancelled', 'message', 'cancelled: another item failed (failFast)'),
           COALESCE(i.started_at, now()), now()
      FROM dw.foreach_items i
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.status = 'Running'
    ON CONFLICT ON CONSTRAINT action_executions_attempt_key DO NOTHING;
    UPDATE dw.foreach_items i
       SET status = 'Cancelled', ended_at = now(), next_attempt_at = NULL,
           error = CASE WHEN i.status = 'Running'
                        THEN jsonb_build_object('code', 'item_cancelled',
                                                'message', 'cancelled: another item failed (failFast)')
                        ELSE jsonb_build_object('code', 'not_run',
                                                'message', 'the forEach stopped at an earlier item''s failure') END
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id
       AND i.status IN ('Pending', 'Waiting', 'Running');
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    PERFORM dw.queue_cancel_children_v1(p_execution_id, v_e.queue);
    RETURN v_rows;
END;
$$;


--
-- Name: suspend_execution_v1(uuid, bigint, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.suspend_execution_v1(p_execution_id uuid, p_token bigint, p_worker text) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NOT NULL THEN
        PERFORM dw.finish_cancelled_v1(v_e);
        RETURN 'cancelled';
    END IF;
    IF v_e.suspend_requested_at IS NULL THEN
        RETURN 'withdrawn';
    END IF;
    PERFORM dw.suspend_now_v1(v_e, p_worker);
    RETURN 'suspended';
END;
$$;


--
-- Name: suspend_now_v1(dw.executions, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.suspend_now_v1(p_e dw.executions, p_worker text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE dw.executions e
       SET status = 'Suspended', suspended_at = now(), lease_owner = NULL, lease_expires_at = NULL
     WHERE e.id = p_e.id;
    INSERT INTO dw.execution_events (execution_id, type, principal, details)
    VALUES (p_e.id, 'execution_suspended', p_e.suspend_requested_by,
            jsonb_strip_nulls(jsonb_build_object('previousStatus', p_e.status, 'worker', p_worker)));
END;
$$;


--
-- Name: tenant_from_parent(); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.tenant_from_parent() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_ARGV[0] = 'execution' THEN
        NEW.tenant_id := (SELECT e.tenant_id FROM dw.executions e WHERE e.id = NEW.execution_id);
    ELSIF TG_ARGV[0] = 'trigger' THEN
        NEW.tenant_id := (SELECT t.tenant_id FROM dw.triggers t WHERE t.id = NEW.trigger_id);
    ELSE
        NEW.tenant_id := (SELECT w.tenant_id FROM dw.waits w WHERE w.id = NEW.wait_id);
    END IF;
    RETURN NEW;
END;
$$;


--
-- Name: tenant_visible(text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.tenant_visible(p_tenant text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE
        WHEN pg_has_role('dataworkflows_app', 'MEMBER') OR pg_has_role('dataworkflows_maintenance', 'MEMBER')
            THEN p_tenant = current_setting('dw.tenant_id', true)
                 OR (current_setting('dw.tenant_id', true) = '*' AND pg_has_role('dataworkflows_all_tenants', 'USAGE'))
        ELSE (p_tenant = current_setting('dw.tenant_id', true) OR current_setting('dw.tenant_id', true) = '*')
             AND dw.reporting_sees_v1(current_user, p_tenant)
    END
$$;


--
-- Name: try_acquire_execution_v4(uuid, text, double precision); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.try_acquire_execution_v4(p_execution_id uuid, p_owner text, p_lease_seconds double precision) RETURNS TABLE(outcome text, lease_token bigint, run jsonb, nodes jsonb)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_e dw.executions%ROWTYPE;
    v_throttle record;
    v_token bigint;
BEGIN
    SELECT * INTO v_e FROM dw.executions e WHERE e.id = p_execution_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::bigint, NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF v_e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') THEN
        RETURN QUERY SELECT 'finished'::text, NULL::bigint, NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF v_e.lease_owner IS NOT NULL AND v_e.lease_expires_at > now() THEN
        RETURN QUERY SELECT 'held'::text, NULL::bigint, NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF v_e.cancel_requested_at IS NOT NULL THEN
        -- Its worker died (or stopped) before it could end the run.
        PERFORM dw.finish_cancelled_v1(v_e);
        RETURN QUERY SELECT 'finished'::text, NULL::bigint, NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF v_e.status = 'Suspended' THEN
        RETURN QUERY SELECT 'suspended'::text, NULL::bigint, NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;
    IF v_e.suspend_requested_at IS NOT NULL THEN
        PERFORM dw.suspend_now_v1(v_e, NULL);
        RETURN QUERY SELECT 'suspended'::text, NULL::bigint, NULL::jsonb, NULL::jsonb;
        RETURN;
    END IF;

    -- A workflow's concurrency limit counts and throttles root runs only: a child belongs to a tree
    -- that was admitted (throttling it could stall its parent for good, as with a workflow that
    -- calls itself under a limit of 1).
    -- The limits (maxConcurrentExecutions, rateLimitPerMinute) are dw.admit_root_run_v1's, which locks
    -- nothing for a workflow without any; `run` says {throttledBy, retryAt} (NULL: poll).
    IF v_e.status = 'Pending' AND v_e.depth = 0 THEN
        SELECT * INTO v_throttle FROM dw.admit_root_run_v1(v_e);
        IF v_throttle.throttled_by IS NOT NULL THEN
            RETURN QUERY SELECT 'throttled'::text, NULL::bigint,
                                jsonb_build_object('throttledBy', v_throttle.throttled_by,
                                                   'retryAt', v_throttle.retry_at), NULL::jsonb;
            RETURN;
        END IF;
    END IF;

    UPDATE dw.executions e
       SET lease_owner = p_owner,
           lease_token = e.lease_token + 1,
           lease_expires_at = now() + make_interval(secs => p_lease_seconds),
           status = 'Running',
           started_at = COALESCE(e.started_at, now()),
           -- The new holder reads the run's state as it is now: earlier wakes are answered.
           wake_requested_at = NULL
     WHERE e.id = p_execution_id
    RETURNING e.lease_token INTO v_token;

    IF v_e.lease_owner IS NOT NULL THEN
        -- The previous holder stopped renewing (died, or lost the database): its token is now stale.
        INSERT INTO dw.execution_events (execution_id, type, details)
        VALUES (p_execution_id, 'lease_lost',
                jsonb_build_object('previousOwner', v_e.lease_owner, 'previousToken', v_e.lease_token,
                                   'expiredAt', v_e.lease_expires_at, 'newOwner', p_owner));
    END IF;
    INSERT INTO dw.execution_events (execution_id, type, details)
    VALUES (p_execution_id,
            CASE WHEN v_e.status = 'Pending' AND v_e.started_at IS NULL THEN 'execution_started'
                 ELSE 'execution_reacquired' END,
            jsonb_build_object('worker', p_owner, 'leaseToken', v_token, 'previousStatus', v_e.status,
                               'previousOwner', v_e.lease_owner));

    PERFORM dw.fire_due_waits_internal_v1(p_execution_id);

    RETURN QUERY
    SELECT 'acquired'::text, v_token,
           jsonb_build_object('workflowId', e.workflow_id, 'version', e.workflow_version, 'trigger', e.trigger,
                              'principalId', e.principal_id, 'correlationId', e.correlation_id,
                              'deadlineAt', e.deadline_at),
           (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                       'nodeId', n.node_id, 'status', n.status, 'attempts', n.attempts,
                       'attemptBase', n.attempt_base, 'nextAttemptAt', n.next_attempt_at, 'outputs', n.outputs,
                       -- The wait of a node that waits (open, or resolved and not yet recorded).
                       'wait', CASE WHEN n.status = 'Waiting' THEN (
                           SELECT dw.wait_json_v1(w) FROM dw.waits w
                            WHERE w.execution_id = n.execution_id AND w.node_id = n.node_id
                              AND w.attempt = n.attempts AND w.recorded_at IS NULL AND w.state <> 'withdrawn'
                            ORDER BY w.created_at DESC LIMIT 1) END)
                       ORDER BY n.position), '[]'::jsonb)
              FROM dw.node_states n WHERE n.execution_id = p_execution_id)
      FROM dw.executions e WHERE e.id = p_execution_id;
END;
$$;


--
-- Name: unschedule_v1(text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.unschedule_v1(p_name text) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM dw.triggers t
     WHERE t.tenant_id = dw.session_tenant_v1() AND t.kind = 'schedule' AND t.name = p_name;
    RETURN FOUND;
END;
$$;


--
-- Name: wait_json_v1(dw.waits); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.wait_json_v1(w dw.waits) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
    SELECT jsonb_build_object('id', w.id, 'nodeId', w.node_id, 'kind', w.kind, 'state', w.state, 'attempt', w.attempt,
                              'name', w.name, 'correlationKey', w.correlation_key, 'parameters', w.parameters,
                              'createdAt', w.created_at, 'dueAt', w.due_at, 'expiresAt', w.expires_at,
                              'result', w.result);
$$;


--
-- Name: wake_due_runs_v1(integer, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.wake_due_runs_v1(p_limit integer, p_queue text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ids uuid[];
BEGIN
    SELECT array_agg(due.id) INTO v_ids FROM (
        SELECT e.id FROM dw.executions e
         WHERE e.status = 'Waiting' AND e.wake_at <= now()
           AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                            WHERE (j.args ->> 'execution_id') = e.id::text AND j.status IN ('todo', 'doing'))
         ORDER BY e.wake_at
         LIMIT p_limit
         FOR NO KEY UPDATE OF e SKIP LOCKED) due;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW(p_queue, 'dw.run_execution', 0, NULL, NULL,
                   jsonb_build_object('execution_id', e.id::text, 'tenant_id', e.tenant_id),
                   NULL)::procrastinate_job_to_defer_v1
          FROM dw.executions e WHERE e.id = ANY (v_ids)));
    RETURN array_length(v_ids, 1);
END;
$$;


--
-- Name: wake_run_v1(dw.executions, text); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.wake_run_v1(p_e dw.executions, p_queue text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_e.status = 'Waiting' THEN
        -- Due now: recovery re-queues it if the job is lost (a worker dies as it takes it).
        UPDATE dw.executions e SET wake_at = now() WHERE e.id = p_e.id;
        IF NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                        WHERE (j.args ->> 'execution_id') = p_e.id::text AND j.status = 'todo'
                          AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())) THEN
            PERFORM dw.defer_run_job_v1(p_e.id, p_queue, NULL);
        END IF;
    ELSIF p_e.status = 'Running' AND p_e.lease_owner IS NOT NULL THEN
        -- Kept for dw.park_execution_v2, in case the holder parks before it hears the NOTIFY.
        UPDATE dw.executions e SET wake_requested_at = now() WHERE e.id = p_e.id;
        PERFORM pg_notify('dw_control', p_e.id::text);
    END IF;
END;
$$;


--
-- Name: workflow_versions_immutable(); Type: FUNCTION; Schema: dw; Owner: -
--

CREATE FUNCTION dw.workflow_versions_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.published_at IS NOT NULL AND (NEW.definition IS DISTINCT FROM OLD.definition
                                         OR NEW.checksum IS DISTINCT FROM OLD.checksum) THEN
        RAISE EXCEPTION 'workflow version %/% is published and immutable', OLD.workflow_id, OLD.version
            USING ERRCODE = 'DW020';
    END IF;
    RETURN NEW;
END;
$$;


--
-- Name: procrastinate_cancel_job_v1(bigint, boolean, boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_cancel_job_v1(job_id bigint, abort boolean, delete_job boolean) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
BEGIN
    IF delete_job THEN
        DELETE FROM procrastinate_jobs
        WHERE id = job_id AND status = 'todo'
        RETURNING id INTO _job_id;
    END IF;
    IF _job_id IS NULL THEN
        IF abort THEN
            UPDATE procrastinate_jobs
            SET abort_requested = true,
                status = CASE status
                    WHEN 'todo' THEN 'cancelled'::procrastinate_job_status ELSE status
                END
            WHERE id = job_id AND status IN ('todo', 'doing')
            RETURNING id INTO _job_id;
        ELSE
            UPDATE procrastinate_jobs
            SET status = 'cancelled'::procrastinate_job_status
            WHERE id = job_id AND status = 'todo'
            RETURNING id INTO _job_id;
        END IF;
    END IF;
    RETURN _job_id;
END;
$$;


--
-- Name: procrastinate_defer_jobs_v1(public.procrastinate_job_to_defer_v1[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_defer_jobs_v1(jobs public.procrastinate_job_to_defer_v1[]) RETURNS bigint[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    job_ids bigint[];
BEGIN
    WITH inserted_jobs AS (
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at)
        SELECT (job).queue_name,
               (job).task_name,
               (job).priority,
               (job).lock,
               (job).queueing_lock,
               (job).args,
               (job).scheduled_at
        FROM unnest(jobs) AS job
        RETURNING id
    )
    SELECT array_agg(id) FROM inserted_jobs INTO job_ids;

    RETURN job_ids;
END;
$$;


--
-- Name: procrastinate_defer_periodic_job_v2(character varying, character varying, character varying, character varying, integer, character varying, bigint, jsonb); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_defer_periodic_job_v2(_queue_name character varying, _lock character varying, _queueing_lock character varying, _task_name character varying, _priority integer, _periodic_id character varying, _defer_timestamp bigint, _args jsonb) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
	_job_id bigint;
	_defer_id bigint;
BEGIN
    INSERT
        INTO procrastinate_periodic_defers (task_name, periodic_id, defer_timestamp)
        VALUES (_task_name, _periodic_id, _defer_timestamp)
        ON CONFLICT DO NOTHING
        RETURNING id into _defer_id;

    IF _defer_id IS NULL THEN
        RETURN NULL;
    END IF;

    UPDATE procrastinate_periodic_defers
        SET job_id = (
            SELECT COALESCE((
                SELECT unnest(procrastinate_defer_jobs_v1(
                    ARRAY[
                        ROW(
                            _queue_name,
                            _task_name,
                            _priority,
                            _lock,
                            _queueing_lock,
                            _args,
                            NULL::timestamptz
                        )
                    ]::procrastinate_job_to_defer_v1[]
                ))
            ), NULL)
        )
        WHERE id = _defer_id
        RETURNING job_id INTO _job_id;

    DELETE
        FROM procrastinate_periodic_defers
        USING (
            SELECT id
            FROM procrastinate_periodic_defers
            WHERE procrastinate_periodic_defers.task_name = _task_name
            AND procrastinate_periodic_defers.periodic_id = _periodic_id
            AND procrastinate_periodic_defers.defer_timestamp < _defer_timestamp
            ORDER BY id
            FOR UPDATE
        ) to_delete
        WHERE procrastinate_periodic_defers.id = to_delete.id;

    RETURN _job_id;
END;
$$;


--
-- Name: procrastinate_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.procrastinate_jobs (
    id bigint NOT NULL,
    queue_name character varying(128) NOT NULL,
    task_name character varying(128) NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    lock text,
    queueing_lock text,
    args jsonb DEFAULT '{}'::jsonb NOT NULL,
    status public.procrastinate_job_status DEFAULT 'todo'::public.procrastinate_job_status NOT NULL,
    scheduled_at timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    abort_requested boolean DEFAULT false NOT NULL,
    worker_id bigint,
    CONSTRAINT check_not_todo_abort_requested CHECK ((NOT ((status = 'todo'::public.procrastinate_job_status) AND (abort_requested = true))))
);


--
-- Name: procrastinate_fetch_job_v2(character varying[], bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_fetch_job_v2(target_queue_names character varying[], p_worker_id bigint) RETURNS public.procrastinate_jobs
    LANGUAGE plpgsql
    AS $$
DECLARE
	found_jobs procrastinate_jobs;
BEGIN
    WITH candidate AS (
        SELECT jobs.*
            FROM procrastinate_jobs AS jobs
            WHERE
                -- reject the job if its lock has earlier or higher priority jobs
                NOT EXISTS (
                    SELECT 1
                        FROM procrastinate_jobs AS other_jobs
                        WHERE
                            jobs.lock IS NOT NULL
                            AND other_jobs.lock = jobs.lock
                            AND (
                                -- job with same lock is already running
                                other_jobs.status = 'doing'
                                OR
                                -- job with same lock is waiting and has higher priority (or same priority but was queued first)
                                (
                                    other_jobs.status = 'todo'
                                    AND (
                                        other_jobs.priority > jobs.priority
                                        OR (
                                        other_jobs.priority = jobs.priority
                                        AND other_jobs.id < jobs.id
                                        )
                                    )
                                )
                            )
                )
                AND jobs.status = 'todo'
                AND (target_queue_names IS NULL OR jobs.queue_name = ANY( target_queue_names ))
                AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
            ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
            FOR UPDATE OF jobs SKIP LOCKED
    )
    UPDATE procrastinate_jobs
        SET status = 'doing', worker_id = p_worker_id
        FROM candidate
        WHERE procrastinate_jobs.id = candidate.id
        RETURNING procrastinate_jobs.* INTO found_jobs;

 RETURN found_jobs;
END;
$$;


--
-- Name: procrastinate_finish_job_v1(bigint, public.procrastinate_job_status, boolean); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_finish_job_v1(job_id bigint, end_status public.procrastinate_job_status, delete_job boolean) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
BEGIN
    IF end_status NOT IN ('succeeded', 'failed', 'aborted') THEN
        RAISE 'End status should be either "succeeded", "failed" or "aborted" (job id: %)', job_id;
    END IF;
    IF delete_job THEN
        DELETE FROM procrastinate_jobs
        WHERE id = job_id AND status IN ('todo', 'doing')
        RETURNING id INTO _job_id;
    ELSE
        UPDATE procrastinate_jobs
        SET status = end_status,
            abort_requested = false,
            attempts = CASE status
                WHEN 'doing' THEN attempts + 1 ELSE attempts
            END
        WHERE id = job_id AND status IN ('todo', 'doing')
        RETURNING id INTO _job_id;
    END IF;
    IF _job_id IS NULL THEN
        RAISE 'Job was not found or not in "doing" or "todo" status (job id: %)', job_id;
    END IF;
END;
$$;


--
-- Name: procrastinate_notify_queue_abort_job_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_notify_queue_abort_job_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    payload TEXT;
BEGIN
    SELECT json_build_object('type', 'abort_job_requested', 'job_id', NEW.id)::text INTO payload;
	PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
	PERFORM pg_notify('procrastinate_any_queue_v1', payload);
	RETURN NEW;
END;
$$;


--
-- Name: procrastinate_notify_queue_job_inserted_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_notify_queue_job_inserted_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    payload TEXT;
BEGIN
    SELECT json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text INTO payload;
	PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
	PERFORM pg_notify('procrastinate_any_queue_v1', payload);
	RETURN NEW;
END;
$$;


--
-- Name: procrastinate_prune_stalled_workers_v1(double precision); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_prune_stalled_workers_v1(seconds_since_heartbeat double precision) RETURNS TABLE(worker_id bigint)
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN QUERY
    DELETE FROM procrastinate_workers
    WHERE last_heartbeat < NOW() - (seconds_since_heartbeat || 'SECOND')::INTERVAL
    RETURNING procrastinate_workers.id;
END;
$$;


--
-- Name: procrastinate_register_worker_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_register_worker_v1() RETURNS TABLE(worker_id bigint)
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN QUERY
    INSERT INTO procrastinate_workers DEFAULT VALUES
    RETURNING procrastinate_workers.id;
END;
$$;


--
-- Name: procrastinate_retry_job_v1(bigint, timestamp with time zone, integer, character varying, character varying); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_retry_job_v1(job_id bigint, retry_at timestamp with time zone, new_priority integer, new_queue_name character varying, new_lock character varying) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
    _abort_requested boolean;
BEGIN
    SELECT abort_requested FROM procrastinate_jobs
    WHERE id = job_id AND status = 'doing'
    FOR UPDATE
    INTO _abort_requested;
    IF _abort_requested THEN
        UPDATE procrastinate_jobs
        SET status = 'failed'::procrastinate_job_status
        WHERE id = job_id AND status = 'doing'
        RETURNING id INTO _job_id;
    ELSE
        UPDATE procrastinate_jobs
        SET status = 'todo'::procrastinate_job_status,
            attempts = attempts + 1,
            scheduled_at = retry_at,
            priority = COALESCE(new_priority, priority),
            queue_name = COALESCE(new_queue_name, queue_name),
            lock = COALESCE(new_lock, lock)
        WHERE id = job_id AND status = 'doing'
        RETURNING id INTO _job_id;
    END IF;

    IF _job_id IS NULL THEN
        RAISE 'Job was not found or not in "doing" status (job id: %)', job_id;
    END IF;
END;
$$;


--
-- Name: procrastinate_retry_job_v2(bigint, timestamp with time zone, integer, character varying, character varying); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_retry_job_v2(job_id bigint, retry_at timestamp with time zone, new_priority integer, new_queue_name character varying, new_lock character varying) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    _job_id bigint;
    _abort_requested boolean;
    _current_status procrastinate_job_status;
BEGIN
    SELECT status, abort_requested FROM procrastinate_jobs
    WHERE id = job_id AND status IN ('doing', 'failed')
    FOR UPDATE
    INTO _current_status, _abort_requested;
    IF _current_status = 'doing' AND _abort_requested THEN
        UPDATE procrastinate_jobs
        SET status = 'failed'::procrastinate_job_status
        WHERE id = job_id AND status = 'doing'
        RETURNING id INTO _job_id;
    ELSE
        UPDATE procrastinate_jobs
        SET status = 'todo'::procrastinate_job_status,
            attempts = attempts + 1,
            scheduled_at = retry_at,
            priority = COALESCE(new_priority, priority),
            queue_name = COALESCE(new_queue_name, queue_name),
            lock = COALESCE(new_lock, lock)
        WHERE id = job_id AND status IN ('doing', 'failed')
        RETURNING id INTO _job_id;
    END IF;

    IF _job_id IS NULL THEN
        RAISE 'Job was not found or has an invalid status to retry (job id: %)', job_id;
    END IF;

END;
$$;


--
-- Name: procrastinate_trigger_abort_requested_events_procedure_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_trigger_abort_requested_events_procedure_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO procrastinate_events(job_id, type)
        VALUES (NEW.id, 'abort_requested'::procrastinate_job_event_type);
    RETURN NEW;
END;
$$;


--
-- Name: procrastinate_trigger_function_scheduled_events_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_trigger_function_scheduled_events_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO procrastinate_events(job_id, type, at)
        VALUES (NEW.id, 'scheduled'::procrastinate_job_event_type, NEW.scheduled_at);

	RETURN NEW;
END;
$$;


--
-- Name: procrastinate_trigger_function_status_events_insert_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_trigger_function_status_events_insert_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO procrastinate_events(job_id, type)
        VALUES (NEW.id, 'deferred'::procrastinate_job_event_type);
	RETURN NEW;
END;
$$;


--
-- Name: procrastinate_trigger_function_status_events_update_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_trigger_function_status_events_update_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    WITH t AS (
        SELECT CASE
            WHEN OLD.status = 'todo'::procrastinate_job_status
                AND NEW.status = 'doing'::procrastinate_job_status
                THEN 'started'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'todo'::procrastinate_job_status
                THEN 'deferred_for_retry'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'failed'::procrastinate_job_status
                THEN 'failed'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'succeeded'::procrastinate_job_status
                THEN 'succeeded'::procrastinate_job_event_type
            WHEN OLD.status = 'todo'::procrastinate_job_status
                AND (
                    NEW.status = 'cancelled'::procrastinate_job_status
                    OR NEW.status = 'failed'::procrastinate_job_status
                    OR NEW.status = 'succeeded'::procrastinate_job_status
                )
                THEN 'cancelled'::procrastinate_job_event_type
            WHEN OLD.status = 'doing'::procrastinate_job_status
                AND NEW.status = 'aborted'::procrastinate_job_status
                THEN 'aborted'::procrastinate_job_event_type
            WHEN OLD.status = 'failed'::procrastinate_job_status
                AND NEW.status = 'todo'::procrastinate_job_status
                THEN 'retried'::procrastinate_job_event_type
            ELSE NULL
        END as event_type
    )
    INSERT INTO procrastinate_events(job_id, type)
        SELECT NEW.id, t.event_type
        FROM t
        WHERE t.event_type IS NOT NULL;
	RETURN NEW;
END;
$$;


--
-- Name: procrastinate_unlink_periodic_defers_v1(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_unlink_periodic_defers_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE procrastinate_periodic_defers
    SET job_id = NULL
    WHERE job_id = OLD.id;
    RETURN OLD;
END;
$$;


--
-- Name: procrastinate_unregister_worker_v1(bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_unregister_worker_v1(worker_id bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM procrastinate_workers
    WHERE id = worker_id;
END;
$$;


--
-- Name: procrastinate_update_heartbeat_v1(bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.procrastinate_update_heartbeat_v1(worker_id bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE procrastinate_workers
    SET last_heartbeat = NOW()
    WHERE id = worker_id;
END;
$$;


--
-- Name: action_executions; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.action_executions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    action_type text NOT NULL,
    attempt integer NOT NULL,
    status text NOT NULL,
    parameters jsonb,
    outputs jsonb,
    error jsonb,
    worker text,
    start_time timestamp with time zone NOT NULL,
    end_time timestamp with time zone NOT NULL,
    item_index integer,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT action_executions_attempt_check CHECK ((attempt > 0)),
    CONSTRAINT action_executions_status_check CHECK ((status = ANY (ARRAY['Succeeded'::text, 'Failed'::text, 'RetriableFailure'::text, 'Skipped'::text, 'TimedOut'::text, 'Cancelled'::text]))),
    CONSTRAINT action_executions_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.action_executions FORCE ROW LEVEL SECURITY;


--
-- Name: api_rate_buckets; Type: TABLE; Schema: dw; Owner: -
--

CREATE UNLOGGED TABLE dw.api_rate_buckets (
    tenant_id text NOT NULL,
    subject text NOT NULL,
    tokens double precision NOT NULL,
    granted boolean NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    full_at timestamp with time zone NOT NULL,
    CONSTRAINT api_rate_buckets_subject_check CHECK ((length(subject) <= 300))
);


--
-- Name: approval_decisions; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.approval_decisions (
    wait_id uuid NOT NULL,
    principal text NOT NULL,
    decision text NOT NULL,
    comment text,
    decided_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT approval_decisions_decision_check CHECK ((decision = ANY (ARRAY['approve'::text, 'reject'::text]))),
    CONSTRAINT approval_decisions_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.approval_decisions FORCE ROW LEVEL SECURITY;


--
-- Name: connections; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.connections (
    name text NOT NULL,
    kind text NOT NULL,
    secret bytea NOT NULL,
    key_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    allowed_workflows text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT connections_allowed_workflows_check CHECK (((array_position(allowed_workflows, NULL::text) IS NULL) AND (cardinality(allowed_workflows) <= 1000))),
    CONSTRAINT connections_name_format_check CHECK ((name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'::text)),
    CONSTRAINT connections_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.connections FORCE ROW LEVEL SECURITY;


--
-- Name: dead_letters_id_seq; Type: SEQUENCE; Schema: dw; Owner: -
--

CREATE SEQUENCE dw.dead_letters_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: dead_letters_id_seq; Type: SEQUENCE OWNED BY; Schema: dw; Owner: -
--

ALTER SEQUENCE dw.dead_letters_id_seq OWNED BY dw.dead_letters.id;


--
-- Name: document_template_versions; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.document_template_versions (
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    set_id text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    format text NOT NULL,
    body text NOT NULL,
    sample_data jsonb DEFAULT '{}'::jsonb NOT NULL,
    checksum text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text,
    CONSTRAINT document_template_versions_body_check CHECK ((length(body) <= 200000)),
    CONSTRAINT document_template_versions_format_check CHECK ((format = ANY (ARRAY['text'::text, 'markdown'::text, 'html'::text, 'json'::text]))),
    CONSTRAINT document_template_versions_sample_check CHECK ((jsonb_typeof(sample_data) = 'object'::text)),
    CONSTRAINT document_template_versions_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text)),
    CONSTRAINT document_template_versions_version_check CHECK ((version > 0))
);

ALTER TABLE ONLY dw.document_template_versions FORCE ROW LEVEL SECURITY;


--
-- Name: document_templates; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.document_templates (
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    set_id text NOT NULL,
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text,
    CONSTRAINT document_templates_name_check CHECK ((name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text)),
    CONSTRAINT document_templates_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.document_templates FORCE ROW LEVEL SECURITY;


--
-- Name: documents; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.documents (
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    content_type text NOT NULL,
    checksum text NOT NULL,
    bytes integer NOT NULL,
    body text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT documents_attempt_check CHECK ((attempt > 0)),
    CONSTRAINT documents_bytes_check CHECK ((bytes >= 0)),
    CONSTRAINT documents_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.documents FORCE ROW LEVEL SECURITY;


--
-- Name: event_listeners; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.event_listeners (
    execution_id uuid NOT NULL,
    listener text NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT event_listeners_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.event_listeners FORCE ROW LEVEL SECURITY;


--
-- Name: execution_events; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.execution_events (
    id bigint NOT NULL,
    execution_id uuid NOT NULL,
    node_id text,
    type text NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    principal text,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT execution_events_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.execution_events FORCE ROW LEVEL SECURITY;


--
-- Name: execution_events_id_seq; Type: SEQUENCE; Schema: dw; Owner: -
--

CREATE SEQUENCE dw.execution_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: execution_events_id_seq; Type: SEQUENCE OWNED BY; Schema: dw; Owner: -
--

ALTER SEQUENCE dw.execution_events_id_seq OWNED BY dw.execution_events.id;


--
-- Name: node_states; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.node_states (
    execution_id uuid NOT NULL,
    node_id text NOT NULL,
    "position" integer NOT NULL,
    action_type text NOT NULL,
    status text DEFAULT 'Pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    expected_incoming integer DEFAULT 0 NOT NULL,
    decided_incoming integer DEFAULT 0 NOT NULL,
    satisfied_incoming integer DEFAULT 0 NOT NULL,
    edge_targets text[] DEFAULT '{}'::text[] NOT NULL,
    outputs jsonb,
    error jsonb,
    next_attempt_at timestamp with time zone,
    started_at timestamp with time zone,
    ended_at timestamp with time zone,
    end_reason text,
    attempt_base integer DEFAULT 0 NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT node_states_counters_check CHECK (((decided_incoming <= expected_incoming) AND (satisfied_incoming <= decided_incoming))),
    CONSTRAINT node_states_status_check CHECK ((status = ANY (ARRAY['Pending'::text, 'Ready'::text, 'Running'::text, 'Waiting'::text, 'Succeeded'::text, 'Failed'::text, 'Skipped'::text, 'Cancelled'::text]))),
    CONSTRAINT node_states_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.node_states FORCE ROW LEVEL SECURITY;


--
-- Name: reporting_tenants; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.reporting_tenants (
    role_name name NOT NULL,
    tenant_id text NOT NULL,
    granted_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT reporting_tenants_tenant_check CHECK (((tenant_id = '*'::text) OR (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text)))
);


--
-- Name: resource_links; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.resource_links (
    id bigint NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    resource_type text NOT NULL,
    resource_key text NOT NULL,
    external_id text,
    workflow_id text,
    execution_id uuid,
    node_id text,
    data jsonb,
    claimed_until timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    linked_at timestamp with time zone,
    claim_owner text,
    CONSTRAINT resource_links_claim_check CHECK (((external_id IS NOT NULL) OR (claimed_until IS NOT NULL))),
    CONSTRAINT resource_links_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.resource_links FORCE ROW LEVEL SECURITY;


--
-- Name: resource_links_id_seq; Type: SEQUENCE; Schema: dw; Owner: -
--

CREATE SEQUENCE dw.resource_links_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: resource_links_id_seq; Type: SEQUENCE OWNED BY; Schema: dw; Owner: -
--

ALTER SEQUENCE dw.resource_links_id_seq OWNED BY dw.resource_links.id;


--
-- Name: resource_touches; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.resource_touches (
    id bigint NOT NULL,
    resource_link_id bigint NOT NULL,
    execution_id uuid,
    node_id text,
    action text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT resource_touches_action_check CHECK ((action = ANY (ARRAY['created'::text, 'found'::text, 'updated'::text]))),
    CONSTRAINT resource_touches_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.resource_touches FORCE ROW LEVEL SECURITY;


--
-- Name: resource_touches_id_seq; Type: SEQUENCE; Schema: dw; Owner: -
--

CREATE SEQUENCE dw.resource_touches_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: resource_touches_id_seq; Type: SEQUENCE OWNED BY; Schema: dw; Owner: -
--

ALTER SEQUENCE dw.resource_touches_id_seq OWNED BY dw.resource_touches.id;


--
-- Name: schedule_ticks; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.schedule_ticks (
    trigger_id uuid NOT NULL,
    tick_at timestamp with time zone NOT NULL,
    fired_at timestamp with time zone DEFAULT now() NOT NULL,
    execution_id uuid,
    missed_ticks integer DEFAULT 0 NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT schedule_ticks_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.schedule_ticks FORCE ROW LEVEL SECURITY;


--
-- Name: schema_migrations; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.schema_migrations (
    version text NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: signals_id_seq; Type: SEQUENCE; Schema: dw; Owner: -
--

CREATE SEQUENCE dw.signals_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: signals_id_seq; Type: SEQUENCE OWNED BY; Schema: dw; Owner: -
--

ALTER SEQUENCE dw.signals_id_seq OWNED BY dw.signals.id;


--
-- Name: template_sets; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.template_sets (
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    id text NOT NULL,
    display_name text NOT NULL,
    description text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text,
    CONSTRAINT template_sets_description_check CHECK ((length(description) <= 2000)),
    CONSTRAINT template_sets_display_name_check CHECK (((length(display_name) >= 1) AND (length(display_name) <= 200))),
    CONSTRAINT template_sets_id_check CHECK ((id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text)),
    CONSTRAINT template_sets_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.template_sets FORCE ROW LEVEL SECURITY;


--
-- Name: triggers; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.triggers (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    workflow_id text NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    config jsonb DEFAULT '{}'::jsonb NOT NULL,
    secret bytea,
    created_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    next_tick_at timestamp with time zone,
    last_tick_at timestamp with time zone,
    error text,
    CONSTRAINT triggers_kind_check CHECK ((kind = ANY (ARRAY['schedule'::text, 'webhook'::text]))),
    CONSTRAINT triggers_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200))),
    CONSTRAINT triggers_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.triggers FORCE ROW LEVEL SECURITY;


--
-- Name: v_action_stats; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_action_stats AS
 SELECT action_type,
    count(*) AS attempts,
    count(*) FILTER (WHERE (status = 'Succeeded'::text)) AS succeeded,
    count(*) FILTER (WHERE (status <> 'Succeeded'::text)) AS failed,
    (round(((count(*) FILTER (WHERE (status <> 'Succeeded'::text)))::numeric / (count(*))::numeric), 4))::double precision AS failure_rate,
    percentile_cont((0.5)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (end_time - start_time)))::double precision)) AS p50_seconds,
    percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (end_time - start_time)))::double precision)) AS p95_seconds,
    tenant_id
   FROM dw.action_executions a
  WHERE dw.tenant_visible(tenant_id)
  GROUP BY tenant_id, action_type;


--
-- Name: v_dead_letters; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_dead_letters AS
 SELECT d.id,
    d.kind,
    d.execution_id,
    e.workflow_id,
    d.node_id,
    d.attempts,
    (d.error ->> 'code'::text) AS error_code,
    (d.error ->> 'message'::text) AS error_message,
    d.created_at,
    d.redriven_at,
    d.redriven_by,
    ((d.redriven_at IS NULL) AND (d.closed_at IS NULL)) AS open,
    d.closed_at,
    d.closed_by,
    d.close_reason,
    d.tenant_id
   FROM (dw.dead_letters d
     LEFT JOIN dw.executions e ON ((e.id = d.execution_id)))
  WHERE dw.tenant_visible(d.tenant_id);


--
-- Name: v_execution_tree; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_execution_tree AS
 SELECT root_execution_id,
    id AS execution_id,
    parent_execution_id,
    parent_node_id,
    depth,
    workflow_id,
    workflow_version,
    status,
    created_at,
    started_at,
    ended_at,
    (error ->> 'code'::text) AS error_code,
    outputs,
    path,
    tenant_id
   FROM dw.executions e
  WHERE dw.tenant_visible(tenant_id);


--
-- Name: v_executions; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_executions AS
 SELECT id,
    workflow_id,
    workflow_version,
    status,
    principal_id,
    correlation_id,
    created_at,
    started_at,
    ended_at,
    EXTRACT(epoch FROM (started_at - created_at)) AS queue_seconds,
    EXTRACT(epoch FROM (COALESCE(ended_at, now()) - COALESCE(started_at, created_at))) AS run_seconds,
    recovery_count,
    (error ->> 'code'::text) AS error_code,
    (error ->> 'message'::text) AS error_message,
    outputs,
    parent_execution_id,
    parent_node_id,
    root_execution_id,
    depth,
    tenant_id
   FROM dw.executions e
  WHERE dw.tenant_visible(tenant_id);


--
-- Name: v_node_durations; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_node_durations AS
 SELECT n.execution_id,
    e.workflow_id,
    n.node_id,
    n.action_type,
    n.status,
    n.attempts,
    n.started_at,
    n.ended_at,
    EXTRACT(epoch FROM (n.ended_at - n.started_at)) AS seconds,
    n.tenant_id
   FROM (dw.node_states n
     JOIN dw.executions e ON ((e.id = n.execution_id)))
  WHERE dw.tenant_visible(n.tenant_id);


--
-- Name: v_pending_approvals; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_pending_approvals AS
 SELECT w.id AS approval_id,
    w.execution_id,
    e.workflow_id,
    w.node_id,
    (w.details ->> 'title'::text) AS title,
    ARRAY( SELECT jsonb_array_elements_text((w.details -> 'approvers'::text)) AS jsonb_array_elements_text) AS approvers,
    ((w.details ->> 'required'::text))::integer AS required,
    ( SELECT count(*) AS count
           FROM dw.approval_decisions d
          WHERE ((d.wait_id = w.id) AND (d.decision = 'approve'::text))) AS approvals,
    ( SELECT count(*) AS count
           FROM dw.approval_decisions d
          WHERE ((d.wait_id = w.id) AND (d.decision = 'reject'::text))) AS rejections,
    w.created_at AS requested_at,
    w.expires_at,
    w.tenant_id
   FROM (dw.waits w
     JOIN dw.executions e ON ((e.id = w.execution_id)))
  WHERE ((w.kind = 'approval'::text) AND (w.state = 'open'::text) AND dw.tenant_visible(w.tenant_id));


--
-- Name: procrastinate_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.procrastinate_events (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    type public.procrastinate_job_event_type,
    at timestamp with time zone DEFAULT now()
);


--
-- Name: v_queue_depth; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_queue_depth AS
 SELECT j.queue_name,
    (j.status)::text AS status,
    count(*) AS jobs,
    EXTRACT(epoch FROM (now() - min(COALESCE(j.scheduled_at, ev.at)))) AS oldest_seconds
   FROM (public.procrastinate_jobs j
     LEFT JOIN LATERAL ( SELECT min(pe.at) AS at
           FROM public.procrastinate_events pe
          WHERE (pe.job_id = j.id)) ev ON (true))
  WHERE (j.status = ANY (ARRAY['todo'::public.procrastinate_job_status, 'doing'::public.procrastinate_job_status]))
  GROUP BY j.queue_name, j.status;


--
-- Name: v_resource_links; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_resource_links AS
 SELECT l.id AS link_id,
    l.tenant_id,
    l.resource_type,
    l.resource_key,
    l.external_id,
    t.action,
    t.execution_id,
    e.workflow_id,
    t.node_id,
    t.at
   FROM ((dw.resource_links l
     JOIN dw.resource_touches t ON ((t.resource_link_id = l.id)))
     LEFT JOIN dw.executions e ON ((e.id = t.execution_id)))
  WHERE dw.tenant_visible(l.tenant_id);


--
-- Name: v_schedules; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_schedules AS
 SELECT t.id,
    t.tenant_id,
    t.name,
    t.workflow_id,
    t.enabled,
    (t.config ->> 'cron'::text) AS cron,
    (t.config ->> 'timezone'::text) AS timezone,
    COALESCE((t.config ->> 'catchUp'::text), 'latest'::text) AS catch_up,
    t.next_tick_at,
    t.last_tick_at,
    t.error,
    last_run.status AS last_run_status,
    last_run.id AS last_run_id,
    recent.ticks AS recent_ticks,
    recent.lateness_p50_seconds,
    recent.lateness_p95_seconds,
    recent.lateness_max_seconds
   FROM ((dw.triggers t
     LEFT JOIN LATERAL ( SELECT e.id,
            e.status
           FROM (dw.schedule_ticks k
             JOIN dw.executions e ON ((e.id = k.execution_id)))
          WHERE (k.trigger_id = t.id)
          ORDER BY k.tick_at DESC
         LIMIT 1) last_run ON (true))
     LEFT JOIN LATERAL ( SELECT count(*) AS ticks,
            percentile_cont((0.5)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (r.fired_at - r.tick_at)))::double precision)) AS lateness_p50_seconds,
            percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (r.fired_at - r.tick_at)))::double precision)) AS lateness_p95_seconds,
            max(EXTRACT(epoch FROM (r.fired_at - r.tick_at))) AS lateness_max_seconds
           FROM ( SELECT k.tick_at,
                    k.fired_at
                   FROM dw.schedule_ticks k
                  WHERE (k.trigger_id = t.id)
                  ORDER BY k.tick_at DESC
                 LIMIT 100) r) recent ON (true))
  WHERE ((t.kind = 'schedule'::text) AND dw.tenant_visible(t.tenant_id));


--
-- Name: v_waiting_runs; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_waiting_runs AS
 SELECT w.execution_id,
    e.workflow_id,
    e.status AS execution_status,
    w.node_id,
    w.kind,
    w.name,
    w.correlation_key,
    w.id AS wait_id,
    w.created_at AS waiting_since,
    EXTRACT(epoch FROM (now() - w.created_at)) AS waiting_seconds,
    w.due_at,
    w.expires_at,
    w.tenant_id
   FROM (dw.waits w
     JOIN dw.executions e ON ((e.id = w.execution_id)))
  WHERE ((w.state = 'open'::text) AND dw.tenant_visible(w.tenant_id));


--
-- Name: workflows; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.workflows (
    id text NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    display_name text NOT NULL,
    description text,
    status text DEFAULT 'Draft'::text NOT NULL,
    current_version integer,
    is_enabled boolean DEFAULT true NOT NULL,
    max_concurrent_executions integer,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    archived_at timestamp with time zone,
    archived_by text,
    template_id text,
    template_version integer,
    rate_limit_per_minute integer,
    rate_next_slot_at timestamp with time zone,
    rate_last_start_at timestamp with time zone,
    CONSTRAINT workflows_active_has_version_check CHECK (((status <> 'Active'::text) OR (current_version IS NOT NULL))),
    CONSTRAINT workflows_id_format_check CHECK ((id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'::text)),
    CONSTRAINT workflows_max_concurrent_check CHECK (((max_concurrent_executions IS NULL) OR (max_concurrent_executions > 0))),
    CONSTRAINT workflows_rate_limit_check CHECK (((rate_limit_per_minute IS NULL) OR ((rate_limit_per_minute >= 1) AND (rate_limit_per_minute <= 60000)))),
    CONSTRAINT workflows_status_check CHECK ((status = ANY (ARRAY['Draft'::text, 'Active'::text, 'Archived'::text]))),
    CONSTRAINT workflows_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.workflows FORCE ROW LEVEL SECURITY;


--
-- Name: v_workflow_health; Type: VIEW; Schema: dw; Owner: -
--

CREATE VIEW dw.v_workflow_health AS
 SELECT w.id AS workflow_id,
    w.status AS workflow_status,
    p.period,
    count(e.id) AS executions,
    count(e.id) FILTER (WHERE (e.status = 'Succeeded'::text)) AS succeeded,
    count(e.id) FILTER (WHERE (e.status = ANY (ARRAY['Failed'::text, 'TimedOut'::text, 'Cancelled'::text]))) AS failed,
    count(e.id) FILTER (WHERE (e.status = ANY (ARRAY['Pending'::text, 'Running'::text, 'Waiting'::text, 'Suspended'::text]))) AS in_flight,
    (round(
        CASE
            WHEN (count(e.id) FILTER (WHERE (e.ended_at IS NOT NULL)) = 0) THEN NULL::numeric
            ELSE ((count(e.id) FILTER (WHERE (e.status = 'Succeeded'::text)))::numeric / (count(e.id) FILTER (WHERE (e.ended_at IS NOT NULL)))::numeric)
        END, 4))::double precision AS success_rate,
    percentile_cont((0.95)::double precision) WITHIN GROUP (ORDER BY ((EXTRACT(epoch FROM (e.ended_at - e.started_at)))::double precision)) FILTER (WHERE (e.ended_at IS NOT NULL)) AS p95_seconds,
    w.tenant_id
   FROM ((dw.workflows w
     CROSS JOIN ( VALUES ('1 hour'::text,'01:00:00'::interval), ('1 day'::text,'1 day'::interval)) p(period, span))
     LEFT JOIN dw.executions e ON (((e.tenant_id = w.tenant_id) AND (e.workflow_id = w.id) AND (e.created_at > (now() - p.span)))))
  WHERE dw.tenant_visible(w.tenant_id)
  GROUP BY w.tenant_id, w.id, w.status, p.period;


--
-- Name: webhook_deliveries; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.webhook_deliveries (
    id bigint NOT NULL,
    trigger_id uuid NOT NULL,
    delivery_id text,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    outcome text NOT NULL,
    reason text,
    status_code integer NOT NULL,
    execution_id uuid,
    body_bytes integer,
    content_hash text,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT webhook_deliveries_outcome_check CHECK ((outcome = ANY (ARRAY['accepted'::text, 'duplicate'::text, 'not_activated'::text, 'refused'::text]))),
    CONSTRAINT webhook_deliveries_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.webhook_deliveries FORCE ROW LEVEL SECURITY;


--
-- Name: webhook_deliveries_id_seq; Type: SEQUENCE; Schema: dw; Owner: -
--

CREATE SEQUENCE dw.webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: webhook_deliveries_id_seq; Type: SEQUENCE OWNED BY; Schema: dw; Owner: -
--

ALTER SEQUENCE dw.webhook_deliveries_id_seq OWNED BY dw.webhook_deliveries.id;


--
-- Name: workflow_plans; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.workflow_plans (
    workflow_id text NOT NULL,
    version integer NOT NULL,
    plan jsonb NOT NULL,
    compiled_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT workflow_plans_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text))
);

ALTER TABLE ONLY dw.workflow_plans FORCE ROW LEVEL SECURITY;


--
-- Name: workflow_templates; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.workflow_templates (
    id text NOT NULL,
    version integer NOT NULL,
    display_name text NOT NULL,
    description text,
    parameters jsonb DEFAULT '[]'::jsonb NOT NULL,
    definition_template jsonb NOT NULL,
    checksum text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT workflow_templates_id_format_check CHECK ((id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'::text)),
    CONSTRAINT workflow_templates_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text)),
    CONSTRAINT workflow_templates_version_check CHECK ((version > 0))
);

ALTER TABLE ONLY dw.workflow_templates FORCE ROW LEVEL SECURITY;


--
-- Name: workflow_versions; Type: TABLE; Schema: dw; Owner: -
--

CREATE TABLE dw.workflow_versions (
    workflow_id text NOT NULL,
    version integer NOT NULL,
    definition jsonb NOT NULL,
    checksum text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text,
    published_at timestamp with time zone,
    published_by text,
    tenant_id text DEFAULT current_setting('dw.tenant_id'::text, true) NOT NULL,
    CONSTRAINT workflow_versions_tenant_check CHECK ((tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'::text)),
    CONSTRAINT workflow_versions_version_check CHECK ((version > 0))
);

ALTER TABLE ONLY dw.workflow_versions FORCE ROW LEVEL SECURITY;


--
-- Name: procrastinate_events_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.procrastinate_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: procrastinate_events_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.procrastinate_events_id_seq OWNED BY public.procrastinate_events.id;


--
-- Name: procrastinate_jobs_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.procrastinate_jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: procrastinate_jobs_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.procrastinate_jobs_id_seq OWNED BY public.procrastinate_jobs.id;


--
-- Name: procrastinate_periodic_defers; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.procrastinate_periodic_defers (
    id bigint NOT NULL,
    task_name character varying(128) NOT NULL,
    defer_timestamp bigint,
    job_id bigint,
    periodic_id character varying(128) DEFAULT ''::character varying NOT NULL
);


--
-- Name: procrastinate_periodic_defers_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.procrastinate_periodic_defers_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: procrastinate_periodic_defers_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.procrastinate_periodic_defers_id_seq OWNED BY public.procrastinate_periodic_defers.id;


--
-- Name: procrastinate_workers; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.procrastinate_workers (
    id bigint NOT NULL,
    last_heartbeat timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: procrastinate_workers_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.procrastinate_workers ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.procrastinate_workers_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: dead_letters id; Type: DEFAULT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.dead_letters ALTER COLUMN id SET DEFAULT nextval('dw.dead_letters_id_seq'::regclass);


--
-- Name: execution_events id; Type: DEFAULT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.execution_events ALTER COLUMN id SET DEFAULT nextval('dw.execution_events_id_seq'::regclass);


--
-- Name: resource_links id; Type: DEFAULT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_links ALTER COLUMN id SET DEFAULT nextval('dw.resource_links_id_seq'::regclass);


--
-- Name: resource_touches id; Type: DEFAULT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_touches ALTER COLUMN id SET DEFAULT nextval('dw.resource_touches_id_seq'::regclass);


--
-- Name: signals id; Type: DEFAULT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.signals ALTER COLUMN id SET DEFAULT nextval('dw.signals_id_seq'::regclass);


--
-- Name: webhook_deliveries id; Type: DEFAULT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.webhook_deliveries ALTER COLUMN id SET DEFAULT nextval('dw.webhook_deliveries_id_seq'::regclass);


--
-- Name: procrastinate_events id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_events ALTER COLUMN id SET DEFAULT nextval('public.procrastinate_events_id_seq'::regclass);


--
-- Name: procrastinate_jobs id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_jobs ALTER COLUMN id SET DEFAULT nextval('public.procrastinate_jobs_id_seq'::regclass);


--
-- Name: procrastinate_periodic_defers id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_periodic_defers ALTER COLUMN id SET DEFAULT nextval('public.procrastinate_periodic_defers_id_seq'::regclass);


--
-- Data for Name: action_executions; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.action_executions VALUES ('f71dbf8a-6974-4623-98c7-554609d92618', '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'a', 'core.echo', 1, 'Succeeded', '{"message": "a"}', '{"echo": "a"}', NULL, 'vm/21964/1339cc', '2026-12-02 04:50:31.333539+00', '2026-12-02 04:50:31.334322+00', NULL, 'default');
INSERT INTO dw.action_executions VALUES ('a30adbc2-7752-4ee5-9d50-a5bcf7ef0b0a', '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'b', 'core.echo', 1, 'Succeeded', '{"delayMs": 1000, "message": "b"}', '{"echo": "b"}', NULL, 'vm/21964/1339cc', '2026-12-02 04:50:31.355614+00', '2026-12-02 04:50:32.356603+00', NULL, 'default');
INSERT INTO dw.action_executions VALUES ('cec73fab-51f9-41d8-88ff-fa91b55e48de', '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'c', 'core.echo', 1, 'Succeeded', '{"message": "bc"}', '{"echo": "bc"}', NULL, 'vm/21964/1339cc', '2026-12-02 04:50:32.391+00', '2026-12-02 04:50:32.403119+00', NULL, 'default');
INSERT INTO dw.action_executions VALUES ('abbbd5e4-7f52-4ed7-a2d1-397610eea7c3', '85e43305-5b06-433d-a119-69eaddd0d15c', 'a', 'core.echo', 1, 'Succeeded', '{"message": "a"}', '{"echo": "a"}', NULL, 'vm/21964/1339cc', '2026-12-02 04:50:32.572105+00', '2026-12-02 04:50:32.572642+00', NULL, 'default');


--
-- Data for Name: api_rate_buckets; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.api_rate_buckets VALUES ('default', 'address:127.0.0.1', 46.84141999999998, true, '2026-12-02 04:50:32.649349+00', '2026-12-02 04:50:37.965207+00');


--
-- Data for Name: approval_decisions; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: connections; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: dead_letters; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: document_template_versions; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: document_templates; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: documents; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: event_listeners; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: execution_events; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.execution_events VALUES (1, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', NULL, 'execution_requested', '2026-12-02 04:50:29.940551+00', NULL, '{"version": 1, "requestId": "dee8d1b8-37e1-40d7-929a-584869c487b6", "workflowId": "upgrade-steps", "correlationId": "dee8d1b8-37e1-40d7-929a-584869c487b6"}', 'default');
INSERT INTO dw.execution_events VALUES (2, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', NULL, 'execution_started', '2026-12-02 04:50:31.288281+00', NULL, '{"worker": "vm/21964/1339cc", "leaseToken": 1, "previousOwner": null, "previousStatus": "Pending"}', 'default');
INSERT INTO dw.execution_events VALUES (3, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'a', 'node_started', '2026-12-02 04:50:31.331301+00', NULL, '{"attempt": 1}', 'default');
INSERT INTO dw.execution_events VALUES (4, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'a', 'node_succeeded', '2026-12-02 04:50:31.344748+00', NULL, '{"attempt": 1, "attemptStatus": "Succeeded"}', 'default');
INSERT INTO dw.execution_events VALUES (5, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'b', 'node_started', '2026-12-02 04:50:31.35429+00', NULL, '{"attempt": 1}', 'default');
INSERT INTO dw.execution_events VALUES (6, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'b', 'node_succeeded', '2026-12-02 04:50:32.372415+00', NULL, '{"attempt": 1, "attemptStatus": "Succeeded"}', 'default');
INSERT INTO dw.execution_events VALUES (7, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'c', 'node_started', '2026-12-02 04:50:32.388017+00', NULL, '{"attempt": 1}', 'default');
INSERT INTO dw.execution_events VALUES (8, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'c', 'node_succeeded', '2026-12-02 04:50:32.411647+00', NULL, '{"attempt": 1, "attemptStatus": "Succeeded"}', 'default');
INSERT INTO dw.execution_events VALUES (9, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', NULL, 'execution_succeeded', '2026-12-02 04:50:32.435985+00', NULL, '{"status": "Succeeded"}', 'default');
INSERT INTO dw.execution_events VALUES (10, '7b38deb4-b6fb-429c-bfcb-fde63d853d14', NULL, 'execution_requested', '2026-12-02 04:50:32.475051+00', NULL, '{"version": 1, "requestId": "8879307f-c5ef-40f2-b2d1-da0a87259f96", "workflowId": "upgrade-signal", "correlationId": "8879307f-c5ef-40f2-b2d1-da0a87259f96"}', 'default');
INSERT INTO dw.execution_events VALUES (11, '7b38deb4-b6fb-429c-bfcb-fde63d853d14', NULL, 'execution_started', '2026-12-02 04:50:32.500182+00', NULL, '{"worker": "vm/21964/1339cc", "leaseToken": 1, "previousOwner": null, "previousStatus": "Pending"}', 'default');
INSERT INTO dw.execution_events VALUES (12, '85e43305-5b06-433d-a119-69eaddd0d15c', NULL, 'execution_requested', '2026-12-02 04:50:32.50805+00', NULL, '{"version": 1, "requestId": "7cdf3480-eb65-4fe5-8f76-d59bc498229e", "workflowId": "upgrade-steps", "correlationId": "7cdf3480-eb65-4fe5-8f76-d59bc498229e"}', 'default');
INSERT INTO dw.execution_events VALUES (13, '7b38deb4-b6fb-429c-bfcb-fde63d853d14', 'wait', 'node_started', '2026-12-02 04:50:32.518851+00', NULL, '{"attempt": 1}', 'default');
INSERT INTO dw.execution_events VALUES (14, '7b38deb4-b6fb-429c-bfcb-fde63d853d14', 'wait', 'wait_started', '2026-12-02 04:50:32.529007+00', NULL, '{"kind": "signal", "name": "go", "waitId": "73e5e302-906a-4d77-803f-37adc3f27dd3", "attempt": 1, "expiresAt": "2026-12-02T05:00:32.52633+00:00"}', 'default');
INSERT INTO dw.execution_events VALUES (15, '85e43305-5b06-433d-a119-69eaddd0d15c', NULL, 'execution_started', '2026-12-02 04:50:32.542438+00', NULL, '{"worker": "vm/21964/1339cc", "leaseToken": 1, "previousOwner": null, "previousStatus": "Pending"}', 'default');
INSERT INTO dw.execution_events VALUES (16, '7b38deb4-b6fb-429c-bfcb-fde63d853d14', NULL, 'execution_parked', '2026-12-02 04:50:32.556947+00', NULL, '{"wakeAt": "2026-12-02T05:00:32.52633+00:00"}', 'default');
INSERT INTO dw.execution_events VALUES (17, '85e43305-5b06-433d-a119-69eaddd0d15c', 'a', 'node_started', '2026-12-02 04:50:32.563179+00', NULL, '{"attempt": 1}', 'default');
INSERT INTO dw.execution_events VALUES (18, '85e43305-5b06-433d-a119-69eaddd0d15c', 'a', 'node_succeeded', '2026-12-02 04:50:32.575942+00', NULL, '{"attempt": 1, "attemptStatus": "Succeeded"}', 'default');
INSERT INTO dw.execution_events VALUES (19, '85e43305-5b06-433d-a119-69eaddd0d15c', 'b', 'node_started', '2026-12-02 04:50:32.585026+00', NULL, '{"attempt": 1}', 'default');
INSERT INTO dw.execution_events VALUES (20, 'd8639ef2-7076-4884-8222-7cf40c769f15', NULL, 'execution_requested', '2026-12-02 04:50:32.659428+00', NULL, '{"version": 1, "requestId": "981415c1-d312-4fcb-b5e5-ef00f4d04632", "workflowId": "upgrade-steps", "correlationId": "981415c1-d312-4fcb-b5e5-ef00f4d04632"}', 'default');


--
-- Data for Name: executions; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.executions VALUES ('245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'default', 'upgrade-steps', 1, 'dee8d1b8-37e1-40d7-929a-584869c487b6', 'Succeeded', '{}', NULL, NULL, 'dee8d1b8-37e1-40d7-929a-584869c487b6', NULL, NULL, 0, NULL, 1, NULL, 0, NULL, '2026-12-02 04:50:29.926905+00', '2026-12-02 04:50:31.276643+00', '2026-12-02 04:50:32.420275+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '245e79ce-b6d2-4398-a9c6-9c80209a31ed', '{245e79ce-b6d2-4398-a9c6-9c80209a31ed}', 'executions', NULL, NULL, NULL);
INSERT INTO dw.executions VALUES ('85e43305-5b06-433d-a119-69eaddd0d15c', 'default', 'upgrade-steps', 1, '7cdf3480-eb65-4fe5-8f76-d59bc498229e', 'Running', '{}', NULL, NULL, '7cdf3480-eb65-4fe5-8f76-d59bc498229e', NULL, NULL, 0, 'vm/21964/1339cc', 1, '2026-12-02 04:50:34.536633+00', 0, NULL, '2026-12-02 04:50:32.506678+00', '2026-12-02 04:50:32.536633+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '85e43305-5b06-433d-a119-69eaddd0d15c', '{85e43305-5b06-433d-a119-69eaddd0d15c}', 'executions', NULL, NULL, NULL);
INSERT INTO dw.executions VALUES ('7b38deb4-b6fb-429c-bfcb-fde63d853d14', 'default', 'upgrade-signal', 1, '8879307f-c5ef-40f2-b2d1-da0a87259f96', 'Waiting', '{}', NULL, NULL, '8879307f-c5ef-40f2-b2d1-da0a87259f96', NULL, NULL, 0, NULL, 1, NULL, 0, NULL, '2026-12-02 04:50:32.473335+00', '2026-12-02 04:50:32.497621+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2026-12-02 05:00:32.52633+00', NULL, '7b38deb4-b6fb-429c-bfcb-fde63d853d14', '{7b38deb4-b6fb-429c-bfcb-fde63d853d14}', 'executions', NULL, NULL, NULL);
INSERT INTO dw.executions VALUES ('d8639ef2-7076-4884-8222-7cf40c769f15', 'default', 'upgrade-steps', 1, '981415c1-d312-4fcb-b5e5-ef00f4d04632', 'Pending', '{}', NULL, NULL, '981415c1-d312-4fcb-b5e5-ef00f4d04632', NULL, NULL, 0, NULL, 0, NULL, 0, NULL, '2026-12-02 04:50:32.657811+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'd8639ef2-7076-4884-8222-7cf40c769f15', '{d8639ef2-7076-4884-8222-7cf40c769f15}', 'executions', NULL, NULL, NULL);


--
-- Data for Name: foreach_items; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: node_states; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.node_states VALUES ('245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'a', 0, 'core.echo', 'Succeeded', 1, 0, 0, 0, '{b}', '{"echo": "a"}', NULL, NULL, '2026-12-02 04:50:31.322816+00', '2026-12-02 04:50:31.334322+00', NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'b', 1, 'core.echo', 'Succeeded', 1, 1, 1, 1, '{c}', '{"echo": "b"}', NULL, NULL, '2026-12-02 04:50:31.352295+00', '2026-12-02 04:50:32.356603+00', NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('245e79ce-b6d2-4398-a9c6-9c80209a31ed', 'c', 2, 'core.echo', 'Succeeded', 1, 1, 1, 1, '{}', '{"echo": "bc"}', NULL, NULL, '2026-12-02 04:50:32.381615+00', '2026-12-02 04:50:32.403119+00', NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('7b38deb4-b6fb-429c-bfcb-fde63d853d14', 'done', 1, 'core.echo', 'Pending', 0, 1, 0, 0, '{}', NULL, NULL, NULL, NULL, NULL, NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('85e43305-5b06-433d-a119-69eaddd0d15c', 'c', 2, 'core.echo', 'Pending', 0, 1, 0, 0, '{}', NULL, NULL, NULL, NULL, NULL, NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('7b38deb4-b6fb-429c-bfcb-fde63d853d14', 'wait', 0, 'signal', 'Waiting', 1, 0, 0, 0, '{done}', NULL, NULL, NULL, '2026-12-02 04:50:32.517716+00', NULL, NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('85e43305-5b06-433d-a119-69eaddd0d15c', 'a', 0, 'core.echo', 'Succeeded', 1, 0, 0, 0, '{b}', '{"echo": "a"}', NULL, NULL, '2026-12-02 04:50:32.56175+00', '2026-12-02 04:50:32.572642+00', NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('85e43305-5b06-433d-a119-69eaddd0d15c', 'b', 1, 'core.echo', 'Running', 1, 1, 1, 1, '{c}', NULL, NULL, NULL, '2026-12-02 04:50:32.584125+00', NULL, NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('d8639ef2-7076-4884-8222-7cf40c769f15', 'a', 0, 'core.echo', 'Ready', 0, 0, 0, 0, '{b}', NULL, NULL, NULL, NULL, NULL, NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('d8639ef2-7076-4884-8222-7cf40c769f15', 'b', 1, 'core.echo', 'Pending', 0, 1, 0, 0, '{c}', NULL, NULL, NULL, NULL, NULL, NULL, 0, 'default');
INSERT INTO dw.node_states VALUES ('d8639ef2-7076-4884-8222-7cf40c769f15', 'c', 2, 'core.echo', 'Pending', 0, 1, 0, 0, '{}', NULL, NULL, NULL, NULL, NULL, NULL, 0, 'default');


--
-- Data for Name: reporting_tenants; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: resource_links; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: resource_touches; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: schedule_ticks; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: schema_migrations; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.schema_migrations VALUES ('0000', 'procrastinate_schema 3.10.0', 'procrastinate', '2026-12-02 04:50:26.767501+00');
INSERT INTO dw.schema_migrations VALUES ('0001', 'core_schema', '19220d78a1dab35d6a62fccb8d2e87914939671fee95ec2575e1424fdda754c7', '2026-12-02 04:50:26.840411+00');
INSERT INTO dw.schema_migrations VALUES ('0002', 'lifecycle_and_workflow_templates', 'a744a57ab4da075b63fce366c4e364339f48c6c9e897cabf95ea060bcd848ffb', '2026-12-02 04:50:26.931219+00');
INSERT INTO dw.schema_migrations VALUES ('0003', 'observability_and_dead_letters', '9fe5a9ec6a0d5bacbf2e7022398ae4ad53f2215b748b57f78176bcbba5bd16e3', '2026-12-02 04:50:26.95066+00');
INSERT INTO dw.schema_migrations VALUES ('0004', 'connections_and_resource_links', 'd28b9353a51259cfe87a60fe23d12b8d136e3626dd0b0590d89fe26702bc44ef', '2026-12-02 04:50:26.991112+00');
INSERT INTO dw.schema_migrations VALUES ('0005', 'notify_only_when_followed', '14e2f1fe0e5b584656a9134429d9a0658dba05214721398973fbc114e7f3c6ed', '2026-12-02 04:50:27.022299+00');
INSERT INTO dw.schema_migrations VALUES ('0006', 'resource_claim_owner', '52799f1c39b54b71883f4edf5940405899ce85390de9ffa8c0296929cd6550bd', '2026-12-02 04:50:27.029979+00');
INSERT INTO dw.schema_migrations VALUES ('0007', 'drop_resource_claim_v1', 'b44149d127484215aea280af78d96b9b91ff48f5afce003f9a6daa16a4c373de', '2026-12-02 04:50:27.031617+00');
INSERT INTO dw.schema_migrations VALUES ('0008', 'dead_letter_closing', '1ea8a0103929a8bf82af1ca525be82e749931a6950137bcb92c7529a09262267', '2026-12-02 04:50:27.032618+00');
INSERT INTO dw.schema_migrations VALUES ('0009', 'run_path_v3', 'd0981a01fa3690b7f832a2eec3f5f303ae978ec21e168f9145861667b42e1540', '2026-12-02 04:50:27.040177+00');
INSERT INTO dw.schema_migrations VALUES ('0010', 'waits_and_control', 'f462aea10913ac337aa1e8f6d1b738c910f7140fbca5278f5970cc6e3863dce6', '2026-12-02 04:50:27.041197+00');
INSERT INTO dw.schema_migrations VALUES ('0011', 'parked_wake_time', '15474d4725924a860318b74fbf4f2b0504f44575aa004bbc3f5e40c74252aba7', '2026-12-02 04:50:27.071125+00');
INSERT INTO dw.schema_migrations VALUES ('0012', 'execution_outputs', '8e8f5658447f858f94a472537828b436a984efa821b2aa0e9a44ac004ce769c1', '2026-12-02 04:50:27.075215+00');
INSERT INTO dw.schema_migrations VALUES ('0013', 'composition', 'c40573d662bde51118ff1bf175b0ad5da44d186e031b7d10ca6f8caf955deb65', '2026-12-02 04:50:27.07767+00');
INSERT INTO dw.schema_migrations VALUES ('0014', 'foreach_item_children', 'd83a50c2ad95aad8354cca046b5195c9d05882fe320af4fb7b67723a246dec39', '2026-12-02 04:50:27.091221+00');
INSERT INTO dw.schema_migrations VALUES ('0015', 'wake_requests', '318fc1ff66ca64a3e12c25a7a4e36cbb6db515a3d6378acd95dc66539da9ab33', '2026-12-02 04:50:27.09446+00');
INSERT INTO dw.schema_migrations VALUES ('0016', 'triggers', 'fb0e5e1a204481106f118cbb6c04eebf221251a4c3a73c1fc6d3f00e4ca30456', '2026-12-02 04:50:27.095579+00');
INSERT INTO dw.schema_migrations VALUES ('0017', 'schedule_tick_age', 'fcbcf0c52cff6b118e0481b832f978cc3ee1ef19f8b888d19e572a09a182c2a0', '2026-12-02 04:50:27.121437+00');
INSERT INTO dw.schema_migrations VALUES ('0018', 'tenants', '843584bca30a606e590bc5c3612b4469cd69652395a199232b6e64958e084d19', '2026-12-02 04:50:27.123915+00');
INSERT INTO dw.schema_migrations VALUES ('0019', 'rate_limits', '10ac09b30ffb66cee727430e42bc24a720f1bea2537e71d31025e1d16daff949', '2026-12-02 04:50:27.21671+00');
INSERT INTO dw.schema_migrations VALUES ('0020', 'connection_allow_lists', '89f3f7a6e6aac5b7ec00cacf4697a046ffda1ba86cbdc5393d4c62904b66c3e2', '2026-12-02 04:50:27.235061+00');
INSERT INTO dw.schema_migrations VALUES ('0021', 'document_templates', 'b49ff22413a0cf4ca5860dd09033b597033113a5a0002c0bc77f263d37c32a48', '2026-12-02 04:50:27.23896+00');
INSERT INTO dw.schema_migrations VALUES ('0022', 'documents', 'c0cff863c939d78eafe8070d955e59c06476ca6890bb634941e60b2a5ca38ea2', '2026-12-02 04:50:27.283116+00');


--
-- Data for Name: signals; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: template_sets; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: triggers; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: waits; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.waits VALUES ('73e5e302-906a-4d77-803f-37adc3f27dd3', 'default', '7b38deb4-b6fb-429c-bfcb-fde63d853d14', 'wait', 1, 'signal', 'go', NULL, '{"name": "go", "timeout": "PT10M"}', '{}', '2026-12-02 04:50:32.527002+00', NULL, '2026-12-02 05:00:32.52633+00', 'open', NULL, NULL, NULL, NULL, NULL);


--
-- Data for Name: webhook_deliveries; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: workflow_plans; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.workflow_plans VALUES ('upgrade-steps', 1, '{"nodes": [{"id": "a", "kind": "action", "edges": [{"when": "success", "target": "b", "condition": null}], "retry": {"jitter": true, "maxAttempts": 3, "maxDelaySeconds": 300.0, "backoffMultiplier": 2.0, "initialDelaySeconds": 1.0}, "incoming": 0, "actionType": "core.echo", "parameters": {"message": "a"}, "routePolicy": "parallel", "timeoutSeconds": 300.0, "rerenderOnRetry": false}, {"id": "b", "kind": "action", "edges": [{"when": "success", "target": "c", "condition": null}], "retry": {"jitter": true, "maxAttempts": 3, "maxDelaySeconds": 300.0, "backoffMultiplier": 2.0, "initialDelaySeconds": 1.0}, "incoming": 1, "actionType": "core.echo", "parameters": {"delayMs": 1000, "message": "b"}, "routePolicy": "parallel", "timeoutSeconds": 300.0, "rerenderOnRetry": false}, {"id": "c", "kind": "action", "edges": [], "retry": {"jitter": true, "maxAttempts": 3, "maxDelaySeconds": 300.0, "backoffMultiplier": 2.0, "initialDelaySeconds": 1.0}, "incoming": 1, "actionType": "core.echo", "parameters": {"message": "{{ nodes.b.echo }}c"}, "routePolicy": "parallel", "timeoutSeconds": 300.0, "rerenderOnRetry": false}], "format": 1, "outputs": null, "version": 1, "startNode": "a", "workflowId": "upgrade-steps", "implicitOrder": true, "maxParallelActions": 10, "workflowTimeoutSeconds": null}', '2026-12-02 04:50:29.886834+00', 'default');
INSERT INTO dw.workflow_plans VALUES ('upgrade-signal', 1, '{"nodes": [{"id": "wait", "kind": "signal", "edges": [{"when": "success", "target": "done", "condition": null}], "retry": {"jitter": true, "maxAttempts": 3, "maxDelaySeconds": 300.0, "backoffMultiplier": 2.0, "initialDelaySeconds": 1.0}, "incoming": 0, "actionType": "signal", "parameters": {"name": "go", "timeout": "PT10M"}, "routePolicy": "parallel", "timeoutSeconds": 300.0, "rerenderOnRetry": false}, {"id": "done", "kind": "action", "edges": [], "retry": {"jitter": true, "maxAttempts": 3, "maxDelaySeconds": 300.0, "backoffMultiplier": 2.0, "initialDelaySeconds": 1.0}, "incoming": 1, "actionType": "core.echo", "parameters": {"message": "{{ nodes.wait.word }}"}, "routePolicy": "parallel", "timeoutSeconds": 300.0, "rerenderOnRetry": false}], "format": 1, "outputs": null, "version": 1, "startNode": "wait", "workflowId": "upgrade-signal", "implicitOrder": true, "maxParallelActions": 10, "workflowTimeoutSeconds": null}', '2026-12-02 04:50:29.910102+00', 'default');


--
-- Data for Name: workflow_templates; Type: TABLE DATA; Schema: dw; Owner: -
--



--
-- Data for Name: workflow_versions; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.workflow_versions VALUES ('upgrade-steps', 1, '{"id": "upgrade-steps", "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": "a"}}, {"id": "b", "actionType": "core.echo", "parameters": {"delayMs": 1000, "message": "b"}}, {"id": "c", "actionType": "core.echo", "parameters": {"message": "{{ nodes.b.echo }}c"}}], "startNode": "a", "displayName": "Three steps, the middle one slow"}', 'sha256:2062cc9baf61609bd1277ba88eb46085fce33fe1d4fb8d2c99ff0267e5587222', '2026-12-02 04:50:29.878372+00', NULL, '2026-12-02 04:50:29.886834+00', NULL, 'default');
INSERT INTO dw.workflow_versions VALUES ('upgrade-signal', 1, '{"id": "upgrade-signal", "nodes": [{"id": "wait", "nodeType": "signal", "parameters": {"name": "go", "timeout": "PT10M"}}, {"id": "done", "actionType": "core.echo", "parameters": {"message": "{{ nodes.wait.word }}"}}], "startNode": "wait", "displayName": "Waits for go"}', 'sha256:73870fc397e6e4d4405017cee1bad5c32a039e31d00acb783bf0d5dd6d10ae3c', '2026-12-02 04:50:29.907245+00', NULL, '2026-12-02 04:50:29.910102+00', NULL, 'default');


--
-- Data for Name: workflows; Type: TABLE DATA; Schema: dw; Owner: -
--

INSERT INTO dw.workflows VALUES ('upgrade-steps', 'default', 'Three steps, the middle one slow', NULL, 'Active', 1, true, NULL, '2026-12-02 04:50:29.878372+00', NULL, '2026-12-02 04:50:29.886834+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO dw.workflows VALUES ('upgrade-signal', 'default', 'Waits for go', NULL, 'Active', 1, true, NULL, '2026-12-02 04:50:29.907245+00', NULL, '2026-12-02 04:50:29.910102+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL);


--
-- Data for Name: procrastinate_events; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.procrastinate_events VALUES (5, 3, 'deferred', '2026-12-02 04:50:32.506678+00');
INSERT INTO public.procrastinate_events VALUES (6, 3, 'started', '2026-12-02 04:50:32.519406+00');
INSERT INTO public.procrastinate_events VALUES (7, 4, 'deferred', '2026-12-02 04:50:32.657811+00');


--
-- Data for Name: procrastinate_jobs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.procrastinate_jobs VALUES (3, 'executions', 'dw.run_execution', 0, NULL, NULL, '{"tenant_id": "default", "execution_id": "85e43305-5b06-433d-a119-69eaddd0d15c"}', 'doing', NULL, 0, false, 2);
INSERT INTO public.procrastinate_jobs VALUES (4, 'executions', 'dw.run_execution', 0, NULL, NULL, '{"tenant_id": "default", "execution_id": "d8639ef2-7076-4884-8222-7cf40c769f15"}', 'todo', NULL, 0, false, NULL);


--
-- Data for Name: procrastinate_periodic_defers; Type: TABLE DATA; Schema: public; Owner: -
--



--
-- Data for Name: procrastinate_workers; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.procrastinate_workers OVERRIDING SYSTEM VALUE VALUES (1, '2026-12-02 04:50:31.241014+00');
INSERT INTO public.procrastinate_workers OVERRIDING SYSTEM VALUE VALUES (2, '2026-12-02 04:50:31.249275+00');


--
-- Name: dead_letters_id_seq; Type: SEQUENCE SET; Schema: dw; Owner: -
--

SELECT pg_catalog.setval('dw.dead_letters_id_seq', 1, false);


--
-- Name: execution_events_id_seq; Type: SEQUENCE SET; Schema: dw; Owner: -
--

SELECT pg_catalog.setval('dw.execution_events_id_seq', 20, true);


--
-- Name: resource_links_id_seq; Type: SEQUENCE SET; Schema: dw; Owner: -
--

SELECT pg_catalog.setval('dw.resource_links_id_seq', 1, false);


--
-- Name: resource_touches_id_seq; Type: SEQUENCE SET; Schema: dw; Owner: -
--

SELECT pg_catalog.setval('dw.resource_touches_id_seq', 1, false);


--
-- Name: signals_id_seq; Type: SEQUENCE SET; Schema: dw; Owner: -
--

SELECT pg_catalog.setval('dw.signals_id_seq', 1, false);


--
-- Name: webhook_deliveries_id_seq; Type: SEQUENCE SET; Schema: dw; Owner: -
--

SELECT pg_catalog.setval('dw.webhook_deliveries_id_seq', 1, false);


--
-- Name: procrastinate_events_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.procrastinate_events_id_seq', 7, true);


--
-- Name: procrastinate_jobs_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.procrastinate_jobs_id_seq', 4, true);


--
-- Name: procrastinate_periodic_defers_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.procrastinate_periodic_defers_id_seq', 1, false);


--
-- Name: procrastinate_workers_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.procrastinate_workers_id_seq', 2, true);


--
-- Name: action_executions action_executions_attempt_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.action_executions
    ADD CONSTRAINT action_executions_attempt_key UNIQUE NULLS NOT DISTINCT (execution_id, node_id, item_index, attempt);


--
-- Name: action_executions action_executions_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.action_executions
    ADD CONSTRAINT action_executions_pkey PRIMARY KEY (id);


--
-- Name: api_rate_buckets api_rate_buckets_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.api_rate_buckets
    ADD CONSTRAINT api_rate_buckets_pkey PRIMARY KEY (tenant_id, subject);


--
-- Name: approval_decisions approval_decisions_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.approval_decisions
    ADD CONSTRAINT approval_decisions_pkey PRIMARY KEY (wait_id, principal);


--
-- Name: connections connections_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.connections
    ADD CONSTRAINT connections_pkey PRIMARY KEY (tenant_id, name);


--
-- Name: dead_letters dead_letters_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.dead_letters
    ADD CONSTRAINT dead_letters_pkey PRIMARY KEY (id);


--
-- Name: document_template_versions document_template_versions_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.document_template_versions
    ADD CONSTRAINT document_template_versions_pkey PRIMARY KEY (tenant_id, set_id, name, version);


--
-- Name: document_template_versions document_template_versions_tenant_id_set_id_name_checksum_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.document_template_versions
    ADD CONSTRAINT document_template_versions_tenant_id_set_id_name_checksum_key UNIQUE (tenant_id, set_id, name, checksum);


--
-- Name: document_templates document_templates_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.document_templates
    ADD CONSTRAINT document_templates_pkey PRIMARY KEY (tenant_id, set_id, name);


--
-- Name: documents documents_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.documents
    ADD CONSTRAINT documents_pkey PRIMARY KEY (tenant_id, id);


--
-- Name: documents documents_tenant_id_execution_id_node_id_checksum_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.documents
    ADD CONSTRAINT documents_tenant_id_execution_id_node_id_checksum_key UNIQUE (tenant_id, execution_id, node_id, checksum);


--
-- Name: event_listeners event_listeners_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.event_listeners
    ADD CONSTRAINT event_listeners_pkey PRIMARY KEY (execution_id, listener);


--
-- Name: execution_events execution_events_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.execution_events
    ADD CONSTRAINT execution_events_pkey PRIMARY KEY (id);


--
-- Name: executions executions_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.executions
    ADD CONSTRAINT executions_pkey PRIMARY KEY (id);


--
-- Name: executions executions_request_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.executions
    ADD CONSTRAINT executions_request_key UNIQUE (tenant_id, workflow_id, request_id);


--
-- Name: foreach_items foreach_items_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.foreach_items
    ADD CONSTRAINT foreach_items_pkey PRIMARY KEY (execution_id, node_id, item_index);


--
-- Name: node_states node_states_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.node_states
    ADD CONSTRAINT node_states_pkey PRIMARY KEY (execution_id, node_id);


--
-- Name: reporting_tenants reporting_tenants_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.reporting_tenants
    ADD CONSTRAINT reporting_tenants_pkey PRIMARY KEY (role_name, tenant_id);


--
-- Name: resource_links resource_links_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_links
    ADD CONSTRAINT resource_links_key UNIQUE (tenant_id, resource_type, resource_key);


--
-- Name: resource_links resource_links_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_links
    ADD CONSTRAINT resource_links_pkey PRIMARY KEY (id);


--
-- Name: resource_touches resource_touches_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_touches
    ADD CONSTRAINT resource_touches_pkey PRIMARY KEY (id);


--
-- Name: schedule_ticks schedule_ticks_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.schedule_ticks
    ADD CONSTRAINT schedule_ticks_pkey PRIMARY KEY (trigger_id, tick_at);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: signals signals_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.signals
    ADD CONSTRAINT signals_pkey PRIMARY KEY (id);


--
-- Name: signals signals_signal_id_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.signals
    ADD CONSTRAINT signals_signal_id_key UNIQUE (execution_id, signal_id);


--
-- Name: template_sets template_sets_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.template_sets
    ADD CONSTRAINT template_sets_pkey PRIMARY KEY (tenant_id, id);


--
-- Name: triggers triggers_name_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.triggers
    ADD CONSTRAINT triggers_name_key UNIQUE (tenant_id, kind, name);


--
-- Name: triggers triggers_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.triggers
    ADD CONSTRAINT triggers_pkey PRIMARY KEY (id);


--
-- Name: waits waits_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.waits
    ADD CONSTRAINT waits_pkey PRIMARY KEY (id);


--
-- Name: webhook_deliveries webhook_deliveries_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);


--
-- Name: workflow_plans workflow_plans_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflow_plans
    ADD CONSTRAINT workflow_plans_pkey PRIMARY KEY (tenant_id, workflow_id, version);


--
-- Name: workflow_templates workflow_templates_checksum_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflow_templates
    ADD CONSTRAINT workflow_templates_checksum_key UNIQUE (tenant_id, id, checksum);


--
-- Name: workflow_templates workflow_templates_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflow_templates
    ADD CONSTRAINT workflow_templates_pkey PRIMARY KEY (tenant_id, id, version);


--
-- Name: workflow_versions workflow_versions_checksum_key; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflow_versions
    ADD CONSTRAINT workflow_versions_checksum_key UNIQUE (tenant_id, workflow_id, checksum);


--
-- Name: workflow_versions workflow_versions_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflow_versions
    ADD CONSTRAINT workflow_versions_pkey PRIMARY KEY (tenant_id, workflow_id, version);


--
-- Name: workflows workflows_pkey; Type: CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflows
    ADD CONSTRAINT workflows_pkey PRIMARY KEY (tenant_id, id);


--
-- Name: procrastinate_events procrastinate_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_events
    ADD CONSTRAINT procrastinate_events_pkey PRIMARY KEY (id);


--
-- Name: procrastinate_jobs procrastinate_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_jobs
    ADD CONSTRAINT procrastinate_jobs_pkey PRIMARY KEY (id);


--
-- Name: procrastinate_periodic_defers procrastinate_periodic_defers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_periodic_defers
    ADD CONSTRAINT procrastinate_periodic_defers_pkey PRIMARY KEY (id);


--
-- Name: procrastinate_periodic_defers procrastinate_periodic_defers_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_periodic_defers
    ADD CONSTRAINT procrastinate_periodic_defers_unique UNIQUE (task_name, periodic_id, defer_timestamp);


--
-- Name: procrastinate_workers procrastinate_workers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_workers
    ADD CONSTRAINT procrastinate_workers_pkey PRIMARY KEY (id);


--
-- Name: api_rate_buckets_full_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX api_rate_buckets_full_idx ON dw.api_rate_buckets USING btree (full_at);


--
-- Name: dead_letters_execution_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX dead_letters_execution_idx ON dw.dead_letters USING btree (execution_id);


--
-- Name: dead_letters_open_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX dead_letters_open_idx ON dw.dead_letters USING btree (created_at DESC) WHERE ((redriven_at IS NULL) AND (closed_at IS NULL));


--
-- Name: dead_letters_open_job_failed_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX dead_letters_open_job_failed_idx ON dw.dead_letters USING btree (execution_id) WHERE ((kind = 'job_failed'::text) AND (redriven_at IS NULL) AND (closed_at IS NULL));


--
-- Name: dead_letters_tenant_created_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX dead_letters_tenant_created_idx ON dw.dead_letters USING btree (tenant_id, created_at DESC);


--
-- Name: documents_execution_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX documents_execution_idx ON dw.documents USING btree (execution_id);


--
-- Name: execution_events_execution_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX execution_events_execution_idx ON dw.execution_events USING btree (execution_id, id);


--
-- Name: executions_created_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_created_idx ON dw.executions USING btree (created_at DESC, id);


--
-- Name: executions_inflight_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_inflight_idx ON dw.executions USING btree (lease_expires_at) WHERE (status = ANY (ARRAY['Pending'::text, 'Running'::text, 'Waiting'::text]));


--
-- Name: executions_parent_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_parent_idx ON dw.executions USING btree (parent_execution_id) WHERE (parent_execution_id IS NOT NULL);


--
-- Name: executions_parked_wake_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_parked_wake_idx ON dw.executions USING btree (wake_at) WHERE (status = 'Waiting'::text);


--
-- Name: executions_root_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_root_idx ON dw.executions USING btree (root_execution_id);


--
-- Name: executions_tenant_created_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_tenant_created_idx ON dw.executions USING btree (tenant_id, created_at DESC, id);


--
-- Name: executions_trigger_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_trigger_idx ON dw.executions USING btree (trigger_id, created_at DESC) WHERE (trigger_id IS NOT NULL);


--
-- Name: executions_waiting_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_waiting_idx ON dw.executions USING btree (status) WHERE (status = ANY (ARRAY['Waiting'::text, 'Suspended'::text]));


--
-- Name: executions_workflow_status_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX executions_workflow_status_idx ON dw.executions USING btree (tenant_id, workflow_id, status);


--
-- Name: foreach_items_child_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX foreach_items_child_idx ON dw.foreach_items USING btree (child_execution_id) WHERE (child_execution_id IS NOT NULL);


--
-- Name: resource_links_execution_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX resource_links_execution_idx ON dw.resource_links USING btree (execution_id);


--
-- Name: resource_touches_link_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX resource_touches_link_idx ON dw.resource_touches USING btree (resource_link_id, at);


--
-- Name: schedule_ticks_fired_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX schedule_ticks_fired_idx ON dw.schedule_ticks USING btree (fired_at);


--
-- Name: signals_buffered_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX signals_buffered_idx ON dw.signals USING btree (execution_id, name, id) WHERE (consumed_at IS NULL);


--
-- Name: triggers_due_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX triggers_due_idx ON dw.triggers USING btree (next_tick_at NULLS FIRST) WHERE ((kind = 'schedule'::text) AND enabled);


--
-- Name: triggers_workflow_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX triggers_workflow_idx ON dw.triggers USING btree (workflow_id);


--
-- Name: waits_child_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX waits_child_idx ON dw.waits USING btree (child_execution_id) WHERE (child_execution_id IS NOT NULL);


--
-- Name: waits_execution_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX waits_execution_idx ON dw.waits USING btree (execution_id, created_at);


--
-- Name: waits_one_open_per_node; Type: INDEX; Schema: dw; Owner: -
--

CREATE UNIQUE INDEX waits_one_open_per_node ON dw.waits USING btree (execution_id, node_id) WHERE (state = 'open'::text);


--
-- Name: waits_open_approvers_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX waits_open_approvers_idx ON dw.waits USING gin (((details -> 'approvers'::text))) WHERE ((kind = 'approval'::text) AND (state = 'open'::text));


--
-- Name: waits_unrecorded_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX waits_unrecorded_idx ON dw.waits USING btree (execution_id) WHERE ((state <> ALL (ARRAY['open'::text, 'withdrawn'::text])) AND (recorded_at IS NULL));


--
-- Name: webhook_deliveries_once; Type: INDEX; Schema: dw; Owner: -
--

CREATE UNIQUE INDEX webhook_deliveries_once ON dw.webhook_deliveries USING btree (trigger_id, delivery_id) WHERE (outcome = ANY (ARRAY['accepted'::text, 'not_activated'::text]));


--
-- Name: webhook_deliveries_received_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX webhook_deliveries_received_idx ON dw.webhook_deliveries USING btree (received_at);


--
-- Name: webhook_deliveries_signed_once; Type: INDEX; Schema: dw; Owner: -
--

CREATE UNIQUE INDEX webhook_deliveries_signed_once ON dw.webhook_deliveries USING btree (trigger_id, content_hash) WHERE ((outcome = ANY (ARRAY['accepted'::text, 'not_activated'::text])) AND (content_hash IS NOT NULL));


--
-- Name: webhook_deliveries_trigger_idx; Type: INDEX; Schema: dw; Owner: -
--

CREATE INDEX webhook_deliveries_trigger_idx ON dw.webhook_deliveries USING btree (trigger_id, received_at DESC);


--
-- Name: dw_procrastinate_jobs_execution_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX dw_procrastinate_jobs_execution_idx ON public.procrastinate_jobs USING btree (((args ->> 'execution_id'::text))) WHERE (status = ANY (ARRAY['todo'::public.procrastinate_job_status, 'doing'::public.procrastinate_job_status]));


--
-- Name: idx_procrastinate_jobs_worker_not_null; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX idx_procrastinate_jobs_worker_not_null ON public.procrastinate_jobs USING btree (worker_id) WHERE ((worker_id IS NOT NULL) AND (status = 'doing'::public.procrastinate_job_status));


--
-- Name: idx_procrastinate_workers_last_heartbeat; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX idx_procrastinate_workers_last_heartbeat ON public.procrastinate_workers USING btree (last_heartbeat);


--
-- Name: procrastinate_events_job_id_fkey_v1; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX procrastinate_events_job_id_fkey_v1 ON public.procrastinate_events USING btree (job_id);


--
-- Name: procrastinate_jobs_id_lock_idx_v1; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX procrastinate_jobs_id_lock_idx_v1 ON public.procrastinate_jobs USING btree (id, lock) WHERE (status = ANY (ARRAY['todo'::public.procrastinate_job_status, 'doing'::public.procrastinate_job_status]));


--
-- Name: procrastinate_jobs_lock_idx_v1; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX procrastinate_jobs_lock_idx_v1 ON public.procrastinate_jobs USING btree (lock) WHERE (status = 'doing'::public.procrastinate_job_status);


--
-- Name: procrastinate_jobs_priority_idx_v1; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX procrastinate_jobs_priority_idx_v1 ON public.procrastinate_jobs USING btree (priority DESC, id) WHERE (status = 'todo'::public.procrastinate_job_status);


--
-- Name: procrastinate_jobs_queue_name_idx_v1; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX procrastinate_jobs_queue_name_idx_v1 ON public.procrastinate_jobs USING btree (queue_name);


--
-- Name: procrastinate_jobs_queueing_lock_idx_v1; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX procrastinate_jobs_queueing_lock_idx_v1 ON public.procrastinate_jobs USING btree (queueing_lock) WHERE (status = 'todo'::public.procrastinate_job_status);


--
-- Name: procrastinate_periodic_defers_job_id_fkey_v1; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX procrastinate_periodic_defers_job_id_fkey_v1 ON public.procrastinate_periodic_defers USING btree (job_id);


--
-- Name: document_template_versions document_template_versions_immutable; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER document_template_versions_immutable BEFORE UPDATE ON dw.document_template_versions FOR EACH ROW EXECUTE FUNCTION dw.document_template_versions_immutable();


--
-- Name: execution_events execution_events_no_truncate; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER execution_events_no_truncate BEFORE TRUNCATE ON dw.execution_events FOR EACH STATEMENT EXECUTE FUNCTION dw.execution_events_append_only();


--
-- Name: execution_events execution_events_no_update; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER execution_events_no_update BEFORE DELETE OR UPDATE ON dw.execution_events FOR EACH ROW EXECUTE FUNCTION dw.execution_events_append_only();


--
-- Name: execution_events execution_events_notify; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER execution_events_notify AFTER INSERT ON dw.execution_events FOR EACH ROW EXECUTE FUNCTION dw.notify_execution_event();


--
-- Name: action_executions tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.action_executions FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: approval_decisions tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.approval_decisions FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('wait');


--
-- Name: dead_letters tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.dead_letters FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: event_listeners tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.event_listeners FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: execution_events tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.execution_events FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: foreach_items tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.foreach_items FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: node_states tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.node_states FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: resource_touches tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.resource_touches FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: schedule_ticks tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.schedule_ticks FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('trigger');


--
-- Name: signals tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.signals FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: waits tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.waits FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('execution');


--
-- Name: webhook_deliveries tenant_from_parent; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER tenant_from_parent BEFORE INSERT ON dw.webhook_deliveries FOR EACH ROW WHEN ((new.tenant_id = '*'::text)) EXECUTE FUNCTION dw.tenant_from_parent('trigger');


--
-- Name: workflow_versions workflow_versions_immutable; Type: TRIGGER; Schema: dw; Owner: -
--

CREATE TRIGGER workflow_versions_immutable BEFORE UPDATE ON dw.workflow_versions FOR EACH ROW EXECUTE FUNCTION dw.workflow_versions_immutable();


--
-- Name: procrastinate_jobs procrastinate_jobs_notify_queue_job_aborted_v1; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER procrastinate_jobs_notify_queue_job_aborted_v1 AFTER UPDATE OF abort_requested ON public.procrastinate_jobs FOR EACH ROW WHEN (((old.abort_requested = false) AND (new.abort_requested = true) AND (new.status = 'doing'::public.procrastinate_job_status))) EXECUTE FUNCTION public.procrastinate_notify_queue_abort_job_v1();


--
-- Name: procrastinate_jobs procrastinate_jobs_notify_queue_job_inserted_v1; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 AFTER INSERT ON public.procrastinate_jobs FOR EACH ROW WHEN ((new.status = 'todo'::public.procrastinate_job_status)) EXECUTE FUNCTION public.procrastinate_notify_queue_job_inserted_v1();


--
-- Name: procrastinate_jobs procrastinate_trigger_abort_requested_events_v1; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER procrastinate_trigger_abort_requested_events_v1 AFTER UPDATE OF abort_requested ON public.procrastinate_jobs FOR EACH ROW WHEN ((new.abort_requested = true)) EXECUTE FUNCTION public.procrastinate_trigger_abort_requested_events_procedure_v1();


--
-- Name: procrastinate_jobs procrastinate_trigger_delete_jobs_v1; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER procrastinate_trigger_delete_jobs_v1 BEFORE DELETE ON public.procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION public.procrastinate_unlink_periodic_defers_v1();


--
-- Name: procrastinate_jobs procrastinate_trigger_scheduled_events_v1; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER procrastinate_trigger_scheduled_events_v1 AFTER INSERT OR UPDATE ON public.procrastinate_jobs FOR EACH ROW WHEN (((new.scheduled_at IS NOT NULL) AND (new.status = 'todo'::public.procrastinate_job_status))) EXECUTE FUNCTION public.procrastinate_trigger_function_scheduled_events_v1();


--
-- Name: procrastinate_jobs procrastinate_trigger_status_events_insert_v1; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER procrastinate_trigger_status_events_insert_v1 AFTER INSERT ON public.procrastinate_jobs FOR EACH ROW WHEN ((new.status = 'todo'::public.procrastinate_job_status)) EXECUTE FUNCTION public.procrastinate_trigger_function_status_events_insert_v1();


--
-- Name: procrastinate_jobs procrastinate_trigger_status_events_update_v1; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER procrastinate_trigger_status_events_update_v1 AFTER UPDATE OF status ON public.procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION public.procrastinate_trigger_function_status_events_update_v1();


--
-- Name: action_executions action_executions_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.action_executions
    ADD CONSTRAINT action_executions_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id) ON DELETE CASCADE;


--
-- Name: approval_decisions approval_decisions_wait_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.approval_decisions
    ADD CONSTRAINT approval_decisions_wait_id_fkey FOREIGN KEY (wait_id) REFERENCES dw.waits(id) ON DELETE CASCADE;


--
-- Name: dead_letters dead_letters_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.dead_letters
    ADD CONSTRAINT dead_letters_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id);


--
-- Name: document_template_versions document_template_versions_tenant_id_set_id_name_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.document_template_versions
    ADD CONSTRAINT document_template_versions_tenant_id_set_id_name_fkey FOREIGN KEY (tenant_id, set_id, name) REFERENCES dw.document_templates(tenant_id, set_id, name) ON DELETE CASCADE;


--
-- Name: document_templates document_templates_tenant_id_set_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.document_templates
    ADD CONSTRAINT document_templates_tenant_id_set_id_fkey FOREIGN KEY (tenant_id, set_id) REFERENCES dw.template_sets(tenant_id, id) ON DELETE CASCADE;


--
-- Name: documents documents_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.documents
    ADD CONSTRAINT documents_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id) ON DELETE CASCADE;


--
-- Name: execution_events execution_events_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.execution_events
    ADD CONSTRAINT execution_events_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id);


--
-- Name: executions executions_parent_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.executions
    ADD CONSTRAINT executions_parent_execution_id_fkey FOREIGN KEY (parent_execution_id) REFERENCES dw.executions(id);


--
-- Name: executions executions_version_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.executions
    ADD CONSTRAINT executions_version_fkey FOREIGN KEY (tenant_id, workflow_id, workflow_version) REFERENCES dw.workflow_versions(tenant_id, workflow_id, version);


--
-- Name: foreach_items foreach_items_child_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.foreach_items
    ADD CONSTRAINT foreach_items_child_execution_id_fkey FOREIGN KEY (child_execution_id) REFERENCES dw.executions(id) ON DELETE SET NULL;


--
-- Name: foreach_items foreach_items_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.foreach_items
    ADD CONSTRAINT foreach_items_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id) ON DELETE CASCADE;


--
-- Name: node_states node_states_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.node_states
    ADD CONSTRAINT node_states_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id) ON DELETE CASCADE;


--
-- Name: resource_links resource_links_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_links
    ADD CONSTRAINT resource_links_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id);


--
-- Name: resource_touches resource_touches_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_touches
    ADD CONSTRAINT resource_touches_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id);


--
-- Name: resource_touches resource_touches_resource_link_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.resource_touches
    ADD CONSTRAINT resource_touches_resource_link_id_fkey FOREIGN KEY (resource_link_id) REFERENCES dw.resource_links(id);


--
-- Name: schedule_ticks schedule_ticks_trigger_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.schedule_ticks
    ADD CONSTRAINT schedule_ticks_trigger_id_fkey FOREIGN KEY (trigger_id) REFERENCES dw.triggers(id) ON DELETE CASCADE;


--
-- Name: signals signals_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.signals
    ADD CONSTRAINT signals_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id) ON DELETE CASCADE;


--
-- Name: triggers triggers_workflow_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.triggers
    ADD CONSTRAINT triggers_workflow_fkey FOREIGN KEY (tenant_id, workflow_id) REFERENCES dw.workflows(tenant_id, id) ON DELETE CASCADE;


--
-- Name: waits waits_child_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.waits
    ADD CONSTRAINT waits_child_execution_id_fkey FOREIGN KEY (child_execution_id) REFERENCES dw.executions(id) ON DELETE SET NULL;


--
-- Name: waits waits_execution_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.waits
    ADD CONSTRAINT waits_execution_id_fkey FOREIGN KEY (execution_id) REFERENCES dw.executions(id) ON DELETE CASCADE;


--
-- Name: webhook_deliveries webhook_deliveries_trigger_id_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_trigger_id_fkey FOREIGN KEY (trigger_id) REFERENCES dw.triggers(id) ON DELETE CASCADE;


--
-- Name: workflow_plans workflow_plans_version_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflow_plans
    ADD CONSTRAINT workflow_plans_version_fkey FOREIGN KEY (tenant_id, workflow_id, version) REFERENCES dw.workflow_versions(tenant_id, workflow_id, version) ON DELETE CASCADE;


--
-- Name: workflow_versions workflow_versions_workflow_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflow_versions
    ADD CONSTRAINT workflow_versions_workflow_fkey FOREIGN KEY (tenant_id, workflow_id) REFERENCES dw.workflows(tenant_id, id) ON DELETE CASCADE;


--
-- Name: workflows workflows_template_fkey; Type: FK CONSTRAINT; Schema: dw; Owner: -
--

ALTER TABLE ONLY dw.workflows
    ADD CONSTRAINT workflows_template_fkey FOREIGN KEY (tenant_id, template_id, template_version) REFERENCES dw.workflow_templates(tenant_id, id, version);


--
-- Name: procrastinate_events procrastinate_events_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_events
    ADD CONSTRAINT procrastinate_events_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.procrastinate_jobs(id) ON DELETE CASCADE;


--
-- Name: procrastinate_jobs procrastinate_jobs_worker_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_jobs
    ADD CONSTRAINT procrastinate_jobs_worker_id_fkey FOREIGN KEY (worker_id) REFERENCES public.procrastinate_workers(id) ON DELETE SET NULL;


--
-- Name: procrastinate_periodic_defers procrastinate_periodic_defers_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.procrastinate_periodic_defers
    ADD CONSTRAINT procrastinate_periodic_defers_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.procrastinate_jobs(id);


--
-- Name: action_executions; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.action_executions ENABLE ROW LEVEL SECURITY;

--
-- Name: action_executions all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.action_executions TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: approval_decisions all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.approval_decisions TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: connections all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.connections TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: dead_letters all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.dead_letters TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: document_template_versions all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.document_template_versions TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: document_templates all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.document_templates TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: documents all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.documents TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: event_listeners all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.event_listeners TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: execution_events all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.execution_events TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: executions all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.executions TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: foreach_items all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.foreach_items TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: node_states all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.node_states TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: resource_links all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.resource_links TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: resource_touches all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.resource_touches TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: schedule_ticks all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.schedule_ticks TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: signals all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.signals TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: template_sets all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.template_sets TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: triggers all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.triggers TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: waits all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.waits TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: webhook_deliveries all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.webhook_deliveries TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: workflow_plans all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.workflow_plans TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: workflow_templates all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.workflow_templates TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: workflow_versions all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.workflow_versions TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: workflows all_tenants; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY all_tenants ON dw.workflows TO dataworkflows_all_tenants USING ((current_setting('dw.tenant_id'::text, true) = '*'::text)) WITH CHECK ((current_setting('dw.tenant_id'::text, true) = '*'::text));


--
-- Name: approval_decisions; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.approval_decisions ENABLE ROW LEVEL SECURITY;

--
-- Name: connections; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.connections ENABLE ROW LEVEL SECURITY;

--
-- Name: dead_letters; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.dead_letters ENABLE ROW LEVEL SECURITY;

--
-- Name: document_template_versions; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.document_template_versions ENABLE ROW LEVEL SECURITY;

--
-- Name: document_templates; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.document_templates ENABLE ROW LEVEL SECURITY;

--
-- Name: documents; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.documents ENABLE ROW LEVEL SECURITY;

--
-- Name: event_listeners; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.event_listeners ENABLE ROW LEVEL SECURITY;

--
-- Name: execution_events; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.execution_events ENABLE ROW LEVEL SECURITY;

--
-- Name: executions; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.executions ENABLE ROW LEVEL SECURITY;

--
-- Name: foreach_items; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.foreach_items ENABLE ROW LEVEL SECURITY;

--
-- Name: node_states; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.node_states ENABLE ROW LEVEL SECURITY;

--
-- Name: resource_links; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.resource_links ENABLE ROW LEVEL SECURITY;

--
-- Name: resource_touches; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.resource_touches ENABLE ROW LEVEL SECURITY;

--
-- Name: schedule_ticks; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.schedule_ticks ENABLE ROW LEVEL SECURITY;

--
-- Name: signals; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.signals ENABLE ROW LEVEL SECURITY;

--
-- Name: template_sets; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.template_sets ENABLE ROW LEVEL SECURITY;

--
-- Name: action_executions tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.action_executions USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: approval_decisions tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.approval_decisions USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: connections tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.connections USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: dead_letters tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.dead_letters USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: document_template_versions tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.document_template_versions USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: document_templates tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.document_templates USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: documents tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.documents USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: event_listeners tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.event_listeners USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: execution_events tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.execution_events USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: executions tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.executions USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: foreach_items tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.foreach_items USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: node_states tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.node_states USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: resource_links tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.resource_links USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: resource_touches tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.resource_touches USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: schedule_ticks tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.schedule_ticks USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: signals tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.signals USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: template_sets tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.template_sets USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: triggers tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.triggers USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: waits tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.waits USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: webhook_deliveries tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.webhook_deliveries USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: workflow_plans tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.workflow_plans USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: workflow_templates tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.workflow_templates USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: workflow_versions tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.workflow_versions USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: workflows tenant_isolation; Type: POLICY; Schema: dw; Owner: -
--

CREATE POLICY tenant_isolation ON dw.workflows USING ((tenant_id = current_setting('dw.tenant_id'::text, true))) WITH CHECK ((tenant_id = current_setting('dw.tenant_id'::text, true)));


--
-- Name: triggers; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.triggers ENABLE ROW LEVEL SECURITY;

--
-- Name: waits; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.waits ENABLE ROW LEVEL SECURITY;

--
-- Name: webhook_deliveries; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.webhook_deliveries ENABLE ROW LEVEL SECURITY;

--
-- Name: workflow_plans; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.workflow_plans ENABLE ROW LEVEL SECURITY;

--
-- Name: workflow_templates; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.workflow_templates ENABLE ROW LEVEL SECURITY;

--
-- Name: workflow_versions; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.workflow_versions ENABLE ROW LEVEL SECURITY;

--
-- Name: workflows; Type: ROW SECURITY; Schema: dw; Owner: -
--

ALTER TABLE dw.workflows ENABLE ROW LEVEL SECURITY;

--
-- Name: SCHEMA dw; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA dw TO dw_reporting;
GRANT USAGE ON SCHEMA dw TO dataworkflows_app;
GRANT USAGE ON SCHEMA dw TO dataworkflows_maintenance;


--
-- Name: TABLE dead_letters; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.dead_letters TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.dead_letters TO dataworkflows_maintenance;


--
-- Name: TABLE executions; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.executions TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.executions TO dataworkflows_maintenance;


--
-- Name: TABLE signals; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.signals TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.signals TO dataworkflows_maintenance;


--
-- Name: TABLE waits; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.waits TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.waits TO dataworkflows_maintenance;


--
-- Name: TABLE foreach_items; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.foreach_items TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.foreach_items TO dataworkflows_maintenance;


--
-- Name: TABLE procrastinate_jobs; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_jobs TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_jobs TO dataworkflows_maintenance;


--
-- Name: TABLE action_executions; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.action_executions TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.action_executions TO dataworkflows_maintenance;


--
-- Name: TABLE api_rate_buckets; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.api_rate_buckets TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.api_rate_buckets TO dataworkflows_maintenance;


--
-- Name: TABLE approval_decisions; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.approval_decisions TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.approval_decisions TO dataworkflows_maintenance;


--
-- Name: TABLE connections; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.connections TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.connections TO dataworkflows_maintenance;


--
-- Name: SEQUENCE dead_letters_id_seq; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE dw.dead_letters_id_seq TO dataworkflows_app;
GRANT SELECT,USAGE ON SEQUENCE dw.dead_letters_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE document_template_versions; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.document_template_versions TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.document_template_versions TO dataworkflows_maintenance;


--
-- Name: TABLE document_templates; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.document_templates TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.document_templates TO dataworkflows_maintenance;


--
-- Name: TABLE documents; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.documents TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.documents TO dataworkflows_maintenance;


--
-- Name: TABLE event_listeners; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.event_listeners TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.event_listeners TO dataworkflows_maintenance;


--
-- Name: TABLE execution_events; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.execution_events TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.execution_events TO dataworkflows_maintenance;


--
-- Name: SEQUENCE execution_events_id_seq; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE dw.execution_events_id_seq TO dataworkflows_app;
GRANT SELECT,USAGE ON SEQUENCE dw.execution_events_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE node_states; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.node_states TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.node_states TO dataworkflows_maintenance;


--
-- Name: TABLE resource_links; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.resource_links TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.resource_links TO dataworkflows_maintenance;


--
-- Name: SEQUENCE resource_links_id_seq; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE dw.resource_links_id_seq TO dataworkflows_app;
GRANT SELECT,USAGE ON SEQUENCE dw.resource_links_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE resource_touches; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.resource_touches TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.resource_touches TO dataworkflows_maintenance;


--
-- Name: SEQUENCE resource_touches_id_seq; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE dw.resource_touches_id_seq TO dataworkflows_app;
GRANT SELECT,USAGE ON SEQUENCE dw.resource_touches_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE schedule_ticks; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.schedule_ticks TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.schedule_ticks TO dataworkflows_maintenance;


--
-- Name: TABLE schema_migrations; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.schema_migrations TO dataworkflows_app;
GRANT SELECT ON TABLE dw.schema_migrations TO dataworkflows_maintenance;


--
-- Name: SEQUENCE signals_id_seq; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE dw.signals_id_seq TO dataworkflows_app;
GRANT SELECT,USAGE ON SEQUENCE dw.signals_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE template_sets; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.template_sets TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.template_sets TO dataworkflows_maintenance;


--
-- Name: TABLE triggers; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.triggers TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.triggers TO dataworkflows_maintenance;


--
-- Name: TABLE v_action_stats; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_action_stats TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_action_stats TO dataworkflows_maintenance;
GRANT SELECT ON TABLE dw.v_action_stats TO dw_reporting;


--
-- Name: TABLE v_dead_letters; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_dead_letters TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_dead_letters TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_dead_letters TO dataworkflows_maintenance;


--
-- Name: TABLE v_execution_tree; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_execution_tree TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_execution_tree TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_execution_tree TO dataworkflows_maintenance;


--
-- Name: TABLE v_executions; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_executions TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_executions TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_executions TO dataworkflows_maintenance;


--
-- Name: TABLE v_node_durations; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_node_durations TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_node_durations TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_node_durations TO dataworkflows_maintenance;


--
-- Name: TABLE v_pending_approvals; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_pending_approvals TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_pending_approvals TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_pending_approvals TO dataworkflows_maintenance;


--
-- Name: TABLE procrastinate_events; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_events TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_events TO dataworkflows_maintenance;


--
-- Name: TABLE v_queue_depth; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_queue_depth TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_queue_depth TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_queue_depth TO dataworkflows_maintenance;


--
-- Name: TABLE v_resource_links; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_resource_links TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_resource_links TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_resource_links TO dataworkflows_maintenance;


--
-- Name: TABLE v_schedules; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_schedules TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_schedules TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_schedules TO dataworkflows_maintenance;


--
-- Name: TABLE v_waiting_runs; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT ON TABLE dw.v_waiting_runs TO dw_reporting;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_waiting_runs TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_waiting_runs TO dataworkflows_maintenance;


--
-- Name: TABLE workflows; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflows TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflows TO dataworkflows_maintenance;


--
-- Name: TABLE v_workflow_health; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_workflow_health TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.v_workflow_health TO dataworkflows_maintenance;
GRANT SELECT ON TABLE dw.v_workflow_health TO dw_reporting;


--
-- Name: TABLE webhook_deliveries; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.webhook_deliveries TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.webhook_deliveries TO dataworkflows_maintenance;


--
-- Name: SEQUENCE webhook_deliveries_id_seq; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE dw.webhook_deliveries_id_seq TO dataworkflows_app;
GRANT SELECT,USAGE ON SEQUENCE dw.webhook_deliveries_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE workflow_plans; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflow_plans TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflow_plans TO dataworkflows_maintenance;


--
-- Name: TABLE workflow_templates; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflow_templates TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflow_templates TO dataworkflows_maintenance;


--
-- Name: TABLE workflow_versions; Type: ACL; Schema: dw; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflow_versions TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE dw.workflow_versions TO dataworkflows_maintenance;


--
-- Name: SEQUENCE procrastinate_events_id_seq; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON SEQUENCE public.procrastinate_events_id_seq TO dataworkflows_app;
GRANT ALL ON SEQUENCE public.procrastinate_events_id_seq TO dataworkflows_maintenance;


--
-- Name: SEQUENCE procrastinate_jobs_id_seq; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON SEQUENCE public.procrastinate_jobs_id_seq TO dataworkflows_app;
GRANT ALL ON SEQUENCE public.procrastinate_jobs_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE procrastinate_periodic_defers; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_periodic_defers TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_periodic_defers TO dataworkflows_maintenance;


--
-- Name: SEQUENCE procrastinate_periodic_defers_id_seq; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON SEQUENCE public.procrastinate_periodic_defers_id_seq TO dataworkflows_app;
GRANT ALL ON SEQUENCE public.procrastinate_periodic_defers_id_seq TO dataworkflows_maintenance;


--
-- Name: TABLE procrastinate_workers; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_workers TO dataworkflows_app;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.procrastinate_workers TO dataworkflows_maintenance;


--
-- Name: SEQUENCE procrastinate_workers_id_seq; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON SEQUENCE public.procrastinate_workers_id_seq TO dataworkflows_app;
GRANT ALL ON SEQUENCE public.procrastinate_workers_id_seq TO dataworkflows_maintenance;


--
-- Name: DEFAULT PRIVILEGES FOR SEQUENCES; Type: DEFAULT ACL; Schema: dw; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA dw GRANT SELECT,USAGE ON SEQUENCES TO dataworkflows_app;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA dw GRANT SELECT,USAGE ON SEQUENCES TO dataworkflows_maintenance;


--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: dw; Owner: -
--

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA dw GRANT SELECT,INSERT,DELETE,UPDATE ON TABLES TO dataworkflows_app;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA dw GRANT SELECT,INSERT,DELETE,UPDATE ON TABLES TO dataworkflows_maintenance;


--
-- PostgreSQL database dump complete
--


