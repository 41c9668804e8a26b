-- A child's dead letter whose parent's node was redriven (the node starts a new child) closes as
-- superseded: it could never be redriven (its parent had taken its end: a 409), it stayed in the
-- open letters, and retention kept its whole tree until someone acknowledged it (crash review).
ALTER TABLE dw.dead_letters DROP CONSTRAINT dead_letters_close_reason_check;
ALTER TABLE dw.dead_letters ADD CONSTRAINT dead_letters_close_reason_check
    CHECK (close_reason IS NULL OR close_reason IN ('acknowledged', 'run_ended', 'superseded'));

-- Letters already in that state: a child's open node_failed or worker_lost letter whose parent has
-- taken its end and whose parent has since been redriven (a redriven letter of the parent's).
UPDATE dw.dead_letters d
   SET closed_at = now(), close_reason = 'superseded',
       close_note = format('its parent execution %s was redriven', c.parent_execution_id)
  FROM dw.executions c
 WHERE c.id = d.execution_id AND c.parent_execution_id IS NOT NULL
   AND d.kind <> 'job_failed' AND d.redriven_at IS NULL AND d.closed_at IS NULL
   AND EXISTS (SELECT 1 FROM dw.dead_letters pd
                WHERE pd.execution_id = c.parent_execution_id AND pd.kind <> 'job_failed'
                  AND pd.redriven_at IS NOT NULL AND pd.created_at >= d.created_at)
   AND (EXISTS (SELECT 1 FROM dw.waits w WHERE w.child_execution_id = c.id AND w.kind = 'child'
                   AND w.state IN ('completed', 'withdrawn'))
        OR EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = c.id AND i.status <> 'Running')
        OR (c.request_id LIKE 'item:%'
            AND NOT EXISTS (SELECT 1 FROM dw.foreach_items i WHERE i.child_execution_id = c.id)));
