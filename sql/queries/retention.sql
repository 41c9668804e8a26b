-- name: prune_executions
-- Removes one batch of finished trees past their retention, with everything that hangs off them (see dw.prune_executions_v1); returns the counts.
SELECT * FROM dw.prune_executions_v1(%(default_seconds)s, %(batch)s, %(workflow_id)s, %(tenant)s);

-- name: preview_prune
-- What pruning would remove now, all batches together (nothing is removed).
SELECT * FROM dw.preview_prune_v1(%(default_seconds)s, %(workflow_id)s, %(tenant)s);

-- name: set_workflow_retention
-- Sets or clears (NULL: the default) how many days a workflow's finished runs are kept (0: forever).
SELECT * FROM dw.set_workflow_retention_v1(%(id)s, %(days)s);

-- name: workflow_known
-- Whether a workflow of this id exists (in the tenant, when one is given): `prune --workflow` with a
-- mistyped id said "pruned 0 trees".
SELECT EXISTS (SELECT 1 FROM dw.workflows w
                WHERE w.id = %(workflow_id)s AND (%(tenant)s::text IS NULL OR w.tenant_id = %(tenant)s::text)) AS known;
