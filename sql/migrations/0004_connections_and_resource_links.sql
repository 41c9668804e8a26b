-- Named connections (credentials, encrypted by the application before they reach the database)
-- and resource links: which external resource a run created, keyed for cross-run idempotency.

CREATE TABLE dw.connections (
    name        text PRIMARY KEY,
    -- What the secret is for: slack, monday, http (bearer token or headers), ...
    kind        text NOT NULL,
    -- AES-256-GCM ciphertext of the secret, nonce first; the key never leaves the application.
    secret      bytea NOT NULL,
    key_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connections_name_format_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')
);

CREATE TABLE dw.resource_links (
    id             bigserial PRIMARY KEY,
    tenant_id      text NOT NULL DEFAULT 'default',
    resource_type  text NOT NULL,
    resource_key   text NOT NULL,
    -- NULL while a run holds the claim to create it (claimed_until); set once it exists.
    external_id    text,
    workflow_id    text,
    execution_id   uuid REFERENCES dw.executions (id),
    node_id        text,
    data           jsonb,
    claimed_until  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    linked_at      timestamptz,
    CONSTRAINT resource_links_key UNIQUE (tenant_id, resource_type, resource_key),
    CONSTRAINT resource_links_claim_check CHECK (external_id IS NOT NULL OR claimed_until IS NOT NULL)
);
CREATE INDEX resource_links_execution_idx ON dw.resource_links (execution_id);

-- Every run that touched a resource: created it, found it already there, or changed it.
CREATE TABLE dw.resource_touches (
    id                bigserial PRIMARY KEY,
    resource_link_id  bigint NOT NULL REFERENCES dw.resource_links (id),
    execution_id      uuid REFERENCES dw.executions (id),
    node_id           text,
    action            text NOT NULL,
    at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT resource_touches_action_check CHECK (action IN ('created', 'found', 'updated'))
);
CREATE INDEX resource_touches_link_idx ON dw.resource_touches (resource_link_id, at);

CREATE VIEW dw.v_resource_links AS
SELECT l.id AS link_id, l.tenant_id, l.resource_type, l.resource_key, l.external_id, t.action,
       t.execution_id, e.workflow_id, t.node_id, t.at
  FROM dw.resource_links l
  JOIN dw.resource_touches t ON t.resource_link_id = l.id
  LEFT JOIN dw.executions e ON e.id = t.execution_id;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_resource_links TO dw_reporting;
    END IF;
END;
$$;
