-- A forEach item whose child runs detached (subworkflow.waitForCompletion false) succeeds when its
-- child starts, and nobody takes the child's end. dw.child_redrive_refusal_v1 read any item that
-- was no longer Running as one that had taken its child's end, so a detached item child's letter
-- could not be redriven ("has taken its end"), and a redrive of its parent closed it as superseded.
-- The item now says it is detached (dw.begin_item_child_v1 sets it); items written before are found
-- by their attempt row, which records waitForCompletion false and the child it started.
ALTER TABLE dw.foreach_items ADD COLUMN detached boolean NOT NULL DEFAULT false;
UPDATE dw.foreach_items i SET detached = true
 WHERE i.child_execution_id IS NOT NULL
   AND EXISTS (SELECT 1 FROM dw.action_executions a
                WHERE a.execution_id = i.execution_id AND a.node_id = i.node_id AND a.item_index = i.item_index
                  AND a.parameters ->> 'waitForCompletion' = 'false'
                  AND a.outputs ->> 'executionId' = i.child_execution_id::text);
