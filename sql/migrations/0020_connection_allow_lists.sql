-- Connection allow-lists (issue 14): which workflows may use a stored connection. Before this, any
-- workflow could name any connection and read what the target answered (a confused deputy).
-- '*' admits every workflow; an empty list admits none. Connections stored before this migration
-- keep working for every workflow ('*'); one created afterwards admits none until allowed
-- (PUT/PATCH /api/v1/connections/{name} with allowedWorkflows, or `dataworkflows connections allow`).

ALTER TABLE dw.connections ADD COLUMN allowed_workflows text[] NOT NULL DEFAULT '{*}';
ALTER TABLE dw.connections ALTER COLUMN allowed_workflows SET DEFAULT '{}';
ALTER TABLE dw.connections ADD CONSTRAINT connections_allowed_workflows_check
    CHECK (array_position(allowed_workflows, NULL) IS NULL AND cardinality(allowed_workflows) <= 1000);
