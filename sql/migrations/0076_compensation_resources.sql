-- Compensation and resource links (README "Compensation", "Resource links and idempotency").
--
-- A resource a node created (a link whose key its attempt claimed and linked) is released when the
-- node's compensation succeeds: its effect was undone, so the key no longer names it, and the next
-- run for the key creates the resource again instead of being handed the id of one that is gone.
-- Released: external_id NULL, claimed_until its release (a claim over: the CHECK holds), released_at
-- set; dw.claim_resource_v3 takes such a key as a fresh claim, with no lookup.
ALTER TABLE dw.resource_links ADD COLUMN released_at timestamptz;

-- The external id a touch was about (NULL for touches recorded before: the link's, as the view has
-- always shown): a key released and created again names another resource afterwards.
ALTER TABLE dw.resource_touches ADD COLUMN external_id text;

-- 'released' (a compensation undid the node that created it). NOT VALID: every row written before
-- meets the narrower rule this one widens, and validating would read the whole table under the
-- ALTER's lock.
ALTER TABLE dw.resource_touches DROP CONSTRAINT resource_touches_action_check;
ALTER TABLE dw.resource_touches ADD CONSTRAINT resource_touches_action_check
    CHECK (action IN ('created', 'found', 'updated', 'released')) NOT VALID;

CREATE OR REPLACE VIEW dw.v_resource_links AS
SELECT l.id AS link_id, l.tenant_id, l.resource_type, l.resource_key, COALESCE(t.external_id, l.external_id) AS external_id,
       t.action, t.execution_id, e.workflow_id, t.node_id, t.at
  FROM dw.resource_links l
  JOIN dw.resource_touches t ON t.resource_link_id = l.id
  LEFT JOIN dw.executions e ON e.id = t.execution_id
 WHERE dw.tenant_visible(l.tenant_id);
