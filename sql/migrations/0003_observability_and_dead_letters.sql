-- Dead letters, the live event feed, reporting views and a read-only reporting role.

-- Why a node or run ended without finishing its work: 'run_ended' marks nodes that were Skipped or
-- Cancelled because the run stopped (fail-fast, timeout, worker lost), as opposed to dead-path
-- elimination; a redrive restores exactly those.
ALTER TABLE dw.node_states
    ADD COLUMN end_reason text,
    -- Attempts before the latest redrive: the retry budget counts from here.
    ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;

CREATE TABLE dw.dead_letters (
    id            bigserial PRIMARY KEY,
    -- node_failed: a node failed (permanently, or retries exhausted) and nothing handled it;
    -- worker_lost: the run's worker died more often than DW_MAX_RECOVERIES;
    -- job_failed: a Procrastinate job raised.
    kind          text NOT NULL,
    execution_id  uuid REFERENCES dw.executions (id),
    node_id       text,
    job_id        bigint,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    error         jsonb,
    attempts      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    redriven_at   timestamptz,
    redriven_by   text,
    CONSTRAINT dead_letters_kind_check CHECK (kind IN ('node_failed', 'worker_lost', 'job_failed'))
);
CREATE INDEX dead_letters_open_idx ON dw.dead_letters (created_at DESC) WHERE redriven_at IS NULL;
CREATE INDEX dead_letters_execution_idx ON dw.dead_letters (execution_id);

-- Live events: one NOTIFY per event on a channel per execution, so a stream listens only to the
-- run it follows. The payload is the event id; readers fetch rows (a payload is limited to 8 kB).
CREATE FUNCTION dw.notify_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dw_events_' || replace(NEW.execution_id::text, '-', ''), NEW.id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER execution_events_notify AFTER INSERT ON dw.execution_events
    FOR EACH ROW EXECUTE FUNCTION dw.notify_execution_event();

-- Reporting views (psql, BI tools). Durations are in seconds.
CREATE VIEW dw.v_executions AS
SELECT e.id, e.workflow_id, e.workflow_version, e.status, e.principal_id, e.correlation_id,
       e.created_at, e.started_at, e.ended_at,
       extract(epoch FROM e.started_at - e.created_at) AS queue_seconds,
       extract(epoch FROM COALESCE(e.ended_at, now()) - COALESCE(e.started_at, e.created_at)) AS run_seconds,
       e.recovery_count, e.error ->> 'code' AS error_code, e.error ->> 'message' AS error_message
  FROM dw.executions e;

CREATE VIEW dw.v_node_durations AS
SELECT n.execution_id, e.workflow_id, n.node_id, n.action_type, n.status, n.attempts,
       n.started_at, n.ended_at, extract(epoch FROM n.ended_at - n.started_at) AS seconds
  FROM dw.node_states n JOIN dw.executions e ON e.id = n.execution_id;

CREATE VIEW dw.v_action_stats AS
SELECT a.action_type,
       count(*) AS attempts,
       count(*) FILTER (WHERE a.status = 'Succeeded') AS succeeded,
       count(*) FILTER (WHERE a.status <> 'Succeeded') AS failed,
       round((count(*) FILTER (WHERE a.status <> 'Succeeded'))::numeric / count(*), 4)::double precision
           AS failure_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.end_time - a.start_time)) AS p50_seconds,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM a.end_time - a.start_time)) AS p95_seconds
  FROM dw.action_executions a
 GROUP BY a.action_type;

CREATE VIEW dw.v_queue_depth AS
SELECT j.queue_name, j.status::text AS status, count(*) AS jobs,
       extract(epoch FROM now() - min(COALESCE(j.scheduled_at, ev.at))) AS oldest_seconds
  FROM procrastinate_jobs j
  LEFT JOIN LATERAL (SELECT min(pe.at) AS at FROM procrastinate_events pe WHERE pe.job_id = j.id) ev ON true
 WHERE j.status IN ('todo', 'doing')
 GROUP BY j.queue_name, j.status;

CREATE VIEW dw.v_workflow_health AS
SELECT w.id AS workflow_id, w.status AS workflow_status, p.period,
       count(e.id) AS executions,
       count(e.id) FILTER (WHERE e.status = 'Succeeded') AS succeeded,
       count(e.id) FILTER (WHERE e.status IN ('Failed', 'TimedOut', 'Cancelled')) AS failed,
       count(e.id) FILTER (WHERE e.status IN ('Pending', 'Running', 'Waiting')) AS in_flight,
       round(CASE WHEN count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) = 0 THEN NULL
             ELSE (count(e.id) FILTER (WHERE e.status = 'Succeeded'))::numeric
                  / count(e.id) FILTER (WHERE e.ended_at IS NOT NULL) END, 4)::double precision AS success_rate,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.ended_at - e.started_at))
           FILTER (WHERE e.ended_at IS NOT NULL) AS p95_seconds
  FROM dw.workflows w
 CROSS JOIN (VALUES ('1 hour', interval '1 hour'), ('1 day', interval '1 day')) AS p(period, span)
  LEFT JOIN dw.executions e ON e.workflow_id = w.id AND e.created_at > now() - p.span
 GROUP BY w.id, w.status, p.period;

CREATE VIEW dw.v_dead_letters AS
SELECT d.id, d.kind, d.execution_id, e.workflow_id, d.node_id, d.attempts, d.error ->> 'code' AS error_code,
       d.error ->> 'message' AS error_message, d.created_at, d.redriven_at, d.redriven_by,
       d.redriven_at IS NULL AS open
  FROM dw.dead_letters d LEFT JOIN dw.executions e ON e.id = d.execution_id;

-- A read-only role for reporting: the views and nothing else. Log-in users are granted it
-- (GRANT dw_reporting TO alice). Views run with their owner's rights, so the role needs no access
-- to the base tables; the views are not security barriers (they expose all rows by design).
-- A migrating user without CREATEROLE skips the role (a notice says so); a DBA can create it and
-- re-run the grants below.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        BEGIN
            CREATE ROLE dw_reporting NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'dw_reporting not created (no CREATEROLE privilege); create it and grant it the dw.v_* views';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT USAGE ON SCHEMA dw TO dw_reporting;
        GRANT SELECT ON dw.v_executions, dw.v_node_durations, dw.v_action_stats, dw.v_queue_depth,
                        dw.v_workflow_health, dw.v_dead_letters TO dw_reporting;
    END IF;
END;
$$;
