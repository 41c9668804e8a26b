-- Composition: subworkflows and forEach items. Callers: workers (start a child in a node's
-- checkpoint, checkpoint forEach items) and every procedure that ends a run (a child's end
-- resolves its parent's wait; a parent's end cancels the children it can no longer wait for).
--
-- Lock order. Runs' rows from a child up, then letters. A child's end locks the child, then its
-- parent (to resolve the parent's wait under the parent's lock, as every wait is resolved; and,
-- when it files a letter, before it takes any letter's row: dw.complete_execution_v2); a child's
-- start locks the run starting it, then its tree's root (dw.start_child_v2); a run that files a
-- letter locks every run above it, from its parent up (dw.lock_letter_ancestors_v1). Nothing locks a parent's
-- row and then its children's rows: a parent's end only queues a dw.cancel_children job, which
-- cancels each child in a transaction of its own. A redrive or an acknowledgement of a run's letter,
-- and a run's end, lock that run's row, then the letters of its tree (never a descendant's row: a
-- redrive that locked them would wait for a descendant's start, which holds its own row and waits
-- for the root's). So a parent and its children never wait for each other's locks.

-- Locks a node's state while its attempt p_attempt is in flight (Running); DW011 otherwise.
CREATE OR REPLACE FUNCTION dw.lock_running_attempt_v1(p_execution_id uuid, p_node_id text, p_attempt integer)
    RETURNS void LANGUAGE plpgsql AS $$
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

-- Starts a child of the execution's node with this request id: (its id and version, NULL), or
-- (NULL, NULL, why not) when it is too deep, its tree holds the most runs a tree may (the session's
-- dw.max_runs_per_tree, DW_MAX_RUNS_PER_TREE: 20,000 when unset, 0 for no limit), its workflow or
-- version is unknown or cannot run, or the request id names an execution this node did not start.
-- Nothing is written when refused. The tree's runs are counted on its root's row
-- (dw.executions.tree_runs, migration 0067) rather than read at each start: v1 read every run of
-- the tree, under the parent's lock, at every child's start (O(n) each, O(n^2) over a forEach of n
-- subworkflow items). The count is read and kept under the root row's lock, so runs of one tree
-- started at the same moment take their turn and the tree never passes the limit. Counted once, at the first start under a limit,
-- for a tree started before (or under no limit): runs started later under no limit are counted when
-- the count exists.
CREATE OR REPLACE FUNCTION dw.start_child_v2(
    p_parent dw.executions, p_node_id text, p_request_id text, p_workflow_id text, p_version integer,
    p_input jsonb, p_max_depth integer,
    OUT o_execution_id uuid, OUT o_version integer, OUT o_error jsonb
) LANGUAGE plpgsql AS $$
DECLARE
    v_child record;
    v_state text;
    v_message text;
    v_max_runs integer := COALESCE(NULLIF(current_setting('dw.max_runs_per_tree', true), '')::integer, 20000);
    v_runs bigint;
BEGIN
    IF p_parent.depth + 1 > p_max_depth THEN
        o_error := jsonb_build_object(
            'code', 'nesting_too_deep',
            'message', format('starting workflow %s here would nest executions %s levels deep; the limit is %s '
                              '(DW_MAX_NESTING_DEPTH)', p_workflow_id, p_parent.depth + 1, p_max_depth),
            'depth', p_parent.depth + 1, 'maxDepth', p_max_depth);
        RETURN;
    END IF;
    -- The root's row holds the count (locked here until the start commits: starts in one tree take
    -- their turn, and the count is exact). Most starts are a forEach's or a subworkflow node's of
    -- the root itself, whose row the parent's lease check already locked.
    SELECT e.tree_runs INTO v_runs FROM dw.executions e WHERE e.id = p_parent.root_execution_id FOR NO KEY UPDATE;
    IF v_runs IS NULL AND v_max_runs > 0 THEN
        SELECT count(*) INTO v_runs
          FROM (SELECT 1 FROM dw.executions e WHERE e.root_execution_id = p_parent.root_execution_id
                 LIMIT v_max_runs) t;
        -- A count that reached the limit says only "at least the limit": kept, it undercounted the
        -- tree under a higher limit later (DW_MAX_RUNS_PER_TREE raised, or another worker's), which
        -- then passed it (a review: a tree of 9 counted under 3 grew to 14 under 12). Such a tree
        -- is counted again at its next start, as v1 counted every tree.
        IF v_runs < v_max_runs THEN
            UPDATE dw.executions e SET tree_runs = v_runs WHERE e.id = p_parent.root_execution_id;
        END IF;
    END IF;
    IF v_max_runs > 0 THEN
        IF v_runs >= v_max_runs THEN
            o_error := jsonb_build_object(
                'code', 'tree_too_large',
                'message', format('starting workflow %s here would make run tree %s hold more than %s runs '
                                  '(DW_MAX_RUNS_PER_TREE)', p_workflow_id, p_parent.root_execution_id, v_max_runs),
                'rootExecutionId', p_parent.root_execution_id, 'maxRuns', v_max_runs);
            RETURN;
        END IF;
    END IF;
    BEGIN
        SELECT * INTO v_child FROM dw.start_run_v1(
            p_workflow_id, p_version, p_request_id, p_input, p_parent.principal_id, p_parent.principal_type,
            p_parent.correlation_id, p_parent.queue, p_parent, p_node_id, NULL, NULL);
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
    IF v_child.created AND v_runs IS NOT NULL THEN
        UPDATE dw.executions e SET tree_runs = e.tree_runs + 1 WHERE e.id = p_parent.root_execution_id;
    END IF;
END;
$$;

-- The previous release's start of a child, which counted the tree's runs at each start: now
-- dw.start_child_v2's (this release's procedures call v2; the name stays for any caller of the
-- previous release's).
CREATE OR REPLACE FUNCTION dw.start_child_v1(
    p_parent dw.executions, p_node_id text, p_request_id text, p_workflow_id text, p_version integer,
    p_input jsonb, p_max_depth integer,
    OUT o_execution_id uuid, OUT o_version integer, OUT o_error jsonb
) LANGUAGE sql AS $$
    SELECT * FROM dw.start_child_v2(p_parent, p_node_id, p_request_id, p_workflow_id, p_version, p_input, p_max_depth);
$$;

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
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF NOT p_wait THEN
        -- A detached child runs on its own: its workflowTimeout, else the default from its own start,
        -- not the deadline an attached child shares with its parent ('-infinity': none to share,
        -- dw.deadline_for_v1).
        v_e.deadline_at := '-infinity';
    END IF;
    SELECT * INTO v_w FROM dw.waits w
     WHERE w.execution_id = p_execution_id AND w.node_id = p_node_id AND w.attempt = p_attempt AND w.kind = 'child';
    IF FOUND THEN
        RETURN QUERY SELECT dw.wait_json_v1(v_w), NULL::jsonb;
        RETURN;
    END IF;
    PERFORM dw.lock_running_attempt_v1(p_execution_id, p_node_id, p_attempt);
    SELECT * INTO v_child FROM dw.start_child_v2(
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

-- As dw.begin_child_v1, but no child starts while an operator's cancel or suspension of the parent
-- is pending: the answer is then the error control_request_pending and nothing is written (the
-- worker learns the request and stops; the node's attempt is taken up again when the run goes
-- on). v1 started one: a cancel whose worker had not heard of it yet let the child start after the
-- 202, and run to its end under a Cancelled parent (race review, 2026-12-07). v1 stays for workers
-- of the previous release.
CREATE OR REPLACE FUNCTION dw.begin_child_v2(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_workflow_id text,
    p_version integer, p_input jsonb, p_parameters jsonb, p_wait boolean, p_max_depth integer
) RETURNS TABLE (wait jsonb, error jsonb) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NOT NULL OR v_e.suspend_requested_at IS NOT NULL THEN
        -- A repeated call for a child that started before the request answers its wait, as v1 does.
        IF NOT EXISTS (SELECT 1 FROM dw.waits w WHERE w.execution_id = p_execution_id AND w.node_id = p_node_id
                                                   AND w.attempt = p_attempt AND w.kind = 'child') THEN
            RETURN QUERY SELECT NULL::jsonb, dw.control_request_pending_v1(v_e);
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM dw.begin_child_v1(p_execution_id, p_token, p_node_id, p_attempt, p_workflow_id,
                                                 p_version, p_input, p_parameters, p_wait, p_max_depth);
END;
$$;

-- The error a child's start is refused with while its parent's cancel or suspension is pending.
CREATE OR REPLACE FUNCTION dw.control_request_pending_v1(p_e dw.executions) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('code', 'control_request_pending',
        'message', format('a %s of execution %s is pending: no child starts',
                          CASE WHEN p_e.cancel_requested_at IS NOT NULL THEN 'cancel' ELSE 'suspension' END, p_e.id));
$$;

-- Whether the execution a child's request id found is this parent node's child (and not one that
-- somebody started with that request id through the API).
CREATE OR REPLACE FUNCTION dw.is_child_of_v1(p_child_id uuid, p_parent_id uuid, p_node_id text)
    RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM dw.executions e
                    WHERE e.id = p_child_id AND e.parent_execution_id = p_parent_id AND e.parent_node_id = p_node_id);
$$;

CREATE OR REPLACE FUNCTION dw.child_request_taken_v1(p_other uuid) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('code', 'child_request_conflict',
        'message', format('the child''s request id is taken by execution %s, which this node did not start', p_other));
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
    -- The parent's compensation waits for this end (migration 0075: a child its end cancelled): its
    -- job looks again once this commits (the child's own compensation, queued after this, included).
    IF EXISTS (SELECT 1 FROM dw.compensations c
                WHERE c.child_execution_id = p_child_id AND c.status IN ('Pending', 'Waiting')) THEN
        PERFORM dw.defer_compensation_job_v1(p_parent_id, NULL);
    END IF;
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

-- Whether run p_child_id is a detached child: started by a subworkflow node or a forEach item with
-- waitForCompletion false, whose wait (or item) ended when the child started. Nobody takes its end:
-- it files its own letters, as a root run does.
CREATE OR REPLACE FUNCTION dw.is_detached_child_v1(p_child_id uuid) RETURNS boolean
    LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM dw.waits w
                    WHERE w.child_execution_id = p_child_id AND w.kind = 'child' AND w.state = 'started')
        OR EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = p_child_id AND i.detached)
$$;

-- Why a redrive of run p_e (a node_failed or worker_lost letter) is refused because it is a child
-- whose end its parent has already taken, or NULL when it is not: its parent's node, or its forEach
-- item, recorded how it ended (child_failed, child_timed_out...), or stopped waiting for it (the
-- parent ended first, or a redrive gave the item a child of its own). Redriving it would leave the
-- parent as it is, a Succeeded child under a node that says it failed; the parent's redrive runs
-- the node again, which starts a new child. A detached child (waitForCompletion false: nobody
-- waits for it) and a root run are redriven as they are.
CREATE OR REPLACE FUNCTION dw.child_redrive_refusal_v1(p_e dw.executions) RETURNS text
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_taken text;
    v_code text;
    v_node_status text;
    v_parent_status text;
    v_continues boolean := false;
    v_letter bigint;
BEGIN
    IF p_e.parent_execution_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT CASE WHEN w.state = 'withdrawn' THEN 'stopped waiting for it' ELSE 'has taken its end' END
      INTO v_taken
      FROM dw.waits w WHERE w.child_execution_id = p_e.id AND w.kind = 'child' AND w.state IN ('completed', 'withdrawn')
     LIMIT 1;
    IF v_taken IS NULL THEN
        SELECT CASE WHEN i.status = 'Cancelled' THEN format('stopped waiting for it (item %s)', i.item_index)
                    ELSE format('has taken its end (item %s)', i.item_index) END
          INTO v_taken
          FROM dw.foreach_items i
         WHERE i.child_execution_id = p_e.id AND i.status <> 'Running' AND NOT i.detached LIMIT 1;
        -- A forEach item's: whether its node goes on without a failed item (onItemFailure continue:
        -- the node succeeds, and no letter of the parent's comes for it).
        SELECT COALESCE(n.node -> 'parameters' ->> 'onItemFailure', 'failFast') = 'continue' INTO v_continues
          FROM dw.executions e
          JOIN dw.workflow_plans p ON p.tenant_id = e.tenant_id AND p.workflow_id = e.workflow_id
                                  AND p.version = e.workflow_version
         CROSS JOIN LATERAL jsonb_array_elements(p.plan -> 'nodes') AS n(node)
         WHERE v_taken IS NOT NULL AND e.id = p_e.parent_execution_id AND n.node ->> 'id' = p_e.parent_node_id;
    END IF;
    IF v_taken IS NULL AND p_e.request_id LIKE 'item:%'
       AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = p_e.id) THEN
        v_taken := 'stopped waiting for it (its item has a child of its own since)';
    END IF;
    IF v_taken IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT n.error ->> 'code', n.status INTO v_code, v_node_status
      FROM dw.node_states n WHERE n.execution_id = p_e.parent_execution_id AND n.node_id = p_e.parent_node_id;
    SELECT e.status INTO v_parent_status FROM dw.executions e WHERE e.id = p_e.parent_execution_id;
    -- A letter whose redrive runs the parent's node again: not a compensation_failed one (its redrive
    -- runs compensation steps), nor any letter of a parent whose compensation ran (refused: its
    -- effects were undone).
    SELECT d.id INTO v_letter FROM dw.dead_letters d
      JOIN dw.executions pe ON pe.id = d.execution_id
     WHERE d.execution_id = p_e.parent_execution_id AND d.kind NOT IN ('job_failed', 'compensation_failed')
       AND pe.compensation_status IS NULL
       AND d.redriven_at IS NULL AND d.closed_at IS NULL
     ORDER BY d.id DESC LIMIT 1;
    RETURN format('execution %s is a child of execution %s, whose node %s %s%s: redriven, it would change '
                  'nothing for its parent. %s',
                  p_e.id, p_e.parent_execution_id, p_e.parent_node_id, v_taken,
                  CASE WHEN v_code IS NOT NULL THEN format(' (the node failed with %s)', v_code) ELSE '' END,
                  CASE WHEN v_letter IS NOT NULL
                       THEN format('Redrive the parent''s dead letter %s instead: its node starts a new child', v_letter)
                       -- The child's end is recorded for its parent, which has not acted on it yet (it is
                       -- Suspended, or no worker has taken it back since): its node has not ended.
                       WHEN v_parent_status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
                            AND v_node_status NOT IN ('Succeeded', 'Failed', 'Skipped', 'Cancelled')
                            AND v_continues
                       THEN 'Its forEach node goes on without this item (onItemFailure continue): no dead letter of '
                            'the parent''s will come for it; start a new run to do it again'
                       WHEN v_parent_status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
                            AND v_node_status NOT IN ('Succeeded', 'Failed', 'Skipped', 'Cancelled')
                       THEN format('The parent (%s) has not acted on it yet%s: its node then fails and files a dead '
                                   'letter of its own if nothing handles the failure; redrive that one',
                                   v_parent_status,
                                   CASE WHEN v_parent_status = 'Suspended' THEN ', and will once it is resumed' ELSE '' END)
                       WHEN EXISTS (SELECT 1 FROM dw.executions pe
                                     WHERE pe.id = p_e.parent_execution_id AND pe.compensation_status IS NOT NULL)
                       THEN 'The parent''s compensation ran (what it did was undone): start a new run instead'
                       ELSE 'The parent has no open dead letter to redrive (it went on, or ended otherwise): start a new run instead' END);
