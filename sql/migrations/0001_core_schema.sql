-- Core schema: workflows, immutable versions, compiled plans, executions, node checkpoints,
-- per-attempt rows and the append-only execution log. Status spellings follow the seeds.
CREATE SCHEMA IF NOT EXISTS dw;

CREATE TABLE dw.workflows (
    id                         text PRIMARY KEY,
    tenant_id                  text NOT NULL DEFAULT 'default',
    display_name               text NOT NULL,
    description                text,
    -- Draft: editable, not runnable; Active: runnable at current_version; Archived: refuses new runs.
    status                     text NOT NULL DEFAULT 'Draft',
    current_version            integer,
    is_enabled                 boolean NOT NULL DEFAULT true,
    max_concurrent_executions  integer,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    created_by                 text,
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflows_status_check CHECK (status IN ('Draft', 'Active', 'Archived')),
    CONSTRAINT workflows_id_format_check CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    CONSTRAINT workflows_active_has_version_check CHECK (status <> 'Active' OR current_version IS NOT NULL),
    CONSTRAINT workflows_max_concurrent_check CHECK (max_concurrent_executions IS NULL OR max_concurrent_executions > 0)
);

CREATE TABLE dw.workflow_versions (
    workflow_id   text NOT NULL REFERENCES dw.workflows (id) ON DELETE CASCADE,
    version       integer NOT NULL,
    definition    jsonb NOT NULL,
    -- sha256 over the canonical JSON form (sorted keys, no whitespace): same definition, same checksum.
    checksum      text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text,
    published_at  timestamptz,
    published_by  text,
    PRIMARY KEY (workflow_id, version),
    CONSTRAINT workflow_versions_checksum_key UNIQUE (workflow_id, checksum),
    CONSTRAINT workflow_versions_version_check CHECK (version > 0)
);

-- A published version is immutable: the definition that ran must stay the definition on record.
CREATE FUNCTION dw.workflow_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_at IS NOT NULL AND (NEW.definition IS DISTINCT FROM OLD.definition
                                         OR NEW.checksum IS DISTINCT FROM OLD.checksum) THEN
        RAISE EXCEPTION 'workflow version %/% is published and immutable', OLD.workflow_id, OLD.version
            USING ERRCODE = 'DW020';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER workflow_versions_immutable BEFORE UPDATE ON dw.workflow_versions
    FOR EACH ROW EXECUTE FUNCTION dw.workflow_versions_immutable();

CREATE TABLE dw.workflow_plans (
    workflow_id  text NOT NULL,
    version      integer NOT NULL,
    plan         jsonb NOT NULL,
    compiled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, version),
    FOREIGN KEY (workflow_id, version) REFERENCES dw.workflow_versions (workflow_id, version) ON DELETE CASCADE
);

