-- name: claim_compensation
-- The next step of a run's compensation for this worker, or why there is none now.
SELECT outcome, node_id, action_type, attempt, tries, due_at FROM dw.claim_compensation_v1(%(id)s, %(worker)s);

-- name: record_compensation
-- Records a claimed step's attempt (fenced by its attempt number); whether it was recorded.
SELECT dw.record_compensation_v2(%(id)s, %(node_id)s, %(attempt)s, %(outcome)s, %(parameters)s, %(outputs)s,
                                 %(error)s, %(retry_at)s, %(resource_links)s) AS recorded;

-- name: compensation_scope
-- What a step's templates read: the run and its nodes' outputs and errors, and why it is undone.
SELECT workflow_id, workflow_version, status, trigger, principal_id, error, nodes, errors, compensation
  FROM dw.compensation_scope_v2(%(id)s);

-- name: defer_compensation_job
-- Queues the run's dw.compensate job again, at a step's retry time.
SELECT dw.defer_compensation_job_v1(%(id)s, %(at)s) AS job_id;

-- name: list_compensations
-- A run's compensation steps, in the order they run.
SELECT node_id, position, action_type, status, attempts, max_attempts, parameters, outputs, error,
       next_attempt_at, child_execution_id, created_at, started_at, ended_at
  FROM dw.compensations
 WHERE execution_id = %(id)s
 ORDER BY position;
