-- name: insert_template_set
-- Creates a template set; the primary key refuses a duplicate id.
INSERT INTO dw.template_sets (id, display_name, description, created_by)
VALUES (%(id)s, %(display_name)s, %(description)s, %(principal)s)
RETURNING id, display_name, description, created_at, created_by;

-- name: get_template_set
-- One template set.
SELECT id, display_name, description, created_at, created_by FROM dw.template_sets WHERE id = %(id)s;

-- name: list_template_sets
-- Template sets ordered by id, after a cursor.
SELECT id, display_name, description, created_at, created_by
  FROM dw.template_sets
 WHERE (%(after)s::text IS NULL OR id > %(after)s::text)
 ORDER BY id
 LIMIT %(limit)s;

-- name: delete_template_set
-- Deletes a set with its templates and their versions.
DELETE FROM dw.template_sets WHERE id = %(id)s RETURNING id;

-- name: lock_template_set
-- Serializes adding templates to a set.
SELECT id FROM dw.template_sets WHERE id = %(id)s FOR KEY SHARE;

-- name: insert_document_template
-- Creates a template in a set; the primary key refuses a duplicate name.
INSERT INTO dw.document_templates (set_id, name, created_by)
VALUES (%(set_id)s, %(name)s, %(principal)s)
RETURNING set_id, name;

-- name: lock_document_template
-- Serializes version numbering for one template.
SELECT set_id, name FROM dw.document_templates WHERE set_id = %(set_id)s AND name = %(name)s FOR NO KEY UPDATE;

-- name: find_document_template_version
-- The latest version, if it has this checksum (saving it again changes nothing; saving an earlier
-- version's text again makes a new latest version of it).
SELECT version FROM (SELECT version, checksum FROM dw.document_template_versions
                      WHERE set_id = %(set_id)s AND name = %(name)s ORDER BY version DESC LIMIT 1) latest
 WHERE checksum = %(checksum)s;

-- name: insert_document_template_version
-- Adds the next version number for a template.
INSERT INTO dw.document_template_versions (set_id, name, version, format, body, sample_data, checksum, created_by)
SELECT %(set_id)s, %(name)s, COALESCE(MAX(version), 0) + 1, %(format)s, %(body)s, %(sample_data)s, %(checksum)s,
       %(principal)s
  FROM dw.document_template_versions WHERE set_id = %(set_id)s AND name = %(name)s
RETURNING version;

-- name: get_document_template_version
-- One version of a template (the latest when version is null), with its body and sample.
SELECT v.set_id, v.name, v.version, v.format, v.body, v.sample_data, v.checksum, v.created_at, v.created_by,
       (SELECT max(version) FROM dw.document_template_versions l
         WHERE l.set_id = v.set_id AND l.name = v.name) AS latest_version
  FROM dw.document_template_versions v
 WHERE v.set_id = %(set_id)s AND v.name = %(name)s
   AND (%(version)s::integer IS NULL OR v.version = %(version)s::integer)
 ORDER BY v.version DESC
 LIMIT 1;

-- name: list_document_template_versions
-- A page of a template's versions, newest first (no bodies): those before version `before` (NULL: from
-- the newest), at most `limit`.
SELECT set_id, name, version, format, checksum, created_at, created_by
  FROM dw.document_template_versions
 WHERE set_id = %(set_id)s AND name = %(name)s
   AND (%(before)s::integer IS NULL OR version < %(before)s::integer)
 ORDER BY version DESC
 LIMIT %(limit)s;

-- name: document_template_version_numbers
-- Every version number of a template, oldest first.
SELECT version FROM dw.document_template_versions
 WHERE set_id = %(set_id)s AND name = %(name)s
 ORDER BY version;

-- name: list_document_templates
-- Templates (their latest versions, no bodies) ordered by set and name, optionally of one set.
SELECT DISTINCT ON (v.set_id, v.name) v.set_id, v.name, v.version AS latest_version, v.format, v.checksum,
       t.created_at, t.created_by, v.created_at AS updated_at
  FROM dw.document_templates t
  JOIN dw.document_template_versions v ON v.tenant_id = t.tenant_id AND v.set_id = t.set_id AND v.name = t.name
 WHERE (%(set_id)s::text IS NULL OR t.set_id = %(set_id)s::text)
   AND (%(after_set)s::text IS NULL OR (t.set_id, t.name) > (%(after_set)s::text, %(after_name)s::text))
 ORDER BY v.set_id, v.name, v.version DESC
 LIMIT %(limit)s;

