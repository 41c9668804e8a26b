-- Document templates (issue 15): template sets (a named group, e.g. one customer's documents), the
-- templates in a set (by name; the API's template id is "<set>/<name>") and their versions. Not to
-- be confused with workflow templates (0002), which instantiate workflow definitions.
--
-- A version is immutable, always: a changed body, format or sample is a new version (like workflow
-- versions), and saving the same one again finds the existing version by checksum. This covers
-- "immutable once used by a published workflow" before any workflow can use one (the
-- core.template.render action comes next).

CREATE TABLE dw.template_sets (
    tenant_id    text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    id           text NOT NULL,
    display_name text NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT template_sets_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT template_sets_id_check CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT template_sets_display_name_check CHECK (length(display_name) BETWEEN 1 AND 200),
    CONSTRAINT template_sets_description_check CHECK (length(description) <= 2000)
);

CREATE TABLE dw.document_templates (
    tenant_id    text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    set_id       text NOT NULL,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    PRIMARY KEY (tenant_id, set_id, name),
    FOREIGN KEY (tenant_id, set_id) REFERENCES dw.template_sets (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT document_templates_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    -- No slash: "<set>/<name>" is the template's id, and include names are template names.
    CONSTRAINT document_templates_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$')
);

CREATE TABLE dw.document_template_versions (
    tenant_id    text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    set_id       text NOT NULL,
    name         text NOT NULL,
    version      integer NOT NULL,
    format       text NOT NULL,
    body         text NOT NULL,
    sample_data  jsonb NOT NULL DEFAULT '{}',
    -- sha256 of the canonical JSON of {format, body, sampleData}.
    checksum     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    PRIMARY KEY (tenant_id, set_id, name, version),
    UNIQUE (tenant_id, set_id, name, checksum),
    FOREIGN KEY (tenant_id, set_id, name) REFERENCES dw.document_templates (tenant_id, set_id, name) ON DELETE CASCADE,
    CONSTRAINT document_template_versions_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT document_template_versions_version_check CHECK (version > 0),
    CONSTRAINT document_template_versions_format_check CHECK (format IN ('text', 'markdown', 'html', 'json')),
    CONSTRAINT document_template_versions_body_check CHECK (length(body) <= 200000),
    CONSTRAINT document_template_versions_sample_check CHECK (jsonb_typeof(sample_data) = 'object')
);

CREATE FUNCTION dw.document_template_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'document template version %/%/% is immutable; save a new version instead',
        OLD.set_id, OLD.name, OLD.version USING ERRCODE = 'DW020';
END;
$$;
CREATE TRIGGER document_template_versions_immutable BEFORE UPDATE ON dw.document_template_versions
    FOR EACH ROW EXECUTE FUNCTION dw.document_template_versions_immutable();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['template_sets', 'document_templates', 'document_template_versions'] LOOP
        EXECUTE format('ALTER TABLE dw.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE dw.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON dw.%I USING (tenant_id = current_setting(%L, true)) '
                       'WITH CHECK (tenant_id = current_setting(%L, true))', t, 'dw.tenant_id', 'dw.tenant_id');
        EXECUTE format('CREATE POLICY all_tenants ON dw.%I TO dataworkflows_all_tenants '
                       'USING (current_setting(%L, true) = %L) WITH CHECK (current_setting(%L, true) = %L)',
                       t, 'dw.tenant_id', '*', 'dw.tenant_id', '*');
    END LOOP;
END;
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON dw.template_sets, dw.document_templates, dw.document_template_versions
    TO dataworkflows_app, dataworkflows_maintenance;
