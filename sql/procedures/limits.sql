-- Rate limits: the API's token buckets (the statement is take_api_token in sql/queries/limits.sql)
-- and the per-workflow start limits that dw.try_acquire_execution_v4 applies to root runs.

-- A token bucket's level now: what it held at p_since plus the refill since, at most p_burst.
CREATE OR REPLACE FUNCTION dw.api_bucket_level_v1(
    p_tokens double precision, p_since timestamptz, p_burst double precision, p_per_second double precision
) RETURNS double precision LANGUAGE sql STABLE AS $$
    SELECT LEAST(p_burst, p_tokens + GREATEST(0, extract(epoch FROM now() - p_since)) * p_per_second);
$$;

-- The earliest start time a run held back now under its workflow's rate (one turn every p_spacing,
-- the last start at p_last) may be promised at priority p_priority (dw.admit_root_run_v1, and
-- dw.repromise_raised_run_v1 for a raised run): after the last start promised to a run still waiting
-- that it does not go ahead of: one of its priority or higher, one whose turn has come (its job
-- queued, or its acquire under way: no wake-up time; or its time passed, its waker not yet run, or it
-- lost its start to a run that came late and waits again: it is never moved back, so a higher run
-- that went ahead of it took its start, and one each turn kept it waiting for ever), or one already
-- moved back as far as it may be (a minute after its first promise, less one turn). A promised run
-- that ended meanwhile (cancelled while Pending) gives its turn back. One whose time has passed counts
-- at its wake-up (if it has one: it lost its start to a run that came late, and waits again for the
-- spacing after that start; or its concurrency slot, and looks again then): promised that same time,
-- a higher run woke with it, its job went first, and the lower one waited again, each turn (a review).
CREATE OR REPLACE FUNCTION dw.rate_turn_v1(p_tenant text, p_workflow_id text, p_id uuid, p_priority integer,
                                           p_spacing interval, p_last timestamptz, p_now timestamptz)
    RETURNS timestamptz LANGUAGE sql STABLE AS $$
    -- GREATEST ignores NULL: no run ahead, or no start yet.
    SELECT GREATEST(max(CASE WHEN e.rate_slot_at <= p_now THEN GREATEST(e.rate_slot_at, e.wake_at)
                             ELSE e.rate_slot_at END) + p_spacing,
                    p_last + p_spacing, p_now)
      FROM dw.executions e
     WHERE e.tenant_id = p_tenant AND e.workflow_id = p_workflow_id AND e.status = 'Pending'
       AND e.rate_slot_at IS NOT NULL AND e.id <> p_id
       AND (e.priority >= p_priority OR e.wake_at IS NULL OR e.rate_slot_at <= p_now
            OR e.rate_slot_at + p_spacing > COALESCE(e.rate_first_slot_at, e.rate_slot_at) + interval '1 minute');
$$;

-- The runs of lower priority than p_priority promised p_from or later (and before p_before; NULL: no
-- end) move back one turn each, their wake-ups too, their first promise kept as their bound: they
-- stay a turn apart, and the rate's spacing is not touched (dw.rate_turn_v1 counts a run moved back a
-- minute as one not to go ahead of, so none of these goes further). SKIP LOCKED: a run a worker is
-- taking at this moment keeps its time (its start still waits for the spacing after the last one),
-- and the caller, which holds the workflow's row, never waits for a run's (an acquire locks the run,
-- then the workflow).
CREATE OR REPLACE FUNCTION dw.move_rate_promises_back_v1(p_tenant text, p_workflow_id text, p_id uuid,
                                                         p_priority integer, p_spacing interval,
                                                         p_from timestamptz, p_before timestamptz)
    RETURNS void LANGUAGE sql AS $$
    WITH behind AS (
        SELECT t.id FROM dw.executions t
         WHERE t.tenant_id = p_tenant AND t.workflow_id = p_workflow_id AND t.status = 'Pending'
           AND t.rate_slot_at >= p_from AND (p_before IS NULL OR t.rate_slot_at < p_before)
           AND t.priority < p_priority AND t.wake_at IS NOT NULL AND t.id <> p_id
         FOR NO KEY UPDATE OF t SKIP LOCKED
    )
    UPDATE dw.executions e
       SET rate_first_slot_at = COALESCE(e.rate_first_slot_at, e.rate_slot_at),
           rate_slot_at = e.rate_slot_at + p_spacing, wake_at = e.wake_at + p_spacing
      FROM behind b WHERE e.id = b.id;
