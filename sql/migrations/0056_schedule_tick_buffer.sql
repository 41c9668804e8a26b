-- A schedule's tick that waits for the schedule's runs to end before it starts its own (overlap
-- bufferOne, and cancelOther, which cancels them first; dw.fire_schedule_v1): buffered is set when the
-- tick is recorded so. While its execution_id is null it waits (dw.start_buffered_ticks_v1 starts it
-- once none of the schedule's runs is going); with a run, that run started after the wait; a
-- buffered tick dropped (a newer one took its place, or its schedule was disabled) is set back to
-- false and reads as a tick without a run, with overlapped_by, as overlap skip records one.
ALTER TABLE dw.schedule_ticks ADD COLUMN IF NOT EXISTS buffered boolean NOT NULL DEFAULT false;

-- dw.v_schedule_ticks with it (a view's new column can only be appended, and the reporting views
-- end with tenant_id: made again, its grant with it).
DROP VIEW dw.v_schedule_ticks;
CREATE VIEW dw.v_schedule_ticks WITH (security_barrier = true) AS
SELECT k.trigger_id, t.name AS trigger_name, t.kind AS trigger_kind, t.workflow_id,
       k.tick_at, k.fired_at, extract(epoch FROM k.fired_at - k.tick_at) AS lateness_seconds,
       k.execution_id, k.missed_ticks, k.overlapped_by, k.buffered, k.tenant_id
  FROM dw.schedule_ticks k
  JOIN dw.triggers t ON t.id = k.trigger_id
 WHERE dw.tenant_visible(k.tenant_id);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dw_reporting') THEN
        GRANT SELECT ON dw.v_schedule_ticks TO dw_reporting;
    END IF;
END;
$$;
