-- A parked run's wake-up time, kept on the execution (dw.park_execution_v2 sets it): recovery
-- finds a Waiting run whose wake-up job was lost with an index scan over the runs whose time has
-- passed, instead of computing every Waiting run's wake-up time on each pass (about 300 ms for
-- 10,000 runs that wait only for signals). NULL: it wakes only when a signal or decision comes.
ALTER TABLE dw.executions ADD COLUMN wake_at timestamptz;
CREATE INDEX executions_parked_wake_idx ON dw.executions (wake_at) WHERE status = 'Waiting';
-- Runs parked before this migration: the earliest of their retries, timers, timeouts and deadline
-- (what dw.run_wake_at_v1 computes; procedures are created after migrations, so spelled out here).
UPDATE dw.executions e
   SET wake_at = (SELECT min(t) FROM (
           SELECT n.next_attempt_at AS t FROM dw.node_states n
            WHERE n.execution_id = e.id AND n.status IN ('Waiting', 'Ready')
           UNION ALL
           SELECT COALESCE(w.due_at, w.expires_at, now()) FROM dw.waits w
            WHERE w.execution_id = e.id AND w.recorded_at IS NULL AND w.state <> 'withdrawn'
           UNION ALL
           SELECT e.deadline_at) due)
 WHERE e.status = 'Waiting';
