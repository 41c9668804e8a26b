-- Compensation (README "Compensation"): an action node may name a compensating action, run after
-- its run ends Failed, TimedOut or Cancelled (orchestration.compensateOn) for each node that had
-- Succeeded, the last to succeed first, one at a time. The run's end queues them
-- (dw.finish_execution_v1 calls dw.queue_compensations_v1: a row per step here, and a
-- dw.compensate job); a worker claims the steps in order (dw.claim_compensation_v1) and records each
-- attempt (dw.record_compensation_v1).
--
-- The run's compensation as a whole: NULL (none: nothing had succeeded that has one, or the
-- definition has none), Compensating, Compensated, CompensationFailed (a step failed for good; the
-- steps after it still ran). No CHECK constraint: every UPDATE of a run row would evaluate it, and
-- the only writers are the procedures above. No default: no table rewrite.
ALTER TABLE dw.executions ADD COLUMN compensation_status text;

-- The ends of a run that compensate, from the plan's compensateOn (NULL: no node of the plan has a
-- compensation), set when the plan is stored (dw.publish_workflow_v1): a run's end that did not
-- succeed reads this, not the plan, whose jsonb (large for a large definition) would be detoasted
-- whole at every such end to find that there is nothing to do. Plans stored before have none.
ALTER TABLE dw.workflow_plans ADD COLUMN compensate_on text[];

CREATE TABLE dw.compensations (
    tenant_id        text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    execution_id     uuid NOT NULL REFERENCES dw.executions (id) ON DELETE CASCADE,
    -- The node whose effect this step undoes.
    node_id          text NOT NULL,
    -- The order the steps run in: 1 first (the node that succeeded last).
    position         integer NOT NULL,
    action_type      text NOT NULL,
    -- Pending: not started, or waiting for its retry (next_attempt_at); Running: an attempt is
    -- claimed (until claimed_until: a worker that died lets it go then); Succeeded; Failed.
    status           text NOT NULL DEFAULT 'Pending',
    attempts         integer NOT NULL DEFAULT 0,
    -- The attempts made before its latest redrive (a compensation_failed letter's): it has
    -- max_attempts more after each.
    attempt_base     integer NOT NULL DEFAULT 0,
    -- Its attempts interrupted (their claim ran out: a worker lost or stopped), which its retry
    -- budget does not count (attempt_base is raised for each); more than 10 fail the step.
    interruptions    integer NOT NULL DEFAULT 0,
    -- The plan's retry policy and timeout for the step, copied when it is queued.
    max_attempts     integer NOT NULL,
    timeout_seconds  double precision NOT NULL,
    -- The last attempt's rendered parameters, its outputs (Succeeded) or its error.
    parameters       jsonb,
    outputs          jsonb,
    error            jsonb,
    next_attempt_at  timestamptz,
    claimed_by       text,
    claimed_until    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    ended_at         timestamptz,
    PRIMARY KEY (execution_id, node_id),
    CONSTRAINT compensations_position_key UNIQUE (execution_id, position),
    CONSTRAINT compensations_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT compensations_status_check CHECK (status IN ('Pending', 'Running', 'Succeeded', 'Failed')),
    CONSTRAINT compensations_attempts_check CHECK (attempts >= 0 AND max_attempts >= 1)
);

ALTER TABLE dw.compensations ENABLE ROW LEVEL SECURITY;
ALTER TABLE dw.compensations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dw.compensations
    USING (tenant_id = current_setting('dw.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('dw.tenant_id', true));
CREATE POLICY all_tenants ON dw.compensations TO dataworkflows_all_tenants
    USING (current_setting('dw.tenant_id', true) = '*')
    WITH CHECK (current_setting('dw.tenant_id', true) = '*');

GRANT SELECT, INSERT, UPDATE, DELETE ON dw.compensations TO dataworkflows_app, dataworkflows_maintenance;

-- A compensation that ended with a step failed for good files a letter (an operator has to undo
-- that node's effect, or redrive the letter to run the failed steps again).
ALTER TABLE dw.dead_letters DROP CONSTRAINT dead_letters_kind_check;
ALTER TABLE dw.dead_letters ADD CONSTRAINT dead_letters_kind_check
    CHECK (kind IN ('node_failed', 'worker_lost', 'job_failed', 'timed_out', 'compensation_failed'));

-- dw.v_executions with each run's compensation (a column added at the end: the view's other columns
-- keep their places).
CREATE OR REPLACE VIEW dw.v_executions AS
SELECT e.id, e.workflow_id, e.workflow_version, e.status, e.principal_id, e.correlation_id,
       e.created_at, e.started_at, e.ended_at,
       extract(epoch FROM e.started_at - e.created_at) AS queue_seconds,
       extract(epoch FROM COALESCE(e.ended_at, now()) - COALESCE(e.started_at, e.created_at)) AS run_seconds,
       e.recovery_count, e.error ->> 'code' AS error_code, e.error ->> 'message' AS error_message,
       e.outputs, e.parent_execution_id, e.parent_node_id, e.root_execution_id, e.depth, e.tenant_id,
       e.priority, e.compensation_status
  FROM dw.executions e
 WHERE dw.tenant_visible(e.tenant_id);

-- Every compensation step, for operators: what undid what, and what is left to undo by hand.
CREATE VIEW dw.v_compensations AS
SELECT c.execution_id, e.workflow_id, e.workflow_version, e.status AS execution_status,
       e.compensation_status, c.position, c.node_id, c.action_type, c.status, c.attempts, c.max_attempts,
       c.error ->> 'code' AS error_code, c.error ->> 'message' AS error_message,
       c.created_at, c.started_at, c.ended_at, c.tenant_id
  FROM dw.compensations c
  JOIN dw.executions e ON e.id = c.execution_id
 WHERE dw.tenant_visible(c.tenant_id);

-- As every reporting view (migration 0062): it belongs to dataworkflows_views, which reads the rows
-- of the tenants the session may see through the tables' row-level security.
GRANT SELECT ON dw.compensations TO dataworkflows_views;
CREATE POLICY views_rows ON dw.compensations FOR SELECT TO dataworkflows_views USING (true);
CREATE POLICY views_visible ON dw.compensations AS RESTRICTIVE FOR SELECT TO dataworkflows_views
    USING (coalesce(tenant_id = ANY ((SELECT dw.visible_tenants_v1())::text[]),
                    (SELECT dw.visible_tenants_v1()) IS NULL));
GRANT CREATE ON SCHEMA dw TO dataworkflows_views;
ALTER VIEW dw.v_compensations OWNER TO dataworkflows_views;
REVOKE CREATE ON SCHEMA dw FROM dataworkflows_views;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_compensations TO dw_reporting;
    END IF;
END;
$$;

-- Its two indexes (the runs whose compensation is under way; a run's dw.compensate jobs) are built
-- CONCURRENTLY by migration 0072: a plain build here, in this transaction, after its ALTER TABLE
-- dw.executions, would hold every read and write of the runs and every job fetch for both scans.
