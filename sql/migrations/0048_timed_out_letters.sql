-- A root run that ran past its workflowTimeout ended TimedOut with no dead letter, and nothing could
-- carry it on: redrive needs a letter, and a new run repeats every node that had succeeded, side
-- effects included (Conductor retries a timed-out workflow, Temporal resets one). Such a run now
-- files a timed_out letter (dw.finish_execution_v1), which dw.redrive_dead_letter_v1 redrives as
-- it redrives a failed run's: the nodes its end cut short go again under a fresh deadline.
ALTER TABLE dw.dead_letters DROP CONSTRAINT dead_letters_kind_check;
ALTER TABLE dw.dead_letters ADD CONSTRAINT dead_letters_kind_check
    CHECK (kind IN ('node_failed', 'worker_lost', 'job_failed', 'timed_out'));
