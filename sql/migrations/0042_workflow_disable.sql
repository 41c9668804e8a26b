-- Who disabled a workflow, and when (null while it is enabled), as archived_at/archived_by say of an
-- archive: dw.workflows.is_enabled refused starts since the first release, but nothing could change
-- it but an UPDATE by hand (POST /api/v1/workflows/{id}/disable and /enable now do, through
-- dw.set_workflow_enabled_v1).
ALTER TABLE dw.workflows
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_by text;
