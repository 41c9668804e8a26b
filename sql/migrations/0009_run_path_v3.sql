-- The worker's procedures take explicit arguments instead of sentinels and sniffed keys:
-- record_attempt_v3 takes the decided outcome (no fired = NULL meaning "unhandled") and the
-- resource links itself; complete_execution_v2 takes the dead-letter node (no p_error ->> 'nodeId');
-- try_acquire_execution_v3 returns the run with the lease. The versions they replace were wrappers
-- around each other and go (sql/procedures no longer creates them). A worker of the previous
-- release calls the dropped functions: stop old workers before migrating.
DROP FUNCTION IF EXISTS dw.record_attempt_v2(uuid, bigint, text, integer, text, text, jsonb, jsonb, jsonb,
    timestamptz, timestamptz, text, text, timestamptz, boolean[], jsonb);
DROP FUNCTION IF EXISTS dw.record_attempt_v1(uuid, bigint, text, integer, text, text, jsonb, jsonb, jsonb,
    timestamptz, timestamptz, text, text, timestamptz, boolean[]);
DROP FUNCTION IF EXISTS dw.complete_execution_v1(uuid, bigint, text, jsonb);
DROP FUNCTION IF EXISTS dw.try_acquire_execution_v2(uuid, text, double precision);
DROP FUNCTION IF EXISTS dw.try_acquire_execution_v1(uuid, text, double precision);
