-- Pruning old schedule ticks (DW_SCHEDULE_TICK_RETENTION_DAYS) finds them by age, every recovery pass.
CREATE INDEX schedule_ticks_fired_idx ON dw.schedule_ticks (fired_at);
