-- dw.v_pending_approvals leaves out an approval past its timeout that no worker has timed out yet
-- (its run Suspended, or its waker not come): no one may decide it any more (a decision is a 409
-- `wait_closed`), and the API's list of a principal's approvals has left it out since 2026-12-07.
-- dw.v_waiting_runs still shows it, with its expires_at, as a wait that is still open.
CREATE OR REPLACE VIEW dw.v_pending_approvals AS
SELECT w.id AS approval_id, w.execution_id, e.workflow_id, w.node_id, w.details ->> 'title' AS title,
       ARRAY(SELECT jsonb_array_elements_text(w.details -> 'approvers')) AS approvers,
       (w.details ->> 'required')::integer AS required,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'approve') AS approvals,
       (SELECT count(*) FROM dw.approval_decisions d WHERE d.wait_id = w.id AND d.decision = 'reject') AS rejections,
       w.created_at AS requested_at, w.expires_at, w.tenant_id
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.kind = 'approval' AND w.state = 'open' AND (w.expires_at IS NULL OR w.expires_at > now())
   AND dw.tenant_visible(w.tenant_id);
