-- name: request_cancel
-- Asks for a run to be cancelled (ends it at once when no worker holds it), with its workflow (for
-- the finished-runs counter when it ended here).
SELECT c.status, c.outcome, e.workflow_id
  FROM dw.request_cancel_v1(%(id)s, %(principal)s, %(reason)s) c
  LEFT JOIN dw.executions e ON e.id = %(id)s;

-- name: request_suspend
-- Asks for a run to be suspended (at once when no worker holds it).
SELECT status, outcome FROM dw.request_suspend_v1(%(id)s, %(principal)s, %(reason)s);

-- name: resume_execution
-- Resumes a Suspended run, or withdraws a suspension not yet in effect.
SELECT status, outcome FROM dw.resume_execution_v1(%(id)s, %(principal)s, %(queue)s);

-- name: deliver_signal
-- Delivers a signal to a run: consumed by a waiting node, buffered, or a duplicate of an earlier one
-- (its id reused for another signal: DW019).
SELECT signal_id, outcome, wait_id, node_id, execution_status
  FROM dw.deliver_signal_v2(%(id)s, %(name)s, %(signal_id)s, %(correlation_key)s, %(payload)s, %(principal)s,
                            %(queue)s, true);

-- name: broadcast_signal
-- One signal to every run of the tenant waiting for it by name and key (dw.broadcast_signal_v1).
SELECT execution_id, workflow_id, outcome, wait_id, node_id, remaining
  FROM dw.broadcast_signal_v1(%(name)s, %(signal_id)s, %(correlation_key)s, %(payload)s, %(principal)s, %(queue)s,
                              %(workflow_id)s, %(limit)s);

-- name: decide_approval
-- One approver's decision; resolves the approval once its quorum is reached or cannot be.
SELECT approval_id, execution_id, node_id, state, approvals, rejections, required
  FROM dw.decide_approval_v1(%(id)s, %(principal)s, %(decision)s, %(comment)s, %(queue)s);

-- name: list_waits
-- Every wait of an execution, oldest first.
SELECT w.id, w.execution_id, w.node_id, w.attempt, w.kind, w.state, w.name, w.correlation_key, w.details,
       w.created_at, w.due_at, w.expires_at, w.consumed_at, w.consumed_by, w.result
  FROM dw.waits w WHERE w.execution_id = %(id)s ORDER BY w.created_at, w.id;

-- name: list_waits_of_runs
-- The waits of several executions (the open ones, or all), in the order the executions were named,
-- each one's oldest first: past the limit, it is the last ones named that go without.
SELECT w.id, w.execution_id, w.node_id, w.attempt, w.kind, w.state, w.name, w.correlation_key, w.details,
       w.created_at, w.due_at, w.expires_at, w.consumed_at, w.consumed_by, w.result
  FROM dw.waits w
 WHERE w.execution_id = ANY(%(ids)s::uuid[]) AND (NOT %(open_only)s::boolean OR w.state = 'open')
 ORDER BY array_position(%(ids)s::uuid[], w.execution_id), w.created_at, w.id
 LIMIT %(limit)s;

