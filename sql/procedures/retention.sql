-- Retention (migration 0024): finished runs older than their workflow's retention are removed with
-- everything that hangs off them, a whole tree (a root run and every subworkflow and forEach child
-- under it) at a time, in bounded batches. The workers' retention loop and `dataworkflows prune`
-- call dw.prune_executions_v1 until a batch comes back short.
--
-- What a tree needs to go: its root ended (Succeeded, Failed, Cancelled, TimedOut) before its
-- cutoff, now() minus the root workflow's retention (dw.workflows.retention_days; NULL: the
-- caller's default; 0: kept forever); every run in it ended before that cutoff too; and none of them
-- has a dead letter that is open, or that was resolved (redriven or closed) after the cutoff: a
-- dead letter keeps its tree until it is resolved, and then for the retention period again.

-- The trees that may go now: (root, cutoff) in end-time order per workflow, at most p_limit (NULL:
-- all). p_default_seconds: the age for workflows without their own retention (NULL or 0: keep
-- theirs). Only the transaction's tenant, or every tenant under '*' (narrowed to p_tenant if given).
CREATE OR REPLACE FUNCTION dw.retention_candidates_v1(
    p_default_seconds double precision, p_workflow_id text, p_tenant text, p_limit integer
) RETURNS TABLE (root_id uuid, cutoff timestamptz) LANGUAGE sql STABLE AS $$
    WITH policy AS (
        SELECT w.tenant_id, w.id,
               now() - make_interval(secs => CASE WHEN w.retention_days IS NULL THEN p_default_seconds
                                                  ELSE w.retention_days * 86400.0 END) AS cutoff
          FROM dw.workflows w
         WHERE (p_workflow_id IS NULL OR w.id = p_workflow_id)
           AND (p_tenant IS NULL OR w.tenant_id = p_tenant)
           -- Explicit as well as row-level security: a superuser (the owner of the SECURITY DEFINER
           -- prune, for instance) bypasses policies.
           AND (current_setting('dw.tenant_id', true) = '*' OR w.tenant_id = current_setting('dw.tenant_id', true))
           AND CASE WHEN w.retention_days IS NULL THEN COALESCE(p_default_seconds, 0) > 0
                    ELSE w.retention_days > 0 END
    )
    SELECT c.id, p.cutoff
      FROM policy p
     CROSS JOIN LATERAL (
        SELECT e.id
          FROM dw.executions e
         WHERE e.tenant_id = p.tenant_id AND e.workflow_id = p.id AND e.parent_execution_id IS NULL
           AND e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') AND e.ended_at < p.cutoff
           AND NOT EXISTS (
               SELECT 1 FROM dw.executions m
                WHERE m.root_execution_id = e.id
                  AND (m.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') OR m.ended_at IS NULL
                       OR m.ended_at >= p.cutoff
                       OR EXISTS (SELECT 1 FROM dw.dead_letters d
                                   WHERE d.execution_id = m.id
                                     AND ((d.redriven_at IS NULL AND d.closed_at IS NULL)
                                          OR GREATEST(d.redriven_at, d.closed_at) >= p.cutoff))))
         ORDER BY e.ended_at
         LIMIT p_limit) c
     LIMIT p_limit;
$$;

