-- Workflow lifecycle procedures.

-- Publishes a version: stores its compiled plan, stamps it published (immutable from then on) and
-- makes it the workflow's current version. Publishing an Archived workflow re-activates it.
CREATE OR REPLACE FUNCTION dw.publish_workflow_v1(
    p_workflow_id text, p_version integer, p_plan jsonb, p_principal text
) RETURNS TABLE (workflow_id text, version integer, status text) LANGUAGE plpgsql AS $$
DECLARE
    -- The session's tenant, as in dw.archive_workflow_v1: a session that sees every tenant made
    -- each tenant's workflow of that id Active at this version.
    v_tenant text := dw.session_tenant_v1();
BEGIN
    PERFORM 1 FROM dw.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    PERFORM 1 FROM dw.workflow_versions v
     WHERE v.tenant_id = v_tenant AND v.workflow_id = p_workflow_id AND v.version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % has no version %', p_workflow_id, p_version USING ERRCODE = 'DW003';
    END IF;

    INSERT INTO dw.workflow_plans (tenant_id, workflow_id, version, plan, compensate_on)
    VALUES (v_tenant, p_workflow_id, p_version, p_plan,
            -- What a run's end reads instead of the plan (migration 0071).
            CASE WHEN jsonb_typeof(p_plan -> 'compensateOn') = 'array'
                 THEN ARRAY(SELECT jsonb_array_elements_text(p_plan -> 'compensateOn')) END)
    ON CONFLICT ON CONSTRAINT workflow_plans_pkey DO NOTHING;

    UPDATE dw.workflow_versions v
       SET published_at = COALESCE(v.published_at, now()),
           published_by = CASE WHEN v.published_at IS NULL THEN p_principal ELSE v.published_by END
     WHERE v.tenant_id = v_tenant AND v.workflow_id = p_workflow_id AND v.version = p_version;

    -- The workflow's names follow the version that runs.
    UPDATE dw.workflows w
       SET status = 'Active', current_version = p_version, updated_at = now(),
           archived_at = NULL, archived_by = NULL,
           display_name = COALESCE(v.definition ->> 'displayName', w.display_name),
           description = v.definition ->> 'description'
      FROM dw.workflow_versions v
     WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id
       AND v.tenant_id = v_tenant AND v.workflow_id = p_workflow_id AND v.version = p_version;

    RETURN QUERY SELECT p_workflow_id, p_version, 'Active'::text;
END;
$$;

-- Archives an Active workflow: new executions are refused (start_execution checks the status),
-- running ones finish on their pinned version. Archiving twice is a no-op; a Draft was never
-- published, so there is nothing to archive (DW004).
CREATE OR REPLACE FUNCTION dw.archive_workflow_v1(p_workflow_id text, p_principal text)
    RETURNS TABLE (workflow_id text, status text) LANGUAGE plpgsql AS $$
DECLARE
    v_tenant text := dw.session_tenant_v1();
    v_status text;
BEGIN
    -- In the session's tenant (a psql session that set none, or '*', means the default one), as
    -- dw.set_workflow_enabled_v1: row-level security narrows the API's role to its tenant, but not a
    -- session that sees every tenant, where this archived each tenant's workflow of that id.
    SELECT w.status INTO v_status FROM dw.workflows w
     WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    IF v_status = 'Draft' THEN
        RAISE EXCEPTION 'workflow % is a Draft that was never published; there is nothing to archive', p_workflow_id
            USING ERRCODE = 'DW004';
    END IF;
    IF v_status = 'Active' THEN
        UPDATE dw.workflows w SET status = 'Archived', archived_at = now(), archived_by = p_principal,
                                  updated_at = now()
         WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id;
    END IF;
    RETURN QUERY SELECT p_workflow_id, 'Archived'::text;
END;
$$;

-- Disables (p_enabled false) or enables a workflow: a disabled one refuses new executions, whatever
-- its status (start_execution checks is_enabled; a schedule's tick is recorded without a run, a
-- webhook delivery is refused, a subworkflow node calling it fails), and runs already started go on.
-- Unlike an archive it keeps the status, so that a Draft can be disabled before it is published, and
-- enabling it again needs no publish. Idempotent: `changed` is false when it already was so (who
-- disabled it, and when, stay those of the first disable). The row's update takes the start lock
-- (the workflows_lock_starts trigger, migration 0033): starts in flight commit first, none after.
CREATE OR REPLACE FUNCTION dw.set_workflow_enabled_v1(p_workflow_id text, p_enabled boolean, p_principal text)
    RETURNS TABLE (workflow_id text, is_enabled boolean, changed boolean) LANGUAGE plpgsql AS $$
DECLARE
    -- The session's tenant (a psql session that set none, or '*', means the default one): row-level
    -- security narrows the API's role to it, but not a superuser's psql session.
    v_tenant text := dw.session_tenant_v1();
    v_enabled boolean;
BEGIN
    SELECT w.is_enabled INTO v_enabled FROM dw.workflows w
     WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    IF v_enabled IS DISTINCT FROM p_enabled THEN
        UPDATE dw.workflows w
           SET is_enabled = p_enabled, updated_at = now(),
               disabled_at = CASE WHEN p_enabled THEN NULL ELSE now() END,
               disabled_by = CASE WHEN p_enabled THEN NULL ELSE p_principal END
         WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id;
    END IF;
    RETURN QUERY SELECT p_workflow_id, p_enabled, v_enabled IS DISTINCT FROM p_enabled;
