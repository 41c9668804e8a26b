-- Events (migration 0074, README "Events"): a CloudEvent published to the tenant starts a run of
-- each workflow whose enabled event trigger subscribes to its type.

-- Whether a trigger's eventType pattern takes a type: the type itself, a prefix ending in ".*"
-- ("order.*" takes "order.created" and "order.item.added", not "order" or "orders.x"), or "*".
CREATE OR REPLACE FUNCTION dw.event_type_matches_v1(p_pattern text, p_type text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$
    SELECT p_pattern = '*' OR p_pattern = p_type
        OR (right(p_pattern, 2) = '.*' AND starts_with(p_type, left(p_pattern, -1)));
$$;

-- Publishes one event: its row (or, when its (source, id) was published before, the first one's:
-- duplicate, with the deliveries it made; another type, subject or data under that (source, id) is
-- DW022), then, for each enabled event trigger of the tenant that matches (its eventType, and its
-- source when it names one), a run of the trigger's workflow (dw.start_triggered_v1: request id
-- "event:<row>:<trigger id>", a run per trigger as a webhook's: with "event:<row>", two triggers of one
-- workflow shared it, and the second was answered with the first one's run, which named the other
-- trigger; its trigger payload the event's data object, or {"data": …} for another value,
-- with firedBy), or the reason it could not start (refused). The triggers are key-share locked in
-- id order (a trigger deleted meanwhile waits for this transaction). One row per delivery, or one
-- with no trigger when none matched.
CREATE OR REPLACE FUNCTION dw.publish_event_v1(
    p_source text, p_event_id text, p_type text, p_subject text, p_time timestamptz, p_data jsonb,
    p_principal text, p_queue text
) RETURNS TABLE (event_row bigint, duplicate boolean, received_at timestamptz, trigger_id uuid, workflow_id text,
                 outcome text, execution_id uuid, reason text)
    LANGUAGE plpgsql AS $$
DECLARE
    v_row bigint;
    v_first dw.events;
    v_t dw.triggers;
    v_started record;
    v_payload jsonb;
    v_fired jsonb;
    v_at timestamptz;
BEGIN
    -- Three tries: the first publication's row may be pruned (retention) between the conflict and
    -- the read of it; the event is then published anew rather than refused as another one.
    FOR i IN 1..3 LOOP
        INSERT INTO dw.events AS ev (source, event_id, type, subject, time, data, published_by)
        VALUES (p_source, p_event_id, p_type, p_subject, p_time, p_data, p_principal)
        ON CONFLICT ON CONSTRAINT events_once DO NOTHING
        RETURNING ev.id, ev.received_at INTO v_row, v_at;
        EXIT WHEN v_row IS NOT NULL;
        SELECT * INTO v_first FROM dw.events ev
         WHERE ev.tenant_id = current_setting('dw.tenant_id', true) AND ev.source = p_source
           AND ev.event_id = p_event_id;
        EXIT WHEN FOUND;
    END LOOP;
    IF v_row IS NULL THEN
        IF v_first.id IS NULL THEN
            RAISE EXCEPTION 'event % of source % could not be published: its first publication was being pruned',
                p_event_id, p_source USING ERRCODE = '40001';
        END IF;
        IF v_first.type IS DISTINCT FROM p_type OR v_first.subject IS DISTINCT FROM p_subject
           OR v_first.data IS DISTINCT FROM p_data THEN
            RAISE EXCEPTION 'event % of source % was already published with another %', p_event_id, p_source,
                CASE WHEN v_first.type IS DISTINCT FROM p_type THEN 'type'
                     WHEN v_first.subject IS DISTINCT FROM p_subject THEN 'subject' ELSE 'data' END
                USING ERRCODE = 'DW022', HINT = 'a CloudEvent is identified by its source and id: use a new id';
        END IF;
        RETURN QUERY
        SELECT v_first.id, true, v_first.received_at, d.trigger_id, d.workflow_id, d.outcome, d.execution_id, d.reason
          FROM dw.event_deliveries d
         WHERE d.tenant_id = v_first.tenant_id AND d.event_row = v_first.id
         ORDER BY d.trigger_id;
        IF NOT FOUND THEN
            RETURN QUERY SELECT v_first.id, true, v_first.received_at, NULL::uuid, NULL::text, NULL::text,
                                NULL::uuid, NULL::text;
        END IF;
        RETURN;
    END IF;

    FOR v_t IN
        SELECT * FROM dw.triggers t
         WHERE t.tenant_id = current_setting('dw.tenant_id', true) AND t.kind = 'event' AND t.enabled
           AND dw.event_type_matches_v1(t.config ->> 'eventType', p_type)
           AND (t.config ->> 'source' IS NULL OR t.config ->> 'source' = p_source)
         ORDER BY t.id
           FOR KEY SHARE
    LOOP
        v_fired := jsonb_strip_nulls(jsonb_build_object(
            'kind', 'event', 'triggerId', v_t.id, 'name', v_t.name, 'eventId', p_event_id, 'source', p_source,
            'type', p_type, 'subject', p_subject, 'time', p_time));
        v_payload := CASE WHEN jsonb_typeof(p_data) = 'object' THEN p_data ELSE jsonb_build_object('data', p_data) END
                     || jsonb_build_object('firedBy', v_fired);
        BEGIN
            SELECT * INTO v_started
              FROM dw.start_triggered_v1(v_t.id, 'event:' || v_row || ':' || v_t.id, v_payload, p_queue);
            INSERT INTO dw.event_deliveries (event_row, trigger_id, workflow_id, outcome, execution_id)
            VALUES (v_row, v_t.id, v_t.workflow_id, 'started', v_started.execution_id);
        EXCEPTION WHEN SQLSTATE 'DW001' OR SQLSTATE 'DW002' THEN
            INSERT INTO dw.event_deliveries (event_row, trigger_id, workflow_id, outcome, reason)
            VALUES (v_row, v_t.id, v_t.workflow_id, 'refused', SQLERRM);
        END;
    END LOOP;
    RETURN QUERY
    SELECT v_row, false, v_at, d.trigger_id, d.workflow_id, d.outcome, d.execution_id, d.reason
      FROM dw.event_deliveries d
     WHERE d.tenant_id = current_setting('dw.tenant_id', true) AND d.event_row = v_row
     ORDER BY d.trigger_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT v_row, false, v_at, NULL::uuid, NULL::text, NULL::text, NULL::uuid, NULL::text;
    END IF;
END;
$$;

-- Removes a batch of events older than p_keep_seconds (the workers' retention pass; their
-- deliveries go with them). A producer's redelivery after that is a new event. Workers share the
-- work, as with webhook deliveries (SKIP LOCKED): a worker's pass waited for another's batch to
-- commit, and then found it gone.
CREATE OR REPLACE FUNCTION dw.prune_events_v1(p_keep_seconds double precision, p_limit integer)
    RETURNS integer LANGUAGE sql AS $$
    WITH old AS (
        SELECT ev.tenant_id, ev.id FROM dw.events ev
         WHERE ev.received_at < now() - make_interval(secs => p_keep_seconds)
         ORDER BY ev.received_at LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM dw.events ev USING old WHERE ev.tenant_id = old.tenant_id AND ev.id = old.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone;
$$;
