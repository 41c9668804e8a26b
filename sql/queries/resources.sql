-- name: claim_resource
-- Claims the right to create a resource, or returns the one that exists.
SELECT * FROM dw.claim_resource_v3(%(tenant)s, %(type)s, %(key)s, %(workflow_id)s, %(execution_id)s,
                                   %(node_id)s, %(owner)s, %(claim_seconds)s);

-- name: link_resource
-- Links an external resource to a run (idempotent; the first external id wins).
SELECT * FROM dw.link_external_resource_v1(%(tenant)s, %(type)s, %(key)s, %(external_id)s, %(workflow_id)s,
                                           %(execution_id)s, %(node_id)s, %(data)s);

-- name: release_resource_claim
-- Gives up a claim after a failed create.
SELECT dw.release_resource_claim_v2(%(tenant)s, %(type)s, %(key)s, %(owner)s);

-- name: linked_external_ids
-- Which of these external ids a key of this type is linked to already (an in-doubt create's
-- namesakes that are another key's), or was until a compensation released it (the resource was
-- undone: never the one an in-doubt create made).
SELECT l.external_id FROM dw.resource_links l
 WHERE l.tenant_id = %(tenant)s AND l.resource_type = %(type)s AND l.external_id = ANY(%(ids)s::text[])
UNION
SELECT t.external_id FROM dw.resource_touches t
  JOIN dw.resource_links l ON l.id = t.resource_link_id
 WHERE t.action = 'released' AND t.external_id = ANY(%(ids)s::text[])
   AND l.tenant_id = %(tenant)s AND l.resource_type = %(type)s;

-- name: check_resource
-- The external id of a linked resource, or null.
SELECT dw.check_resource_exists_v1(%(tenant)s, %(type)s, %(key)s) AS external_id;

-- name: list_resource_links
-- Which runs touched which resource, newest first, filtered by type and key.
SELECT link_id, resource_type, resource_key, external_id, action, execution_id, workflow_id, node_id, at
  FROM dw.v_resource_links
 WHERE (%(type)s::text IS NULL OR resource_type = %(type)s::text)
   AND (%(key)s::text IS NULL OR resource_key = %(key)s::text)
   AND (%(execution_id)s::uuid IS NULL OR execution_id = %(execution_id)s::uuid)
 ORDER BY at DESC
 LIMIT %(limit)s;

-- name: upsert_connection
-- Stores (or replaces) an encrypted connection secret. allowed_workflows NULL: none for a new
-- connection, unchanged for an existing one (a rotated secret keeps its allow-list).
INSERT INTO dw.connections (name, kind, secret, key_id, created_by, allowed_workflows)
VALUES (%(name)s, %(kind)s, %(secret)s, %(key_id)s, %(principal)s, COALESCE(%(allowed)s::text[], '{}'))
ON CONFLICT (tenant_id, name) DO UPDATE
   SET kind = EXCLUDED.kind, secret = EXCLUDED.secret, key_id = EXCLUDED.key_id, updated_at = now(),
       allowed_workflows = COALESCE(%(allowed)s::text[], dw.connections.allowed_workflows)
RETURNING name, kind, key_id, created_at, created_by, updated_at, allowed_workflows;

-- name: set_connection_allowed_workflows
-- Replaces which workflows may use a connection.
UPDATE dw.connections SET allowed_workflows = %(allowed)s::text[], updated_at = now()
 WHERE name = %(name)s
RETURNING name, kind, key_id, created_at, created_by, updated_at, allowed_workflows;

-- name: fetch_connection
-- One connection with its ciphertext (for the credential provider only).
SELECT name, kind, secret, key_id, allowed_workflows FROM dw.connections WHERE name = %(name)s;

-- name: get_connection
-- One connection without its secret.
SELECT name, kind, key_id, created_at, created_by, updated_at, allowed_workflows
  FROM dw.connections WHERE name = %(name)s;

-- name: list_connections
-- Connections without their secrets, by name. Keyset paging: those after the name `after`, the last
-- of the page before.
SELECT name, kind, key_id, created_at, created_by, updated_at, allowed_workflows
  FROM dw.connections
 WHERE (%(after)s::text IS NULL OR name > %(after)s::text)
 ORDER BY name
 LIMIT %(limit)s;

-- name: connections_as_used
-- These stored connections' kinds, and whether the workflow may use each (checked at publish).
SELECT name, kind, ('*' = ANY(allowed_workflows) OR %(workflow_id)s = ANY(allowed_workflows)) AS allowed
  FROM dw.connections
 WHERE name = ANY(%(names)s::text[]);

-- name: delete_connection
-- Removes a connection.
DELETE FROM dw.connections WHERE name = %(name)s RETURNING name;
