-- A resource claim belongs to one attempt, not to a node: an interrupted attempt still running on
-- a worker that lost its lease and the retry on the new worker must not both create the resource.
ALTER TABLE dw.resource_links ADD COLUMN claim_owner text;
