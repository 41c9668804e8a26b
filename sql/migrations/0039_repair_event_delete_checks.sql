-- Databases that applied an earlier text of 0024 (development builds before the release that
-- carries it; sqlfiles.EARLIER_CHECKSUMS) have older bodies of its delete checks, which read the
-- prune's cutoff in another form: these are 0024's bodies as they are now (on any other database,
-- the same functions again).
CREATE OR REPLACE FUNCTION dw.execution_events_delete_allowed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(current_setting('dw.pruning', true), '') = '' THEN
        RAISE EXCEPTION 'dw.execution_events is append-only (DELETE refused; finished runs are removed by '
                        'dw.prune_executions_v1)' USING ERRCODE = 'DW021';
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION dw.execution_events_deleted_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_marker text := NULLIF(current_setting('dw.pruning', true), '');
    v_before timestamptz;
    v_execution uuid;
BEGIN
    IF v_marker IS NULL OR v_marker !~ '^[0-9]+(\.[0-9]+)?$' THEN
        RAISE EXCEPTION 'dw.execution_events is append-only (DELETE refused: dw.pruning is not a prune''s cutoff)'
            USING ERRCODE = 'DW021';
    END IF;
    v_before := to_timestamp(v_marker::double precision);
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                    WHERE c.oid = TG_RELID AND r.rolname = current_user) THEN
        RAISE EXCEPTION 'dw.execution_events is append-only: only its owner deletes, inside dw.prune_executions_v1 '
                        '(not %)', current_user USING ERRCODE = 'DW021';
    END IF;
    -- Each run once (a run has several events): finished before the cutoff, and its whole log gone.
    SELECT o.execution_id INTO v_execution
      FROM (SELECT DISTINCT g.execution_id FROM gone g) o LEFT JOIN dw.executions e ON e.id = o.execution_id
     WHERE e.id IS NULL OR e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
        OR e.ended_at IS NULL OR e.ended_at >= v_before
        OR EXISTS (SELECT 1 FROM dw.execution_events v WHERE v.execution_id = o.execution_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'dw.execution_events is append-only: events of execution % may not be removed (its run '
                        'has not ended before %, or part of its log would stay)', v_execution, v_before
            USING ERRCODE = 'DW021';
    END IF;
    RETURN NULL;
END;
$$;
