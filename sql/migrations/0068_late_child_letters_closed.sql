-- Letters already in the state this release's procedures no longer leave (dw.close_late_child_letters_v1):
-- a child's open node_failed, worker_lost or timed_out letter whose end its parent took or stopped
-- waiting for (as dw.child_redrive_refusal_v1 reads it: the parent's child wait completed or
-- withdrawn, a forEach item not detached that ended, or an item child replaced since), filed after
-- its parent had ended with no letter of its own open (acknowledged, or the failure handled and the
-- run gone on to its end), where no run above it is still going or has a letter open. Refused every
-- redrive and superseded by nothing, they stayed open for good: listed as needing a human, and
-- keeping their tree from retention. Migration 0065 closed those filed before the parent's end or
-- acknowledgement; these came after. Parents first (by depth), so that a grandchild's letter under
-- a child's closed here is closed too. Walks up from each open letter of a child (a few), not down
-- from every run. Not in a detached child's tree beyond the detached child.
DO $$
DECLARE
    v_l record;
    v_a dw.executions;
    v_p dw.executions;
    v_through_succeeded boolean;
    v_covered boolean;
    v_acknowledged bigint;
BEGIN
    FOR v_l IN
        SELECT d.id, c.id AS child_id, c.parent_execution_id AS parent_id, c.parent_node_id AS node_id
          FROM dw.dead_letters d JOIN dw.executions c ON c.id = d.execution_id
         WHERE d.kind <> 'job_failed' AND d.redriven_at IS NULL AND d.closed_at IS NULL
           AND c.parent_execution_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM dw.waits w
                            WHERE w.child_execution_id = c.id AND w.kind = 'child' AND w.state = 'started')
           AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = c.id AND i.detached)
           AND (EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = c.id AND w.kind = 'child'
                           AND w.state IN ('completed', 'withdrawn'))
                OR EXISTS (SELECT 1 FROM dw.foreach_items i
                            WHERE i.child_execution_id = c.id AND i.status <> 'Running' AND NOT i.detached)
                OR (c.request_id LIKE 'item:%'
                    AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = c.id)))
         ORDER BY c.depth, d.id
    LOOP
        SELECT * INTO v_p FROM dw.executions p WHERE p.id = v_l.parent_id;
        v_a := v_p;
        v_through_succeeded := false;
        v_covered := false;
        LOOP
            IF v_a.id IS NULL THEN
                EXIT;
            END IF;
            IF v_a.status = 'Cancelled' AND v_a.id = v_p.id THEN
                EXIT;
            END IF;
            IF (v_a.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') AND NOT v_through_succeeded)
               OR EXISTS (SELECT 1 FROM dw.dead_letters d
                           WHERE d.execution_id = v_a.id AND d.kind <> 'job_failed'
                             AND d.redriven_at IS NULL AND d.closed_at IS NULL) THEN
                v_covered := true;
                EXIT;
            END IF;
            EXIT WHEN v_a.parent_execution_id IS NULL
                   OR EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = v_a.id AND w.kind = 'child'
                                                      AND w.state = 'started')
                   OR EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = v_a.id AND i.detached);
            v_through_succeeded := v_through_succeeded OR v_a.status = 'Succeeded';
            SELECT * INTO v_a FROM dw.executions e WHERE e.id = v_a.parent_execution_id;
        END LOOP;
        CONTINUE WHEN v_covered;
        SELECT d.id INTO v_acknowledged FROM dw.dead_letters d
         WHERE d.execution_id = v_p.id AND d.kind <> 'job_failed' AND d.close_reason = 'acknowledged'
         ORDER BY d.id DESC LIMIT 1;
        UPDATE dw.dead_letters d
           SET closed_at = now(), close_reason = 'superseded',
               close_note = CASE
                   WHEN v_p.status = 'Cancelled'
                       THEN format('execution %s was cancelled (node %s)', v_p.id, v_l.node_id)
                   WHEN v_acknowledged IS NOT NULL
                       THEN format('execution %s''s dead letter %s was acknowledged', v_p.id, v_acknowledged)
                   WHEN v_p.status = 'Succeeded' OR EXISTS (
                           SELECT 1 FROM dw.node_states n
                            WHERE n.execution_id = v_p.id AND n.node_id = v_l.node_id
                              AND (n.status = 'Succeeded' OR (n.status = 'Failed' AND n.end_reason IS NULL)))
                       THEN format('execution %s handled its failure (node %s) and ended', v_p.id, v_l.node_id)
                   ELSE format('execution %s ended %s (node %s) with no dead letter open to supersede this one',
                               v_p.id, v_p.status, v_l.node_id) END
         WHERE d.id = v_l.id;
    END LOOP;
END;
$$;
