-- Retention (migration 0024): finished runs older than their workflow's retention are removed with
-- everything that hangs off them, a whole tree (a root run and every subworkflow and forEach child
-- under it) at a time, in bounded batches. The workers' retention loop and `dataworkflows prune`
-- call dw.prune_executions_v1 until a batch comes back short.
--
-- What a tree needs to go: every run in it (the root and every child, each of its own workflow)
-- ended (Succeeded, Failed, Cancelled, TimedOut) before the tree's cutoff, which is the earliest of
-- its members' workflows' cutoffs: now() minus that workflow's retention (dw.workflows.retention_days;
-- NULL: the caller's default; 0: kept forever, and so is the whole tree). So each member's own
-- retention has passed, counted from the tree's last end, and a tree with a member whose workflow
-- keeps its runs forever (or follows a default that is off) stays. And none of its runs has a dead
-- letter that is open, or that was resolved (redriven or closed) after that cutoff: a dead letter
-- keeps its tree until it is resolved, and then for the retention period again.

-- The old signature (it returned no tree sizes).
DROP FUNCTION IF EXISTS dw.retention_candidates_v1(double precision, text, text, integer);

-- The trees that may go now: (root, cutoff, runs in the tree, the root's end) in end-time order,
-- at most p_limit (NULL: all). p_default_seconds: the age for workflows without their own retention
-- (NULL or 0: keep theirs). Only the transaction's tenant, or every tenant under '*' (narrowed to
-- p_tenant if given), and only trees whose root is p_workflow_id's run, if given.
CREATE OR REPLACE FUNCTION dw.retention_trees_v1(
    p_default_seconds double precision, p_workflow_id text, p_tenant text, p_limit integer
) RETURNS TABLE (root_id uuid, cutoff timestamptz, runs bigint, ended_at timestamptz) LANGUAGE sql STABLE AS $$
    WITH policy AS (
        -- Every workflow in scope, with its cutoff (NULL: its runs are kept forever).
        SELECT w.tenant_id, w.id,
               now() - make_interval(secs => CASE WHEN w.retention_days IS NULL THEN NULLIF(GREATEST(p_default_seconds, 0), 0)
                                                  ELSE NULLIF(w.retention_days, 0) * 86400.0 END) AS cutoff
          FROM dw.workflows w
         WHERE (p_tenant IS NULL OR w.tenant_id = p_tenant)
           -- Explicit as well as row-level security: a superuser (the owner of the SECURITY DEFINER
           -- prune, for instance) bypasses policies.
           AND (current_setting('dw.tenant_id', true) = '*' OR w.tenant_id = current_setting('dw.tenant_id', true))
    )
    SELECT c.id, c.tree_cutoff, c.runs, c.ended_at
      FROM policy p
     CROSS JOIN LATERAL (
        SELECT e.id, e.ended_at, t.tree_cutoff, t.runs
          FROM dw.executions e
         CROSS JOIN LATERAL (
            SELECT count(*) AS runs, max(m.ended_at) AS newest, min(mp.cutoff) AS tree_cutoff,
                   bool_and(m.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') AND m.ended_at IS NOT NULL
                            AND mp.cutoff IS NOT NULL
                            -- A run's compensation under way keeps its tree (migration 0071).
                            AND m.compensation_status IS DISTINCT FROM 'Compensating') AS all_due
              FROM dw.executions m
              LEFT JOIN policy mp ON mp.tenant_id = m.tenant_id AND mp.id = m.workflow_id
             WHERE m.root_execution_id = e.id) t
         WHERE e.tenant_id = p.tenant_id AND e.workflow_id = p.id AND e.parent_execution_id IS NULL
           AND e.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') AND e.ended_at < p.cutoff
           AND t.all_due AND t.newest < t.tree_cutoff
           AND NOT EXISTS (
               SELECT 1 FROM dw.executions m JOIN dw.dead_letters d ON d.execution_id = m.id
                WHERE m.root_execution_id = e.id
                  AND ((d.redriven_at IS NULL AND d.closed_at IS NULL)
                       OR GREATEST(d.redriven_at, d.closed_at) >= t.tree_cutoff))
         ORDER BY e.ended_at
         LIMIT p_limit) c
     WHERE p.cutoff IS NOT NULL AND (p_workflow_id IS NULL OR p.id = p_workflow_id)
     ORDER BY c.ended_at, c.id
     LIMIT p_limit;
$$;

