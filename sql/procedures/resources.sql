-- Resource links (the seeds' sp_LinkExternalResource / sp_CheckResourceExists), plus a claim so
-- that two runs racing to create the same resource create it once.

-- The external id of a linked resource, or NULL.
CREATE OR REPLACE FUNCTION dw.check_resource_exists_v1(p_tenant text, p_type text, p_key text)
    RETURNS text LANGUAGE sql STABLE AS $$
    SELECT l.external_id FROM dw.resource_links l
     WHERE l.tenant_id = p_tenant AND l.resource_type = p_type AND l.resource_key = p_key
       AND l.external_id IS NOT NULL;
$$;

-- Records that a run created (or changed) an external resource. Idempotent: linking the same
-- key again keeps the first external id and returns it (created = false).
CREATE OR REPLACE FUNCTION dw.link_external_resource_v1(
    p_tenant text, p_type text, p_key text, p_external_id text, p_workflow_id text, p_execution_id uuid,
    p_node_id text, p_data jsonb
) RETURNS TABLE (external_id text, created boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_l dw.resource_links%ROWTYPE;
BEGIN
    INSERT INTO dw.resource_links AS l (tenant_id, resource_type, resource_key, external_id, workflow_id,
                                        execution_id, node_id, data, linked_at)
    VALUES (p_tenant, p_type, p_key, p_external_id, p_workflow_id, p_execution_id, p_node_id, p_data, now())
    ON CONFLICT ON CONSTRAINT resource_links_key DO UPDATE
       SET external_id = COALESCE(l.external_id, EXCLUDED.external_id),
           data = CASE WHEN l.external_id IS NULL THEN EXCLUDED.data ELSE l.data END,
           linked_at = COALESCE(l.linked_at, now()),
           claimed_until = NULL,
           -- A released key (migration 0076) linked again names the new resource.
           released_at = CASE WHEN l.external_id IS NULL THEN NULL ELSE l.released_at END,
           execution_id = CASE WHEN l.external_id IS NULL THEN EXCLUDED.execution_id ELSE l.execution_id END,
           node_id = CASE WHEN l.external_id IS NULL THEN EXCLUDED.node_id ELSE l.node_id END
    RETURNING l.* INTO v_l;
    IF NOT EXISTS (SELECT 1 FROM dw.resource_touches t
                    WHERE t.resource_link_id = v_l.id AND t.execution_id IS NOT DISTINCT FROM p_execution_id
                      AND t.node_id IS NOT DISTINCT FROM p_node_id AND t.action = 'created') THEN
        INSERT INTO dw.resource_touches (resource_link_id, execution_id, node_id, action, external_id)
        VALUES (v_l.id, p_execution_id, p_node_id,
                CASE WHEN v_l.external_id = p_external_id THEN 'created' ELSE 'found' END, v_l.external_id);
    END IF;
    RETURN QUERY SELECT v_l.external_id, v_l.external_id = p_external_id;
END;
$$;

-- Before creating a resource: 'exists' (here is its id, do not create), 'claimed' (you create it,
-- then link it), 'in_doubt' (yours now, but taken over from an attempt, or an interrupted run of
-- this one, that held it and neither linked nor released it: that attempt may have created the
-- resource before it ended, a create whose answer timed out, a connection cut after the request
-- went, a worker killed mid-call; look it up before creating it), or 'pending' (another attempt is
-- creating it right now: try again shortly). The claim is owned by one attempt (p_owner, e.g.
-- execution:node:attempt; a compensation's execution:node:compensation:attempt): another attempt, even of the same node, sees 'pending' until the claim
-- is linked, released or expired. claimed_at is when the key was first claimed (the row's
-- created_at), the earliest the resource can have been created.
CREATE OR REPLACE FUNCTION dw.claim_resource_v3(
    p_tenant text, p_type text, p_key text, p_workflow_id text, p_execution_id uuid, p_node_id text,
    p_owner text, p_claim_seconds double precision
) RETURNS TABLE (state text, external_id text, claimed_at timestamptz) LANGUAGE plpgsql AS $$
DECLARE
    v_l dw.resource_links%ROWTYPE;
    -- The claim's owner's parts: execution:node:attempt, or execution:node#index:attempt for a
    -- forEach item (NULL where a part is not well formed: no attempt row matches then).
    v_exec uuid;
    v_node text;
    v_index integer;
    v_attempt integer;
    -- A compensation's attempt (execution:node:compensation:attempt): its attempt numbers are its
    -- step's (dw.compensations), not its node's (dw.action_executions).
    v_compensation boolean;
BEGIN
    INSERT INTO dw.resource_links AS l (tenant_id, resource_type, resource_key, workflow_id, execution_id, node_id,
                                        claim_owner, claimed_until)
    VALUES (p_tenant, p_type, p_key, p_workflow_id, p_execution_id, p_node_id, p_owner,
            now() + make_interval(secs => p_claim_seconds))
    ON CONFLICT ON CONSTRAINT resource_links_key DO NOTHING
    RETURNING l.* INTO v_l;
    IF FOUND THEN
        RETURN QUERY SELECT 'claimed'::text, NULL::text, v_l.created_at;
        RETURN;
    END IF;

    SELECT * INTO v_l FROM dw.resource_links l
     WHERE l.tenant_id = p_tenant AND l.resource_type = p_type AND l.resource_key = p_key FOR UPDATE;
    v_compensation := COALESCE(split_part(v_l.claim_owner, ':', 3) = 'compensation', false);
    IF split_part(v_l.claim_owner, ':', 1) ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
       AND split_part(v_l.claim_owner, ':', CASE WHEN v_compensation THEN 4 ELSE 3 END) ~ '^[0-9]{1,9}$'
       AND split_part(split_part(v_l.claim_owner, ':', 2), '#', 2) ~ '^([0-9]{1,9})?$' THEN
        v_exec := split_part(v_l.claim_owner, ':', 1)::uuid;
        v_node := split_part(split_part(v_l.claim_owner, ':', 2), '#', 1);
        v_index := NULLIF(split_part(split_part(v_l.claim_owner, ':', 2), '#', 2), '')::integer;
        v_attempt := split_part(v_l.claim_owner, ':', CASE WHEN v_compensation THEN 4 ELSE 3 END)::integer;
    END IF;
    IF v_l.external_id IS NOT NULL THEN
        INSERT INTO dw.resource_touches (resource_link_id, execution_id, node_id, action, external_id)
        VALUES (v_l.id, p_execution_id, p_node_id, 'found', v_l.external_id);
        RETURN QUERY SELECT 'exists'::text, v_l.external_id, v_l.created_at;
    ELSIF v_l.released_at IS NOT NULL THEN
        -- Released by a compensation (migration 0076): the resource it named was undone, so the key
        -- is a fresh claim, first claimed now (the earliest its new resource can have been made).
        UPDATE dw.resource_links l
           SET execution_id = p_execution_id, node_id = p_node_id, workflow_id = p_workflow_id,
               claim_owner = p_owner, claimed_until = now() + make_interval(secs => p_claim_seconds),
               released_at = NULL, linked_at = NULL, data = NULL, created_at = now()
         WHERE l.id = v_l.id;
        RETURN QUERY SELECT 'claimed'::text, NULL::text, now();
    ELSIF v_l.claim_owner IS NOT DISTINCT FROM p_owner OR v_l.claimed_until < now()
          -- The owning attempt has a recorded outcome, so it is over (cancelled by its timeout,
          -- say): its claim need not be waited out. (Owner: execution:node:attempt; for a forEach
          -- item, execution:node#index:attempt.)
          -- Looked up by the attempt row's key (its owner's parts, parsed above): comparing the
          -- columns as text read every attempt row of every tenant, at each retry of a 'pending'
          -- answer (each second) while another attempt created the resource (a review: 67 ms a
          -- claim at 300,000 attempt rows, and growing with the table).
          OR (NOT v_compensation AND v_index IS NULL AND EXISTS (
                  SELECT 1 FROM dw.action_executions a
                   WHERE a.execution_id = v_exec AND a.node_id = v_node AND a.item_index IS NULL
                     AND a.attempt = v_attempt))
          OR (NOT v_compensation AND v_index IS NOT NULL AND EXISTS (
                  SELECT 1 FROM dw.action_executions a
                   WHERE a.execution_id = v_exec AND a.node_id = v_node AND a.item_index = v_index
                     AND a.attempt = v_attempt))
          -- A compensation's attempt is over once its step is no longer Running at that attempt
          -- (recorded, retried, failed, or taken over after its worker was lost).
          OR (v_compensation AND v_index IS NULL AND EXISTS (
                  SELECT 1 FROM dw.compensations c
                   WHERE c.execution_id = v_exec AND c.node_id = v_node AND c.child_execution_id IS NULL
                     AND NOT (c.status = 'Running' AND c.attempts = v_attempt))) THEN
        UPDATE dw.resource_links l
           SET execution_id = p_execution_id, node_id = p_node_id, workflow_id = p_workflow_id,
               claim_owner = p_owner, claimed_until = now() + make_interval(secs => p_claim_seconds)
         WHERE l.id = v_l.id;
        RETURN QUERY SELECT 'in_doubt'::text, NULL::text, v_l.created_at;
    ELSE
        RETURN QUERY SELECT 'pending'::text, NULL::text, v_l.created_at;
    END IF;
END;
$$;

-- The previous release's workers' claim (during a rolling upgrade): v3 without 'in_doubt', which
-- they do not know.
CREATE OR REPLACE FUNCTION dw.claim_resource_v2(
    p_tenant text, p_type text, p_key text, p_workflow_id text, p_execution_id uuid, p_node_id text,
    p_owner text, p_claim_seconds double precision
) RETURNS TABLE (state text, external_id text) LANGUAGE sql AS $$
    -- An in-doubt claim is theirs to create, as v2 said before v3.
    SELECT CASE WHEN c.state = 'in_doubt' THEN 'claimed' ELSE c.state END, c.external_id
      FROM dw.claim_resource_v3(p_tenant, p_type, p_key, p_workflow_id, p_execution_id, p_node_id, p_owner,
                                p_claim_seconds) c;
$$;

-- Gives up a claim after a failed create, so another run need not wait for it to expire. A key a
-- compensation released (migration 0076) keeps its row, which its entries name: it is released
-- again (the next claim is a fresh one). Deleting it broke their foreign key, and the attempt that
-- gave the claim up (a refused create: a rate limit, say) failed for good with the engine's error
-- (a review).
CREATE OR REPLACE FUNCTION dw.release_resource_claim_v2(p_tenant text, p_type text, p_key text, p_owner text)
    RETURNS void LANGUAGE sql AS $$
    UPDATE dw.resource_links l
       SET claim_owner = NULL, claimed_until = now(), released_at = now()
     WHERE l.tenant_id = p_tenant AND l.resource_type = p_type AND l.resource_key = p_key
       AND l.external_id IS NULL AND l.claim_owner = p_owner
       AND EXISTS (SELECT 1 FROM dw.resource_touches t WHERE t.resource_link_id = l.id);
    DELETE FROM dw.resource_links l
     WHERE l.tenant_id = p_tenant AND l.resource_type = p_type AND l.resource_key = p_key
       AND l.external_id IS NULL AND l.claim_owner = p_owner;
$$;

-- A node's compensation succeeded (dw.record_compensation_v2): the resources the node created
-- (before p_before, when its compensation began: what the compensation's own action creates under
-- the node's id is not released), and that are still its links, are released (migration 0076), each
-- with a 'released' touch naming the id it had. A resource the node only found (another run's) is
-- left linked: its compensation undid this run's effect, and whether that removed the resource is
-- not known here.
CREATE OR REPLACE FUNCTION dw.release_node_resources_v1(p_execution_id uuid, p_node_id text, p_before timestamptz)
    RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    WITH released AS (
        UPDATE dw.resource_links l
           SET external_id = NULL, claimed_until = now(), claim_owner = NULL, released_at = now()
          FROM dw.resource_links o
         WHERE l.id = o.id AND l.execution_id = p_execution_id AND l.node_id = p_node_id
           AND l.external_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM dw.resource_touches t
                        WHERE t.resource_link_id = l.id AND t.execution_id = p_execution_id
                          AND t.node_id = p_node_id AND t.action = 'created' AND t.at < p_before)
        RETURNING l.id, o.external_id
    ), named AS (
        -- Entries made before migration 0076 have no id of their own (the view shows their key's):
        -- released, the key has none, and once created again another resource's. They name the id
        -- they were about (a review: a run's 'created' entry showed the next run's item).
        UPDATE dw.resource_touches t SET external_id = r.external_id
          FROM released r
         WHERE t.resource_link_id = r.id AND t.external_id IS NULL
    )
    INSERT INTO dw.resource_touches (resource_link_id, execution_id, node_id, action, external_id)
    SELECT r.id, p_execution_id, p_node_id, 'released', r.external_id FROM released r;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;
