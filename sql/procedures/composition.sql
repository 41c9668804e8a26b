-- Composition: subworkflows and forEach items. Callers: workers (start a child in a node's
-- checkpoint, checkpoint forEach items) and every procedure that ends a run (a child's end
-- resolves its parent's wait; a parent's end cancels the children it can no longer wait for).
--
-- Lock order. A child's end locks the child, then its parent (to resolve the parent's wait under
-- the parent's lock, as every wait is resolved). Nothing locks a parent and then its children: a
-- parent's end only queues a dw.cancel_children job, which cancels each child in a transaction of
-- its own. So a parent and its children never wait for each other's locks.

-- Starts a subworkflow node's child, in the node attempt's fenced transaction: the child execution
-- (its run job queued), the child wait, the node Waiting and the event, or nothing. Idempotent per
-- node attempt: the child's request id is derived from it, and a repeated call answers the wait
-- it made. With p_wait false the wait is resolved at once ('started': the node succeeds with the
-- child's id). A child that cannot start (too deep, unknown workflow or version, not runnable)
-- starts nothing: the answer is an error {code, message} and the worker fails the node with it.
CREATE OR REPLACE FUNCTION dw.begin_child_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_workflow_id text,
    p_version integer, p_input jsonb, p_parameters jsonb, p_wait boolean, p_max_depth integer
) RETURNS TABLE (wait jsonb, error jsonb) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_w dw.waits;
    v_child record;
    v_state text;
    v_message text;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    SELECT * INTO v_w FROM dw.waits w
     WHERE w.execution_id = p_execution_id AND w.node_id = p_node_id AND w.attempt = p_attempt AND w.kind = 'child';
    IF FOUND THEN
        RETURN QUERY SELECT dw.wait_json_v1(v_w), NULL::jsonb;
        RETURN;
    END IF;
    PERFORM 1 FROM dw.node_states n
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id AND n.status = 'Running'
       AND n.attempts = p_attempt
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % of execution % has no attempt % in flight', p_node_id, p_execution_id, p_attempt
            USING ERRCODE = 'DW011';
    END IF;
    IF v_e.depth + 1 > p_max_depth THEN
        RETURN QUERY SELECT NULL::jsonb, jsonb_build_object(
            'code', 'nesting_too_deep',
            'message', format('starting workflow %s here would nest executions %s levels deep; the limit is %s '
                              '(DW_MAX_NESTING_DEPTH)', p_workflow_id, v_e.depth + 1, p_max_depth),
            'depth', v_e.depth + 1, 'maxDepth', p_max_depth);
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO v_child FROM dw.start_execution_v2(
            p_workflow_id, p_version, format('child:%s:%s:%s', p_execution_id, p_node_id, p_attempt),
            p_input, v_e.principal_id, v_e.principal_type, v_e.correlation_id, v_e.queue, v_e, p_node_id);
    EXCEPTION WHEN SQLSTATE 'DW001' OR SQLSTATE 'DW002' OR SQLSTATE 'DW003' THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        RETURN QUERY SELECT NULL::jsonb, jsonb_build_object(
            'code', CASE v_state WHEN 'DW002' THEN 'child_not_runnable' ELSE 'child_workflow_not_found' END,
            'message', v_message);
        RETURN;
    END;

    UPDATE dw.node_states n SET status = 'Waiting', next_attempt_at = NULL
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id;
    INSERT INTO dw.waits (tenant_id, execution_id, node_id, attempt, kind, name, parameters, details,
                          child_execution_id)
    VALUES (v_e.tenant_id, p_execution_id, p_node_id, p_attempt, 'child', p_workflow_id, p_parameters,
            jsonb_build_object('childExecutionId', v_child.execution_id, 'workflowId', p_workflow_id,
                               'version', v_child.workflow_version, 'waitForCompletion', p_wait),
            v_child.execution_id)
    RETURNING * INTO v_w;
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, 'child_started',
            jsonb_build_object('waitId', v_w.id, 'childExecutionId', v_child.execution_id,
                               'workflowId', p_workflow_id, 'version', v_child.workflow_version,
                               'attempt', p_attempt, 'waitForCompletion', p_wait));
    IF NOT p_wait THEN
        v_w := dw.resolve_wait_v1(v_w.id, 'started', 'child',
            jsonb_build_object('executionId', v_child.execution_id, 'workflowId', p_workflow_id,
                               'version', v_child.workflow_version), NULL);
    END IF;
    RETURN QUERY SELECT dw.wait_json_v1(v_w), NULL::jsonb;
END;
$$;

