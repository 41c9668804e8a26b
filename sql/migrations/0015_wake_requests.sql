-- A run a worker holds can be woken (a child of one of its forEach items ended) just as the worker
-- decides to park it, before the NOTIFY reached it: the wake is kept on the row, so that parking
-- then queues the run at once instead of waiting for nothing.
ALTER TABLE dw.executions ADD COLUMN wake_requested_at timestamptz;
