-- A run's compensation undoes its succeeded children too (README "Compensation", "Children"): a
-- child run that Succeeded (a subworkflow node's, a forEach item's) is a step of its parent's
-- compensation, in the order of its end among the parent's nodes; the step starts the child's own
-- compensation (dw.start_child_compensation_v1) and waits for it to end (status Waiting), and the
-- child's end of it records the step and queues the parent's dw.compensate job.
--
-- The child's run; NULL for a node's own compensating action. No foreign key: a child is deleted
-- only with its parent's tree (retention), and a key would lock the child's run row at each insert.
ALTER TABLE dw.compensations ADD COLUMN child_execution_id uuid;

-- Waiting: a child step whose child's compensation is under way.
ALTER TABLE dw.compensations DROP CONSTRAINT compensations_status_check;
ALTER TABLE dw.compensations ADD CONSTRAINT compensations_status_check
    CHECK (status IN ('Pending', 'Running', 'Waiting', 'Succeeded', 'Failed'));

-- A forEach node's children are several steps of one node: a step is its position; a node's own
-- compensating action stays one step per node, and a child one step of one parent (the child's end
-- finds its parent's step by it). dw.compensations is small (a row per step of a run that
-- compensates) and written only by a run's end and its compensation: rebuilt in this transaction.
ALTER TABLE dw.compensations DROP CONSTRAINT compensations_pkey;
ALTER TABLE dw.compensations DROP CONSTRAINT compensations_position_key;
ALTER TABLE dw.compensations ADD CONSTRAINT compensations_pkey PRIMARY KEY (execution_id, position);
CREATE UNIQUE INDEX compensations_node_key ON dw.compensations (execution_id, node_id)
    WHERE child_execution_id IS NULL;
CREATE UNIQUE INDEX compensations_child_key ON dw.compensations (child_execution_id)
    WHERE child_execution_id IS NOT NULL;

-- dw.v_compensations with each step's child run (a column added at the end: the others keep their
-- places).
CREATE OR REPLACE VIEW dw.v_compensations AS
SELECT c.execution_id, e.workflow_id, e.workflow_version, e.status AS execution_status,
       e.compensation_status, c.position, c.node_id, c.action_type, c.status, c.attempts, c.max_attempts,
       c.error ->> 'code' AS error_code, c.error ->> 'message' AS error_message,
       c.created_at, c.started_at, c.ended_at, c.tenant_id, c.child_execution_id
  FROM dw.compensations c
  JOIN dw.executions e ON e.id = c.execution_id
 WHERE dw.tenant_visible(c.tenant_id);
