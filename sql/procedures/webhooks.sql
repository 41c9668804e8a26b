-- Webhook deliveries. Callers: the webhook endpoint (api/hooks.py: accept a delivery, record a
-- refused or not activated one) and the workers' recovery loop (prune old rows).
--
-- Every delivery is a row. A delivery id is claimed once per trigger, by the partial unique index
-- webhook_deliveries_once over the outcomes 'accepted' and 'not_activated': a later delivery with
-- that id is a 'duplicate' row that answers with the first delivery's execution (or its
-- not_activated answer) and starts nothing. An accepted delivery's row and its run are written in
-- one transaction, so a run exists exactly when its delivery row does.

-- The webhook trigger, key-share locked so that it cannot be deleted before this transaction ends
-- (the delivery row's foreign key would take the same lock); DW030 when there is none, or when
-- p_enabled_only and it is disabled.
CREATE OR REPLACE FUNCTION dw.lock_webhook_trigger_v1(p_trigger_id uuid, p_enabled_only boolean)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM dw.triggers t
     WHERE t.id = p_trigger_id AND t.kind = 'webhook' AND (t.enabled OR NOT p_enabled_only)
       FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook trigger % not found (or disabled)', p_trigger_id USING ERRCODE = 'DW030';
    END IF;
END;
$$;

-- Claims a delivery id: the delivery's row with p_outcome ('accepted' or 'not_activated'), its id
-- in o_id. When the id was claimed before (a concurrent claim waits for the first one's
-- transaction to end), a 'duplicate' row pointing at the first delivery's execution instead: o_id
-- is NULL and o_first_* describe the first delivery.
-- A signed delivery also claims its content hash (p_content_hash): the same signed request under
-- another delivery id is a replay, answered like a duplicate. That duplicate row does not claim its
-- own delivery id, on purpose (README "Webhooks"): the id header is not signed, so a replay's id is
-- whatever its sender chose, and a claim would let anyone who saw one signed request take ids the
-- real sender has yet to use. A sender's own first delivery under an id is not a replay (its
-- signed content differs), so it claims that id for its retries as usual.
-- p_lapse_seconds (not NULL: an unsigned hook's delivery known by its body's hash, migration 0046):
-- a claim of the id older than that lapses (lapsed_at), and this delivery claims the id again.
CREATE OR REPLACE FUNCTION dw.claim_webhook_delivery_v2(
    p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_outcome text, p_reason text,
    p_status_code integer, p_body_bytes integer, p_received_at timestamptz, p_lapse_seconds double precision,
    OUT o_id bigint, OUT o_first_outcome text, OUT o_first_execution_id uuid
) LANGUAGE plpgsql AS $$
DECLARE
    v_first dw.webhook_deliveries;
BEGIN
    -- Four tries: the first delivery's row may be pruned between the conflict and the read, or
    -- lapse (then the id is claimed again).
    FOR i IN 1..4 LOOP
        -- Either unique index (delivery id, content hash) may refuse it.
        INSERT INTO dw.webhook_deliveries AS d (trigger_id, delivery_id, content_hash, received_at, outcome, reason,
                                                status_code, body_bytes)
        VALUES (p_trigger_id, p_delivery_id, p_content_hash, p_received_at, p_outcome, p_reason, p_status_code,
                p_body_bytes)
        ON CONFLICT DO NOTHING
        RETURNING d.id INTO o_id;
        IF o_id IS NOT NULL THEN
            RETURN;
        END IF;
        -- Locked: two deliveries that find the same lapsed claim lapse it once (the second reads
        -- the claim the first made, once that one commits, on its next try).
        SELECT * INTO v_first FROM dw.webhook_deliveries d
         WHERE d.trigger_id = p_trigger_id
           AND (d.delivery_id = p_delivery_id OR d.content_hash = p_content_hash)
           AND d.outcome IN ('accepted', 'not_activated') AND d.lapsed_at IS NULL
         ORDER BY d.id LIMIT 1
           FOR UPDATE;
        IF FOUND AND p_lapse_seconds IS NOT NULL AND v_first.delivery_id = p_delivery_id
           AND v_first.received_at < p_received_at - make_interval(secs => p_lapse_seconds) THEN
            UPDATE dw.webhook_deliveries d SET lapsed_at = p_received_at WHERE d.id = v_first.id;
        ELSIF FOUND THEN
            -- The first delivery's run, unless retention removed it (a delivery row is kept
            -- DW_WEBHOOK_RETENTION_DAYS, its run its workflow's retention): the answer named it,
            -- and its statusUrl was a 404. NULL then, and the row's reason says why.
            SELECT e.id INTO o_first_execution_id FROM dw.executions e WHERE e.id = v_first.execution_id;
            INSERT INTO dw.webhook_deliveries (trigger_id, delivery_id, received_at, outcome, reason, status_code,
                                               execution_id, body_bytes)
            VALUES (p_trigger_id, p_delivery_id, p_received_at, 'duplicate',
                    -- Which claim it met: its id's, or (a signed request sent again under
                    -- another id) the same request's under its first id.
                    CASE WHEN v_first.delivery_id = p_delivery_id
                         THEN format('delivery id first received at %s (%s)', dw.iso_time_v1(v_first.received_at),
                                     v_first.outcome)
                         ELSE format('the same signed request was first received at %s under delivery id %s (%s)',
                                     dw.iso_time_v1(v_first.received_at), v_first.delivery_id, v_first.outcome)
                    END
                    || CASE WHEN v_first.execution_id IS NOT NULL AND o_first_execution_id IS NULL
                            THEN format('; its run %s was removed (retention)', v_first.execution_id) ELSE '' END,
                    200, o_first_execution_id, p_body_bytes);
            o_first_outcome := v_first.outcome;
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'delivery % of trigger % could not be claimed', p_delivery_id, p_trigger_id
        USING ERRCODE = '40001';
