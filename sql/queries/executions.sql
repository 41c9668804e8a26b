-- name: start_execution
-- Starts (or finds, by request id) an execution and queues its run job in the same transaction, with
-- the caller's W3C trace context (NULL: none); notify_job_inserted wakes the workers once it committed.
SELECT * FROM dw.start_execution_v4(%(trace_context)s, %(workflow_id)s, %(request_id)s, %(trigger)s,
                                    %(principal_id)s, %(principal_type)s, %(correlation_id)s, %(queue)s,
                                    %(priority)s);

-- name: start_execution_then_notify
-- start_execution, committed (BEGIN ... COMMIT: an explicit transaction, of which a COMMIT logs no warning),
-- then in a transaction of its own the NOTIFY it did not send, for a start
-- that made a run (created): one pipeline (dataworkflows.db._pipelined: one round trip, the parameters
-- bound by the server, never written into the text), so that the workers are woken as soon as the run
-- is there, not once the caller has read the answer and sent the next statement. The start leaves its
-- queue in the session's dw.notify_queue ('' when it made no run) for dw.notify_started_job_v1, which
-- clears it and never fails for a notification it cannot send (see there). What can still fail after
-- the COMMIT is the notification's own commit on an I/O or memory error: the call fails (or, for a
-- transient one, the statements go again and answer created false), and the run is there, as after a
-- lost answer.
BEGIN;
SELECT s.execution_id, s.status, s.workflow_version, s.created,
       set_config('dw.notify_queue', CASE WHEN s.created THEN %(queue)s ELSE '' END, false) AS notify_queue
  FROM dw.start_execution_v4(%(trace_context)s, %(workflow_id)s, %(request_id)s, %(trigger)s,
                             %(principal_id)s, %(principal_type)s, %(correlation_id)s, %(queue)s,
                             %(priority)s) AS s;
COMMIT;
SELECT dw.notify_started_job_v1();

-- name: get_execution
-- One execution with the checksum of the version that ran.
SELECT e.id, e.workflow_id, e.workflow_version, v.checksum AS workflow_checksum, e.request_id, e.status,
       e.trigger, e.principal_id, e.principal_type, e.correlation_id, e.parent_execution_id,
       e.lease_owner, e.lease_expires_at, e.recovery_count, e.deadline_at, e.created_at, e.started_at AS start_time,
       e.ended_at AS end_time, e.error, e.cancel_requested_at, e.cancel_requested_by, e.suspend_requested_at,
       e.suspended_at, e.outputs, e.parent_node_id, e.root_execution_id, e.depth, e.trigger_id, e.priority,
       e.compensation_status
  FROM dw.executions e
  JOIN dw.workflow_versions v
    ON v.tenant_id = e.tenant_id AND v.workflow_id = e.workflow_id AND v.version = e.workflow_version
 WHERE e.id = %(id)s;

-- name: execution_tenant
-- The tenant of an execution (workers look it up under '*' for jobs that do not name it).
SELECT tenant_id FROM dw.executions WHERE id = %(id)s;