END;
$$;

-- The children a parent must cancel: every unfinished one when it was Cancelled; those whose wait it
-- withdrew when it ended (a child started with waitForCompletion false outlives a parent that
-- succeeded or failed); and the children of forEach items it cancelled (failFast stopped the
-- forEach, or the run ended).
-- Whether a child run is one its parent no longer wants (dw.children_to_cancel_v1 cancels those):
-- its parent was cancelled, or ended or was redriven while waiting for it (its wait withdrawn), or
-- it is a forEach item's child whose item was cancelled or started again.
CREATE OR REPLACE FUNCTION dw.child_unwanted_v1(p_child_id uuid, p_parent_id uuid, p_request_id text)
    RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM dw.executions p WHERE p.id = p_parent_id AND p.status = 'Cancelled')
        -- Withdrawn: its parent ended while waiting for it (also when the parent was redriven
        -- since: the redriven node starts a child of its own).
        OR EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = p_child_id AND w.state = 'withdrawn')
        OR EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = p_child_id AND i.status = 'Cancelled')
        -- An item's child that its item no longer names (the item started again after a redrive).
        OR (p_request_id LIKE 'item:%'
            AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = p_child_id))
$$;

CREATE OR REPLACE FUNCTION dw.children_to_cancel_v1(p_parent_id uuid)
    RETURNS TABLE (execution_id uuid) LANGUAGE sql STABLE AS $$
    SELECT c.id FROM dw.executions c
     WHERE c.parent_execution_id = p_parent_id
       AND c.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
       AND dw.child_unwanted_v1(c.id, c.parent_execution_id, c.request_id)
     ORDER BY c.created_at;
