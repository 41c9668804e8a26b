-- Issue 16: runs that nobody picks up still end. Every run now has a deadline (the definition's
-- workflowTimeout, else the server's default, DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS: one hour), and
-- dw.time_out_overdue_v1 times out a run whose deadline passed while no worker held it (throttled,
-- parked, suspended, or no worker running). This index finds them without reading finished runs.
CREATE INDEX executions_overdue_idx ON dw.executions (deadline_at)
    WHERE status IN ('Pending', 'Running', 'Waiting', 'Suspended') AND deadline_at IS NOT NULL;
