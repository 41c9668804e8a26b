-- Letters already in the state the release's procedures no longer leave (dw.close_handled_child_letters_v1,
-- dw.acknowledge_dead_letter_v1): a child's open node_failed, worker_lost or timed_out letter whose end
-- its parent took (as dw.child_redrive_refusal_v1 reads it: the parent's child wait completed or
-- withdrawn, or a forEach item not detached that ended, or an item child replaced since), under a
-- parent that ended having handled it (its node succeeded, or failed with a failure or always edge
-- taking it: no unhandled_failure), or that was cancelled, or whose own letter was acknowledged
-- since; and the letters of their own children beneath them (each whose end its parent took).
-- Refused every redrive, superseded by no letter, they stayed open for good: listed as needing a
-- human, and keeping their tree from retention. Each walks up from an open letter (a few), not down
-- from every parent.
WITH RECURSIVE chain AS (
    SELECT d.id AS letter_id, c.id AS child_id, c.parent_execution_id AS parent_id, c.parent_node_id AS node_id,
           c.request_id, d.created_at AS letter_at
      FROM dw.dead_letters d JOIN dw.executions c ON c.id = d.execution_id
     WHERE d.kind <> 'job_failed' AND d.redriven_at IS NULL AND d.closed_at IS NULL
       AND c.parent_execution_id IS NOT NULL
    UNION ALL
    -- One level up, only through a child whose end its parent took.
    SELECT ch.letter_id, p.id, p.parent_execution_id, p.parent_node_id, p.request_id, ch.letter_at
      FROM chain ch JOIN dw.executions p ON p.id = ch.parent_id
     WHERE p.parent_execution_id IS NOT NULL
       AND (EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = ch.child_id AND w.kind = 'child'
                       AND w.state IN ('completed', 'withdrawn'))
            OR EXISTS (SELECT 1 FROM dw.foreach_items i
                        WHERE i.child_execution_id = ch.child_id AND i.status <> 'Running' AND NOT i.detached)
            OR (ch.request_id LIKE 'item:%'
                AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = ch.child_id)))
), closing AS (
    SELECT DISTINCT ON (ch.letter_id) ch.letter_id, ch.parent_id, ch.node_id,
           CASE WHEN p.status = 'Cancelled' THEN 'cancelled'
                WHEN EXISTS (SELECT 1 FROM dw.dead_letters pd
                              WHERE pd.execution_id = p.id AND pd.kind <> 'job_failed'
                                AND pd.close_reason = 'acknowledged' AND pd.created_at >= ch.letter_at)
                     THEN 'acknowledged'
                ELSE 'handled' END AS why
      FROM chain ch JOIN dw.executions p ON p.id = ch.parent_id
      LEFT JOIN dw.node_states n ON n.execution_id = p.id AND n.node_id = ch.node_id
     WHERE p.status IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
       -- The link itself taken, as above.
       AND (EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = ch.child_id AND w.kind = 'child'
                       AND w.state IN ('completed', 'withdrawn'))
            OR EXISTS (SELECT 1 FROM dw.foreach_items i
                        WHERE i.child_execution_id = ch.child_id AND i.status <> 'Running' AND NOT i.detached)
            OR (ch.request_id LIKE 'item:%'
                AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = ch.child_id)))
       AND (p.status = 'Cancelled'
            -- Handled: and no letter of the parent's open, whose redrive or acknowledgement would say.
            OR ((n.status = 'Succeeded' OR (n.status = 'Failed' AND n.end_reason IS NULL))
                AND NOT EXISTS (SELECT 1 FROM dw.dead_letters pd
                                 WHERE pd.execution_id = p.id AND pd.kind <> 'job_failed'
                                   AND pd.redriven_at IS NULL AND pd.closed_at IS NULL))
            OR EXISTS (SELECT 1 FROM dw.dead_letters pd
                        WHERE pd.execution_id = p.id AND pd.kind <> 'job_failed'
                          AND pd.close_reason = 'acknowledged' AND pd.created_at >= ch.letter_at))
     ORDER BY ch.letter_id
)
UPDATE dw.dead_letters d
   SET closed_at = now(), close_reason = 'superseded',
       close_note = CASE c.why
                        WHEN 'cancelled' THEN format('execution %s was cancelled (node %s)', c.parent_id, c.node_id)
                        WHEN 'acknowledged' THEN format('execution %s''s dead letter was acknowledged', c.parent_id)
                        ELSE format('execution %s handled its failure (node %s) and ended', c.parent_id, c.node_id)
                    END
  FROM closing c
 WHERE d.id = c.letter_id;
