-- Plans compiled before this release took a name of `nodes`' own methods, uncalled or as a key
-- (`nodes.values`, `nodes.get` passed along, `nodes['items']`, `nodes['valueOf']`: in Jinja an
-- attribute of the mapping comes before its items, in JavaScript every object has Object.prototype's
-- names), for a read of the node so named, and marked the nodes actually read as unused
-- (outputsUsed false): a run's worker did not load their outputs, and such a template or
-- condition saw none (planning.outputs_read now reads every node for them). Every node of such a
-- plan is now used, and so in its runs that have not ended, and in its ended runs with an open dead
-- letter, which a redrive runs again (a run that failed for want of those outputs, redriven once the
-- release is in, would fail the same way). Found in the plan's JSON text, where white space the
-- planner's `\s` took between `nodes` and the name (a line break, a tab, another control character)
-- is an escape (`\n`, `\t`, `\u000b`). Over-counting is safe (a spelling inside a string, a called
-- method that was read right): loading an output that nothing reads costs memory, not a wrong value.
CREATE TEMPORARY TABLE dw_0066_plans ON COMMIT DROP AS
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
  FROM dw_0066_plans f
 WHERE (p.tenant_id, p.workflow_id, p.version) = (f.tenant_id, f.workflow_id, f.version)
   AND EXISTS (SELECT 1 FROM jsonb_array_elements(p.plan -> 'nodes') n
                WHERE (n ->> 'outputsUsed')::boolean IS FALSE);

UPDATE dw.node_states s SET outputs_used = true
  FROM dw.executions e JOIN dw_0066_plans f
       ON (e.tenant_id, e.workflow_id, e.workflow_version) = (f.tenant_id, f.workflow_id, f.version)
 WHERE s.execution_id = e.id AND NOT s.outputs_used
   AND (e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')
        OR EXISTS (SELECT 1 FROM dw.dead_letters d
                    WHERE d.execution_id = e.id AND d.redriven_at IS NULL AND d.closed_at IS NULL));
