-- name: begin_child
-- A subworkflow node starts its child (or is refused: error) in its attempt's fenced transaction.
SELECT wait, error FROM dw.begin_child_v2(%(id)s, %(token)s, %(node_id)s, %(attempt)s, %(workflow_id)s,
    %(version)s, %(input)s, %(parameters)s, %(wait)s, %(max_depth)s);

-- name: children_to_cancel
-- The unfinished children a parent that ended must cancel.
SELECT execution_id FROM dw.children_to_cancel_v1(%(id)s);

-- name: parent_end
-- How a parent whose children are being cancelled ended, and who cancelled it and why (the cascade's
-- reason names them).
SELECT status, cancel_requested_by, cancel_reason FROM dw.executions WHERE id = %(id)s;

-- name: load_items
-- A forEach node attempt's items (none before it wrote them).
SELECT i AS item FROM dw.load_items_v1(%(id)s, %(token)s, %(node_id)s, %(attempt)s) AS i;

-- name: load_items_at
-- Some items of a forEach node attempt (those at the indexes), in order.
SELECT i AS item FROM dw.load_items_at_v1(%(id)s, %(token)s, %(node_id)s, %(attempt)s, %(indexes)s) AS i;

-- name: begin_items
-- A forEach node attempt writes its items; answers every item, in order.
SELECT i AS item FROM dw.begin_items_v1(%(id)s, %(token)s, %(node_id)s, %(attempt)s, %(action_type)s,
    %(items)s) AS i;

-- name: start_item_attempts
-- Items start their next attempt.
SELECT item_index, attempt FROM dw.start_item_attempts_v2(%(id)s, %(token)s, %(node_id)s, %(indexes)s);

-- name: record_item_attempt
-- One item attempt's outcome, the item's new state and the resources its action reported.
SELECT dw.record_item_attempt_v3(%(id)s, %(token)s, %(node_id)s, %(index)s, %(attempt)s, %(action_type)s,
    %(attempt_status)s, %(item_status)s, %(parameters)s, %(outputs)s, %(error)s, %(start_time)s, %(end_time)s,
    %(worker)s, %(next_attempt_at)s, %(resource_links)s, %(interrupted)s);

-- name: begin_item_child
-- A forEach item starts its child (or is refused: error), fenced.
SELECT item, error FROM dw.begin_item_child_v2(%(id)s, %(token)s, %(node_id)s, %(index)s, %(attempt)s,
    %(workflow_id)s, %(version)s, %(input)s, %(wait)s, %(max_depth)s, %(worker)s);

-- name: stop_items
-- The items of a forEach that stopped and never ran are Cancelled, with why it stopped.
SELECT dw.stop_items_v2(%(id)s, %(token)s, %(node_id)s, %(why)s) AS stopped;

-- name: list_children
-- An execution's children, oldest first: after (%(after_created)s, %(after_id)s) (NULL: from the
-- first), at most %(limit)s (NULL: all).
SELECT e.id, e.workflow_id, e.workflow_version, e.parent_node_id, e.status, e.created_at,
       e.started_at AS start_time, e.ended_at AS end_time
  FROM dw.executions e
 WHERE e.parent_execution_id = %(id)s
   AND (%(after_created)s::timestamptz IS NULL OR (e.created_at, e.id) > (%(after_created)s, %(after_id)s::uuid))
 ORDER BY e.created_at, e.id
 LIMIT %(limit)s;

-- name: count_children
-- How many children an execution has.
SELECT count(*) AS n FROM dw.executions e WHERE e.parent_execution_id = %(id)s;

-- name: execution_tree
-- The tree an execution belongs to, each child under its parent (in the order of their paths, the
-- execution ids from the root down): after the run %(after)s (NULL: from the root), at most
-- %(limit)s (NULL: all). A run of another tree, or one gone, ends the tree: nothing comes after it.
WITH root AS (SELECT e.root_execution_id AS id FROM dw.executions e WHERE e.id = %(id)s),
     past AS (SELECT a.path FROM dw.executions a JOIN root ON a.root_execution_id = root.id
               WHERE a.id = %(after)s::uuid)
SELECT t.execution_id AS id, t.parent_execution_id, t.parent_node_id, t.depth, t.workflow_id,
       t.workflow_version, t.status, t.created_at, t.started_at AS start_time, t.ended_at AS end_time,
       t.error_code
  FROM dw.v_execution_tree t
 WHERE t.root_execution_id = (SELECT root.id FROM root)
   AND (%(after)s::uuid IS NULL OR t.path > (SELECT past.path FROM past))
 ORDER BY t.path
 LIMIT %(limit)s;

-- name: list_items
-- A forEach node's items after index %(after)s (-1: from the first), in order, at most %(limit)s
-- (NULL: all).
SELECT i.item_index AS index, i.status, i.attempts, i.node_attempt, i.outputs, i.error, i.started_at,
       i.ended_at
  FROM dw.foreach_items i
 WHERE i.execution_id = %(id)s AND i.node_id = %(node_id)s AND i.item_index > %(after)s
 ORDER BY i.item_index
 LIMIT %(limit)s;
