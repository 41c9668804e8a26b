-- dw.v_pending_approvals says who may decide: once an approval has escalated (its details'
-- escalation.at has passed), its escalation's approvers may decide too, and the view listed only
-- its approvers. `approvers` is now who may decide at the time of the query (the approvers, then
-- the escalation's that are not among them); `escalation_approvers` and `escalation_at` are its
-- escalation (null without one), whether or not its time has come.
CREATE OR REPLACE VIEW dw.v_pending_approvals AS
SELECT w.id AS approval_id, w.execution_id, e.workflow_id, w.node_id, w.details ->> 'title' AS title,
       ARRAY(SELECT jsonb_array_elements_text(w.details -> 'approvers'))
       || ARRAY(SELECT x FROM jsonb_array_elements_text(
                    CASE WHEN (w.details #>> '{escalation,at}')::timestamptz <= now()
                         THEN w.details #> '{escalation,approvers}' END) x
                 WHERE NOT (w.details -> 'approvers') ? x) AS approvers,
       (w.details ->> 'required')::integer AS required,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'approve') AS approvals,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'reject') AS rejections,
       w.created_at AS requested_at, w.expires_at, w.tenant_id,
       CASE WHEN w.details ? 'escalation'
            THEN ARRAY(SELECT jsonb_array_elements_text(w.details #> '{escalation,approvers}')) END
           AS escalation_approvers,
       (w.details #>> '{escalation,at}')::timestamptz AS escalation_at
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.kind = 'approval' AND w.state = 'open' AND (w.expires_at IS NULL OR w.expires_at > now())
   AND dw.tenant_visible(w.tenant_id);
