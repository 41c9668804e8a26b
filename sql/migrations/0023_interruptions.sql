-- Issue 16: a restart costs nothing. An attempt cut short by its worker (handed back on shutdown
-- after the grace period, or lost with a killed worker) is recorded as interrupted: the attempt row
-- says so, the node (or forEach item) counts it in `interruptions`, and it does not use up the retry
-- budget (attempt_base moves past it, as a redrive's does). Interruptions have their own bound
-- (DW_MAX_INTERRUPTIONS), so an attempt that keeps killing its worker still ends.
-- Constant defaults: no table rewrite, and no backfill that would hold the attempt table while old
-- workers write to it (attempt rows recorded before have interrupted = false; their error code,
-- attempt_interrupted, says what they were).

ALTER TABLE dw.action_executions ADD COLUMN interrupted boolean NOT NULL DEFAULT false;
ALTER TABLE dw.node_states ADD COLUMN interruptions integer NOT NULL DEFAULT 0;
ALTER TABLE dw.foreach_items ADD COLUMN interruptions integer NOT NULL DEFAULT 0;