-- A child ended (called by dw.finish_execution_v1, in the child's completion transaction): the
-- parent's open child wait is resolved with the child's status, outputs and error, and the parent
-- is woken (a run job, or a NOTIFY to the worker holding it).
CREATE OR REPLACE FUNCTION dw.child_ended_v1(p_child_id uuid, p_parent_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_parent dw.executions;
    v_child dw.executions;
    v_w dw.waits;
BEGIN
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

-- The children a parent that ended must cancel: every unfinished one when it was Cancelled, and
-- otherwise those it was waiting for (a child started with waitForCompletion false outlives a
-- parent that succeeded or failed).
CREATE OR REPLACE FUNCTION dw.children_to_cancel_v1(p_parent_id uuid)
    RETURNS TABLE (execution_id uuid) LANGUAGE sql STABLE AS $$
    SELECT c.id FROM dw.executions c
      JOIN dw.executions p ON p.id = c.parent_execution_id
     WHERE c.parent_execution_id = p_parent_id
       AND c.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
       AND p.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
       AND (p.status = 'Cancelled'
            OR EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = c.id AND w.state = 'withdrawn'))
     ORDER BY c.created_at;
$$;

-- The JSON a worker reads for a forEach item (dataworkflows.foreach.ItemCheckpoint).
CREATE OR REPLACE FUNCTION dw.foreach_item_json_v1(i dw.foreach_items) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('index', i.item_index, 'item', i.item, 'status', i.status, 'attempts', i.attempts,
                              'attemptBase', i.attempt_base, 'nextAttemptAt', i.next_attempt_at,
                              'outputs', i.outputs, 'error', i.error);
$$;

-- The items of a forEach node's attempt, in order; none before dw.begin_items_v1 wrote them.
CREATE OR REPLACE FUNCTION dw.load_items_v1(p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer)
    RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    RETURN QUERY SELECT dw.foreach_item_json_v1(i) FROM dw.foreach_items i
                  WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.node_attempt = p_attempt
                  ORDER BY i.item_index;
END;
$$;

-- A forEach node's attempt writes its items (fenced; the node must be Running in that attempt).
-- Items an earlier attempt of the node ran (before a redrive) and that succeeded with the same value
-- are kept as they are; the others start again, their retry budget counted afresh.
CREATE OR REPLACE FUNCTION dw.begin_items_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_action_type text, p_items jsonb
) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := jsonb_array_length(p_items);
    v_kept integer;
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    PERFORM 1 FROM dw.node_states n
     WHERE n.execution_id = p_execution_id AND n.node_id = p_node_id AND n.status = 'Running'
       AND n.attempts = p_attempt
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % of execution % has no attempt % in flight', p_node_id, p_execution_id, p_attempt
            USING ERRCODE = 'DW011';
    END IF;
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
           ended_at = CASE WHEN i.status = 'Succeeded' AND i.item = EXCLUDED.item THEN i.ended_at END
     WHERE i.node_attempt < EXCLUDED.node_attempt;
    SELECT count(*) INTO v_kept FROM dw.foreach_items i
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.status = 'Succeeded';
    INSERT INTO dw.execution_events (execution_id, node_id, type, details)
    VALUES (p_execution_id, p_node_id, 'items_started',
            jsonb_build_object('attempt', p_attempt, 'items', v_count, 'alreadySucceeded', v_kept));
    RETURN QUERY SELECT dw.foreach_item_json_v1(i) FROM dw.foreach_items i
                  WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id
                  ORDER BY i.item_index;
END;
$$;

-- Items start their next attempt (Running, attempts + 1); answers (index, attempt) for each.
CREATE OR REPLACE FUNCTION dw.start_item_attempts_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_indexes integer[]
) RETURNS TABLE (item_index integer, attempt integer) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    RETURN QUERY
    UPDATE dw.foreach_items i
       SET status = 'Running', attempts = i.attempts + 1, started_at = COALESCE(i.started_at, now()),
           next_attempt_at = NULL
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = ANY (p_indexes)
       AND i.status IN ('Pending', 'Waiting')
    RETURNING i.item_index, i.attempts;
END;
$$;

-- One item attempt's outcome (fenced): the attempt row (with the item's index) and the item's new
-- state: Succeeded, Failed, Waiting (a retry due at p_next_attempt_at) or Cancelled.
CREATE OR REPLACE FUNCTION dw.record_item_attempt_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_index integer, p_attempt integer,
    p_action_type text, p_attempt_status text, p_item_status text, p_parameters jsonb, p_outputs jsonb,
    p_error jsonb, p_start_time timestamptz, p_end_time timestamptz, p_worker text, p_next_attempt_at timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_item_status NOT IN ('Succeeded', 'Failed', 'Waiting', 'Cancelled') THEN
        RAISE EXCEPTION 'not an item outcome: %', p_item_status USING ERRCODE = 'DW013';
    END IF;
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
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
END;
$$;

-- A forEach that stopped at its first failure (failFast): the items that did not run are Cancelled.
CREATE OR REPLACE FUNCTION dw.stop_items_v1(p_execution_id uuid, p_token bigint, p_node_id text)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_rows integer;
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    UPDATE dw.foreach_items i
       SET status = 'Cancelled', ended_at = now(), next_attempt_at = NULL,
           error = jsonb_build_object('code', 'not_run', 'message', 'the forEach stopped at an earlier item''s failure')
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.status IN ('Pending', 'Waiting');
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END;
$$;
