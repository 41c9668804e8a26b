-- name: insert_workflow
-- Creates a Draft workflow row; the primary key refuses a duplicate id.
INSERT INTO dw.workflows (id, display_name, description, created_by, max_concurrent_executions)
VALUES (%(id)s, %(display_name)s, %(description)s, %(principal)s, %(max_concurrent_executions)s)
RETURNING id, status, current_version, created_at;

-- name: lock_workflow
-- Serializes version numbering for one workflow.
SELECT id, status FROM dw.workflows WHERE id = %(id)s FOR NO KEY UPDATE;

-- name: find_version_by_checksum
-- An existing version with the same canonical definition.
SELECT version FROM dw.workflow_versions WHERE workflow_id = %(id)s AND checksum = %(checksum)s;

-- name: insert_version
-- Adds the next version number for a workflow: after its latest, and after the last one of a deleted
-- workflow of the same id (dw.deleted_workflows: a workflow and version name one definition for good).
INSERT INTO dw.workflow_versions (workflow_id, version, definition, checksum, created_by)
SELECT %(id)s,
       GREATEST(COALESCE(MAX(version), 0),
                COALESCE((SELECT max(d.last_version) FROM dw.deleted_workflows d WHERE d.workflow_id = %(id)s), 0)) + 1,
       %(definition)s, %(checksum)s, %(principal)s
  FROM dw.workflow_versions WHERE workflow_id = %(id)s
RETURNING version;

-- name: get_workflow
-- One workflow with its current version's checksum.
SELECT w.id, w.display_name, w.description, w.status, w.current_version, w.is_enabled,
       w.max_concurrent_executions, w.rate_limit_per_minute, w.created_at, w.created_by, w.updated_at, w.archived_at, w.archived_by,
       w.disabled_at, w.disabled_by,
       w.template_id, w.template_version,
       (SELECT max(version) FROM dw.workflow_versions v WHERE v.workflow_id = w.id) AS latest_version,
       w.retention_days
  FROM dw.workflows w WHERE w.id = %(id)s;

-- name: list_workflows
-- Workflows ordered by id, after a cursor, optionally filtered by status.
SELECT w.id, w.display_name, w.description, w.status, w.current_version, w.is_enabled,
       w.max_concurrent_executions, w.rate_limit_per_minute, w.created_at, w.created_by, w.updated_at, w.archived_at, w.archived_by,
       w.disabled_at, w.disabled_by,
       w.template_id, w.template_version,
       (SELECT max(version) FROM dw.workflow_versions v WHERE v.workflow_id = w.id) AS latest_version,
       w.retention_days
  FROM dw.workflows w
 WHERE (%(after)s::text IS NULL OR w.id > %(after)s::text)
   AND (%(status)s::text IS NULL OR w.status = %(status)s::text)
 ORDER BY w.id
 LIMIT %(limit)s;

-- name: get_version
-- One version of a workflow, with its definition.
SELECT workflow_id, version, definition, checksum, created_at, created_by, published_at, published_by
  FROM dw.workflow_versions WHERE workflow_id = %(id)s AND version = %(version)s;

-- name: list_versions
-- A workflow's versions, newest first (no definitions). Keyset paging: those before version `before`,
-- the last of the page before.
SELECT workflow_id, version, checksum, created_at, created_by, published_at, published_by
  FROM dw.workflow_versions
 WHERE workflow_id = %(id)s
   AND (%(before)s::integer IS NULL OR version < %(before)s::integer)
 ORDER BY version DESC
 LIMIT %(limit)s;

-- name: publish_workflow
-- Publishes a version with its compiled plan.
SELECT * FROM dw.publish_workflow_v1(%(id)s, %(version)s, %(plan)s, %(principal)s);

-- name: get_plan
-- The compiled plan a worker runs.
SELECT plan FROM dw.workflow_plans WHERE workflow_id = %(id)s AND version = %(version)s;

-- name: set_workflow_enabled
-- Disables or enables a workflow (see dw.set_workflow_enabled_v1).
SELECT * FROM dw.set_workflow_enabled_v1(%(id)s, %(enabled)s, %(principal)s);

-- name: archive_workflow
-- Archives a workflow (see dw.archive_workflow_v1).
SELECT * FROM dw.archive_workflow_v1(%(id)s, %(principal)s);

-- name: delete_workflow
-- Deletes a workflow without runs, with its versions, plans and triggers (see dw.delete_workflow_v1).
SELECT * FROM dw.delete_workflow_v1(%(id)s, %(principal)s);

-- name: set_workflow_template
-- Records which template version a workflow was instantiated from.
UPDATE dw.workflows SET template_id = %(template_id)s, template_version = %(template_version)s WHERE id = %(id)s;

-- name: lock_workflow_template
-- Serializes version numbering for one workflow template.
SELECT pg_advisory_xact_lock(hashtextextended('dw.workflow_templates:' || %(id)s, 0));

-- name: try_lock_examples_load
-- One examples load at a time (examples.load_all), each in one transaction: one that comes while
-- another loads waits for it to commit, then finds what it loaded. Tried, not waited for inside the
-- statement: a session blocked on an advisory lock holds a snapshot (a CREATE INDEX CONCURRENTLY
-- waits for it), one between tries holds none.
SELECT pg_try_advisory_xact_lock(hashtextextended('dw.examples_load', 0)) AS locked;

-- name: find_template_by_checksum
-- The latest version, if it has the same canonical content (an earlier version's content again
-- makes a new latest version).
SELECT version FROM (SELECT version, checksum FROM dw.workflow_templates WHERE id = %(id)s
                      ORDER BY version DESC LIMIT 1) latest
 WHERE checksum = %(checksum)s;

-- name: insert_workflow_template
-- Adds the next version of a workflow template.
INSERT INTO dw.workflow_templates (id, version, display_name, description, parameters, definition_template,
                                   checksum, created_by)
SELECT %(id)s, COALESCE(MAX(version), 0) + 1, %(display_name)s, %(description)s, %(parameters)s,
       %(definition_template)s, %(checksum)s, %(principal)s
  FROM dw.workflow_templates WHERE id = %(id)s
RETURNING version;

-- name: get_workflow_template
-- One version of a template (the latest when version is null).
SELECT id, version, display_name, description, parameters, definition_template AS definition, checksum,
       created_at, created_by
  FROM dw.workflow_templates
 WHERE id = %(id)s AND (%(version)s::integer IS NULL OR version = %(version)s::integer)
 ORDER BY version DESC
 LIMIT 1;

-- name: list_workflow_templates
-- The latest version of every template, by id. Keyset paging: those after the id `after`, the last
-- of the page before.
SELECT DISTINCT ON (id) id, version, display_name, description, parameters, checksum, created_at, created_by
  FROM dw.workflow_templates
 WHERE (%(after)s::text IS NULL OR id > %(after)s::text)
 ORDER BY id, version DESC
 LIMIT %(limit)s;

-- name: published_versions
-- Which of these (workflow, version) pairs were published (have a plan a run can start).
SELECT p.workflow_id, p.version
  FROM dw.workflow_plans p
  JOIN unnest(%(ids)s::text[], %(versions)s::integer[]) AS w(id, version)
    ON p.workflow_id = w.id AND p.version = w.version;

-- name: existing_workflows
-- Which of these workflow ids exist (in any status).
SELECT w.id FROM dw.workflows w WHERE w.id = ANY (%(ids)s);
