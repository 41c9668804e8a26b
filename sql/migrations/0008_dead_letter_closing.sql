-- A dead letter is open until a human or the engine closes it: redriven (redriven_at), acknowledged
-- by an operator ("seen, let it go"), or, for a job_failed letter, closed when its run ends (the
-- job raised, recovery resumed the run, and it finished: nothing is left to do).
ALTER TABLE dw.dead_letters
    ADD COLUMN closed_at    timestamptz,
    ADD COLUMN closed_by    text,
    -- acknowledged: an operator closed it; run_ended: its run finished after the job failure.
    ADD COLUMN close_reason text,
    ADD COLUMN close_note   text,
    ADD CONSTRAINT dead_letters_close_reason_check
        CHECK (close_reason IS NULL OR close_reason IN ('acknowledged', 'run_ended')),
    ADD CONSTRAINT dead_letters_closed_consistent_check
        CHECK ((closed_at IS NULL) = (close_reason IS NULL));

DROP INDEX dw.dead_letters_open_idx;
CREATE INDEX dead_letters_open_idx ON dw.dead_letters (created_at DESC)
    WHERE redriven_at IS NULL AND closed_at IS NULL;
CREATE INDEX dead_letters_open_job_failed_idx ON dw.dead_letters (execution_id)
    WHERE kind = 'job_failed' AND redriven_at IS NULL AND closed_at IS NULL;

-- Letters of job failures whose run has ended since: closed, as the engine now does at the end of
-- every run.
UPDATE dw.dead_letters d
   SET closed_at = e.ended_at, close_reason = 'run_ended'
  FROM dw.executions e
 WHERE e.id = d.execution_id AND d.kind = 'job_failed' AND d.redriven_at IS NULL AND d.closed_at IS NULL
   AND e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut');

CREATE OR REPLACE VIEW dw.v_dead_letters AS
SELECT d.id, d.kind, d.execution_id, e.workflow_id, d.node_id, d.attempts, d.error ->> 'code' AS error_code,
       d.error ->> 'message' AS error_message, d.created_at, d.redriven_at, d.redriven_by,
       d.redriven_at IS NULL AND d.closed_at IS NULL AS open,
       d.closed_at, d.closed_by, d.close_reason
  FROM dw.dead_letters d LEFT JOIN dw.executions e ON e.id = d.execution_id;