-- name: list_executions
-- Executions newest first, after a (created_at, id) cursor, with optional filters. triggerKind: what
-- started the run (schedule and webhook runs carry their trigger's id and principal type; a child its
-- parent; anything else was asked for through the API or the CLI: manual).
SELECT e.id, e.workflow_id, e.workflow_version, e.request_id, e.status, e.principal_id,
       e.created_at, e.started_at AS start_time, e.ended_at AS end_time, e.cancel_requested_at,
       e.suspended_at, e.trigger_id, e.parent_execution_id, e.priority, e.compensation_status,
       CASE WHEN e.parent_execution_id IS NOT NULL THEN 'subworkflow'
            WHEN e.trigger_id IS NOT NULL AND e.principal_type IN ('schedule', 'webhook', 'event') THEN e.principal_type
            ELSE 'manual' END AS trigger_kind
  FROM dw.executions e
 WHERE (%(workflow_id)s::text IS NULL OR e.workflow_id = %(workflow_id)s::text)
   AND (%(status)s::text IS NULL OR e.status = %(status)s::text)
   AND (%(trigger_id)s::uuid IS NULL OR e.trigger_id = %(trigger_id)s::uuid)
   AND (%(created_from)s::timestamptz IS NULL OR e.created_at >= %(created_from)s::timestamptz)
   AND (%(created_to)s::timestamptz IS NULL OR e.created_at < %(created_to)s::timestamptz)
   AND (%(trigger_kind)s::text IS NULL
        OR CASE %(trigger_kind)s::text
             WHEN 'subworkflow' THEN e.parent_execution_id IS NOT NULL
             WHEN 'manual' THEN e.parent_execution_id IS NULL AND e.trigger_id IS NULL
             ELSE e.parent_execution_id IS NULL AND e.trigger_id IS NOT NULL
                  AND e.principal_type = %(trigger_kind)s::text
           END)
   AND (%(after_created)s::timestamptz IS NULL
        OR (e.created_at, e.id) < (%(after_created)s::timestamptz, %(after_id)s::uuid))
 ORDER BY e.created_at DESC, e.id DESC
 LIMIT %(limit)s;

-- name: list_node_states
-- Node checkpoints of one execution, in definition order.
SELECT node_id, action_type, status, attempts, attempt_base, expected_incoming, decided_incoming,
       satisfied_incoming, outputs, error, next_attempt_at, started_at AS start_time, ended_at AS end_time,
       interruptions
  FROM dw.node_states WHERE execution_id = %(id)s ORDER BY position;

-- name: node_exists
-- Whether the execution has the node (a node id it has not is a typo, not a node without rows).
SELECT EXISTS (SELECT 1 FROM dw.node_states WHERE execution_id = %(id)s AND node_id = %(node_id)s::text) AS found;

-- name: list_attempts
-- Every attempt of one execution, in the order they started.
SELECT id, node_id, action_type, attempt, status, parameters, outputs, error, worker, start_time, end_time,
       item_index, interrupted
  FROM dw.action_executions WHERE execution_id = %(id)s
 ORDER BY start_time, node_id, item_index NULLS FIRST, attempt;

-- name: page_attempts
-- A page of one execution's attempts (of one node, when node_id is given) in the order they started,
-- after the key (start_time, node_id, item index or -1, attempt) of the previous page's last row: unique
-- in a run (action_executions_attempt_key), so that no row of a run that has ended is on two pages or
-- on none. (An attempt's row is written when it ends: in a run still going, one that started before
-- the key and ends after the page was read is on no later page.) Without parameters, outputs and error
-- unless `full`.
SELECT id, node_id, action_type, attempt, status,
       -- Not read at all for a summary (they are TOASTed out of line once large).
       CASE WHEN %(full)s THEN parameters END AS parameters, CASE WHEN %(full)s THEN outputs END AS outputs,
       CASE WHEN %(full)s THEN error END AS error,
       worker, start_time, end_time, item_index, interrupted
  FROM dw.action_executions
 WHERE execution_id = %(id)s
   AND (%(node_id)s::text IS NULL OR node_id = %(node_id)s::text)
   AND (%(after_time)s::timestamptz IS NULL
        OR (start_time, node_id, COALESCE(item_index, -1), attempt)
           > (%(after_time)s::timestamptz, %(after_node)s::text, %(after_item)s::integer, %(after_attempt)s::integer))
 ORDER BY start_time, node_id, COALESCE(item_index, -1), attempt
 LIMIT %(limit)s;

