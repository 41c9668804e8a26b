-- Issue 17: the worker's fetch takes a run's lease in the job's own transaction (dw.fetch_run_job_v1).
-- The lease now says which Procrastinate job's fetch took it (NULL: a worker's own acquire), so
-- that a lease whose fetch lost its answer can be given back exactly, never one that another fetch
-- of the same worker process took for the same run (dw.release_fetched_lease_v1). No default: no
-- table rewrite.
ALTER TABLE dw.executions ADD COLUMN lease_job_id bigint;