$$;

-- A run that ends closes the letters of the children whose failure it handled, and of their own
-- children beneath them: a child whose subworkflow node or forEach item took its end, where that node
-- then went on (it succeeded, as a forEach with onItemFailure continue does, or it failed and a
-- failure or always edge took the failure: no unhandled_failure). No redrive may take such a letter
-- (dw.child_redrive_refusal_v1: its parent took the end) and no letter of the parent's supersedes
-- it (the parent went on), so it stayed open for good: listed as needing a human, and keeping the
-- whole tree from retention until someone acknowledged each one. Detached children (refused
-- nothing: they are redriven on their own) keep theirs, and so do the children of a node whose
-- failure nothing handled, which the parent's own letter supersedes when it is redriven
-- (dw.redrive_dead_letter_v1). Closed as superseded, with a note that says by what.
-- Only through children that did not succeed: a run that succeeded has no open letter of its own (it
-- succeeds again only by its letter's redrive) and closed its handled children's at its own end; and
-- never into a detached child's tree, whose letters are its own to redrive or acknowledge (they were
-- closed, the note saying this run handled their failure, while the detached child's letter stayed
-- open). A forEach of thousands of items that succeeded is not walked.
-- A cancelled run closes those of every child whose end it took, whatever its node did: a child that
-- failed while its parent was suspended (or before a worker took the parent back), the parent then
-- cancelled, left a letter refused every redrive (its parent stopped waiting for it) that no letter
-- of the parent's supersedes (a cancelled run files none and is never redriven): open for good too.
CREATE OR REPLACE FUNCTION dw.close_handled_child_letters_v1(p_parent_id uuid) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    v_cancelled boolean;
BEGIN
    SELECT e.status = 'Cancelled' INTO v_cancelled FROM dw.executions e WHERE e.id = p_parent_id;
    WITH RECURSIVE handled AS (
        SELECT c.id, c.parent_node_id AS node_id FROM dw.executions c
          JOIN dw.node_states n ON n.execution_id = c.parent_execution_id AND n.node_id = c.parent_node_id
         WHERE c.parent_execution_id = p_parent_id AND c.status <> 'Succeeded'
           AND (v_cancelled OR n.status = 'Succeeded' OR (n.status = 'Failed' AND n.end_reason IS NULL))
           AND NOT dw.is_detached_child_v1(c.id)
        UNION ALL
        SELECT c.id, h.node_id FROM dw.executions c JOIN handled h ON c.parent_execution_id = h.id
         WHERE c.status <> 'Succeeded' AND NOT dw.is_detached_child_v1(c.id)
    )
    UPDATE dw.dead_letters d
       SET closed_at = now(), close_reason = 'superseded',
           close_note = CASE WHEN v_cancelled
                             THEN format('execution %s was cancelled (node %s)', p_parent_id, h.node_id)
                             ELSE format('execution %s handled its failure (node %s) and ended', p_parent_id, h.node_id)
                        END
      FROM handled h JOIN dw.executions c ON c.id = h.id
     -- Not a compensation_failed letter: an effect of that run was not undone, which no redrive,
     -- acknowledgement or end of a run above it undoes (a review: they closed it as superseded).
     WHERE d.execution_id = h.id AND d.kind NOT IN ('job_failed', 'compensation_failed')
       AND d.redriven_at IS NULL AND d.closed_at IS NULL
       AND dw.child_redrive_refusal_v1(c) IS NOT NULL;
