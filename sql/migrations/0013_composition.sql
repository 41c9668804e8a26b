-- Composition: subworkflows (a child started from SQL in its parent's checkpoint, a parent node
-- waiting on its child) and forEach nodes (one checkpointed row per item).

-- The tree a child belongs to: its root (the execution nobody started; itself for a root) and its
-- path (the execution ids from the root down to itself, so that ordering by it lists every child
-- under its parent); and the queue its run jobs go to (a procedure that wakes a run, such as a
-- child's end waking its parent, needs it).
ALTER TABLE dw.executions
    ADD COLUMN root_execution_id uuid,
    ADD COLUMN path uuid[],
    ADD COLUMN queue text NOT NULL DEFAULT 'executions';
UPDATE dw.executions SET root_execution_id = id, path = ARRAY[id];
ALTER TABLE dw.executions ALTER COLUMN root_execution_id SET NOT NULL, ALTER COLUMN path SET NOT NULL;
CREATE INDEX executions_parent_idx ON dw.executions (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
CREATE INDEX executions_root_idx ON dw.executions (root_execution_id);

-- child: a subworkflow node waits for its child execution (completed: the child ended, its status,
-- outputs and error in the result; started: waitForCompletion false, resolved at once).
ALTER TABLE dw.waits DROP CONSTRAINT waits_kind_check;
ALTER TABLE dw.waits DROP CONSTRAINT waits_state_check;
ALTER TABLE dw.waits
    ADD CONSTRAINT waits_kind_check CHECK (kind IN ('timer', 'signal', 'approval', 'child')),
    ADD CONSTRAINT waits_state_check CHECK (state IN
        ('open', 'fired', 'received', 'approved', 'rejected', 'timed_out', 'withdrawn', 'completed', 'started')),
    -- The child a child wait waits for.
    ADD COLUMN child_execution_id uuid REFERENCES dw.executions (id) ON DELETE SET NULL;
CREATE INDEX waits_child_idx ON dw.waits (child_execution_id) WHERE child_execution_id IS NOT NULL;

-- A forEach node's items: one row per item, its state and attempts, so that a run resumed after a
-- crash redoes no finished item. Rows belong to the node attempt that runs them (node_attempt); a
-- later attempt of the node (a redrive) keeps the items that succeeded with the same value.
CREATE TABLE dw.foreach_items (
    execution_id     uuid NOT NULL REFERENCES dw.executions (id) ON DELETE CASCADE,
    node_id          text NOT NULL,
    item_index       integer NOT NULL,
    item             jsonb,
    node_attempt     integer NOT NULL,
    -- What runs for the item (the forEach's action type).
    action_type      text NOT NULL,
    status           text NOT NULL DEFAULT 'Pending',
    attempts         integer NOT NULL DEFAULT 0,
    -- Attempts made for earlier node attempts: the item's retry budget counts from here.
    attempt_base     integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    outputs          jsonb,
    error            jsonb,
    started_at       timestamptz,
    ended_at         timestamptz,
    PRIMARY KEY (execution_id, node_id, item_index),
    CONSTRAINT foreach_items_status_check CHECK (status IN
        ('Pending', 'Running', 'Waiting', 'Succeeded', 'Failed', 'Cancelled')),
    CONSTRAINT foreach_items_index_check CHECK (item_index >= 0)
);

-- Every item attempt is an attempt row, with its item's index (NULL for a node's own attempts).
ALTER TABLE dw.action_executions ADD COLUMN item_index integer;
ALTER TABLE dw.action_executions DROP CONSTRAINT action_executions_attempt_key;
ALTER TABLE dw.action_executions
    ADD CONSTRAINT action_executions_attempt_key UNIQUE NULLS NOT DISTINCT (execution_id, node_id, item_index, attempt);

CREATE OR REPLACE VIEW dw.v_executions AS
SELECT e.id, e.workflow_id, e.workflow_version, e.status, e.principal_id, e.correlation_id,
       e.created_at, e.started_at, e.ended_at,
       extract(epoch FROM e.started_at - e.created_at) AS queue_seconds,
       extract(epoch FROM COALESCE(e.ended_at, now()) - COALESCE(e.started_at, e.created_at)) AS run_seconds,
       e.recovery_count, e.error ->> 'code' AS error_code, e.error ->> 'message' AS error_message,
       e.outputs, e.parent_execution_id, e.parent_node_id, e.root_execution_id, e.depth
  FROM dw.executions e;

-- A run's whole tree: SELECT * FROM dw.v_execution_tree WHERE root_execution_id = '...' ORDER BY path.
CREATE VIEW dw.v_execution_tree AS
SELECT e.root_execution_id, e.id AS execution_id, e.parent_execution_id, e.parent_node_id, e.depth,
       e.workflow_id, e.workflow_version, e.status, e.created_at, e.started_at, e.ended_at,
       e.error ->> 'code' AS error_code, e.outputs, e.path
  FROM dw.executions e;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_execution_tree TO dw_reporting;
    END IF;
END;
$$;