-- name: page_attempts_latest
-- As page_attempts, newest first: the page before the key of the previous page's last row.
SELECT id, node_id, action_type, attempt, status,
       -- Not read at all for a summary (they are TOASTed out of line once large).
       CASE WHEN %(full)s THEN parameters END AS parameters, CASE WHEN %(full)s THEN outputs END AS outputs,
       CASE WHEN %(full)s THEN error END AS error,
       worker, start_time, end_time, item_index, interrupted
  FROM dw.action_executions
 WHERE execution_id = %(id)s
   AND (%(node_id)s::text IS NULL OR node_id = %(node_id)s::text)
   AND (%(after_time)s::timestamptz IS NULL
        OR (start_time, node_id, COALESCE(item_index, -1), attempt)
           < (%(after_time)s::timestamptz, %(after_node)s::text, %(after_item)s::integer, %(after_attempt)s::integer))
 ORDER BY start_time DESC, node_id DESC, COALESCE(item_index, -1) DESC, attempt DESC
 LIMIT %(limit)s;

-- name: list_events
-- The execution log of one execution, in order.
SELECT id, node_id, type, at, principal, details
  FROM dw.execution_events WHERE execution_id = %(id)s AND id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: try_acquire
-- Takes the execution's lease (see dw.try_acquire_execution_v4 for the outcomes).
SELECT outcome, lease_token FROM dw.try_acquire_execution_v4(%(id)s, %(owner)s, %(lease_seconds)s);

-- name: acquire_run
-- Takes the lease and returns the run data and node checkpoints with it (one round trip).
SELECT * FROM dw.try_acquire_execution_v6(%(id)s, %(owner)s, %(lease_seconds)s, %(start)s, NULL);

-- name: fetch_run_jobs
-- The worker's fetch (run by Procrastinate's connector, as its own fetch_job query is): up to `limit`
-- jobs in one transaction, Procrastinate's columns, and for each run job the execution's lease taken
-- in the same transaction (dw.fetch_run_jobs_v2). No row: no job is due.
SELECT (f.job).id, (f.job).status, (f.job).task_name, (f.job).priority, (f.job).lock, (f.job).queueing_lock,
       (f.job).args, (f.job).scheduled_at, (f.job).queue_name, (f.job).attempts, (f.job).worker_id,
       (f.job).abort_requested, f.outcome, f.lease_token, f.run, f.nodes, f.started
  FROM dw.fetch_run_jobs_v2(%(queues)s::varchar[], %(worker_id)s, %(run_task)s, %(owner)s, %(lease_seconds)s,
                            %(start)s, %(limit)s) f;

-- name: release_fetched_lease
-- Gives back a lease the worker's fetch took for a run that will not run under it (see the procedure).
SELECT dw.release_fetched_lease_v1(%(id)s, %(tenant)s, %(owner)s, %(job_id)s, %(token)s, %(queue)s,
                                   %(reason)s) AS released;

-- name: add_event_listener
-- A stream follows this execution: its events are NOTIFYed from now on.
INSERT INTO dw.event_listeners (execution_id, listener) VALUES (%(id)s, %(listener)s) ON CONFLICT DO NOTHING;

-- name: renew_event_listeners
-- The hub's rows are still in use: prune_event_listeners goes by their age.
UPDATE dw.event_listeners SET since = now() WHERE listener = %(listener)s;

-- name: remove_event_listener
-- The stream stopped following.
DELETE FROM dw.event_listeners WHERE execution_id = %(id)s AND listener = %(listener)s;

-- name: prune_event_listeners
-- Forgets listeners of processes that died without saying so.
DELETE FROM dw.event_listeners WHERE since < now() - make_interval(secs => %(max_age_seconds)s);

-- name: renew_lease
-- Extends the lease while the fencing token is current; says what the holder must know (control
-- requests, waits resolved by others), or, when it is not renewed, whether the run ended under it.
SELECT renewed, ended, control, waits FROM dw.renew_lease_v3(%(id)s, %(token)s, %(lease_seconds)s);

-- name: start_node_attempt
-- Marks a node Running for its next attempt; returns the attempt number (NULL: a cancel or a
-- suspension is pending, and nothing starts).
SELECT dw.start_node_attempt_v2(%(id)s, %(token)s, %(node_id)s) AS attempt;

