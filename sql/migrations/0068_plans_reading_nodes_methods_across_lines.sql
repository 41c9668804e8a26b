-- Migration 0066 again, for what it missed.
-- * Spellings across lines: it looked for `nodes`, a method's name and the brackets between them
--   with `\s*`, over the plan's JSON text, where a line break, a tab or another control character
--   between them is an escape (`\n`, `\t`, `\u000b`), not white space. The planner before this
--   release read the template's own text, whose `\s` takes them (and Unicode's other spaces), so
--   `{% set f = nodes\n  .values %}` or `nodes[\n'items'\n]()` was taken for a read of a node named
--   values or items, as 0066 says, and such a plan's nodes stayed unused.
-- * Runs a redrive takes on: 0066 marked the nodes used in runs not ended only, but a run that ended
--   Failed or TimedOut with an open dead letter runs again when it is redriven, and its acquire
--   returns only the outputs of nodes marked used: a run that failed for want of those outputs
--   (a transform's nodes['valueOf']().a on undefined), redriven once the release was in, failed
--   the same way.
-- The plans are found again, those 0066 mended included (their runs are looked at; a plan with no
-- unused node is not changed). Over-counting stays safe (an output loaded and unread).
CREATE TEMPORARY TABLE dw_0068_plans ON COMMIT DROP AS
SELECT p.tenant_id, p.workflow_id, p.version
  FROM dw.workflow_plans p
 WHERE p.plan::text ~ replace(
           'nodes\s*(\.\s*(clear|copy|fromkeys|get|items|keys|pop|popitem|setdefault|update|values'
           '|constructor|hasOwnProperty|isPrototypeOf|propertyIsEnumerable|toLocaleString|toString'
           '|valueOf)(?![\w$])(?!\s*\()'
           '|\[\s*(\\?["''])\s*(clear|copy|fromkeys|get|items|keys|pop|popitem|setdefault|update|values'
           '|constructor|hasOwnProperty|isPrototypeOf|propertyIsEnumerable|toLocaleString|toString'
           '|valueOf)\s*\\?["''])',
           -- Python's \s: ASCII white space and Unicode's spaces (written as themselves in jsonb's
           -- text), and the escapes jsonb writes for control characters (\b and the rest: over-counts).
           '\s*', '(?:[\s\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]|\\[bfnrt]|\\u00[01][0-9a-fA-F])*');

UPDATE dw.workflow_plans p
   SET plan = jsonb_set(p.plan, '{nodes}', (
       SELECT jsonb_agg(n || '{"outputsUsed": true}'::jsonb ORDER BY ord)
         FROM jsonb_array_elements(p.plan -> 'nodes') WITH ORDINALITY AS t(n, ord)))
  FROM dw_0068_plans f
 WHERE (p.tenant_id, p.workflow_id, p.version) = (f.tenant_id, f.workflow_id, f.version)
   AND EXISTS (SELECT 1 FROM jsonb_array_elements(p.plan -> 'nodes') n
                WHERE (n ->> 'outputsUsed')::boolean IS FALSE);

UPDATE dw.node_states s SET outputs_used = true
  FROM dw.executions e JOIN dw_0068_plans f
       ON (e.tenant_id, e.workflow_id, e.workflow_version) = (f.tenant_id, f.workflow_id, f.version)
 WHERE s.execution_id = e.id AND NOT s.outputs_used
   AND (e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
        OR EXISTS (SELECT 1 FROM dw.dead_letters d
                    WHERE d.execution_id = e.id AND d.redriven_at IS NULL AND d.closed_at IS NULL));
