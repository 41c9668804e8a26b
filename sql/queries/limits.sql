-- name: take_api_token
-- Takes a token from a caller's bucket (made full on first use), refilled for the time since its last request: one statement, so API processes that share the database share the bucket (concurrent requests of one caller queue on its row). Returns what is left and whether it was let through.
INSERT INTO dw.api_rate_buckets AS b (tenant_id, subject, tokens, granted, updated_at, full_at)
VALUES (%(tenant)s, %(subject)s, %(burst)s::double precision - 1, true, now(),
        now() + make_interval(secs => 1 / %(per_second)s::double precision))
ON CONFLICT (tenant_id, subject) DO UPDATE
   SET tokens = dw.api_bucket_level_v1(b.tokens, b.updated_at, %(burst)s, %(per_second)s)
                - CASE WHEN dw.api_bucket_level_v1(b.tokens, b.updated_at, %(burst)s, %(per_second)s) >= 1
                       THEN 1 ELSE 0 END,
       granted = dw.api_bucket_level_v1(b.tokens, b.updated_at, %(burst)s, %(per_second)s) >= 1,
       updated_at = now(),
       full_at = now() + make_interval(secs => (%(burst)s::double precision
                 - dw.api_bucket_level_v1(b.tokens, b.updated_at, %(burst)s, %(per_second)s)
                 + CASE WHEN dw.api_bucket_level_v1(b.tokens, b.updated_at, %(burst)s, %(per_second)s) >= 1
                        THEN 1 ELSE 0 END) / %(per_second)s::double precision)
RETURNING b.tokens, b.granted;

-- name: prune_api_rate_buckets
-- Deletes a batch of API token buckets that are full again.
SELECT dw.prune_api_rate_buckets_v1(%(limit)s) AS deleted;

-- name: set_workflow_limits
-- Sets or clears a workflow's maxConcurrentExecutions and rateLimitPerMinute (see dw.set_workflow_limits_v1).
SELECT * FROM dw.set_workflow_limits_v1(%(id)s, %(set_concurrent)s, %(max_concurrent)s, %(set_rate)s,
                                        %(rate_per_minute)s);

-- name: published_limits
-- The limits a version's definition states under orchestration (a key that is absent: not stated).
SELECT v.definition -> 'orchestration' ? 'maxConcurrentExecutions' AS sets_concurrent,
       (v.definition -> 'orchestration' ->> 'maxConcurrentExecutions')::numeric::integer AS max_concurrent,
       v.definition -> 'orchestration' ? 'rateLimitPerMinute' AS sets_rate,
       (v.definition -> 'orchestration' ->> 'rateLimitPerMinute')::numeric::integer AS rate_per_minute
  FROM dw.workflow_versions v
 WHERE v.tenant_id = dw.session_tenant_v1() AND v.workflow_id = %(id)s AND v.version = %(version)s;