END;
$$;

-- A child that files its letter after its parent has stopped waiting for it, where nothing will
-- supersede that letter, closes it at once, with those of its own children beneath it, as the
-- parent's end or acknowledgement closed those already filed: refused every redrive (its parent
-- took its end, or stopped waiting for it), it stayed open for good, listed as needing a human,
-- and kept the tree from retention. Its parent was cancelled (the cancel came as the child ended:
-- its queued cancel not yet taken, or too late; a cancelled run files no letter), or had ended with
-- no letter of its own open, and none of its runs above it is still going or has one open: its
-- letter was acknowledged (dw.acknowledge_dead_letter_v1 closed its children's letters filed by
-- then), or it handled the failure and ended (dw.close_handled_child_letters_v1 closed those),
-- while this child, its end no longer awaited (its cancel not yet taken), ran on and failed later.
-- Left open where something will close it: a run above it still going (its end closes it, or files
-- a letter whose redrive or acknowledgement does; not through a run that succeeded, which its
-- end does not walk), or one with an open letter (its redrive or acknowledgement does). Never in a
-- detached child's tree beyond the detached child: its letters are its own. Only this child's
-- tree: a cancelled forEach's items that fail one by one do not walk their siblings.
CREATE OR REPLACE FUNCTION dw.close_late_child_letters_v1(p_child_id uuid) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    v_c dw.executions;
    v_p dw.executions;
    v_a dw.executions;
    v_through_succeeded boolean := false;
    v_acknowledged bigint;
    v_note text;