$$;

-- May this Pending root run start now under its workflow's limits? Called by
-- dw.try_acquire_execution_v4 with the run's row locked. throttled_by NULL: yes (the start is
-- counted). 'concurrency': maxConcurrentExecutions root runs are Running or Waiting (retry_at NULL:
-- when one ends, which the worker polls for). 'rate': rateLimitPerMinute N allows one start every
-- 60/N s, with no burst, so that no window of 60 s ever holds more than N starts; retry_at is the
-- run's turn. A run is promised a start time (rate_slot_at) when it first waits, so that waiting runs
-- wake one by one rather than all at each free slot; the start itself still waits for the spacing
-- after the last actual start. Promises go by priority, then arrival: a run goes ahead of the lower
-- ones waiting, which move back a turn each, but none ever to more than a minute after its first
-- promise (rate_first_slot_at), so a stream of higher runs delays a promised run by a minute at most. A workflow without limits takes no lock.
CREATE OR REPLACE FUNCTION dw.admit_root_run_v1(p_e dw.executions)
    RETURNS TABLE (throttled_by text, retry_at timestamptz) LANGUAGE plpgsql AS $$
DECLARE
    v_concurrent integer;
    v_rate integer;
    v_last timestamptz;
    v_running integer;
    v_spacing interval;
    v_slot timestamptz;
    v_earliest timestamptz;
    v_now timestamptz;