-- name: set_template_sources
-- The latest body of every template in a set: what includes, imports and extends may load. As of a
-- time, when given: each template's latest version saved by then, or its first if it came later.
SELECT DISTINCT ON (name) name, body
  FROM dw.document_template_versions
 WHERE set_id = %(set_id)s
 ORDER BY name,
          created_at <= coalesce(%(as_of)s::timestamptz, 'infinity') DESC,
          CASE WHEN created_at <= coalesce(%(as_of)s::timestamptz, 'infinity') THEN -version ELSE version END;

-- name: lock_template_set_for_delete
-- Holds a set against publishes that render its templates (they take it FOR KEY SHARE:
-- lock_rendered_template_sets) while a delete checks its uses.
SELECT id FROM dw.template_sets WHERE id = %(id)s FOR UPDATE;

-- name: lock_rendered_template_sets
-- A publish holds the sets its plan renders templates of until it commits (see
-- lock_template_set_for_delete).
SELECT id FROM dw.template_sets WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR KEY SHARE;

-- name: template_uses
-- What renders a template of this set: the published plans with a core.template.render node, or a
-- forEach whose action is one, naming a template of the set literally (a templated templateId is
-- resolved per run), with the version each pins (null: the latest when it runs) and whether its
-- version is a template (any_version: any version may be rendered). Every published version of a
-- workflow that is not archived (a rollback may publish any of them again), and any version with
-- runs not finished.
SELECT p.workflow_id, p.version AS workflow_version, split_part(r.template_id, '/', 2) AS name, r.pinned,
       r.any_version
  FROM dw.workflow_plans p
  JOIN dw.workflows w ON w.tenant_id = p.tenant_id AND w.id = p.workflow_id
 CROSS JOIN LATERAL jsonb_array_elements(p.plan -> 'nodes') AS n(node)
 CROSS JOIN LATERAL (
       SELECT n.node -> 'parameters' AS params WHERE n.node ->> 'actionType' = 'core.template.render'
       UNION ALL
       SELECT n.node -> 'parameters' -> 'action' -> 'parameters'
        WHERE n.node -> 'parameters' -> 'action' ->> 'actionType' = 'core.template.render'
       ) AS a
 CROSS JOIN LATERAL (
       SELECT COALESCE(a.params ->> 'templateId', (a.params ->> 'set') || '/' || (a.params ->> 'name')) AS template_id,
              CASE WHEN jsonb_typeof(a.params -> 'version') = 'number' THEN (a.params ->> 'version')::integer END AS pinned,
              COALESCE(jsonb_typeof(a.params -> 'version') NOT IN ('number', 'null'), false) AS any_version
       ) AS r
 WHERE split_part(r.template_id, '/', 1) = %(set_id)s
   AND (w.status <> 'Archived'
        OR EXISTS (SELECT 1 FROM dw.executions e
                    WHERE e.tenant_id = p.tenant_id AND e.workflow_id = p.workflow_id
                      AND e.workflow_version = p.version
                      AND e.status IN ('Pending', 'Running', 'Waiting', 'Suspended')))
 ORDER BY p.workflow_id, p.version;

-- name: delete_document_template
-- Deletes a template with its versions.
DELETE FROM dw.document_templates WHERE set_id = %(set_id)s AND name = %(name)s RETURNING name;

-- name: store_document
-- Stores a rendered document once per (execution, node, checksum); the id of the stored row either way.
WITH stored AS (
    INSERT INTO dw.documents (execution_id, node_id, attempt, content_type, checksum, bytes, body)
    VALUES (%(execution_id)s, %(node_id)s, %(attempt)s, %(content_type)s, %(checksum)s, %(bytes)s, %(body)s)
    ON CONFLICT (tenant_id, execution_id, node_id, checksum) DO NOTHING
    RETURNING id
)
SELECT id FROM stored
UNION ALL
SELECT id FROM dw.documents
 WHERE execution_id = %(execution_id)s AND node_id = %(node_id)s AND checksum = %(checksum)s
 LIMIT 1;

-- name: get_document
-- One stored document with its body.
SELECT id, execution_id, node_id, attempt, content_type, checksum, bytes, body, created_at
  FROM dw.documents
 WHERE id = %(id)s;
