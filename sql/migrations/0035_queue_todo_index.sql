-- no-transaction: CREATE INDEX CONCURRENTLY builds without holding writes to Procrastinate's job table
-- (starts and fetches go on during a rolling upgrade). An interrupted build leaves an invalid index
-- behind, and this migration is recorded only once its statements succeeded, so the index is dropped
-- first (if there) and built again when the migration runs again.

-- A worker's fetch of its queue walks that queue's queued jobs only (dw.fetch_jobs_v1, one queue).
--
-- Why: the fetch walks the queued jobs of every queue in (priority, id) order (Procrastinate's
-- procrastinate_jobs_priority_idx_v1) and passes over those of other queues. Measured: with 50,000
-- jobs queued on a queue no worker was reading, a fetch of another queue that found nothing cost
-- 5-6 ms instead of 0.1, for every fetch of every worker of every other queue (DW_QUEUE: runs of a
-- queue only its own workers read stay there). Only queued jobs: a job leaves the index when it is
-- fetched, and a start adds one entry to it.
--
-- Its predicate says `status <= 'todo'`, which is `status = 'todo'` ('todo' is the first value of
-- procrastinate_job_status; tests/integration/test_procedures.py checks it), so that the fetch, which
-- says the same, can be served by this index only. Said as `= 'todo'`, Procrastinate's priority index
-- serves it too, and the fetch's generic plan estimates a queue's share of the table from the number
-- of queues in it: a table holding one queue's backlog, and none of the queue fetched, is one queue
-- and all of it that queue's, and the planner walks every queue's jobs again.
DROP INDEX CONCURRENTLY IF EXISTS dw_procrastinate_jobs_queue_todo_idx;
CREATE INDEX CONCURRENTLY dw_procrastinate_jobs_queue_todo_idx ON procrastinate_jobs (queue_name, priority DESC, id)
    WHERE status <= 'todo';