-- Removes one batch: at most p_batch trees (see above), each with its runs' node states, attempts,
-- events, waits (with their approval decisions), signals, forEach items, stored documents, dead
-- letters (resolved ones: open ones keep the tree) and resource touches, and event listeners.
-- Resource links stay (they say that an external resource exists, for the next run that looks it
-- up) without their execution; a claim that never got its resource goes. Also removes up to
-- p_batch resolved dead letters that have no execution (job failures of unknown runs), resolved
-- before the default cutoff. Returns what it removed.
--
-- Short and non-blocking: every run of a chosen tree is locked FOR UPDATE SKIP LOCKED (a tree with
-- a run that another transaction holds waits for a later batch), and only finished runs are ever
-- chosen, which no worker writes. SECURITY DEFINER: the event log refuses DELETE to everyone but
-- its owner, and to the owner unless dw.pruning is set (migration 0024); this function sets it,
-- transaction-local, to the newest cutoff of the batch, for its own DELETE only. Callable by
-- dataworkflows_maintenance (the workers' maintenance loops, `dataworkflows prune`), under '*' or a
-- tenant.
CREATE OR REPLACE FUNCTION dw.prune_executions_v1(
    p_default_seconds double precision, p_batch integer, p_workflow_id text DEFAULT NULL, p_tenant text DEFAULT NULL
) RETURNS TABLE (trees integer, executions integer, node_states integer, attempts integer, events integer,
                 waits integer, signals integer, items integer, documents integer, dead_letters integer,
                 resource_touches integer)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_roots uuid[];
    v_cutoffs timestamptz[];
    v_newest timestamptz;
    v_locked uuid[];
    v_ids uuid[];
    v_trees integer := 0;
    v_executions integer := 0;
    v_nodes integer := 0;
    v_attempts integer := 0;
    v_events integer := 0;
    v_waits integer := 0;
    v_signals integer := 0;
    v_items integer := 0;
    v_documents integer := 0;
    v_letters integer := 0;
    v_touches integer := 0;
    v_count integer;
BEGIN
    IF COALESCE(current_setting('dw.tenant_id', true), '') = '' THEN
        RAISE EXCEPTION 'pruning needs a tenant, or * for every tenant' USING ERRCODE = 'DW040';
    END IF;
    IF p_batch IS NULL OR p_batch NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'a prune batch is 1 to 10000 trees, not %', p_batch USING ERRCODE = '22023';
    END IF;

    SELECT array_agg(c.root_id), array_agg(c.cutoff) INTO v_roots, v_cutoffs
      FROM dw.retention_candidates_v1(p_default_seconds, p_workflow_id, p_tenant, p_batch) c;
    IF v_roots IS NOT NULL THEN
        -- Every run of those trees, locked; what another transaction holds is skipped.
        v_locked := ARRAY(SELECT m.id FROM dw.executions m WHERE m.root_execution_id = ANY (v_roots)
                           FOR UPDATE SKIP LOCKED);
        -- Checked again now that they are locked (a dead letter resolved meanwhile, a tree only partly
        -- locked): what passes cannot change any more.
        SELECT array_agg(c.id), max(c.cutoff) INTO v_roots, v_newest
          FROM unnest(v_roots, v_cutoffs) c(id, cutoff)
         WHERE NOT EXISTS (
             SELECT 1 FROM dw.executions m
              WHERE m.root_execution_id = c.id
                AND (NOT (m.id = ANY (v_locked))
                     OR m.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') OR m.ended_at IS NULL
                     OR m.ended_at >= c.cutoff
                     OR EXISTS (SELECT 1 FROM dw.dead_letters d
                                 WHERE d.execution_id = m.id
                                   AND ((d.redriven_at IS NULL AND d.closed_at IS NULL)
                                        OR GREATEST(d.redriven_at, d.closed_at) >= c.cutoff))));
    END IF;

    IF v_roots IS NOT NULL THEN
        v_trees := cardinality(v_roots);
        v_ids := ARRAY(SELECT m.id FROM dw.executions m WHERE m.root_execution_id = ANY (v_roots));

        PERFORM set_config('dw.pruning', v_newest::text, true);
        DELETE FROM dw.execution_events v WHERE v.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_events = ROW_COUNT;
        PERFORM set_config('dw.pruning', '', true);

        DELETE FROM dw.approval_decisions a USING dw.waits w WHERE a.wait_id = w.id AND w.execution_id = ANY (v_ids);
        DELETE FROM dw.waits w WHERE w.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_waits = ROW_COUNT;
        DELETE FROM dw.signals s WHERE s.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_signals = ROW_COUNT;
        DELETE FROM dw.foreach_items i WHERE i.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_items = ROW_COUNT;
        DELETE FROM dw.documents d WHERE d.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_documents = ROW_COUNT;
        DELETE FROM dw.action_executions a WHERE a.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_attempts = ROW_COUNT;
        DELETE FROM dw.node_states n WHERE n.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_nodes = ROW_COUNT;
        DELETE FROM dw.dead_letters d WHERE d.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_letters = ROW_COUNT;
        DELETE FROM dw.resource_touches t WHERE t.execution_id = ANY (v_ids);
        GET DIAGNOSTICS v_touches = ROW_COUNT;
        DELETE FROM dw.resource_links l
         WHERE l.execution_id = ANY (v_ids) AND l.external_id IS NULL
           AND NOT EXISTS (SELECT 1 FROM dw.resource_touches t WHERE t.resource_link_id = l.id);
        UPDATE dw.resource_links l SET execution_id = NULL WHERE l.execution_id = ANY (v_ids);
        DELETE FROM dw.event_listeners l WHERE l.execution_id = ANY (v_ids);
        DELETE FROM dw.executions e WHERE e.id = ANY (v_ids);
        GET DIAGNOSTICS v_executions = ROW_COUNT;
    END IF;

    IF p_workflow_id IS NULL AND COALESCE(p_default_seconds, 0) > 0 THEN
        DELETE FROM dw.dead_letters d
         WHERE d.id IN (
             SELECT o.id FROM dw.dead_letters o
              WHERE o.execution_id IS NULL AND (o.redriven_at IS NOT NULL OR o.closed_at IS NOT NULL)
                AND GREATEST(o.redriven_at, o.closed_at) < now() - make_interval(secs => p_default_seconds)
                AND (p_tenant IS NULL OR o.tenant_id = p_tenant)
                AND (current_setting('dw.tenant_id', true) = '*' OR o.tenant_id = current_setting('dw.tenant_id', true))
              LIMIT p_batch FOR UPDATE SKIP LOCKED);
        GET DIAGNOSTICS v_count = ROW_COUNT;
        v_letters := v_letters + v_count;
    END IF;

    RETURN QUERY SELECT v_trees, v_executions, v_nodes, v_attempts, v_events, v_waits, v_signals, v_items,
                        v_documents, v_letters, v_touches;
END;
$$;
REVOKE ALL ON FUNCTION dw.prune_executions_v1(double precision, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dw.prune_executions_v1(double precision, integer, text, text) TO dataworkflows_maintenance;

-- What dw.prune_executions_v1 would remove now, all batches together (`dataworkflows prune
-- --dry-run`): trees, runs, events, and the oldest end time among those roots. Removes nothing.
CREATE OR REPLACE FUNCTION dw.preview_prune_v1(p_default_seconds double precision, p_workflow_id text, p_tenant text)
    RETURNS TABLE (trees bigint, executions bigint, events bigint, oldest_ended_at timestamptz)
    LANGUAGE sql STABLE AS $$
    WITH roots AS (
        SELECT c.root_id FROM dw.retention_candidates_v1(p_default_seconds, p_workflow_id, p_tenant, NULL) c
    ), runs AS (
        SELECT m.id, m.ended_at, m.id = m.root_execution_id AS is_root
          FROM roots r JOIN dw.executions m ON m.root_execution_id = r.root_id
    )
    SELECT (SELECT count(*) FROM roots),
           (SELECT count(*) FROM runs),
           (SELECT count(*) FROM runs JOIN dw.execution_events v ON v.execution_id = runs.id),
           (SELECT min(runs.ended_at) FROM runs WHERE runs.is_root);
$$;

-- Sets how long a workflow's finished runs are kept, in days (NULL: the installation's default,
-- DW_RETENTION_DAYS; 0: forever); returns its id, or nothing when there is no such workflow. In the
-- session's tenant (a psql session that set none: default), like dw.set_workflow_limits_v1.
CREATE OR REPLACE FUNCTION dw.set_workflow_retention_v1(p_workflow_id text, p_days integer)
    RETURNS TABLE (workflow_id text) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    UPDATE dw.workflows w SET retention_days = p_days, updated_at = now()
     WHERE w.tenant_id = dw.session_tenant_v1() AND w.id = p_workflow_id
    RETURNING w.id;
END;
$$;
