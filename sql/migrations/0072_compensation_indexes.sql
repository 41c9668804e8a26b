-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to dw.executions and
-- Procrastinate's job table (starts, fetches, acquires and records go on during a rolling upgrade).
-- Built in migration 0071's transaction, after its ALTER TABLE dw.executions, every read and write of
-- the runs, and every job fetch, would wait for both scans (a review). An interrupted build leaves
-- an invalid index behind: each is dropped first (if there) and built again.

-- The runs whose compensation is under way, for recovery (a run whose dw.compensate job was lost
-- gets another). Partial: other runs' rows are not in it, and an UPDATE that leaves the column
-- alone stays a HOT update.
DROP INDEX CONCURRENTLY IF EXISTS dw.executions_compensating_idx;
CREATE INDEX CONCURRENTLY executions_compensating_idx ON dw.executions (ended_at)
    WHERE compensation_status = 'Compensating';

-- A run's dw.compensate jobs, by run (recovery's "has it a job?"). Partial: no other job is in it.
DROP INDEX CONCURRENTLY IF EXISTS dw_procrastinate_jobs_compensate_idx;
CREATE INDEX CONCURRENTLY dw_procrastinate_jobs_compensate_idx ON procrastinate_jobs ((args ->> 'run_id'))
    WHERE task_name = 'dw.compensate';