END;
$$;

-- The previous release's claim (no lapse).
CREATE OR REPLACE FUNCTION dw.claim_webhook_delivery_v1(
    p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_outcome text, p_reason text,
    p_status_code integer, p_body_bytes integer, p_received_at timestamptz,
    OUT o_id bigint, OUT o_first_outcome text, OUT o_first_execution_id uuid
) LANGUAGE sql AS $$
    SELECT * FROM dw.claim_webhook_delivery_v2(p_trigger_id, p_delivery_id, p_content_hash, p_outcome, p_reason,
                                        p_status_code, p_body_bytes, p_received_at, NULL) c;
$$;

-- Accepts a delivery: claims its id and starts the trigger's workflow with the payload (request id
-- 'hook:<trigger id>:<delivery id>'), in one transaction. A delivery id claimed before starts
-- nothing: outcome 'duplicate' with the first delivery's execution (NULL when that one was not
-- activated). DW030 when the trigger is gone or disabled; DW001/DW002 when its workflow is gone or
-- not runnable (then nothing is written). `created` is false when nothing new started (a
-- duplicate, or a delivery whose row was pruned but whose run still exists).
-- With p_lapse_seconds (dw.claim_webhook_delivery_v2) the claim is all there is to a duplicate:
-- the run's request id is 'hook:<trigger id>#<delivery row id>', so that a body claimed again once
-- its claim lapsed, or its row was pruned, starts a run of its own. No delivery id a sender names
-- makes it ('hook:<trigger id>:' + the id), nor any requestId of the API (which refuses 'hook:').
CREATE OR REPLACE FUNCTION dw.accept_webhook_delivery_v2(
    p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_payload jsonb, p_queue text, p_body_bytes integer,
    p_received_at timestamptz, p_lapse_seconds double precision
) RETURNS TABLE (outcome text, execution_id uuid, first_outcome text, created boolean)
    LANGUAGE plpgsql AS $$
DECLARE
    v_claim record;
    v_started record;
BEGIN
    PERFORM dw.lock_webhook_trigger_v1(p_trigger_id, true);
    SELECT * INTO v_claim FROM dw.claim_webhook_delivery_v2(
        p_trigger_id, p_delivery_id, p_content_hash, 'accepted', NULL, 202, p_body_bytes, p_received_at,
        p_lapse_seconds);
    IF v_claim.o_id IS NULL THEN
        RETURN QUERY SELECT 'duplicate'::text, v_claim.o_first_execution_id, v_claim.o_first_outcome, false;
        RETURN;
    END IF;
    SELECT * INTO v_started
      FROM dw.start_triggered_v1(p_trigger_id,
                                 'hook:' || p_trigger_id
                                 || CASE WHEN p_lapse_seconds IS NULL THEN ':' || p_delivery_id
                                         ELSE '#' || v_claim.o_id END,
                                 p_payload, p_queue);
    UPDATE dw.webhook_deliveries d
       SET execution_id = v_started.execution_id,
           reason = CASE WHEN v_started.created THEN NULL ELSE 'the run of this delivery id was started before' END
     WHERE d.id = v_claim.o_id;
    RETURN QUERY SELECT 'accepted'::text, v_started.execution_id, 'accepted'::text, v_started.created;