BEGIN
    SELECT * INTO v_c FROM dw.executions c WHERE c.id = p_child_id;
    IF v_c.parent_execution_id IS NULL OR dw.is_detached_child_v1(p_child_id) THEN
        RETURN;
    END IF;
    SELECT * INTO v_p FROM dw.executions p WHERE p.id = v_c.parent_execution_id;
    IF v_p.status = 'Cancelled' THEN
        v_note := format('execution %s was cancelled (node %s)', v_p.id, v_c.parent_node_id);
    ELSE
        v_a := v_p;
        LOOP
            IF v_a.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') AND NOT v_through_succeeded THEN
                RETURN;
            END IF;
            IF EXISTS (SELECT 1 FROM dw.dead_letters d
                        WHERE d.execution_id = v_a.id AND d.kind <> 'job_failed'
                          AND d.redriven_at IS NULL AND d.closed_at IS NULL) THEN
                RETURN;
            END IF;
            EXIT WHEN v_a.parent_execution_id IS NULL OR dw.is_detached_child_v1(v_a.id);
            v_through_succeeded := v_through_succeeded OR v_a.status = 'Succeeded';
            SELECT * INTO v_a FROM dw.executions e WHERE e.id = v_a.parent_execution_id;
        END LOOP;
        SELECT d.id INTO v_acknowledged FROM dw.dead_letters d
         WHERE d.execution_id = v_p.id AND d.kind <> 'job_failed' AND d.close_reason = 'acknowledged'
         ORDER BY d.id DESC LIMIT 1;
        v_note := CASE
            WHEN v_acknowledged IS NOT NULL
                THEN format('execution %s''s dead letter %s was acknowledged', v_p.id, v_acknowledged)
            WHEN v_p.status = 'Succeeded' OR EXISTS (
                    SELECT 1 FROM dw.node_states n
                     WHERE n.execution_id = v_p.id AND n.node_id = v_c.parent_node_id
                       AND (n.status = 'Succeeded' OR (n.status = 'Failed' AND n.end_reason IS NULL)))
                THEN format('execution %s handled its failure (node %s) and ended', v_p.id, v_c.parent_node_id)
            ELSE format('execution %s ended %s (node %s) with no dead letter open to supersede this one',
                        v_p.id, v_p.status, v_c.parent_node_id) END;
    END IF;
    WITH RECURSIVE tree AS (
        SELECT p_child_id AS id
        UNION ALL
        SELECT c.id FROM dw.executions c JOIN tree t ON c.parent_execution_id = t.id
         WHERE c.status <> 'Succeeded' AND NOT dw.is_detached_child_v1(c.id)
    )
    UPDATE dw.dead_letters d
       SET closed_at = now(), close_reason = 'superseded', close_note = v_note
      FROM tree t JOIN dw.executions c ON c.id = t.id
     -- Not a compensation_failed letter: an effect of that run was not undone, which no redrive,
     -- acknowledgement or end of a run above it undoes (a review: they closed it as superseded).
     WHERE d.execution_id = t.id AND d.kind NOT IN ('job_failed', 'compensation_failed')
       AND d.redriven_at IS NULL AND d.closed_at IS NULL
       AND dw.child_redrive_refusal_v1(c) IS NOT NULL;