-- Removes one batch: the oldest trees that may go (see above) as long as their runs add up to at
-- most p_batch, or the first tree alone when it holds more (a forEach tree of 20,000 runs goes whole
-- in its own transaction: a tree is never left half removed). With each run go its node states,
-- attempts, events, waits (with their approval decisions), signals, forEach items, stored documents,
-- dead letters (resolved ones: open ones keep the tree) and resource touches, and event listeners.
-- Resource links stay (they say that an external resource exists, for the next run that looks it
-- up) without their execution; a claim that never got its resource goes. Also removes up to
-- p_batch resolved dead letters that have no execution (job failures of unknown runs), resolved
-- before the default cutoff. Returns what it removed; a batch that removed nothing means nothing
-- else is due now (or what is due is held by other transactions).
--
-- One batch at a time across the database: a transaction-level advisory lock, so that several
-- workers' retention jobs and `dataworkflows prune` take turns (each batch then chooses among what
-- the previous one left) instead of choosing the same trees. Short and non-blocking for the engine:
-- every run of a chosen tree is locked FOR UPDATE SKIP LOCKED (a tree with a run that another
-- transaction holds waits for a later batch), and only finished runs are ever chosen, which no
-- worker writes. SECURITY DEFINER: the event log refuses DELETE to everyone but its owner, and to
-- the owner unless dw.pruning is set (migration 0024); this function sets it, transaction-local, to
-- the newest cutoff of the batch (epoch seconds), for its own DELETE only. Callable by
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
    v_locked_roots uuid[];
    v_locked_counts bigint[];
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
    IF p_batch IS NULL OR p_batch NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'a prune batch is 1 to 100000 runs, not %', p_batch USING ERRCODE = '22023';
    END IF;
    -- "DWPRUN": one batch at a time (see above); released at commit.
    PERFORM pg_advisory_xact_lock(x'44575052554E'::bigint);

    -- The oldest trees while their runs add up to p_batch (at most p_batch trees: each has a run),
    -- or the oldest alone.
    SELECT array_agg(c.root_id), array_agg(c.cutoff) INTO v_roots, v_cutoffs
      FROM (SELECT t.root_id, t.cutoff, row_number() OVER w AS n, sum(t.runs) OVER w AS upto
              FROM dw.retention_trees_v1(p_default_seconds, p_workflow_id, p_tenant, p_batch) t
            WINDOW w AS (ORDER BY t.ended_at, t.root_id)) c
     WHERE c.n = 1 OR c.upto <= p_batch;
    IF v_roots IS NOT NULL THEN
        -- Every run of those trees, locked (what another transaction holds is skipped), counted by tree.
        SELECT array_agg(l.root), array_agg(l.n) INTO v_locked_roots, v_locked_counts
          FROM (SELECT s.root_execution_id AS root, count(*) AS n
                  FROM (SELECT m.root_execution_id FROM dw.executions m WHERE m.root_execution_id = ANY (v_roots)
                           FOR UPDATE SKIP LOCKED) s
                 GROUP BY 1) l;
        -- Checked again now that they are locked (a dead letter resolved meanwhile, a tree only partly
        -- locked): what passes cannot change any more.
        SELECT array_agg(c.id), max(c.cutoff) INTO v_roots, v_newest
          FROM unnest(v_roots, v_cutoffs) c(id, cutoff)
          JOIN unnest(v_locked_roots, v_locked_counts) l(root, n) ON l.root = c.id
         CROSS JOIN LATERAL (
             SELECT count(*) AS runs,
                    bool_and(COALESCE(m.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
                                      AND m.ended_at < c.cutoff
                                      AND m.compensation_status IS DISTINCT FROM 'Compensating', false)) AS ended
               FROM dw.executions m WHERE m.root_execution_id = c.id) t
         WHERE t.runs = l.n AND t.ended
           AND NOT EXISTS (
               SELECT 1 FROM dw.executions m JOIN dw.dead_letters d ON d.execution_id = m.id
                WHERE m.root_execution_id = c.id
                  AND ((d.redriven_at IS NULL AND d.closed_at IS NULL)
                       OR GREATEST(d.redriven_at, d.closed_at) >= c.cutoff));
    END IF;

    IF v_roots IS NOT NULL THEN
        v_trees := cardinality(v_roots);
        v_ids := ARRAY(SELECT m.id FROM dw.executions m WHERE m.root_execution_id = ANY (v_roots));

        PERFORM set_config('dw.pruning', extract(epoch FROM v_newest)::text, true);
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
        SELECT c.root_id FROM dw.retention_trees_v1(p_default_seconds, p_workflow_id, p_tenant, NULL) c
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
    IF NOT FOUND THEN
        -- Said, not an empty answer: an operator's psql call that matched nothing read as done (a
        -- review), as dw.schedule_v1 says it.
        RAISE EXCEPTION 'workflow % not found in tenant % (the session''s dw.tenant_id; none or * is default)',
            p_workflow_id, dw.session_tenant_v1() USING ERRCODE = 'DW001';
    END IF;
END;
$$;
