-- The start time a run held back by its workflow's rateLimitPerMinute was first promised
-- (dw.admit_root_run_v1). Promises are kept in priority order: a run of higher priority held back
-- later goes ahead of the lower ones waiting, and they move back one turn each; this bounds how far:
-- a run is never moved to more than a minute after its first promise. NULL: its promise was never
-- moved (or the run waits for none). A nullable column without a default: no table rewrite.
ALTER TABLE dw.executions ADD COLUMN rate_first_slot_at timestamptz;
