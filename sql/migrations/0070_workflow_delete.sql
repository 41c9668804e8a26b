-- Deleting a workflow (DELETE /api/v1/workflows/{id}, dw.delete_workflow_v1; README "Workflow
-- lifecycle"): a workflow without runs goes with its versions, plans and triggers.
--
-- dw.deleted_workflows: one row per deletion, the only record of it once the workflow's row (where
-- its other lifecycle changes are recorded: created_by, archived_by, disabled_by, versions'
-- published_by) is gone: who deleted it and when, what it was called, who created it, and the last
-- version it had. A workflow created again under the id numbers its versions on from there
-- (insert_version): a (workflow, version) names one definition for good, which the workers' plan
-- caches (dataworkflows.data.runs.PlanCache, keyed by tenant, workflow and version) and everything
-- that quoted the pair (logs, traces, dead letters' payloads) rely on. Kept like the workflows
-- themselves: nothing prunes it.
CREATE TABLE dw.deleted_workflows (
    tenant_id     text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    id            bigserial NOT NULL,
    workflow_id   text NOT NULL,
    last_version  integer NOT NULL,
    display_name  text,
    created_at    timestamptz,
    created_by    text,
    deleted_at    timestamptz NOT NULL DEFAULT now(),
    deleted_by    text,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT deleted_workflows_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$')
);
CREATE INDEX deleted_workflows_workflow_idx ON dw.deleted_workflows (tenant_id, workflow_id, last_version);

ALTER TABLE dw.deleted_workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE dw.deleted_workflows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dw.deleted_workflows
    USING (tenant_id = current_setting('dw.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('dw.tenant_id', true));
CREATE POLICY all_tenants ON dw.deleted_workflows TO dataworkflows_all_tenants
    USING (current_setting('dw.tenant_id', true) = '*')
    WITH CHECK (current_setting('dw.tenant_id', true) = '*');

GRANT SELECT, INSERT, UPDATE, DELETE ON dw.deleted_workflows TO dataworkflows_app, dataworkflows_maintenance;
GRANT USAGE, SELECT ON SEQUENCE dw.deleted_workflows_id_seq TO dataworkflows_app, dataworkflows_maintenance;

-- A published version stays on record (migration 0060), unless its whole workflow is deleted by
-- dw.delete_workflow_v1, which names it in the transaction's setting dw.deleting_workflow
-- ('<tenant>/<workflow id>': a tenant id holds no '/') for the statement that deletes it. A DELETE
-- by hand (psql) is refused as before, of the version or of its workflow's row.
CREATE OR REPLACE FUNCTION dw.workflow_versions_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_at IS NOT NULL
       AND current_setting('dw.deleting_workflow', true) IS DISTINCT FROM OLD.tenant_id || '/' || OLD.workflow_id THEN
        RAISE EXCEPTION 'workflow version %/% is published and stays on record (archive the workflow instead)',
                        OLD.workflow_id, OLD.version
            USING ERRCODE = 'DW020';
    END IF;
    RETURN OLD;
END;
$$;