BEGIN
    SELECT w.max_concurrent_executions, w.rate_limit_per_minute INTO v_concurrent, v_rate
      FROM dw.workflows w WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id;
    IF v_concurrent IS NULL AND v_rate IS NULL THEN
        RETURN QUERY SELECT NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    -- One admission at a time per limited workflow: the count and the spacing hold.
    SELECT w.max_concurrent_executions, w.rate_limit_per_minute, w.rate_last_start_at
      INTO v_concurrent, v_rate, v_last
      FROM dw.workflows w WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id FOR NO KEY UPDATE;
    IF v_concurrent IS NOT NULL THEN
        -- A suspended run that had started keeps its place: resuming it does not pass through
        -- here again. Not one suspended Pending (a redriven run not admitted again: it passes
        -- through here when resumed, dw.suspended_pending_v1).
        SELECT count(*) INTO v_running FROM dw.executions e
         WHERE e.workflow_id = p_e.workflow_id AND e.tenant_id = p_e.tenant_id AND e.depth = 0
           -- The status list first, so that it stays in the (tenant_id, workflow_id, status) index
           -- condition under any plan, and a workflow's history of ended runs is not read.
           AND e.status IN ('Running', 'Waiting', 'Suspended')
           AND (e.status <> 'Suspended' OR (e.started_at IS NOT NULL AND NOT dw.suspended_pending_v1(e.id)));
        IF v_running >= v_concurrent THEN
            RETURN QUERY SELECT 'concurrency'::text, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;
    IF v_rate IS NOT NULL THEN
        -- The admission's own time, once the workflow's row is locked: now() is when the transaction
        -- began, and the admitting transaction (a worker's fetch of a batch, a wait for this lock
        -- behind another worker's) may be old by then; two starts 3.6 ms apart were admitted at 60
        -- a minute when the first's transaction had begun 1.5 s before (a review).
        v_now := clock_timestamp();
        v_spacing := make_interval(secs => 60.0 / v_rate);
        v_slot := p_e.rate_slot_at;
        IF v_slot IS NULL THEN
            -- Its turn (dw.rate_turn_v1), and the lower runs promised that time or later move back
            -- one turn each (dw.move_rate_promises_back_v1).
            v_slot := dw.rate_turn_v1(p_e.tenant_id, p_e.workflow_id, p_e.id, p_e.priority, v_spacing, v_last,
                                      v_now);
            PERFORM dw.move_rate_promises_back_v1(p_e.tenant_id, p_e.workflow_id, p_e.id, p_e.priority, v_spacing,
                                                  v_slot, NULL);
            UPDATE dw.workflows w SET rate_next_slot_at = GREATEST(w.rate_next_slot_at, v_slot + v_spacing)
             WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id;
        END IF;
        -- GREATEST ignores NULL: the first start of a workflow waits for nobody.
        v_earliest := GREATEST(v_slot, v_last + v_spacing);
        IF v_earliest > v_now THEN
            IF p_e.rate_slot_at IS DISTINCT FROM v_slot THEN
                UPDATE dw.executions e SET rate_slot_at = v_slot WHERE e.id = p_e.id;
            END IF;
            RETURN QUERY SELECT 'rate'::text, v_earliest;
            RETURN;
        END IF;
        UPDATE dw.workflows w SET rate_last_start_at = v_now
         WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id;
        -- The run's recorded start is its admission's time too (the acquire keeps a started_at it
        -- finds): with its transaction's start, two recorded starts came closer than the rate
        -- allows although their admissions did not (a review).
        UPDATE dw.executions e SET rate_slot_at = NULL, rate_first_slot_at = NULL,
                                   started_at = COALESCE(e.started_at, v_now)
         WHERE e.id = p_e.id;
    END IF;
    RETURN QUERY SELECT NULL::text, NULL::timestamptz;
END;
$$;

-- A run waiting on its row for a promised start time (dw.park_throttled_run_v1) had its priority
-- raised to p_priority (dw.set_execution_priority_v1, which holds the run's row): it is promised
-- again as a run held back now at that priority would be (dw.admit_root_run_v1), if that is earlier
-- than its promise: after the runs it does not go ahead of, and the lower runs promised from that
-- time up to its old one move back a turn each (their wake-ups too), none further than a minute after
-- its first promise (those that far are runs it does not go ahead of). Its old turn is taken by the
-- run just before it, so no turn is left empty; and the rate itself is untouched: a start still waits
-- for the spacing after the last actual start. Lock order as an acquire's: the run (held by the
-- caller), then its workflow; other runs' rows SKIP LOCKED (a run a worker is taking keeps its time),
-- so this never waits for a run's row while it holds the workflow's. Returns the new promise, or NULL
-- when it keeps its own: its turn has come (its job queued or running: no wake-up time), its workflow
-- has no rate limit, or no earlier time is free for it. A lowered run keeps its promise (README "Run
-- priority": moving it back would leave its turn empty or move runs held back before it forward).
CREATE OR REPLACE FUNCTION dw.repromise_raised_run_v1(p_e dw.executions, p_priority integer)
    RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    v_rate integer;
    v_last timestamptz;
    v_spacing interval;
    v_slot timestamptz;
BEGIN
    IF p_e.status <> 'Pending' OR p_e.depth <> 0 OR p_e.rate_slot_at IS NULL OR p_e.wake_at IS NULL
       OR p_e.lease_owner IS NOT NULL OR p_priority <= p_e.priority
       OR EXISTS (SELECT 1 FROM procrastinate_jobs j
                   WHERE (j.args ->> 'execution_id') = p_e.id::text AND j.status IN ('todo', 'doing')) THEN
        RETURN NULL;
    END IF;
    SELECT w.rate_limit_per_minute, w.rate_last_start_at INTO v_rate, v_last
      FROM dw.workflows w WHERE w.id = p_e.workflow_id AND w.tenant_id = p_e.tenant_id FOR NO KEY UPDATE;
    IF v_rate IS NULL THEN
        RETURN NULL;
    END IF;
    v_spacing := make_interval(secs => 60.0 / v_rate);
    -- As dw.admit_root_run_v1 places a run held back now, at the new priority.
    v_slot := dw.rate_turn_v1(p_e.tenant_id, p_e.workflow_id, p_e.id, p_priority, v_spacing, v_last,
                              clock_timestamp());
    IF v_slot >= p_e.rate_slot_at THEN
        RETURN NULL;
    END IF;
    -- Only those promised before its old time: those after it keep theirs (it leaves its turn to
    -- the one just before it).
    PERFORM dw.move_rate_promises_back_v1(p_e.tenant_id, p_e.workflow_id, p_e.id, p_priority, v_spacing, v_slot,
                                          p_e.rate_slot_at);
    -- Its bound stays where it was, or comes earlier: a first promise before its new time is kept
    -- (it may still be moved back to a minute after that one), else the new time is its first.
    UPDATE dw.executions e
       SET rate_slot_at = v_slot, wake_at = GREATEST(v_slot, v_last + v_spacing),
           rate_first_slot_at = CASE WHEN e.rate_first_slot_at < v_slot THEN e.rate_first_slot_at END
     WHERE e.id = p_e.id;
    RETURN v_slot;
END;
$$;

-- A root run its workflow's limits hold back (dw.admit_root_run_v1 said 'throttled') waits on its
-- row until p_wake_at (its turn under the rate, or the next look for a free concurrency slot), as a
-- parked run does: it stays Pending, with no job, and dw.wake_due_runs_v1 queues one when the time
-- comes. Not a job scheduled for later: every fetch walks the queued jobs and passes over those not
-- due (see migration 0034). With p_job_id (and the Procrastinate worker that fetched it), the job the
-- worker ran it under ends in the same transaction (dw.end_run_job_v1), as a park ends it.
-- parked false: the run is no longer Pending and unheld (another worker took it, it ended), or
-- another job of it is queued (a rate change withdrew its turn, a resume, a recovery queued one since
-- the acquire said 'throttled': that job takes it, and its turn is not written over): only the job
-- ends.
CREATE OR REPLACE FUNCTION dw.park_throttled_run_v1(
    p_execution_id uuid, p_wake_at timestamptz, p_job_id bigint, p_job_worker_id bigint
) RETURNS TABLE (parked boolean, job_finished boolean) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dw.executions e SET wake_at = p_wake_at
     WHERE e.id = p_execution_id AND e.status = 'Pending' AND e.lease_owner IS NULL
       AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                        WHERE (j.args ->> 'execution_id') = p_execution_id::text AND j.status = 'todo'
                          AND j.id IS DISTINCT FROM p_job_id);
    parked := FOUND;
    job_finished := dw.end_run_job_v1(p_job_id, p_job_worker_id, p_execution_id);
    RETURN NEXT;
END;
$$;

-- A root run of a workflow with maxConcurrentExecutions ended (dw.finish_execution_v1, or the
-- set-based end of dw.record_attempts_v2) and freed a slot: of the runs that limit holds back
-- (Pending on their rows until their next look, with no rate promise: dw.park_throttled_run_v1),
-- the one of the highest priority, and among those the one whose look comes first, is queued now
-- instead of at that look (DW_THROTTLE_DELAY_SECONDS after it was held back: the one held back
-- longest, unless it lost a slot to another run since). Migration 0081's index holds them in that
-- order, per workflow.
-- Its acquire counts again (dw.admit_root_run_v1): a run started meanwhile may have taken the slot,
-- and then it waits again. SKIP LOCKED: a run a worker is taking or waking at this moment is left
-- to it, and an end never waits here. One run per end: each end frees one slot.
CREATE OR REPLACE FUNCTION dw.hand_over_slot_v1(p_tenant text, p_workflow_id text) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    v_handed bigint;
BEGIN
    WITH next AS (
        SELECT t.id FROM dw.executions t
         WHERE t.tenant_id = p_tenant AND t.workflow_id = p_workflow_id AND t.depth = 0
           AND t.status = 'Pending' AND t.wake_at IS NOT NULL AND t.rate_slot_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                            WHERE (j.args ->> 'execution_id') = t.id::text AND j.status IN ('todo', 'doing'))
         ORDER BY t.priority DESC, t.wake_at
         LIMIT 1
         FOR NO KEY UPDATE OF t SKIP LOCKED
    ), handed AS (
        UPDATE dw.executions e SET wake_at = NULL FROM next WHERE e.id = next.id RETURNING e.id, e.queue
    )
    SELECT count(dw.defer_run_job_v1(handed.id, handed.queue, NULL)) INTO v_handed FROM handed;