END;
$$;

-- Locks the rows of the runs above a child that files a letter, from its parent up (the order runs'
-- rows are taken in: from the child up), to its tree's root or to the detached child it is under,
-- whose letters are its own: each of them, as it ends or as its letter is redriven or acknowledged,
-- closes the letters of its tree that it sees, under its own row (dw.redrive_dead_letter_v1,
-- dw.acknowledge_dead_letter_v1, dw.close_handled_child_letters_v1), and this child's letter is
-- closed as it is filed only when no run above it is going or has a letter open
-- (dw.close_late_child_letters_v1). Its parent's row alone was not enough: a grandchild's letter
-- filed while its root's letter was being acknowledged was seen by neither, and stayed open for
-- good (a review). p_skip_locked: one that another transaction holds is not waited for (recovery and
-- the timeout sweep, which hold other runs' rows): false, and those taken stay taken until the
-- caller's transaction ends.
CREATE OR REPLACE FUNCTION dw.lock_letter_ancestors_v1(p_child_id uuid, p_skip_locked boolean) RETURNS boolean
    LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid := p_child_id;
    v_parent uuid;
BEGIN
    LOOP
        SELECT e.parent_execution_id INTO v_parent FROM dw.executions e WHERE e.id = v_id;
        IF v_parent IS NULL THEN
            RETURN true;
        END IF;
        IF p_skip_locked THEN
            PERFORM 1 FROM dw.executions p WHERE p.id = v_parent FOR NO KEY UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                RETURN false;
            END IF;
        ELSE
            PERFORM 1 FROM dw.executions p WHERE p.id = v_parent FOR NO KEY UPDATE;
        END IF;
        -- Above a detached child (its parent's row is taken still, as its end takes it), the letters
        -- are not of its tree.
        IF dw.is_detached_child_v1(v_id) THEN
            RETURN true;
        END IF;
        v_id := v_parent;
    END LOOP;
END;
$$;

-- The previous release's name (it closed them under a cancelled parent only): this release's
-- procedures call dw.close_late_child_letters_v1.
CREATE OR REPLACE FUNCTION dw.close_cancelled_parents_child_letters_v1(p_child_id uuid) RETURNS void
    LANGUAGE sql AS $$
    SELECT dw.close_late_child_letters_v1(p_child_id);
$$;

-- Queues the cancellation of the children dw.children_to_cancel_v1 names, if there are any.
CREATE OR REPLACE FUNCTION dw.queue_cancel_children_v1(p_parent_id uuid, p_queue text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    -- Most runs have no children: one index probe says so before the fuller question.
    IF EXISTS (SELECT 1 FROM dw.executions c WHERE c.parent_execution_id = p_parent_id)
       AND EXISTS (SELECT 1 FROM dw.children_to_cancel_v1(p_parent_id)) THEN
        -- Not in this transaction: cancelling a child locks it, and a child that ends locks it and
        -- then its parent. Ahead of every run (priority 1000, above a run's -100 to 100: README "Run
        -- priority"): at 0 it waited behind every run above 0, those queued after it too, while the
        -- children it cancels ran on.
        PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
            p_queue, 'dw.cancel_children', 1000, NULL, NULL,
            jsonb_build_object('parent_execution_id', p_parent_id::text), NULL
        )::procrastinate_job_to_defer_v1]);
    END IF;
END;
$$;

-- A forEach item starts its child (the item is Running in attempt p_attempt; fenced): like
-- dw.begin_child_v1, with a request id derived from the item attempt. With p_wait false the item
-- succeeds at once with the child's id. A child that cannot start starts nothing: the answer is the
-- error, and the worker records the item's failure.
CREATE OR REPLACE FUNCTION dw.begin_item_child_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_index integer, p_attempt integer, p_workflow_id text,
    p_version integer, p_input jsonb, p_wait boolean, p_max_depth integer, p_worker text
) RETURNS TABLE (item jsonb, error jsonb) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_i dw.foreach_items;
    v_child record;
    v_outputs jsonb;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF NOT p_wait THEN
        v_e.deadline_at := '-infinity';  -- a detached child's own deadline, as in dw.begin_child_v1
    END IF;
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
    SELECT * INTO v_child FROM dw.start_child_v2(
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
        UPDATE dw.foreach_items i SET status = 'Succeeded', outputs = v_outputs, ended_at = now(), detached = true
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

-- As dw.begin_item_child_v1, but no child starts while an operator's cancel or suspension of the
-- run is pending. The items the worker started for children that have not started are put back as
-- they were before (their attempt not counted: nothing ran), and the answer is the error
-- control_request_pending; the worker reads its items again and stops starting them. v1 started them: a suspension answered 202 while a forEach of 100 subworkflow items was
-- starting its children saw 89 of them start after the answer (race review, 2026-12-07).
CREATE OR REPLACE FUNCTION dw.begin_item_child_v2(
    p_execution_id uuid, p_token bigint, p_node_id text, p_index integer, p_attempt integer, p_workflow_id text,
    p_version integer, p_input jsonb, p_wait boolean, p_max_depth integer, p_worker text
) RETURNS TABLE (item jsonb, error jsonb) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_i dw.foreach_items;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NOT NULL OR v_e.suspend_requested_at IS NOT NULL THEN
        UPDATE dw.foreach_items i
           SET attempts = i.attempts - 1,
               status = CASE WHEN i.attempts = 1 THEN 'Pending' ELSE 'Waiting' END,
               started_at = CASE WHEN i.attempts = 1 THEN NULL ELSE i.started_at END,
               next_attempt_at = CASE WHEN i.attempts = 1 THEN NULL ELSE now() END
         WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id
           AND i.status = 'Running' AND i.child_execution_id IS NULL;
        SELECT * INTO v_i FROM dw.foreach_items i
         WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = p_index;
        IF v_i.child_execution_id IS NULL THEN
            RETURN QUERY SELECT NULL::jsonb, dw.control_request_pending_v1(v_e);
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM dw.begin_item_child_v1(p_execution_id, p_token, p_node_id, p_index, p_attempt,
                                                      p_workflow_id, p_version, p_input, p_wait, p_max_depth, p_worker);
END;
$$;

-- A forEach item's child ended (from dw.child_ended_v1, in the child's completion transaction): the
-- item's attempt row and its outcome (the child's outputs, or its error as the cause of
-- child_failed, child_cancelled or child_timed_out), and the parent is woken.
CREATE OR REPLACE FUNCTION dw.item_child_ended_v1(p_child_id uuid, p_parent_id uuid) RETURNS void
    LANGUAGE plpgsql AS $$
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

