-- The open steps of a run's compensation, in order (dw.claim_compensation_v1's next step): by
-- (execution_id, position) alone each claim read every ended step before the next open one, and a
-- forEach's children, many steps of one run, each a job of the parent's after its child's
-- compensation, made that quadratic over the run (a review: 4,000 children with nothing to undo
-- took one claim 13 s in one transaction). Only the open steps are in this index: its first entry
-- is the next step. dw.compensations is small and not one of the hot tables: built in place.
CREATE INDEX compensations_open_idx ON dw.compensations (execution_id, position)
    WHERE status IN ('Pending', 'Running', 'Waiting');
