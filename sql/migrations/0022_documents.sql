-- Documents rendered by core.template.render (issue 15) that are too large to travel in a node's
-- outputs (DW_DOCUMENT_INLINE_BYTES): the outputs carry documentId, GET /api/v1/documents/{id}
-- returns the body with its content type. Stored once per (execution, node, checksum): a retried
-- or replayed attempt that renders the same document finds the row an earlier one stored; `attempt`
-- is the attempt that stored it. Deleted with its execution.

CREATE TABLE dw.documents (
    tenant_id     text NOT NULL DEFAULT current_setting('dw.tenant_id', true),
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    execution_id  uuid NOT NULL REFERENCES dw.executions (id) ON DELETE CASCADE,
    node_id       text NOT NULL,
    attempt       integer NOT NULL,
    content_type  text NOT NULL,
    -- "sha256:<hex>" of the UTF-8 body, as the preview reports it.
    checksum      text NOT NULL,
    bytes         integer NOT NULL,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, execution_id, node_id, checksum),
    CONSTRAINT documents_tenant_check CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$'),
    CONSTRAINT documents_attempt_check CHECK (attempt > 0),
    CONSTRAINT documents_bytes_check CHECK (bytes >= 0)
);
CREATE INDEX documents_execution_idx ON dw.documents (execution_id);

ALTER TABLE dw.documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE dw.documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dw.documents
    USING (tenant_id = current_setting('dw.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('dw.tenant_id', true));
CREATE POLICY all_tenants ON dw.documents TO dataworkflows_all_tenants
    USING (current_setting('dw.tenant_id', true) = '*')
    WITH CHECK (current_setting('dw.tenant_id', true) = '*');

GRANT SELECT, INSERT, UPDATE, DELETE ON dw.documents TO dataworkflows_app, dataworkflows_maintenance;
