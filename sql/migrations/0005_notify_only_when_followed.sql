-- Live events cost one NOTIFY per event in 0003, and PostgreSQL wakes every listening backend on
-- each one (Procrastinate's workers included): about six extra transactions per execution in
-- bench/throughput.py. Now a NOTIFY is sent only for executions that a stream follows, with a
-- constant payload so PostgreSQL folds all of a transaction's events into one notification
-- (streams read the events themselves, by id).
CREATE TABLE dw.event_listeners (
    execution_id  uuid NOT NULL,
    listener      text NOT NULL,
    since         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, listener)
);

CREATE OR REPLACE FUNCTION dw.notify_execution_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM dw.event_listeners l WHERE l.execution_id = NEW.execution_id) THEN
        PERFORM pg_notify('dw_events_' || replace(NEW.execution_id::text, '-', ''), '');
    END IF;
    RETURN NULL;
END;
$$;
