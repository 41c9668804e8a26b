-- Rate limits (issue 14): the API's token buckets per caller, and per-workflow start limits.

-- One token bucket per API caller, shared by every API process (take_api_token in
-- sql/queries/limits.sql takes a token in one statement). tenant_id + subject is the caller:
-- subject 'principal:<id>', 'address:<client address>' (anonymous), or 'hook:<trigger id>' (webhook
-- receivers, tenant '-'). No row-level security on purpose: the limiter runs before the request's
-- tenant is known to the database, and a row holds no data of the tenant's beyond a caller's name.
-- UNLOGGED: no WAL, so taking a token commits without a WAL flush; a crash empties the table
-- (every bucket full again) and standbys do not have it, which for rate limiting is harmless.
CREATE UNLOGGED TABLE dw.api_rate_buckets (
    tenant_id   text NOT NULL,
    subject     text NOT NULL,
    -- Tokens left at updated_at (fractional: the bucket refills continuously).
    tokens      double precision NOT NULL,
    -- Whether the last request was let through (RETURNING cannot see the level before the update).
    granted     boolean NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- When the bucket is full again if nobody calls: from then on the row means what no row means,
    -- so workers delete it (prune_api_rate_buckets).
    full_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, subject),
    CONSTRAINT api_rate_buckets_subject_check CHECK (length(subject) <= 300)
);
CREATE INDEX api_rate_buckets_full_idx ON dw.api_rate_buckets (full_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON dw.api_rate_buckets TO dataworkflows_app, dataworkflows_maintenance;

-- Per-workflow start limits for root runs, enforced at acquire (dw.admit_root_run_v1):
-- max_concurrent_executions (0001) and rate_limit_per_minute, a minimum spacing of 60/N seconds
-- between starts. rate_next_slot_at is the next start time not yet promised to a waiting run;
-- rate_last_start_at the last start (the spacing is kept from actual starts, so late starts never
-- bunch up).
ALTER TABLE dw.workflows
    ADD COLUMN rate_limit_per_minute integer,
    ADD COLUMN rate_next_slot_at timestamptz,
    ADD COLUMN rate_last_start_at timestamptz,
    ADD CONSTRAINT workflows_rate_limit_check
        CHECK (rate_limit_per_minute IS NULL OR rate_limit_per_minute BETWEEN 1 AND 60000);

-- The start time promised to a root run that waits for its workflow's rate limit (NULL: none).
ALTER TABLE dw.executions ADD COLUMN rate_slot_at timestamptz;
