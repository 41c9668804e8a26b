-- Issue 17 (context size): a node's outputs are loaded into its worker only when something later in
-- the run can read them: a template, condition or expression that names the node, or one that reads
-- `nodes` as a whole (then every node's). The plan says which (planning.outputs_used); each node's
-- checkpoint carries it from the run's start, so dw.try_acquire_execution_v5 leaves the others'
-- outputs in the table (PostgreSQL keeps large values out of line, TOAST: they are not even read).
-- A constant default: no table rewrite; runs started before keep loading every output.
ALTER TABLE dw.node_states ADD COLUMN outputs_used boolean NOT NULL DEFAULT true;
