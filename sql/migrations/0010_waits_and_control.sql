-- Waits (bookmarks), signals, approvals, and control of running executions (cancel, suspend,
-- resume). A run that waits is rows: no worker, lease or connection is held while it waits.

-- Suspended: an operator paused the run; nothing starts until it is resumed (not final).
ALTER TABLE dw.executions DROP CONSTRAINT executions_status_check;
ALTER TABLE dw.executions
    ADD CONSTRAINT executions_status_check CHECK (status IN
        ('Pending', 'Running', 'Waiting', 'Suspended', 'Succeeded', 'Failed', 'Cancelled', 'TimedOut')),
    -- Control requests, written by the API and read by the worker holding the lease (through the
    -- lease renewal and a NOTIFY on dw_control).
    ADD COLUMN cancel_requested_at  timestamptz,
    ADD COLUMN cancel_requested_by  text,
    ADD COLUMN cancel_reason        text,
    ADD COLUMN suspend_requested_at timestamptz,
    ADD COLUMN suspend_requested_by text,
    ADD COLUMN suspended_at         timestamptz;

-- An attempt that was running when its run was cancelled (or ended otherwise) is recorded as such.
ALTER TABLE dw.action_executions DROP CONSTRAINT action_executions_status_check;
ALTER TABLE dw.action_executions ADD CONSTRAINT action_executions_status_check CHECK (status IN
    ('Succeeded', 'Failed', 'RetriableFailure', 'Skipped', 'TimedOut', 'Cancelled'));

CREATE TABLE dw.waits (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL DEFAULT 'default',
    execution_id     uuid NOT NULL REFERENCES dw.executions (id) ON DELETE CASCADE,
    node_id          text NOT NULL,
    -- The node attempt that waits: the attempt row is written when the wait is resolved.
    attempt          integer NOT NULL,
    -- timer: a delay node; signal: a named signal (optionally with a correlation key); approval: a
    -- human decision. (child: a subworkflow, later.)
    kind             text NOT NULL,
    name             text,
    correlation_key  text,
    -- What the node rendered (its parameters), and what the kind keeps (an approval's approvers and
    -- the number of approvals it needs).
    parameters       jsonb,
    details          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- When a timer fires; when a signal or approval wait gives up (its timeout).
    due_at           timestamptz,
    expires_at       timestamptz,
    -- open: waiting; fired: the timer came due; received: a signal was consumed; approved/rejected:
    -- the approvers decided; timed_out: expired first; withdrawn: the run ended (cancelled, failed).
    state            text NOT NULL DEFAULT 'open',
    consumed_at      timestamptz,
    -- Who or what resolved it: 'timer', 'timeout', 'signal:<signal id>', 'approval', 'run_ended'.
    consumed_by      text,
    result           jsonb,
    -- When the worker wrote the node's outcome from the result (the wait's node checkpoint).
    recorded_at      timestamptz,
    CONSTRAINT waits_kind_check CHECK (kind IN ('timer', 'signal', 'approval')),
    CONSTRAINT waits_state_check CHECK (state IN
        ('open', 'fired', 'received', 'approved', 'rejected', 'timed_out', 'withdrawn')),
    CONSTRAINT waits_consumed_consistent_check CHECK ((state = 'open') = (consumed_at IS NULL)),
    CONSTRAINT waits_timer_due_check CHECK (kind <> 'timer' OR due_at IS NOT NULL),
    CONSTRAINT waits_attempt_check CHECK (attempt > 0)
);
-- A node waits on at most one thing at a time.
CREATE UNIQUE INDEX waits_one_open_per_node ON dw.waits (execution_id, node_id) WHERE state = 'open';
CREATE INDEX waits_execution_idx ON dw.waits (execution_id, created_at);
-- Resolved waits whose node outcome a worker has not written yet.
CREATE INDEX waits_unrecorded_idx ON dw.waits (execution_id)
    WHERE state NOT IN ('open', 'withdrawn') AND recorded_at IS NULL;
-- "What may alice decide": open approvals by approver.
CREATE INDEX waits_open_approvers_idx ON dw.waits USING gin ((details -> 'approvers'))
    WHERE kind = 'approval' AND state = 'open';

