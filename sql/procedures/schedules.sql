-- Schedules: cron rows (like pg_cron's cron.job) that workers' schedulers fire. An operator
-- creates one from psql with dw.schedule_v1 (like cron.schedule) and removes it with
-- dw.unschedule_v1; the API does the same through dw.triggers. The scheduler (workers/scheduler.py)
-- locks due schedules (SKIP LOCKED), computes their ticks with croniter and fires them here, one
-- dw.schedule_ticks row per (schedule, tick) in the transaction that starts the tick's run.

-- One cron field's values (o_values; day-of-week 7 is folded into 0), or why it is not valid
-- (o_problem). p_field: 1 minute, 2 hour, 3 day-of-month, 4 month, 5 day-of-week, 6 second. The
-- grammar and the messages are those of dataworkflows.schedules.parse_cron.
CREATE OR REPLACE FUNCTION dw.cron_field_v1(p_part text, p_field integer, OUT o_values integer[], OUT o_problem text)
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_label text := (ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week', 'second'])[p_field];
    v_low integer := (ARRAY[0, 0, 1, 1, 0, 0])[p_field];
    v_high integer := (ARRAY[59, 23, 31, 12, 7, 59])[p_field];
    v_names text[] := CASE p_field
        WHEN 4 THEN ARRAY['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
        WHEN 5 THEN ARRAY['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']
        ELSE ARRAY[]::text[] END;
    v_names_from integer := CASE p_field WHEN 4 THEN 1 ELSE 0 END;
    v_item text;
    v_match text[];
    v_bounds integer[];
    v_text text;
    v_step integer := 1;
    v_first integer;
    v_last integer;
BEGIN
    o_values := ARRAY[]::integer[];
    FOREACH v_item IN ARRAY string_to_array(p_part, ',') LOOP
        v_match := regexp_match(v_item, '^(?:\*|([0-9]+|[A-Za-z]+)(?:-([0-9]+|[A-Za-z]+))?)(?:/([0-9]+))?$');
        IF v_match IS NULL THEN
            o_problem := format('%s field: "%s" is not *, a value or a range a-b, each with an optional step /n',
                                v_label, v_item);
            RETURN;
        END IF;
        -- The range's ends, as numbers: names looked up, digits range-checked.
        v_bounds := ARRAY[]::integer[];
        FOREACH v_text IN ARRAY ARRAY[v_match[1], v_match[2]] LOOP
            CONTINUE WHEN v_text IS NULL;
            IF v_text ~ '^[0-9]+$' THEN
                IF v_text::numeric NOT BETWEEN v_low AND v_high THEN
                    o_problem := format('%s field: %s is out of range %s-%s', v_label, v_text, v_low, v_high);
                    RETURN;
                END IF;
                v_bounds := v_bounds || v_text::integer;
            ELSIF array_position(v_names, lower(v_text)) IS NULL THEN
                o_problem := format('%s field: unknown name "%s"', v_label, v_text);
                RETURN;
            ELSE
                v_bounds := v_bounds || (array_position(v_names, lower(v_text)) - 1 + v_names_from);
            END IF;
        END LOOP;
        IF v_match[1] IS NULL THEN
            v_first := v_low;
            v_last := v_high;
        ELSE
            v_first := v_bounds[1];
            v_last := COALESCE(v_bounds[2], CASE WHEN v_match[3] IS NOT NULL THEN v_high ELSE v_first END);
            IF v_last < v_first THEN
                o_problem := format('%s field: the range "%s-%s" goes backwards', v_label, v_match[1], v_match[2]);
                RETURN;
            END IF;
        END IF;
        IF v_match[3] IS NOT NULL THEN
            IF v_match[3]::numeric NOT BETWEEN 1 AND v_high - v_low + 1 THEN
                o_problem := format('%s field: step %s is out of range 1-%s', v_label, v_match[3], v_high - v_low + 1);
                RETURN;
            END IF;
            v_step := v_match[3]::integer;
        ELSE
            v_step := 1;
        END IF;
        o_values := o_values || ARRAY(SELECT generate_series(v_first, v_last, v_step));
    END LOOP;
    IF p_field = 5 THEN
        o_values := array_replace(o_values, 7, 0);
    END IF;
    o_values := ARRAY(SELECT DISTINCT v FROM unnest(o_values) v ORDER BY v);
END;
$$;

-- Why a cron expression is not valid (NULL: it is): 5 fields, or 6 with seconds last, or an
-- @name. The same grammar and messages as dataworkflows.schedules.parse_cron.
CREATE OR REPLACE FUNCTION dw.cron_problem_v1(p_cron text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_text text := btrim(COALESCE(p_cron, ''), E' \t\n\r\f\x0B');
    v_parts text[];
    v_field record;
    v_days integer[];
    v_months integer[];
    v_weekdays integer[];
BEGIN
    IF v_text = '' THEN
        RETURN 'the cron expression is empty';
    END IF;
    IF length(p_cron) > 200 THEN
        RETURN 'the cron expression is longer than 200 characters';
    END IF;
    IF left(v_text, 1) = '@' THEN
        IF v_text !~ '^@[A-Za-z]+$' OR lower(v_text) NOT IN ('@yearly', '@annually', '@monthly', '@weekly', '@daily',
                                                              '@midnight', '@hourly') THEN
            RETURN format('unknown cron name "%s"; use one of @yearly, @annually, @monthly, @weekly, @daily, '
                          '@midnight, @hourly', v_text);
        END IF;
        RETURN NULL;
    END IF;
    v_parts := regexp_split_to_array(v_text, '[ \t\n\r\f\v]+');
    IF array_length(v_parts, 1) NOT IN (5, 6) THEN
        RETURN format('a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with '
                      'seconds last; this one has %s', array_length(v_parts, 1));
    END IF;
    FOR i IN 1 .. array_length(v_parts, 1) LOOP
        v_field := dw.cron_field_v1(v_parts[i], i);
        IF v_field.o_problem IS NOT NULL THEN
            RETURN v_field.o_problem;
        END IF;
        CASE i
            WHEN 3 THEN v_days := v_field.o_values;
            WHEN 4 THEN v_months := v_field.o_values;
            WHEN 5 THEN v_weekdays := v_field.o_values;
            ELSE NULL;
        END CASE;
    END LOOP;
    -- A day-of-month none of the months has (30 2 *: February 30th), the day of the week open.
    IF cardinality(v_days) < 31 AND cardinality(v_weekdays) = 7
       AND v_days[1] > (SELECT max((ARRAY[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[m]) FROM unnest(v_months) m) THEN
        RETURN format('the schedule never fires: none of its months has a day %s', v_days[1]);
    END IF;
    RETURN NULL;
END;
$$;

-- Raises DW031 when a cron expression or a time zone is not valid.
CREATE OR REPLACE FUNCTION dw.check_schedule_v1(p_cron text, p_timezone text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_problem text := dw.cron_problem_v1(p_cron);
BEGIN
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'invalid cron expression "%": %', p_cron, v_problem USING ERRCODE = 'DW031';
    END IF;
    -- Names whose meaning depends on the host (localtime, posix/..., right/...) are refused, as
    -- dataworkflows.schedules.zone_problem does.
    IF p_timezone IS NULL OR p_timezone IN ('localtime', 'posixrules') OR p_timezone LIKE 'posix/%'
       OR p_timezone LIKE 'right/%'
       OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = p_timezone) THEN
        RAISE EXCEPTION 'unknown time zone "%"; use an IANA name such as Europe/Berlin or UTC', p_timezone
            USING ERRCODE = 'DW031';
    END IF;
END;
$$;

-- How deeply a JSON value nests, as dataworkflows.validation.json_depth counts (a scalar or an empty
-- container: 1), not looking past p_limit + 1 levels.
CREATE OR REPLACE FUNCTION dw.jsonb_depth_v1(p_value jsonb, p_limit integer) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$
    WITH RECURSIVE walk(value, depth) AS (
        SELECT p_value, 1
        UNION ALL
        SELECT c.value, w.depth + 1
          FROM walk w
          CROSS JOIN LATERAL (
              SELECT e.value FROM jsonb_each(CASE WHEN jsonb_typeof(w.value) = 'object' THEN w.value END) e
              UNION ALL
              SELECT a.value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w.value) = 'array' THEN w.value END) a
          ) c
         WHERE w.depth <= p_limit
    )
    SELECT max(depth) FROM walk;
$$;

-- Creates the schedule of this name, or replaces its workflow, cron, time zone and payload (like
-- cron.schedule): SELECT dw.schedule_v1('nightly', 'reports', '0 2 * * *', 'Europe/Berlin', '{}').
-- Its catchUp and maxCatchUp stay as they were (defaults for a new one), and so does `enabled`. Only
-- a new cron or time zone resets the next tick (a worker's scheduler computes it again, from the
-- moment of the change: updated_at); running the same call again (a deploy) keeps the next tick,
-- so ticks missed while the workers were away are caught up per the schedule's policy. Returns the trigger's id. Raises DW031
-- for an invalid cron, time zone, name or payload, DW001 for an unknown workflow. A new schedule's
-- name and its payload are held to the API's rules (1-128 letters, digits, '.', '_' or '-'; nested
-- at most 32 levels, DW_MAX_TRIGGER_DEPTH's default); a schedule made before keeps its name.
CREATE OR REPLACE FUNCTION dw.schedule_v1(
    p_name text, p_workflow_id text, p_cron text, p_timezone text DEFAULT 'UTC', p_payload jsonb DEFAULT '{}'
) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_cron text := btrim(p_cron, E' \t\n\r\f\x0B');
    v_timezone text := COALESCE(p_timezone, 'UTC');
    v_id uuid;
    v_tenant text := dw.session_tenant_v1();
BEGIN
    IF p_name IS NULL OR length(p_name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a schedule needs a name of 1 to 200 characters' USING ERRCODE = 'DW031';
    END IF;
    IF p_name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'
       AND NOT EXISTS (SELECT 1 FROM dw.triggers t
                        WHERE t.tenant_id = v_tenant AND t.kind = 'schedule' AND t.name = p_name) THEN
        RAISE EXCEPTION 'schedule name "%": a trigger name is 1-128 letters, digits, ''.'', ''_'' or ''-''',
            left(p_name, 200) USING ERRCODE = 'DW031';
    END IF;
    PERFORM dw.check_schedule_v1(v_cron, v_timezone);
    IF p_payload IS NOT NULL AND jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'the payload of schedule % must be a JSON object', p_name USING ERRCODE = 'DW031';
    END IF;
    IF p_payload IS NOT NULL AND dw.jsonb_depth_v1(p_payload, 32) > 32 THEN
        RAISE EXCEPTION 'the payload of schedule % is nested deeper than 32 levels (as the API refuses it)', p_name
            USING ERRCODE = 'DW031';
    END IF;
    -- Locked as the foreign key's check would lock it, but before the insert (as insert_trigger's
    -- read): a delete of the workflow in flight (dw.delete_workflow_v1) makes this wait and then
    -- find no workflow, where the check after the insert raised a foreign key violation.
    PERFORM 1 FROM dw.workflows w WHERE w.tenant_id = v_tenant AND w.id = p_workflow_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', p_workflow_id USING ERRCODE = 'DW001';
    END IF;
    INSERT INTO dw.triggers AS t (tenant_id, workflow_id, kind, name, config, created_by)
    VALUES (v_tenant, p_workflow_id, 'schedule', p_name,
            jsonb_build_object('cron', v_cron, 'timezone', v_timezone, 'payload', COALESCE(p_payload, '{}'::jsonb)),
            session_user)
    ON CONFLICT ON CONSTRAINT triggers_name_key DO UPDATE
       SET workflow_id = EXCLUDED.workflow_id, config = t.config || EXCLUDED.config,
           next_tick_at = CASE WHEN btrim(t.config ->> 'cron', E' \t\n\r\f\x0B') IS DISTINCT FROM v_cron
                                 OR COALESCE(t.config ->> 'timezone', 'UTC') IS DISTINCT FROM v_timezone
                               THEN NULL ELSE t.next_tick_at END,
           error = NULL, updated_at = now()
    RETURNING t.id INTO v_id;
    RETURN v_id;
END;
$$;

-- Deletes the schedule of this name (like cron.unschedule); false when there is none. Its ticks go
-- with it; the runs it started stay (executions.trigger_id keeps its id).
CREATE OR REPLACE FUNCTION dw.unschedule_v1(p_name text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dw.triggers t
     WHERE t.tenant_id = dw.session_tenant_v1() AND t.kind = 'schedule' AND t.name = p_name;
    RETURN FOUND;
END;
$$;

-- Why the workflow cannot start a run (NULL: it can), checked the way dw.start_run_v1 does;
-- takes the workflow's start lock shared first (as that does: migration 0033), so the answer holds
-- until the transaction ends. Checking first keeps a refusal from aborting the scheduler's whole batch.
CREATE OR REPLACE FUNCTION dw.schedule_refusal_v1(p_workflow_id text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_wf dw.workflows;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(dw.workflow_start_key_v1(dw.session_tenant_v1(), p_workflow_id));
    SELECT * INTO v_wf FROM dw.workflows w
     WHERE w.tenant_id = dw.session_tenant_v1() AND w.id = p_workflow_id;
    IF NOT FOUND THEN
        RETURN format('workflow %s not found', p_workflow_id);
    -- Archived or a Draft, and disabled as well: both said, as a start's refusal says them
    -- (dw.start_refusal_v1), so that undoing one is not met by the other.
    ELSIF v_wf.status = 'Archived' THEN
        RETURN format('workflow %s is Archived%s and refuses new executions; publish a version%s', p_workflow_id,
                      CASE WHEN v_wf.is_enabled THEN '' ELSE ' and disabled' END,
                      CASE WHEN v_wf.is_enabled THEN ' to activate it again' ELSE ' and enable it to run it again' END);
    ELSIF v_wf.status <> 'Active' THEN
        RETURN format('workflow %s is a Draft%s; publish it%s to run it', p_workflow_id,
                      CASE WHEN v_wf.is_enabled THEN '' ELSE ' and disabled' END,
                      CASE WHEN v_wf.is_enabled THEN '' ELSE ' and enable it' END);
    ELSIF NOT v_wf.is_enabled THEN
        RETURN format('workflow %s is disabled', p_workflow_id);
    END IF;
    RETURN NULL;
END;
$$;

-- A tick as it appears in request ids and payloads: UTC, whole seconds (cron ticks are).
CREATE OR REPLACE FUNCTION dw.schedule_tick_text_v1(p_tick timestamptz) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT to_char(p_tick AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- Starts a schedule's tick's run (request id 'schedule:<trigger id>:<tick>', the trigger payload
-- {"firedBy": {kind, triggerId, name, tick, missedTicks}, ...config.payload}) and records it on the
-- tick's row. The caller has entered the trigger's tenant and checked that its workflow can run.
CREATE OR REPLACE FUNCTION dw.start_schedule_tick_v1(
    p_t dw.triggers, p_tick timestamptz, p_missed integer, p_queue text
) RETURNS TABLE (execution_id uuid, created boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_text text := dw.schedule_tick_text_v1(p_tick);
    v_started record;
BEGIN
    SELECT * INTO v_started FROM dw.start_triggered_v1(
        p_t.id, 'schedule:' || p_t.id || ':' || v_text,
        CASE WHEN jsonb_typeof(p_t.config -> 'payload') = 'object' THEN p_t.config -> 'payload' ELSE '{}'::jsonb END
        || jsonb_build_object('firedBy', jsonb_build_object(
            'kind', 'schedule', 'triggerId', p_t.id, 'name', p_t.name, 'tick', v_text,
            'missedTicks', COALESCE(p_missed, 0))),
        p_queue);
    UPDATE dw.schedule_ticks k SET execution_id = v_started.execution_id
     WHERE k.trigger_id = p_t.id AND k.tick_at = p_tick;
    RETURN QUERY SELECT v_started.execution_id, v_started.created;
END;
$$;

-- The schedule's runs that have not ended, newest first, at most p_limit
-- (executions_trigger_unfinished_idx), but the run of tick p_tick_text (a tick whose row was pruned
-- while its run went on finds it again: outcome existing).
CREATE OR REPLACE FUNCTION dw.schedule_runs_going_v1(p_trigger_id uuid, p_tick_text text, p_limit integer)
    RETURNS uuid[] LANGUAGE sql STABLE AS $$
    SELECT array_agg(g.id ORDER BY g.created_at DESC)
      FROM (SELECT e.id, e.created_at FROM dw.executions e
             WHERE e.trigger_id = p_trigger_id
               AND e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
               AND e.request_id IS DISTINCT FROM 'schedule:' || p_trigger_id || ':' || p_tick_text
             ORDER BY e.created_at DESC
             LIMIT p_limit) g
$$;

-- (A development build had dw.trigger_row_v1; no release did.)
DROP FUNCTION IF EXISTS dw.trigger_row_v1(uuid);

-- The tick of a schedule that waits for the schedule's runs to end (overlap bufferOne, bufferAll or
-- cancelOther: dw.fire_schedule_v1), started if none is going any more: the oldest when several wait
-- (bufferAll), the others after its run has ended, one at a time. The caller holds the trigger's row
-- and has entered its tenant. A disabled schedule's waiting ticks are dropped (a disabled schedule
-- starts nothing, and its missed ticks are not caught up when it is enabled again): each reads as a
-- tick without a run, overlapped_by naming the run it waited for. A workflow that cannot run any more
-- (archived, a Draft, disabled) ends the wait of every waiting tick as refused (the reason in
-- triggers.error), and a run that cannot start (an error) that tick's as failed (its reason there
-- too; the next waiting tick tries at the scheduler's next pass).
-- outcome: buffer_started | buffer_refused | buffer_failed | buffer_dropped; no row when nothing
-- waits or it still waits.
CREATE OR REPLACE FUNCTION dw.start_buffered_tick_v1(p_t dw.triggers, p_queue text)
    RETURNS TABLE (tick_at timestamptz, fired_at timestamptz, execution_id uuid, outcome text)
    LANGUAGE plpgsql AS $$
DECLARE
    v_k dw.schedule_ticks;
    v_refusal text;
    v_started record;
    v_failure text;
BEGIN
    SELECT * INTO v_k FROM dw.schedule_ticks k
     WHERE k.trigger_id = p_t.id AND k.buffered AND k.execution_id IS NULL
     ORDER BY k.tick_at LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF NOT p_t.enabled THEN
        RETURN QUERY UPDATE dw.schedule_ticks k SET buffered = false
                      WHERE k.trigger_id = p_t.id AND k.buffered AND k.execution_id IS NULL
                  RETURNING k.tick_at, k.fired_at, NULL::uuid, 'buffer_dropped'::text;
        RETURN;
    END IF;
    IF dw.schedule_runs_going_v1(p_t.id, dw.schedule_tick_text_v1(v_k.tick_at), 1) IS NOT NULL THEN
        RETURN;
    END IF;
    v_refusal := dw.schedule_refusal_v1(p_t.workflow_id);
    IF v_refusal IS NOT NULL THEN
        UPDATE dw.triggers t SET error = v_refusal WHERE t.id = p_t.id;
        RETURN QUERY UPDATE dw.schedule_ticks k SET buffered = false
                      WHERE k.trigger_id = p_t.id AND k.buffered AND k.execution_id IS NULL
                  RETURNING k.tick_at, k.fired_at, NULL::uuid, 'buffer_refused'::text;
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO v_started FROM dw.start_schedule_tick_v1(p_t, v_k.tick_at, v_k.missed_ticks, p_queue);
    EXCEPTION WHEN OTHERS THEN
        -- Its run could not start (its workflow's plan is gone, ...): this tick's start is rolled
        -- back, and only this schedule misses it (a review: one such schedule failed every pass, and
        -- with it every other schedule's waiting tick); the reason goes to triggers.error, as a
        -- failed fire's does (workers/scheduler.py, Scheduler._failed).
        GET STACKED DIAGNOSTICS v_failure = MESSAGE_TEXT;
        UPDATE dw.schedule_ticks k SET buffered = false WHERE k.trigger_id = p_t.id AND k.tick_at = v_k.tick_at;
        UPDATE dw.triggers t SET error = left('a run could not start: ' || v_failure, 2000) WHERE t.id = p_t.id;
        RETURN QUERY SELECT v_k.tick_at, v_k.fired_at, NULL::uuid, 'buffer_failed'::text;
        RETURN;
    END;
    UPDATE dw.triggers t SET error = NULL WHERE t.id = p_t.id AND t.error IS NOT NULL;
    RETURN QUERY SELECT v_k.tick_at, v_k.fired_at, v_started.execution_id, 'buffer_started'::text;
END;
$$;

-- The scheduler's look, at each pass, for ticks waiting for their schedule's runs to end
-- (dw.start_buffered_tick_v1): up to p_limit schedules with such a tick whose rows nobody holds
-- (SKIP LOCKED: a scheduler firing one of them handles its waiting tick itself), each as its own
-- tenant. The schedules' rows stay locked until the caller's transaction ends.
CREATE OR REPLACE FUNCTION dw.start_buffered_ticks_v1(p_queue text, p_limit integer)
    RETURNS TABLE (trigger_id uuid, tick_at timestamptz, fired_at timestamptz, execution_id uuid, outcome text)
    LANGUAGE plpgsql AS $$
DECLARE
    v_t dw.triggers;
    v_previous_tenant text;
BEGIN
    FOR v_t IN
        -- Only those whose tick can go now (no run of the schedule going) or is to be dropped: the
        -- limit is never filled by ticks that still wait (a review: 500 of them, the same 500 at
        -- every pass, hid the 501st whose run had ended). A waiting tick has no run of its own yet,
        -- and its request id cannot be taken through the API (schedule: is reserved).
        SELECT t.* FROM dw.triggers t
         WHERE t.id IN (SELECT k.trigger_id FROM dw.schedule_ticks k WHERE k.buffered AND k.execution_id IS NULL)
           AND t.kind = 'schedule'
           AND (NOT t.enabled
                OR NOT EXISTS (SELECT 1 FROM dw.executions e
                                WHERE e.trigger_id = t.id
                                  AND e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')))
         ORDER BY t.id
         LIMIT p_limit
           FOR NO KEY UPDATE OF t SKIP LOCKED
    LOOP
        v_previous_tenant := dw.enter_tenant_v1(v_t.tenant_id);
        RETURN QUERY SELECT v_t.id, b.tick_at, b.fired_at, b.execution_id, b.outcome
                       FROM dw.start_buffered_tick_v1(v_t, p_queue) b;
        PERFORM dw.leave_tenant_v1(v_previous_tenant);
    END LOOP;
END;
$$;

-- Fires a schedule's ticks (oldest first) and moves its next tick; the caller holds the trigger's
-- row (the scheduler's claim). Each tick: a dw.schedule_ticks row (ON CONFLICT DO NOTHING: a tick
-- fires once, whatever the number of schedulers) and, only when that row is new, a run started
-- (dw.start_schedule_tick_v1). A workflow that cannot run (archived, draft, disabled) does not stop
-- the schedule: the tick is recorded without a run (outcome refused), the reason goes to
-- triggers.error, and the schedule goes on ticking; the next tick that starts a run clears the error.
-- First (under cancelOther last, if no new tick took its place), a tick of this schedule waiting
-- for its runs to end starts if none is going any more (dw.start_buffered_tick_v1). The schedule's
-- overlap policy (config "overlap",
-- dataworkflows.schedules) decides what a tick does while a run the schedule started has not ended:
-- * allow starts its run;
-- * skip records the tick without one (overlapped_by: the newest run still going);
-- * bufferOne records the tick as waiting (buffered, overlapped_by: the newest run still going) and
--   dw.start_buffered_ticks_v1 starts its run once none is going; while one tick waits, a newer tick
--   is recorded as skip records it;
-- * bufferAll records every such tick as waiting, and also a tick while others wait (so they start in
--   their order, each once the run before it has ended), up to 1,000 waiting ticks of the schedule: a
--   tick past them is recorded as skip records it;
-- * cancelOther cancels the runs still going (overlapped_by: the newest of them; a run whose row is
--   held elsewhere is left to a dw.cancel_overlapped job) and waits for their end as bufferOne does
--   (starting at once when every one of them ended in its cancel); a newer tick takes the place of one
--   still waiting, which is dropped (buffered set back to false). Of several ticks of one call (a
--   catch-up) only the newest runs under cancelOther, the older ones are recorded without a run
--   (overlapped_by: the newest's run, or the run it waits for).
-- outcome: started | existing (the request id had a run already) | duplicate (the tick had fired) |
-- refused | overlapped (no run: see overlapped_by) | buffered (waits); and for a waiting tick:
-- buffer_started | buffer_refused | buffer_failed | buffer_dropped.
CREATE OR REPLACE FUNCTION dw.fire_schedule_v1(
    p_trigger_id uuid, p_ticks timestamptz[], p_missed integer[], p_next_tick timestamptz, p_queue text
) RETURNS TABLE (tick_at timestamptz, fired_at timestamptz, execution_id uuid, outcome text)
    LANGUAGE plpgsql AS $$
DECLARE
    v_t dw.triggers;
    v_refusal text;
    v_checked boolean := false;
    v_tick timestamptz;
    v_fired_at timestamptz;
    v_last timestamptz;
    v_error text;
    v_started record;
    v_text text;
    v_previous_tenant text;
    v_overlap text;
    v_going uuid[];
    v_waiting timestamptz;
    v_other uuid;
    v_later uuid[];
    v_reason text;
    v_locked boolean;
    v_contended boolean;
    v_lock_timeout text;
    v_superseded timestamptz[] := '{}';
BEGIN
    SELECT * INTO v_t FROM dw.triggers t WHERE t.id = p_trigger_id AND t.kind = 'schedule';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The scheduler claims schedules of every tenant; each one fires as its own tenant.
    v_previous_tenant := dw.enter_tenant_v1(v_t.tenant_id);
    v_overlap := COALESCE(v_t.config ->> 'overlap', 'allow');
    IF v_overlap <> 'cancelOther' THEN
        -- A tick still waiting goes first: the new ticks find its run going. (Under cancelOther a new
        -- tick takes its place instead: it is looked at after them, if still there: a review found it
        -- started, then cancelled at once by the tick that replaced it.)
        RETURN QUERY SELECT b.tick_at, b.fired_at, b.execution_id, b.outcome FROM dw.start_buffered_tick_v1(v_t, p_queue) b;
    END IF;
    -- Its error as that left it.
    SELECT t.error INTO v_error FROM dw.triggers t WHERE t.id = p_trigger_id;
    FOR i IN 1 .. COALESCE(cardinality(p_ticks), 0) LOOP
        v_tick := p_ticks[i];
        INSERT INTO dw.schedule_ticks AS k (trigger_id, tick_at, fired_at, missed_ticks)
        VALUES (p_trigger_id, v_tick, clock_timestamp(), COALESCE(p_missed[i], 0))
        ON CONFLICT DO NOTHING
        RETURNING k.fired_at INTO v_fired_at;
        IF NOT FOUND THEN
            RETURN QUERY SELECT v_tick, k.fired_at, k.execution_id, 'duplicate'::text FROM dw.schedule_ticks k
                          WHERE k.trigger_id = p_trigger_id AND k.tick_at = v_tick;
            CONTINUE;
        END IF;
        v_last := GREATEST(v_last, v_tick);
        IF NOT v_checked THEN
            v_refusal := dw.schedule_refusal_v1(v_t.workflow_id);
            v_checked := true;
        END IF;
        IF v_refusal IS NOT NULL THEN
            v_error := v_refusal;
            RETURN QUERY SELECT v_tick, v_fired_at, NULL::uuid, 'refused'::text;
            CONTINUE;
        END IF;
        v_text := dw.schedule_tick_text_v1(v_tick);
        IF v_overlap = 'cancelOther' AND i < cardinality(p_ticks) THEN
            -- A catch-up's older tick: the newest tick of this call replaces its run at once, so it
            -- starts none (its overlapped_by is the newest tick's run, filled in after the loop).
            v_superseded := v_superseded || v_tick;
            RETURN QUERY SELECT v_tick, v_fired_at, NULL::uuid, 'overlapped'::text;
            CONTINUE;
        END IF;
        IF v_overlap IN ('skip', 'bufferOne', 'bufferAll', 'cancelOther') THEN
            v_going := dw.schedule_runs_going_v1(p_trigger_id, v_text,
                                                 CASE WHEN v_overlap = 'cancelOther' THEN 1000 ELSE 1 END);
            -- A tick of this schedule still waiting for those runs (left by an earlier call).
            v_waiting := (SELECT k.tick_at FROM dw.schedule_ticks k
                           WHERE k.trigger_id = p_trigger_id AND k.buffered AND k.execution_id IS NULL
                           ORDER BY k.tick_at DESC LIMIT 1);
            IF v_going IS NOT NULL THEN
                UPDATE dw.schedule_ticks k SET overlapped_by = v_going[1]
                 WHERE k.trigger_id = p_trigger_id AND k.tick_at = v_tick;
            END IF;
            IF v_overlap = 'skip' AND v_going IS NOT NULL THEN
                RETURN QUERY SELECT v_tick, v_fired_at, NULL::uuid, 'overlapped'::text;
                CONTINUE;
            END IF;
            IF v_overlap IN ('bufferOne', 'bufferAll') AND (v_going IS NOT NULL OR v_waiting IS NOT NULL) THEN
                IF (v_overlap = 'bufferOne' AND v_waiting IS NULL)
                   OR (v_overlap = 'bufferAll' AND (SELECT count(*) FROM (SELECT 1 FROM dw.schedule_ticks k
                                                                           WHERE k.trigger_id = p_trigger_id
                                                                             AND k.buffered AND k.execution_id IS NULL
                                                                           LIMIT 1000) w) < 1000) THEN
                    UPDATE dw.schedule_ticks k SET buffered = true
                     WHERE k.trigger_id = p_trigger_id AND k.tick_at = v_tick;
                    RETURN QUERY SELECT v_tick, v_fired_at, NULL::uuid, 'buffered'::text;
                ELSE
                    -- One tick waits already (bufferOne), or 1,000 do (bufferAll): this one is not
                    -- run (as under skip).
                    RETURN QUERY SELECT v_tick, v_fired_at, NULL::uuid, 'overlapped'::text;
                END IF;
                CONTINUE;
            END IF;
            IF v_overlap = 'cancelOther' AND v_waiting IS NOT NULL THEN
                -- This tick takes the place of the one waiting.
                UPDATE dw.schedule_ticks k SET buffered = false
                 WHERE k.trigger_id = p_trigger_id AND k.tick_at = v_waiting;
            END IF;
            IF v_overlap = 'cancelOther' AND v_going IS NOT NULL THEN
                -- Each run is cancelled here if that takes no wait (as POST /executions/{id}/cancel
                -- does). This transaction holds the scheduler's whole batch of schedules, every
                -- tenant's: a wait here would hold them all (a review stalled it for as long as a psql
                -- session held a run's row), and a wait in a cycle would roll the batch back. So the
                -- run's row is only tried (SKIP LOCKED), and the cancel's other locks (its queued
                -- job's row, which a worker's fetch may hold; a slot's workflow) are waited for 50 ms
                -- at most, in a subtransaction of its own. A run it cannot cancel so (and, after one
                -- such, every run after it) is cancelled by a dw.cancel_overlapped job once this
                -- commits, each in a transaction of its own.
                v_reason := format('schedule %s: its tick %s replaces this run (overlap cancelOther)', v_t.name,
                                   v_text);
                v_later := '{}';
                v_contended := false;
                FOREACH v_other IN ARRAY v_going LOOP
                    -- Locked only if free and still unfinished (the row as last committed: it may have
                    -- ended since the look above, and dw.request_cancel_v1 refuses an ended run).
                    IF NOT v_contended THEN
                        PERFORM 1 FROM dw.executions e
                         WHERE e.id = v_other AND e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
                           FOR NO KEY UPDATE SKIP LOCKED;
                        v_locked := FOUND;
                    END IF;
                    IF NOT v_contended AND v_locked THEN
                        -- Held now, and not ended (nothing ends a run without its row).
                        v_lock_timeout := current_setting('lock_timeout');
                        BEGIN
                            PERFORM set_config('lock_timeout', '50ms', true);
                            PERFORM dw.request_cancel_v1(v_other, 'scheduler', v_reason);
                            PERFORM set_config('lock_timeout', v_lock_timeout, true);
                        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
                            -- Rolled back (the setting with it); the run's own row stays locked.
                            v_contended := true;
                            v_later := v_later || v_other;
                        END;
                    ELSIF v_contended OR EXISTS (
                            SELECT 1 FROM dw.executions e
                             WHERE e.id = v_other AND e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')) THEN
                        v_later := v_later || v_other;  -- its row is held elsewhere, or the job takes the rest
                    END IF;
                END LOOP;
                IF cardinality(v_later) > 0 THEN
                    -- Ahead of every run (as dw.cancel_children: README "Run priority"); the tick's
                    -- run waits for it.
                    PERFORM procrastinate_defer_jobs_v1(ARRAY[ROW(
                        p_queue, 'dw.cancel_overlapped', 1000, NULL, NULL,
                        jsonb_build_object('execution_ids', to_jsonb(v_later::text[]), 'tenant_id', v_t.tenant_id,
                                           'trigger_id', p_trigger_id, 'reason', v_reason),
                        NULL
                    )::procrastinate_job_to_defer_v1]);
                END IF;
                -- The tick's run starts once they have ended: now if each ended in its cancel (one
                -- that was waiting, parked or not yet started), else when the scheduler finds them
                -- ended (dw.start_buffered_ticks_v1).
                IF dw.schedule_runs_going_v1(p_trigger_id, v_text, 1) IS NOT NULL THEN
                    UPDATE dw.schedule_ticks k SET buffered = true
                     WHERE k.trigger_id = p_trigger_id AND k.tick_at = v_tick;
                    RETURN QUERY SELECT v_tick, v_fired_at, NULL::uuid, 'buffered'::text;
                    CONTINUE;
                END IF;
            END IF;
        END IF;
        SELECT * INTO v_started FROM dw.start_schedule_tick_v1(v_t, v_tick, p_missed[i], p_queue);
        v_error := NULL;
        RETURN QUERY SELECT v_tick, v_fired_at, v_started.execution_id,
                            CASE WHEN v_started.created THEN 'started' ELSE 'existing' END;
    END LOOP;
    IF cardinality(v_superseded) > 0 THEN
        -- The older ticks of a cancelOther catch-up name the newest tick's run (started now, or by
        -- an earlier call when that tick had fired already), or the run it waits for.
        UPDATE dw.schedule_ticks k
           SET overlapped_by = (SELECT COALESCE(l.execution_id, l.overlapped_by) FROM dw.schedule_ticks l
                                 WHERE l.trigger_id = p_trigger_id AND l.tick_at = p_ticks[cardinality(p_ticks)])
         WHERE k.trigger_id = p_trigger_id AND k.tick_at = ANY(v_superseded);
    END IF;
    UPDATE dw.triggers t
       SET next_tick_at = p_next_tick, last_tick_at = GREATEST(t.last_tick_at, v_last), error = v_error
     WHERE t.id = p_trigger_id;
    IF v_overlap = 'cancelOther' THEN
        -- A tick still waiting that no new tick replaced (they were duplicates, or refused).
        RETURN QUERY SELECT b.tick_at, b.fired_at, b.execution_id, b.outcome
                       FROM dw.start_buffered_tick_v1((SELECT t FROM dw.triggers t WHERE t.id = p_trigger_id), p_queue) b;
    END IF;
    PERFORM dw.leave_tenant_v1(v_previous_tenant);
END;
$$;

-- The fields of a schedule's config this release's schedulers read (schedules.CONFIG_KEYS: a test
-- keeps the two equal).
CREATE OR REPLACE FUNCTION dw.schedule_config_keys_v1() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['cron', 'timezone', 'catchUp', 'maxCatchUp', 'overlap', 'payload']::text[];
$$;

-- A schedule the scheduler could not fire: the reason in triggers.error; either it is disabled
-- (its config cannot be used: fix it and enable it again) or its due ticks are skipped and it
-- goes on from p_next_tick. Only if the row is as the scheduler claimed it (next tick p_due,
-- updated_at p_updated_at): the caller may no longer hold the claim, and a concurrent fire or
-- change wins.
-- This release's schedulers call v2 (and mark their plans to dw.fire_schedules_v1 "checked"): they
-- read every field this release has. v1 is what the previous release's scheduler calls, still
-- running during a rolling upgrade: it checks a config against its own list of fields and disables
-- a schedule with a field this release added (`overlap`): "its config is not valid: /overlap:
-- unknown field; ...". v1 does not carry out such a plan when every field of the stored config is
-- one this release reads: the schedule stays as it is, due, for a scheduler of this release (a
-- review: the old worker disabled every schedule with `overlap`, and the ticks it missed while off
-- were never caught up). Only the old scheduler's plans are so read: a value of this release's
-- error text (a cron "@unknown field") never keeps a schedule due (a second review).
DROP FUNCTION IF EXISTS dw.schedule_failed_v1(uuid, text, timestamptz, boolean);
CREATE OR REPLACE FUNCTION dw.schedule_failed_v2(
    p_trigger_id uuid, p_error text, p_next_tick timestamptz, p_disable boolean, p_due timestamptz,
    p_updated_at timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dw.triggers t
       SET error = left(p_error, 2000), next_tick_at = CASE WHEN p_disable THEN NULL ELSE p_next_tick END,
           enabled = t.enabled AND NOT p_disable
     WHERE t.id = p_trigger_id AND t.kind = 'schedule' AND t.next_tick_at IS NOT DISTINCT FROM p_due
       AND t.updated_at IS NOT DISTINCT FROM p_updated_at;
END;
$$;

CREATE OR REPLACE FUNCTION dw.schedule_failed_v1(
    p_trigger_id uuid, p_error text, p_next_tick timestamptz, p_disable boolean, p_due timestamptz,
    p_updated_at timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_disable AND p_error LIKE 'its config is not valid: %unknown field%' AND EXISTS (
        SELECT 1 FROM dw.triggers t
         WHERE t.id = p_trigger_id AND jsonb_typeof(t.config) = 'object'
           AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(t.config) k
                            WHERE NOT k = ANY (dw.schedule_config_keys_v1()))) THEN
        RETURN;
    END IF;
    PERFORM dw.schedule_failed_v2(p_trigger_id, p_error, p_next_tick, p_disable, p_due, p_updated_at);
END;
$$;

-- The scheduler's batch: what to do with each schedule it claimed, in one round trip.
-- p_plans: [{"id", "ticks": [timestamptz], "missed": [integer], "next": timestamptz | null,
--            "error": text | null, "disable": boolean, "due": timestamptz | null, "updatedAt": timestamptz}]
--          "checked": true from this release's schedulers (with an error: dw.schedule_failed_v2; a
--          plan without it is a previous release's: dw.schedule_failed_v1).
CREATE OR REPLACE FUNCTION dw.fire_schedules_v1(p_plans jsonb, p_queue text)
    RETURNS TABLE (trigger_id uuid, tick_at timestamptz, fired_at timestamptz, execution_id uuid, outcome text)
    LANGUAGE plpgsql AS $$
DECLARE
    v_plan jsonb;
    v_id uuid;
BEGIN
    FOR v_plan IN SELECT p.value FROM jsonb_array_elements(p_plans) p LOOP
        v_id := (v_plan ->> 'id')::uuid;
        IF v_plan ->> 'error' IS NOT NULL AND COALESCE((v_plan ->> 'checked')::boolean, false) THEN
            PERFORM dw.schedule_failed_v2(v_id, v_plan ->> 'error', (v_plan ->> 'next')::timestamptz,
                                          COALESCE((v_plan ->> 'disable')::boolean, false),
                                          (v_plan ->> 'due')::timestamptz, (v_plan ->> 'updatedAt')::timestamptz);
            CONTINUE;
        ELSIF v_plan ->> 'error' IS NOT NULL THEN
            -- A previous release's plan (see dw.schedule_failed_v1).
            PERFORM dw.schedule_failed_v1(v_id, v_plan ->> 'error', (v_plan ->> 'next')::timestamptz,
                                          COALESCE((v_plan ->> 'disable')::boolean, false),
                                          (v_plan ->> 'due')::timestamptz, (v_plan ->> 'updatedAt')::timestamptz);
            CONTINUE;
        END IF;
        RETURN QUERY
        SELECT v_id, f.tick_at, f.fired_at, f.execution_id, f.outcome
          FROM dw.fire_schedule_v1(
              v_id,
              ARRAY(SELECT jsonb_array_elements_text(COALESCE(v_plan -> 'ticks', '[]'::jsonb))::timestamptz),
              ARRAY(SELECT jsonb_array_elements_text(COALESCE(v_plan -> 'missed', '[]'::jsonb))::integer),
              (v_plan ->> 'next')::timestamptz, p_queue) f;
    END LOOP;
END;
$$;
