-- Workflow lifecycle audit (who archived, when) and stored, versioned workflow templates.
ALTER TABLE dw.workflows
    ADD COLUMN archived_at timestamptz,
    ADD COLUMN archived_by text;

CREATE TABLE dw.workflow_templates (
    id                   text NOT NULL,
    version              integer NOT NULL,
    display_name         text NOT NULL,
    description          text,
    -- Declared parameters: [{name, type, required, default, description}].
    parameters           jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- A workflow definition whose strings may hold [[ ... ]] instantiation templates over
    -- `config` and `workflowId` (run-time {{ ... }} templates pass through untouched).
    definition_template  jsonb NOT NULL,
    checksum             text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text,
    PRIMARY KEY (id, version),
    CONSTRAINT workflow_templates_checksum_key UNIQUE (id, checksum),
    CONSTRAINT workflow_templates_id_format_check CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    CONSTRAINT workflow_templates_version_check CHECK (version > 0)
);

-- Which template (and version) a workflow was instantiated from.
ALTER TABLE dw.workflows
    ADD COLUMN template_id text,
    ADD COLUMN template_version integer,
    ADD CONSTRAINT workflows_template_fkey FOREIGN KEY (template_id, template_version)
        REFERENCES dw.workflow_templates (id, version);