END;
$$;

-- The previous release's accept (no lapse).
CREATE OR REPLACE FUNCTION dw.accept_webhook_delivery_v1(
    p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_payload jsonb, p_queue text, p_body_bytes integer,
    p_received_at timestamptz
) RETURNS TABLE (outcome text, execution_id uuid, first_outcome text, created boolean)
    LANGUAGE sql AS $$
    SELECT * FROM dw.accept_webhook_delivery_v2(p_trigger_id, p_delivery_id, p_content_hash, p_payload, p_queue,
                                                p_body_bytes, p_received_at, NULL);
$$;

-- Records a delivery that starts nothing: 'refused' (a bad signature, a stale timestamp, a body,
-- condition or template that could not be used: p_status_code is the answer given) or
-- 'not_activated' (the activation condition was false), which claims its delivery id like an
-- accepted one, so that a replay of it is a duplicate. Nothing is recorded for a trigger deleted
-- meanwhile (no row comes back).
CREATE OR REPLACE FUNCTION dw.record_webhook_delivery_v2(
    p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_outcome text, p_reason text, p_status_code integer,
    p_body_bytes integer, p_received_at timestamptz, p_lapse_seconds double precision
) RETURNS TABLE (outcome text, execution_id uuid, first_outcome text, created boolean)
    LANGUAGE plpgsql AS $$
DECLARE
    v_claim record;
BEGIN
    IF p_outcome NOT IN ('refused', 'not_activated') THEN
        RAISE EXCEPTION 'a recorded delivery is refused or not_activated, not %', p_outcome USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM dw.triggers t WHERE t.id = p_trigger_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_outcome = 'refused' THEN
        INSERT INTO dw.webhook_deliveries (trigger_id, delivery_id, received_at, outcome, reason, status_code,
                                           body_bytes)
        VALUES (p_trigger_id, p_delivery_id, p_received_at, 'refused', p_reason, p_status_code, p_body_bytes);
        RETURN QUERY SELECT 'refused'::text, NULL::uuid, NULL::text, false;
        RETURN;
    END IF;
    SELECT * INTO v_claim FROM dw.claim_webhook_delivery_v2(
        p_trigger_id, p_delivery_id, p_content_hash, 'not_activated', p_reason, p_status_code, p_body_bytes,
        p_received_at, p_lapse_seconds);
    IF v_claim.o_id IS NULL THEN
        RETURN QUERY SELECT 'duplicate'::text, v_claim.o_first_execution_id, v_claim.o_first_outcome, false;
    ELSE
        RETURN QUERY SELECT 'not_activated'::text, NULL::uuid, 'not_activated'::text, false;
    END IF;
END;
$$;

-- The previous release's record (no lapse).
CREATE OR REPLACE FUNCTION dw.record_webhook_delivery_v1(
    p_trigger_id uuid, p_delivery_id text, p_content_hash text, p_outcome text, p_reason text, p_status_code integer,
    p_body_bytes integer, p_received_at timestamptz
) RETURNS TABLE (outcome text, execution_id uuid, first_outcome text, created boolean)
    LANGUAGE sql AS $$
    SELECT * FROM dw.record_webhook_delivery_v2(p_trigger_id, p_delivery_id, p_content_hash, p_outcome, p_reason,
                                                p_status_code, p_body_bytes, p_received_at, NULL);
$$;

-- Deletes up to p_limit delivery rows received more than p_keep_seconds ago, oldest first; workers
-- share the work (SKIP LOCKED). Returns how many it deleted. A pruned accepted delivery's replay
-- under an id its sender named still starts nothing (its run's request id is kept with the run);
-- an unsigned body known by its hash alone starts a run again (dw.accept_webhook_delivery_v2).
CREATE OR REPLACE FUNCTION dw.prune_webhook_deliveries_v1(p_keep_seconds double precision, p_limit integer)
    RETURNS integer LANGUAGE sql AS $$
    WITH doomed AS (
        SELECT d.id FROM dw.webhook_deliveries d
         WHERE d.received_at < now() - make_interval(secs => p_keep_seconds)
         ORDER BY d.received_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM dw.webhook_deliveries d USING doomed WHERE d.id = doomed.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone;
$$;
