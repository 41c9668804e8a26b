-- A signed webhook's secret is rotated in place (POST /api/v1/triggers/{id}/secret): its hook URL
-- stays. The secret it replaces may stay valid for a while (previous_secret until
-- previous_secret_until), so that the sender can be switched without refused deliveries. Until
-- this release a leaked secret meant deleting the trigger and creating one under a new URL.
ALTER TABLE dw.triggers
    ADD COLUMN previous_secret bytea,
    ADD COLUMN previous_secret_until timestamptz;
ALTER TABLE dw.triggers ADD CONSTRAINT triggers_previous_secret_check
    CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL));