-- name: record_attempt
-- Records an attempt, the node's new state, its event and its edge decisions in one transaction.
SELECT * FROM dw.record_attempt_v6(%(id)s, %(token)s, %(node_id)s, %(attempt)s, %(action_type)s,
    %(attempt_status)s, %(parameters)s, %(outputs)s, %(error)s, %(start_time)s, %(end_time)s, %(worker)s,
    %(outcome)s, %(next_attempt_at)s, %(fired)s, %(resource_links)s, %(interrupted)s, %(start_limit)s,
    %(complete)s, %(job_id)s, %(job_worker_id)s);

-- name: record_attempts
-- Several attempts' records in one transaction (the group commit): the common ones written set-based,
-- every other one in a subtransaction of its own (dw.record_attempts_v2).
SELECT * FROM dw.record_attempts_v2(%(records)s::jsonb);

-- name: complete_execution
-- Ends the run with its final status (and the node to dead-letter, when one failed unhandled); with
-- job_id, the Procrastinate job running the run ends too (job_finished says whether it did).
SELECT dw.complete_execution_v4(%(id)s, %(token)s, %(status)s, %(error)s, %(dead_letter_node)s,
    %(dead_letter_error)s, %(outputs)s, %(job_id)s, %(job_worker_id)s) AS job_finished;

-- name: park_execution
-- Gives up the lease and queues the wake-up job for when the run must next wake up, if ever.
SELECT wake_at, outcome, job_finished FROM dw.park_execution_v3(%(id)s, %(token)s, %(queue)s, %(job_id)s,
                                                                 %(job_worker_id)s);

-- name: begin_wait
-- The node starts waiting (timer, signal or approval); answers the wait, resolved already or open.
SELECT dw.begin_wait_v1(%(id)s, %(token)s, %(node_id)s, %(attempt)s, %(kind)s, %(name)s, %(correlation_key)s,
    %(parameters)s, %(details)s, %(due_at)s, %(expires_at)s) AS wait;

-- name: fire_due_waits
-- Fires the run's due timers and times out its expired waits (fenced).
SELECT w AS wait FROM dw.fire_due_waits_v1(%(id)s, %(token)s) AS w;

-- name: cancel_execution
-- The worker ends a run whose cancel was requested (fenced): cancelled, or too_late when every node
-- had ended (the worker then ends the run as it would have); with job_id, the Procrastinate job
-- running a cancelled run ends too (job_finished says whether it did).
SELECT outcome, job_finished FROM dw.cancel_execution_v3(%(id)s, %(token)s, %(job_id)s, %(job_worker_id)s);

-- name: suspend_execution
-- The worker suspends a run whose suspension was requested (fenced): suspended, cancelled or withdrawn;
-- with job_id, the Procrastinate job running the run ends too unless the suspension was withdrawn.
SELECT outcome, job_finished FROM dw.suspend_execution_v2(%(id)s, %(token)s, %(worker)s, %(job_id)s,
                                                          %(job_worker_id)s);

-- name: release_execution
-- Gives the lease back and re-queues the run (worker shutdown).
SELECT dw.release_execution_v1(%(id)s, %(token)s, %(queue)s, %(reason)s) AS released;

-- name: park_throttled_run
-- A run its workflow's limits hold back waits on its row until its turn, with no job; with job_id, the
-- Procrastinate job the worker ran it under ends too (job_finished says whether it did).
SELECT parked, job_finished FROM dw.park_throttled_run_v1(%(id)s, %(wake_at)s, %(job_id)s, %(job_worker_id)s);

-- name: defer_run
-- Queues a run job for an execution, optionally at a later time.
SELECT dw.defer_run_job_v1(%(id)s, %(queue)s, %(scheduled_at)s) AS job_id;

-- name: wake_due_runs
-- Queues the run jobs of parked runs whose wake-up time has come (at most `limit`).
SELECT dw.wake_due_runs_v1(%(limit)s, %(queue)s) AS woken;