END;
$$;

-- Sets a workflow's limits (p_set_*: change this one; a NULL value clears it) and returns the
-- workflow's id, or nothing when it does not exist. When the rate changes, the start times promised
-- under the old rate are withdrawn and those runs are queued now, to be given new ones (a run whose
-- row is locked, being acquired at this moment, keeps its promise). Runs' rows are never waited
-- for: dw.admit_root_run_v1 locks a run, then its workflow; this locks the workflow first.
CREATE OR REPLACE FUNCTION dw.set_workflow_limits_v1(
    p_workflow_id text, p_set_concurrent boolean, p_concurrent integer, p_set_rate boolean, p_rate integer
) RETURNS TABLE (workflow_id text) LANGUAGE plpgsql AS $$
DECLARE
    v_tenant text;
    v_old_rate integer;
    v_requeued bigint;
BEGIN
    -- The session's tenant: a psql session that set none (or '*') means the default one.
    SELECT w.tenant_id, w.rate_limit_per_minute INTO v_tenant, v_old_rate
      FROM dw.workflows w WHERE w.tenant_id = dw.session_tenant_v1() AND w.id = p_workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- Said, not an empty answer: an operator's psql call that matched nothing read as done (a
        -- review), as dw.schedule_v1 says it.
        RAISE EXCEPTION 'workflow % not found in tenant % (the session''s dw.tenant_id; none or * is default)',
            p_workflow_id, dw.session_tenant_v1() USING ERRCODE = 'DW001';
    END IF;
    UPDATE dw.workflows w
       SET max_concurrent_executions = CASE WHEN p_set_concurrent THEN p_concurrent
                                            ELSE w.max_concurrent_executions END,
           rate_limit_per_minute = CASE WHEN p_set_rate THEN p_rate ELSE w.rate_limit_per_minute END,
           updated_at = now()
     WHERE w.id = p_workflow_id AND w.tenant_id = v_tenant;
    IF p_set_rate AND p_rate IS DISTINCT FROM v_old_rate THEN
        UPDATE dw.workflows w SET rate_next_slot_at = NULL WHERE w.id = p_workflow_id AND w.tenant_id = v_tenant;
        WITH promised AS (
            SELECT e.id FROM dw.executions e
             WHERE e.workflow_id = p_workflow_id AND e.tenant_id = v_tenant AND e.status = 'Pending'
               AND e.rate_slot_at IS NOT NULL
             FOR NO KEY UPDATE SKIP LOCKED
        ), withdrawn AS (
            -- They waited on their rows for the old start times (dw.park_throttled_run_v1).
            UPDATE dw.executions e SET rate_slot_at = NULL, rate_first_slot_at = NULL, wake_at = NULL
              FROM promised p WHERE e.id = p.id
            RETURNING e.id, e.queue
        ), unscheduled AS (
            -- Or as jobs scheduled for them (the release before this one).
            DELETE FROM procrastinate_jobs j USING withdrawn w
             WHERE (j.args ->> 'execution_id') = w.id::text AND j.status = 'todo' AND j.scheduled_at > now()
        )
        -- Each queued now, unless a job of its is due already (the statement's snapshot: the
        -- scheduled ones deleted above still show, and are not due).
        SELECT count(dw.defer_run_job_v1(w.id, w.queue, NULL)) INTO v_requeued
          FROM withdrawn w
         WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                            WHERE (j.args ->> 'execution_id') = w.id::text AND j.status = 'todo'
                              AND (j.scheduled_at IS NULL OR j.scheduled_at <= now()));
    END IF;
    RETURN QUERY SELECT p_workflow_id;
END;
$$;

-- Deletes up to p_limit API token buckets that are full again (as good as no row); returns how many.
CREATE OR REPLACE FUNCTION dw.prune_api_rate_buckets_v1(p_limit integer)
    RETURNS integer LANGUAGE sql AS $$
    WITH full_again AS (
        SELECT b.tenant_id, b.subject FROM dw.api_rate_buckets b
         WHERE b.full_at < now()
         ORDER BY b.full_at
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    ), deleted AS (
        DELETE FROM dw.api_rate_buckets b USING full_again f
         WHERE b.tenant_id = f.tenant_id AND b.subject = f.subject AND b.full_at < now()
        RETURNING 1
    )
    SELECT count(*)::integer FROM deleted;
$$;