-- The JSON a worker reads for a forEach item (dataworkflows.foreach.ItemCheckpoint).
CREATE OR REPLACE FUNCTION dw.foreach_item_json_v1(i dw.foreach_items) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('index', i.item_index, 'item', i.item, 'status', i.status, 'attempts', i.attempts,
                              'attemptBase', i.attempt_base, 'nextAttemptAt', i.next_attempt_at,
                              'outputs', i.outputs, 'error', i.error, 'childExecutionId', i.child_execution_id,
                              'interruptions', i.interruptions);
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

-- Some items of a forEach node's attempt (those at p_indexes), in order: a worker that carries the
-- attempt's items between the run's wakes reads again only those that can have changed meanwhile
-- (the items whose children are in flight: dw.item_child_ended_v1 records them), not all of them.
CREATE OR REPLACE FUNCTION dw.load_items_at_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_attempt integer, p_indexes integer[]
) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dw.check_lease_v1(p_execution_id, p_token);
    RETURN QUERY SELECT dw.foreach_item_json_v1(i) FROM dw.foreach_items i
                  WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.node_attempt = p_attempt
                    AND i.item_index = ANY (p_indexes)
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
           -- A fresh interruption bound too, as a redriven node gets.
           interruptions = CASE WHEN i.status = 'Succeeded' AND i.item = EXCLUDED.item THEN i.interruptions
                                ELSE 0 END,
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

-- Items start their next attempt (Running, attempts + 1); answers (index, attempt) for each.
CREATE OR REPLACE FUNCTION dw.start_item_attempts_v1(
    p_execution_id uuid, p_token bigint, p_node_id text, p_indexes integer[]
) RETURNS TABLE (item_index integer, attempt integer) LANGUAGE plpgsql AS $$
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