-- name: recover_executions
-- Re-queues runs whose worker vanished; fails those past the recovery limit. With each run's workflow
-- (a run it ends is counted by workflow; a look-up by key a run, for the few it returns).
SELECT r.execution_id, r.action,
       (SELECT e.workflow_id FROM dw.executions e WHERE e.id = r.execution_id) AS workflow_id
  FROM dw.recover_executions_v1(%(max_recoveries)s, %(stalled_worker_seconds)s, %(queue)s) r;

-- name: time_out_overdue
-- Ends runs whose deadline passed while no worker held them (TimedOut; Failed, one whose node
-- failed unhandled); returns their ids, workflows and the status each ended with.
SELECT * FROM dw.time_out_overdue_v2(%(limit)s);

-- name: record_event
-- Appends one event to the execution log, if this worker still holds the lease.
SELECT dw.record_event_v1(%(id)s, %(token)s, %(node_id)s, %(type)s, %(details)s);

-- name: record_job_failure
-- Records a run job that raised, as a job_failed dead letter.
SELECT dw.record_job_failure_v1(%(job_id)s, %(execution_id)s, %(payload)s, %(error)s, %(attempts)s) AS id;

-- name: list_dead_letters
-- Dead letters newest first, optionally only open ones or one kind, after an id cursor.
SELECT d.id, d.kind, d.execution_id, e.workflow_id, d.node_id, d.job_id, d.payload, d.error, d.attempts,
       d.created_at, d.redriven_at, d.redriven_by, d.closed_at, d.closed_by, d.close_reason, d.close_note
  FROM dw.dead_letters d LEFT JOIN dw.executions e ON e.id = d.execution_id
 WHERE (%(open)s::boolean IS NULL OR (d.redriven_at IS NULL AND d.closed_at IS NULL) = %(open)s::boolean)
   AND (%(kind)s::text IS NULL OR d.kind = %(kind)s::text)
   AND (%(before)s::bigint IS NULL OR d.id < %(before)s::bigint)
 ORDER BY d.id DESC
 LIMIT %(limit)s;