-- name: list_approvals
-- Approvals, newest first: open ones (or all), optionally only those a principal may decide: one of
-- its approvers, and (open ones) not decided by it yet (a second decision is a 409) nor past their
-- timeout (lapsed_at: no worker has timed it out yet, its run Suspended or its waker not come, and a
-- decision is a 409 too). Keyset paging:
-- the page after the (created_at, id) of the last one of the page before.
SELECT w.id, w.execution_id, e.workflow_id, w.node_id, w.state, w.details, w.created_at, w.expires_at,
       w.consumed_at, w.result,
       CASE WHEN w.state = 'open' AND w.expires_at <= now() THEN w.expires_at END AS lapsed_at,
       COALESCE((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                    'principal', d.principal, 'decision', d.decision, 'comment', d.comment,
                    'decidedAt', d.decided_at)) ORDER BY d.decided_at, d.principal)
                   FROM dw.approval_decisions d WHERE d.wait_id = w.id), '[]'::jsonb) AS decisions
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.kind = 'approval'
   AND (NOT %(open_only)s::boolean OR w.state = 'open')
   AND (%(principal)s::text IS NULL OR (w.details -> 'approvers') ? %(principal)s::text
        -- An escalation's approver, from its time.
        OR ((w.details #> '{escalation,approvers}') ? %(principal)s::text
            AND (w.details #>> '{escalation,at}')::timestamptz <= now()))
   AND (%(principal)s::text IS NULL OR NOT %(open_only)s::boolean
        OR (NOT EXISTS (SELECT 1 FROM dw.approval_decisions d
                         WHERE d.wait_id = w.id AND d.principal = %(principal)s::text)
            AND (w.expires_at IS NULL OR w.expires_at > now())))
   AND (%(execution_id)s::uuid IS NULL OR w.execution_id = %(execution_id)s::uuid)
   AND (%(before_at)s::timestamptz IS NULL OR (w.created_at, w.id) < (%(before_at)s::timestamptz, %(before_id)s::uuid))
 ORDER BY w.created_at DESC, w.id DESC
 LIMIT %(limit)s;

-- name: get_approval
-- One approval with its decisions.
SELECT w.id, w.execution_id, e.workflow_id, w.node_id, w.state, w.details, w.created_at, w.expires_at,
       w.consumed_at, w.result,
       CASE WHEN w.state = 'open' AND w.expires_at <= now() THEN w.expires_at END AS lapsed_at,
       COALESCE((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                    'principal', d.principal, 'decision', d.decision, 'comment', d.comment,
                    'decidedAt', d.decided_at)) ORDER BY d.decided_at, d.principal)
                   FROM dw.approval_decisions d WHERE d.wait_id = w.id), '[]'::jsonb) AS decisions
  FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id
 WHERE w.kind = 'approval' AND w.id = %(id)s;

-- name: count_waiting_runs
-- Runs by waiting status, for the waiting-runs gauge.
SELECT status, count(*) AS runs FROM dw.executions
 WHERE status IN ('Waiting', 'Suspended') GROUP BY status;

-- name: listen_control
-- A worker's listening connection: control requests and resolved waits of runs it may hold.
LISTEN dw_control;

-- name: set_descendants_priority
-- The unfinished runs below a run take its new priority (dw.set_descendants_priority_v1).
SELECT changed, skipped, jobs FROM dw.set_descendants_priority_v1(%(id)s, %(priority)s, %(principal)s);

-- name: set_execution_priority
-- Changes a run's priority and its queued jobs' (dw.set_execution_priority_v1).
SELECT status, priority, previous, changed, jobs FROM dw.set_execution_priority_v1(%(id)s, %(priority)s, %(principal)s);

-- name: bulk_cancel_candidates
-- The root runs of a workflow a bulk cancel takes (POST /executions/bulk/cancel): unfinished, of the
-- statuses asked, created before a time, not yet asked to cancel (so that the same request again
-- goes on to the next ones). Those not started (Pending) first, then the others, each oldest first,
-- across the requests of a cancel of more runs than one takes: under maxConcurrentExecutions the end
-- of a run that holds a slot hands it to a run held back (dw.hand_over_slot_v1), and with the slot
-- holders among the oldest, each page's holders handed their slots to held-back runs a later page
-- was to cancel, which a worker started meanwhile (live: 2 of 8 held back, pages of 5). The
-- session's tenant's, as dw.publish_workflow_v1 takes a workflow id: row-level security alone let a
-- session that sees every tenant (DW_DB_ROLE=none as a superuser) cancel every tenant's runs of the
-- id.
SELECT e.id, e.status FROM dw.executions e
 WHERE e.tenant_id = dw.session_tenant_v1()
   AND e.workflow_id = %(workflow_id)s AND e.parent_execution_id IS NULL
   AND e.status = ANY (%(statuses)s::text[])
   AND e.cancel_requested_at IS NULL
   AND (%(before)s::timestamptz IS NULL OR e.created_at < %(before)s::timestamptz)
 ORDER BY e.status <> 'Pending', e.created_at, e.id
 LIMIT %(limit)s;