-- As dw.start_item_attempts_v1, but no item starts while an operator's cancel or suspension of the
-- run is pending: no rows then (the worker learns the request and stops starting items). v1
-- started them (race review, 2026-12-07: in-process items began 153 ms after a suspension's 202).
CREATE OR REPLACE FUNCTION dw.start_item_attempts_v2(
    p_execution_id uuid, p_token bigint, p_node_id text, p_indexes integer[]
) RETURNS TABLE (item_index integer, attempt integer) LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    IF v_e.cancel_requested_at IS NOT NULL OR v_e.suspend_requested_at IS NOT NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM dw.start_item_attempts_v1(p_execution_id, p_token, p_node_id, p_indexes);
END;
$$;

-- One item attempt's outcome (fenced): the attempt row (with the item's index), the item's new
-- state (Succeeded, Failed, Waiting: a retry due at p_next_attempt_at, or Cancelled) and the external
-- resources its action reported (linked to node#index).
DROP FUNCTION IF EXISTS dw.record_item_attempt_v1(uuid, bigint, text, integer, integer, text, text, text, jsonb,
                                                  jsonb, jsonb, timestamptz, timestamptz, text, timestamptz);
-- v3 (over v2): p_interrupted, an item attempt its worker cut short: marked on the attempt row,
-- counted in the item's interruptions, and not against its retry budget (attempt_base moves past it).
CREATE OR REPLACE FUNCTION dw.record_item_attempt_v3(
    p_execution_id uuid, p_token bigint, p_node_id text, p_index integer, p_attempt integer,
    p_action_type text, p_attempt_status text, p_item_status text, p_parameters jsonb, p_outputs jsonb,
    p_error jsonb, p_start_time timestamptz, p_end_time timestamptz, p_worker text, p_next_attempt_at timestamptz,
    p_resource_links jsonb, p_interrupted boolean
) RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
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
           ended_at = CASE WHEN p_item_status <> 'Waiting' THEN p_end_time END,
           -- An interrupted attempt does not use up the item's retry budget.
           interruptions = i.interruptions + CASE WHEN p_interrupted THEN 1 ELSE 0 END,
           attempt_base = i.attempt_base + CASE WHEN p_interrupted THEN 1 ELSE 0 END
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.item_index = p_index
       AND i.status = 'Running' AND i.attempts = p_attempt;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'item % of node % of execution % has no attempt % in flight', p_index, p_node_id,
            p_execution_id, p_attempt USING ERRCODE = 'DW011';
    END IF;
    INSERT INTO dw.action_executions (execution_id, node_id, item_index, action_type, attempt, status, parameters,
                                      outputs, error, worker, start_time, end_time, interrupted)
    VALUES (p_execution_id, p_node_id, p_index, p_action_type, p_attempt, p_attempt_status, p_parameters,
            p_outputs, p_error, p_worker, p_start_time, p_end_time, p_interrupted);
    IF p_resource_links IS NOT NULL THEN
        FOR v_link IN SELECT * FROM jsonb_array_elements(p_resource_links) LOOP
            PERFORM dw.link_external_resource_v1(
                v_e.tenant_id, v_link ->> 'resourceType', v_link ->> 'resourceKey', v_link ->> 'externalId',
                v_e.workflow_id, p_execution_id, p_node_id || '#' || p_index, v_link -> 'data');
        END LOOP;
    END IF;
END;
$$;

-- v2: kept for workers of the previous release during a rolling upgrade (no interruption).
CREATE OR REPLACE FUNCTION dw.record_item_attempt_v2(
    p_execution_id uuid, p_token bigint, p_node_id text, p_index integer, p_attempt integer,
    p_action_type text, p_attempt_status text, p_item_status text, p_parameters jsonb, p_outputs jsonb,
    p_error jsonb, p_start_time timestamptz, p_end_time timestamptz, p_worker text, p_next_attempt_at timestamptz,
    p_resource_links jsonb
) RETURNS void LANGUAGE sql AS $$
    SELECT dw.record_item_attempt_v3(p_execution_id, p_token, p_node_id, p_index, p_attempt, p_action_type,
        p_attempt_status, p_item_status, p_parameters, p_outputs, p_error, p_start_time, p_end_time, p_worker,
        p_next_attempt_at, p_resource_links, false);
$$;

-- A forEach that stopped (at its first failure, failFast, or when its items' outputs passed the
-- limit): the items that did not run are Cancelled, and so are the children of items in flight.
-- p_why says why, in the items' errors: "another item failed (failFast)" was written whatever
-- stopped it, also under onItemFailure continue when the outputs had grown too large.
CREATE OR REPLACE FUNCTION dw.stop_items_v2(p_execution_id uuid, p_token bigint, p_node_id text, p_why text)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_e dw.executions;
    v_rows integer;
BEGIN
    v_e := dw.check_lease_v1(p_execution_id, p_token);
    -- Items in flight: their attempt is Cancelled, and so is the child of one that has one.
    INSERT INTO dw.action_executions (execution_id, node_id, item_index, action_type, attempt, status, error,
                                      start_time, end_time)
    SELECT i.execution_id, i.node_id, i.item_index, i.action_type, i.attempts, 'Cancelled',
           jsonb_build_object('code', 'item_cancelled', 'message', 'cancelled: ' || p_why),
           COALESCE(i.started_at, now()), now()
      FROM dw.foreach_items i
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id AND i.status = 'Running'
    ON CONFLICT ON CONSTRAINT action_executions_attempt_key DO NOTHING;
    UPDATE dw.foreach_items i
       SET status = 'Cancelled', ended_at = now(), next_attempt_at = NULL,
           error = CASE WHEN i.status = 'Running'
                        THEN jsonb_build_object('code', 'item_cancelled', 'message', 'cancelled: ' || p_why)
                        ELSE jsonb_build_object('code', 'not_run', 'message', 'the forEach stopped: ' || p_why) END
     WHERE i.execution_id = p_execution_id AND i.node_id = p_node_id
       AND i.status IN ('Pending', 'Waiting', 'Running');
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    PERFORM dw.queue_cancel_children_v1(p_execution_id, v_e.queue);
    RETURN v_rows;
END;
$$;

-- v1: kept for workers of the previous release during a rolling upgrade (failFast's words).
CREATE OR REPLACE FUNCTION dw.stop_items_v1(p_execution_id uuid, p_token bigint, p_node_id text)
    RETURNS integer LANGUAGE sql AS $$
    SELECT dw.stop_items_v2(p_execution_id, p_token, p_node_id, 'another item failed (failFast)');
$$;