-- The signal inbox. A signal that arrives before its wait is kept here (buffered) and consumed when
-- the wait starts; the same signal id twice is one signal.
CREATE TABLE dw.signals (
    id               bigserial PRIMARY KEY,
    execution_id     uuid NOT NULL REFERENCES dw.executions (id) ON DELETE CASCADE,
    name             text NOT NULL,
    signal_id        text NOT NULL,
    correlation_key  text,
    payload          jsonb NOT NULL DEFAULT 'null'::jsonb,
    sent_by          text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    consumed_at      timestamptz,
    -- The wait that consumed it.
    wait_id          uuid,
    CONSTRAINT signals_signal_id_key UNIQUE (execution_id, signal_id),
    CONSTRAINT signals_consumed_consistent_check CHECK ((consumed_at IS NULL) = (wait_id IS NULL))
);
CREATE INDEX signals_buffered_idx ON dw.signals (execution_id, name, id) WHERE consumed_at IS NULL;

-- One decision per approver per approval.
CREATE TABLE dw.approval_decisions (
    wait_id     uuid NOT NULL REFERENCES dw.waits (id) ON DELETE CASCADE,
    principal   text NOT NULL,
    -- approve | reject
    decision    text NOT NULL,
    comment     text,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (wait_id, principal),
    CONSTRAINT approval_decisions_decision_check CHECK (decision IN ('approve', 'reject'))
);

-- What each waiting run waits for, since when and until when (psql: SELECT * FROM dw.v_waiting_runs).
CREATE VIEW dw.v_waiting_runs AS
SELECT w.execution_id, e.workflow_id, e.status AS execution_status, w.node_id, w.kind, w.name,
       w.correlation_key, w.id AS wait_id, w.created_at AS waiting_since,
       extract(epoch FROM now() - w.created_at) AS waiting_seconds,
       w.due_at, w.expires_at
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.state = 'open';

-- Approvals nobody has finished deciding, with who may decide and how far the decision is.
CREATE VIEW dw.v_pending_approvals AS
SELECT w.id AS approval_id, w.execution_id, e.workflow_id, w.node_id, w.details ->> 'title' AS title,
       ARRAY(SELECT jsonb_array_elements_text(w.details -> 'approvers')) AS approvers,
       (w.details ->> 'required')::integer AS required,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'approve') AS approvals,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'reject') AS rejections,
       w.created_at AS requested_at, w.expires_at
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.kind = 'approval' AND w.state = 'open';

-- Suspended runs are in flight too.
CREATE OR REPLACE VIEW dw.v_workflow_health AS
SELECT w.id AS workflow_id, w.status AS workflow_status, p.period,
       count(e.id) AS executions,
       count(e.id) FILTER (WHERE e.status = 'Succeeded') AS succeeded,
       count(e.id) FILTER (WHERE e.status IN ('Failed', 'TimedOut', 'Cancelled')) AS failed,
       count(e.id) FILTER (WHERE e.status IN ('Pending', 'Running', 'Waiting', 'Suspended')) AS in_flight,
       round(CASE WHEN count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) = 0 THEN NULL
             ELSE (count(e.id) FILTER (WHERE e.status = 'Succeeded'))::numeric
                  / count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) END, 4)::double precision AS success_rate,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.ended_at - e.started_at))
           FILTER (WHERE e.ended_at IS NOT NULL) AS p95_seconds
  FROM dw.workflows w
 CROSS JOIN (VALUES ('1 hour', interval '1 hour'), ('1 day', interval '1 day')) AS p(period, span)
  LEFT JOIN dw.executions e ON e.workflow_id = w.id AND e.created_at > now() - p.span
 GROUP BY w.id, w.status, p.period;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_waiting_runs, dw.v_pending_approvals TO dw_reporting;
    END IF;
END;
$$;

-- Replaced by v4 (cancel/suspend requests, Suspended runs, waits): a v3 caller would take a
-- Suspended run. As with 0009, stop workers of the previous release before migrating.
DROP FUNCTION IF EXISTS dw.try_acquire_execution_v3(uuid, text, double precision);
DROP FUNCTION IF EXISTS dw.renew_lease_v1(uuid, bigint, double precision);
DROP FUNCTION IF EXISTS dw.park_execution_v1(uuid, bigint, timestamptz, text);

-- The waiting-runs gauge counts these often.
CREATE INDEX executions_waiting_idx ON dw.executions (status) WHERE status IN ('Waiting', 'Suspended');