END;
$$;

-- Deletes a workflow that has no runs, with everything that is its own: its versions and their plans
-- (a published version too: dw.workflow_versions_kept lets this statement delete them, and nothing
-- else), its triggers with their ticks and deliveries, its limits and rate-limit state (columns of
-- its row), and its id in the tenant's connections' allow-lists (a workflow created again under the
-- id inherits no grant). Recorded in dw.deleted_workflows (migration 0070), whose last_version a
-- workflow created again under the id numbers its versions on from.
--
-- Refused (DW008, DETAIL the count) while any execution of it exists, whatever its status: runs are
-- the audit log, and they name its versions (executions_version_fkey) and run on its plans; pruning
-- them (retention, `dataworkflows prune --workflow`) is how they go.
--
-- Against a start: a start takes the workflow's start lock shared before it reads the workflow
-- (dw.start_run_v1); this takes it exclusive before it counts the runs, so a start in flight commits
-- first and its run is counted (409), and a start that comes later waits, then finds no workflow
-- (DW001). Lock order, as an archive's: the workflow's row, then its triggers' rows (a webhook
-- delivery or a schedule's tick holds its trigger's row while it starts a run: taken after the start
-- lock, they would wait for each other), then the start lock.
--
-- Another workflow's published plan may still call it as a subworkflow: not refused (archive and
-- disable do not look for callers either, and two workflows calling each other could then never be
-- deleted); such a node fails child_workflow_not_found, as for any id that names no workflow.
CREATE OR REPLACE FUNCTION dw.delete_workflow_v1(p_workflow_id text, p_principal text)
    RETURNS TABLE (workflow_id text, versions integer, triggers integer, connections integer)
    LANGUAGE plpgsql AS $$
DECLARE
    -- The session's tenant, as in dw.archive_workflow_v1 (a psql session that set none, or '*',
    -- means the default one).
    v_tenant text := dw.session_tenant_v1();
    v_wf dw.workflows%ROWTYPE;
    v_runs bigint;
    v_last integer;
    v_versions integer;
    v_triggers integer;
    v_connections integer;
BEGIN
    SELECT * INTO v_wf FROM dw.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    -- In id order, as an event's publish key-share locks its triggers (dw.publish_event_v1): as the
    -- scan met them, a publish holding one and waiting for another that this held deadlocked.
    PERFORM 1 FROM dw.triggers t WHERE t.tenant_id = v_tenant AND t.workflow_id = p_workflow_id
     ORDER BY t.id FOR UPDATE;
    PERFORM pg_advisory_xact_lock(dw.workflow_start_key_v1(v_tenant, p_workflow_id));
    -- A new statement: it sees the runs of the starts that held the lock until now.
    SELECT count(*) INTO v_runs FROM dw.executions e WHERE e.tenant_id = v_tenant AND e.workflow_id = p_workflow_id;
    IF v_runs > 0 THEN
        RAISE EXCEPTION 'workflow % has % execution(s), and a workflow is deleted only without any: they are its '
                        'audit log. Remove them first: they go with retention once they have ended, or '
                        'now with `dataworkflows prune --workflow % --older-than 1h` (those that ended over an '
                        'hour ago; a workflow''s own retention still applies: README "Retention"); cancel those '
                        'still running',
                        p_workflow_id, v_runs, p_workflow_id
            USING ERRCODE = 'DW008', DETAIL = v_runs::text;
    END IF;

    SELECT count(*), max(v.version) INTO v_versions, v_last
      FROM dw.workflow_versions v WHERE v.tenant_id = v_tenant AND v.workflow_id = p_workflow_id;
    -- Numbering goes on from a deletion before this one when this workflow never reached it.
    v_last := GREATEST(v_last, (SELECT max(d.last_version) FROM dw.deleted_workflows d
                                 WHERE d.tenant_id = v_tenant AND d.workflow_id = p_workflow_id));
    INSERT INTO dw.deleted_workflows (tenant_id, workflow_id, last_version, display_name, created_at, created_by,
                                      deleted_by)
    VALUES (v_tenant, p_workflow_id, COALESCE(v_last, 0), v_wf.display_name, v_wf.created_at, v_wf.created_by,
            p_principal);

    DELETE FROM dw.triggers t WHERE t.tenant_id = v_tenant AND t.workflow_id = p_workflow_id;
    GET DIAGNOSTICS v_triggers = ROW_COUNT;
    UPDATE dw.connections c
       SET allowed_workflows = array_remove(c.allowed_workflows, p_workflow_id), updated_at = now()
     WHERE c.tenant_id = v_tenant AND p_workflow_id = ANY (c.allowed_workflows);
    GET DIAGNOSTICS v_connections = ROW_COUNT;

    PERFORM set_config('dw.deleting_workflow', v_tenant || '/' || p_workflow_id, true);
    DELETE FROM dw.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id;
    PERFORM set_config('dw.deleting_workflow', '', true);
    RETURN QUERY SELECT p_workflow_id, v_versions, v_triggers, v_connections;
END;
$$;