CREATE TABLE dw.executions (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            text NOT NULL DEFAULT 'default',
    workflow_id          text NOT NULL,
    workflow_version     integer NOT NULL,
    request_id           text NOT NULL,
    -- Pending: queued; Running: a worker holds or held the lease; Waiting: parked until a due time;
    -- Succeeded/Failed/Cancelled/TimedOut: final.
    status               text NOT NULL DEFAULT 'Pending',
    trigger              jsonb NOT NULL DEFAULT '{}'::jsonb,
    principal_id         text,
    principal_type       text,
    correlation_id       text,
    parent_execution_id  uuid REFERENCES dw.executions (id),
    parent_node_id       text,
    depth                integer NOT NULL DEFAULT 0,
    lease_owner          text,
    -- Fencing token: incremented on every acquire; every worker write must present the current one.
    lease_token          bigint NOT NULL DEFAULT 0,
    lease_expires_at     timestamptz,
    recovery_count       integer NOT NULL DEFAULT 0,
    deadline_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    ended_at             timestamptz,
    error                jsonb,
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES dw.workflow_versions (workflow_id, version),
    CONSTRAINT executions_request_key UNIQUE (workflow_id, request_id),
    CONSTRAINT executions_status_check CHECK (status IN
        ('Pending', 'Running', 'Waiting', 'Succeeded', 'Failed', 'Cancelled', 'TimedOut')),
    CONSTRAINT executions_final_has_end_check CHECK (
        status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') OR ended_at IS NOT NULL)
);
CREATE INDEX executions_created_idx ON dw.executions (created_at DESC, id);
CREATE INDEX executions_workflow_status_idx ON dw.executions (workflow_id, status);
CREATE INDEX executions_inflight_idx ON dw.executions (lease_expires_at)
    WHERE status IN ('Pending', 'Running', 'Waiting');

CREATE TABLE dw.node_states (
    execution_id        uuid NOT NULL REFERENCES dw.executions (id) ON DELETE CASCADE,
    node_id             text NOT NULL,
    position            integer NOT NULL,
    action_type         text NOT NULL,
    -- Pending: waiting on incoming edges; Ready: may start; Running: an attempt is in flight;
    -- Waiting: backing off until next_attempt_at; Succeeded/Failed/Skipped/Cancelled: final.
    status              text NOT NULL DEFAULT 'Pending',
    attempts            integer NOT NULL DEFAULT 0,
    expected_incoming   integer NOT NULL DEFAULT 0,
    decided_incoming    integer NOT NULL DEFAULT 0,
    satisfied_incoming  integer NOT NULL DEFAULT 0,
    -- Targets of this node's outgoing edges, in definition order (copied from the plan so that
    -- join counting never has to read the plan).
    edge_targets        text[] NOT NULL DEFAULT '{}',
    outputs             jsonb,
    error               jsonb,
    next_attempt_at     timestamptz,
    started_at          timestamptz,
    ended_at            timestamptz,
    PRIMARY KEY (execution_id, node_id),
    CONSTRAINT node_states_status_check CHECK (status IN
        ('Pending', 'Ready', 'Running', 'Waiting', 'Succeeded', 'Failed', 'Skipped', 'Cancelled')),
    CONSTRAINT node_states_counters_check CHECK (
        decided_incoming <= expected_incoming AND satisfied_incoming <= decided_incoming)
);

CREATE TABLE dw.action_executions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    execution_id  uuid NOT NULL REFERENCES dw.executions (id) ON DELETE CASCADE,
    node_id       text NOT NULL,
    action_type   text NOT NULL,
    attempt       integer NOT NULL,
    status        text NOT NULL,
    parameters    jsonb,
    outputs       jsonb,
    error         jsonb,
    worker        text,
    start_time    timestamptz NOT NULL,
    end_time      timestamptz NOT NULL,
    -- One row per attempt: a replayed write for the same attempt is refused, not duplicated.
    CONSTRAINT action_executions_attempt_key UNIQUE (execution_id, node_id, attempt),
    CONSTRAINT action_executions_status_check CHECK (status IN
        ('Succeeded', 'Failed', 'RetriableFailure', 'Skipped', 'TimedOut')),
    CONSTRAINT action_executions_attempt_check CHECK (attempt > 0)
);

CREATE TABLE dw.execution_events (
    id            bigserial PRIMARY KEY,
    execution_id  uuid NOT NULL REFERENCES dw.executions (id),
    node_id       text,
    type          text NOT NULL,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    principal     text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX execution_events_execution_idx ON dw.execution_events (execution_id, id);

-- The execution log is append-only: history is evidence, so the database refuses to rewrite it.
CREATE FUNCTION dw.execution_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dw.execution_events is append-only (% refused)', TG_OP USING ERRCODE = 'DW021';
END;
$$;
CREATE TRIGGER execution_events_no_update BEFORE UPDATE OR DELETE ON dw.execution_events
    FOR EACH ROW EXECUTE FUNCTION dw.execution_events_append_only();
CREATE TRIGGER execution_events_no_truncate BEFORE TRUNCATE ON dw.execution_events
    FOR EACH STATEMENT EXECUTE FUNCTION dw.execution_events_append_only();

-- Recovery looks up an execution's live jobs by argument; keep that an index scan.
CREATE INDEX dw_procrastinate_jobs_execution_idx ON procrastinate_jobs ((args ->> 'execution_id'))
    WHERE status IN ('todo', 'doing');
