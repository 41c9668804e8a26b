-- A trigger's own priority (README "Run priority"): the runs a schedule, a webhook or an event
-- trigger starts take it (dw.start_triggered_v1), else their workflow's orchestration.priority as
-- before. NULL: none of its own. dw.triggers is small (a row per schedule, webhook or event
-- trigger): the CHECK reads it once, under the ALTER's lock.
ALTER TABLE dw.triggers ADD COLUMN priority integer
    CONSTRAINT triggers_priority_check CHECK (priority BETWEEN -100 AND 100);