-- name: list_execution_dead_letters
-- One execution's dead letters newest first, with list_dead_letters' filters (the console's run page).
SELECT d.id, d.kind, d.execution_id, e.workflow_id, d.node_id, d.job_id, d.payload, d.error, d.attempts,
       d.created_at, d.redriven_at, d.redriven_by, d.closed_at, d.closed_by, d.close_reason, d.close_note
  FROM dw.dead_letters d LEFT JOIN dw.executions e ON e.id = d.execution_id
 WHERE d.execution_id = %(execution_id)s
   AND (%(open)s::boolean IS NULL OR (d.redriven_at IS NULL AND d.closed_at IS NULL) = %(open)s::boolean)
   AND (%(kind)s::text IS NULL OR d.kind = %(kind)s::text)
   AND (%(before)s::bigint IS NULL OR d.id < %(before)s::bigint)
 ORDER BY d.id DESC
 LIMIT %(limit)s;

-- name: get_dead_letter
-- One dead letter.
SELECT d.id, d.kind, d.execution_id, e.workflow_id, d.node_id, d.job_id, d.payload, d.error, d.attempts,
       d.created_at, d.redriven_at, d.redriven_by, d.closed_at, d.closed_by, d.close_reason, d.close_note
  FROM dw.dead_letters d LEFT JOIN dw.executions e ON e.id = d.execution_id
 WHERE d.id = %(id)s;

-- name: get_dead_letters
-- The dead letters of these ids that exist (a bulk redrive's refused letters, read again at its end).
SELECT d.id, d.kind, d.execution_id, e.workflow_id, d.node_id, d.job_id, d.payload, d.error, d.attempts,
       d.created_at, d.redriven_at, d.redriven_by, d.closed_at, d.closed_by, d.close_reason, d.close_note
  FROM dw.dead_letters d LEFT JOIN dw.executions e ON e.id = d.execution_id
 WHERE d.id = ANY (%(ids)s::bigint[]);

-- name: acknowledge_dead_letter
-- Closes a dead letter without redriving it (see dw.acknowledge_dead_letter_v1).
SELECT id FROM dw.acknowledge_dead_letter_v1(%(id)s, %(principal)s, %(note)s);

-- name: redrive_dead_letter
-- Re-runs the failed part of a dead-lettered run (see dw.redrive_dead_letter_v1).
SELECT * FROM dw.redrive_dead_letter_v1(%(id)s, %(principal)s, %(queue)s);

-- name: queue_depth
-- Jobs waiting and running per queue, with the oldest job's age (over the tenants the caller sees:
-- the view counts per tenant).
SELECT queue_name, status, sum(jobs)::bigint AS jobs, max(oldest_seconds) AS oldest_seconds
  FROM dw.v_queue_depth
 GROUP BY queue_name, status;

-- name: attempt_started_at
-- When a node's attempt started: the node_started event every start writes (read only to record an
-- attempt its worker never recorded; the events' index on (execution_id, id), newest first).
SELECT at FROM dw.execution_events
 WHERE execution_id = %(id)s AND node_id = %(node_id)s AND type = 'node_started'
   AND details ->> 'attempt' = %(attempt)s::text
 ORDER BY id DESC LIMIT 1;

-- name: earlier_parameters
-- The parameters a node's first rendered attempt used (reused by retries unless rerenderOnRetry).
SELECT parameters FROM dw.action_executions
 WHERE execution_id = %(id)s AND node_id = %(node_id)s AND parameters IS NOT NULL
 ORDER BY attempt LIMIT 1;

-- name: bulk_redrive_candidates
-- The open dead letters a bulk redrive takes (POST /dead-letters/bulk/redrive), oldest first, after
-- an id (the answer's lastId: the letters it refused stay open, and are not taken again). The
-- session's tenant's (as bulk_cancel_candidates: not every tenant's to a session that sees them all).
SELECT d.id, d.execution_id FROM dw.dead_letters d
  LEFT JOIN dw.executions e ON e.id = d.execution_id
 WHERE d.tenant_id = dw.session_tenant_v1()
   AND d.redriven_at IS NULL AND d.closed_at IS NULL
   AND (%(kind)s::text IS NULL OR d.kind = %(kind)s::text)
   AND (%(workflow_id)s::text IS NULL OR e.workflow_id = %(workflow_id)s::text)
   AND d.id > %(after)s
 ORDER BY d.id
 LIMIT %(limit)s;

-- name: list_audit_events
-- The execution log of every run of the session's tenant, in order (GET /api/v1/audit-log,
-- `dataworkflows audit-log`): after an event id, of a workflow, of a type, up to the first event
-- written less than `settle` seconds ago (an export that goes on from the last id does not pass over
-- an event whose transaction, holding a smaller id, had not committed yet). The page ends there
-- rather than leaving that event out: ids and clock times follow each other only roughly (two
-- sessions writing at once take them in either order), and an older event after it, answered, was
-- the id the next export went on from, past the one left out. The session's tenant explicitly, as
-- the bulk requests: row-level security alone gave a session that sees every tenant (DW_DB_ROLE=none
-- as a superuser) every tenant's log (a review).
WITH page AS (
    SELECT ev.id, ev.execution_id, e.workflow_id, ev.node_id, ev.type, ev.at, ev.principal, ev.details
      FROM dw.execution_events ev
      JOIN dw.executions e ON e.id = ev.execution_id
     WHERE ev.id > %(after)s AND ev.tenant_id = dw.session_tenant_v1()
       AND (%(workflow_id)s::text IS NULL OR e.workflow_id = %(workflow_id)s::text)
       AND (%(type)s::text IS NULL OR ev.type = %(type)s::text)
     ORDER BY ev.id
     LIMIT %(limit)s
)
SELECT p.id, p.execution_id, p.workflow_id, p.node_id, p.type, p.at, p.principal, p.details
  FROM page p
 WHERE p.id < COALESCE((SELECT min(u.id) FROM page u WHERE u.at >= now() - make_interval(secs => %(settle)s)),
                       9223372036854775807)
 ORDER BY p.id;
