-- A forEach can run a subworkflow per item: the item's child execution, started from SQL like a
-- subworkflow node's, and resolved by the child's end (dw.child_ended_v1).
ALTER TABLE dw.foreach_items
    ADD COLUMN child_execution_id uuid REFERENCES dw.executions (id) ON DELETE SET NULL;
CREATE INDEX foreach_items_child_idx ON dw.foreach_items (child_execution_id) WHERE child_execution_id IS NOT NULL;
