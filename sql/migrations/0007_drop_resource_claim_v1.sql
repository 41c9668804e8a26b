-- Callers moved to claim_resource_v2 / release_resource_claim_v2 (claims owned by an attempt).
DROP FUNCTION IF EXISTS dw.claim_resource_v1(text, text, text, text, uuid, text, double precision);
DROP FUNCTION IF EXISTS dw.release_resource_claim_v1(text, text, text, uuid, text);
