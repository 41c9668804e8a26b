-- name: publish_event
-- Publishes a CloudEvent: its row, and a run per matching event trigger (dw.publish_event_v1).
SELECT event_row, duplicate, received_at, trigger_id, workflow_id, outcome, execution_id, reason
  FROM dw.publish_event_v1(%(source)s, %(event_id)s, %(type)s, %(subject)s, %(time)s, %(data)s, %(principal)s,
                           %(queue)s);

-- name: prune_events
-- Deletes a batch of events older than the retention (their deliveries with them).
SELECT dw.prune_events_v1(%(keep_seconds)s, %(limit)s) AS deleted;
