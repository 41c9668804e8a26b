-- A disabled schedule has no next tick: disabling it (PATCH enabled false, `triggers disable`) now
-- clears next_tick_at, as the scheduler's own disabling (dw.schedule_failed_v1) always did, and
-- enabling it computes the next tick afresh. Until this release a disable kept the tick it had, so
-- the API, the CLI and dw.v_schedules showed a next tick that would never fire. This clears the ones
-- left by earlier disables (the scheduler reads only enabled schedules, so nothing else changes).
UPDATE dw.triggers SET next_tick_at = NULL
 WHERE kind = 'schedule' AND NOT enabled AND next_tick_at IS NOT NULL;
