-- Issue 18, traces: an execution keeps the W3C trace context of the request that started it
-- (traceparent and tracestate, as a small JSON object), so that the worker that runs it, on any
-- host and after any park, continues the caller's trace (README "Traces").
-- A nullable column: no rewrite, existing runs have none. It is filled by its default, which reads
-- the transaction's dw.trace_context setting: dw.start_execution_traced_v1 sets it around the usual
-- start, so the start procedures stay as they are and a start that carries no context costs
-- nothing more (the setting is unset: NULL). A child run (subworkflow, forEach item) takes its
-- parent's context when it has none of its own: one primary-key read, for children only (WHEN).
ALTER TABLE dw.executions ADD COLUMN trace_context jsonb;
ALTER TABLE dw.executions
    ALTER COLUMN trace_context SET DEFAULT NULLIF(current_setting('dw.trace_context', true), '')::jsonb;

CREATE FUNCTION dw.inherit_trace_context() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.trace_context := (SELECT p.trace_context FROM dw.executions p WHERE p.id = NEW.parent_execution_id);
    RETURN NEW;
END;
$$;
CREATE TRIGGER inherit_trace_context BEFORE INSERT ON dw.executions FOR EACH ROW
    WHEN (NEW.parent_execution_id IS NOT NULL AND NEW.trace_context IS NULL)
    EXECUTE FUNCTION dw.inherit_trace_context();
