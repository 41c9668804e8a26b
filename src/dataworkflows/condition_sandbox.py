"""The condition helper process: evaluates JavaScript conditions with dukpy, one request a line.

Started by dataworkflows.conditions with an empty environment (so dukpy's process.env is empty),
an empty working directory, no `require`, frozen builtins and resource limits. The parent enforces
the wall-clock limit by killing this process. Protocol: one JSON object per line on stdin,
{"id", "op": "eval"|"check", "expr", "scope"}; one JSON answer per line on stdout,
{"id", "ok", "value"} or {"id", "ok": false, "error"}.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

# Runs once per helper: lock down the global object so one condition cannot leave state behind
# for the next (they share an interpreter for speed; helpers are also recycled periodically).
_PRELUDE = """
(function () {
  'use strict';
  var g = globalThis;
  try { delete g.require; } catch (e) {}
  g.require = undefined;
  if (g.process) { g.process.env = {}; }
  var names = Object.getOwnPropertyNames(g);
  for (var i = 0; i < names.length; i++) {
    var v = g[names[i]];
    if (v && (typeof v === 'object' || typeof v === 'function') && names[i] !== 'dukpy' && v !== g) {
      try { Object.freeze(v); if (v.prototype) Object.freeze(v.prototype); } catch (e) {}
    }
  }
  Object.freeze(Object.prototype); Object.freeze(Array.prototype); Object.freeze(Function.prototype);
  Object.preventExtensions(g);
})();
"""

_EVAL = """(function () { 'use strict';
  var __s = dukpy.scope; var trigger = __s.trigger, nodes = __s.nodes, execution = __s.execution;
  return !!(%s
  );
})()"""

_CHECK = """(function () { 'use strict';
  new Function('trigger', 'nodes', 'execution', "'use strict'; return (" + dukpy.expr + "\\n);");
  return true;
})()"""


class Request(msgspec.Struct):
    id: int
    op: str
    expr: str
    scope: dict[str, Any] | None = None


def main() -> None:
    import dukpy

    interpreter = dukpy.JSInterpreter()
    interpreter.evaljs(_PRELUDE)
    decoder = msgspec.json.Decoder(Request)
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            request = decoder.decode(line)
        except msgspec.DecodeError as exc:
            out.write(encoder.encode({"id": -1, "ok": False, "error": f"bad request: {exc}"}) + b"\n")
            out.flush()
            continue
        try:
            if request.op == "check":
                interpreter.evaljs(_CHECK, expr=request.expr)
                answer: dict[str, Any] = {"id": request.id, "ok": True, "value": True}
            else:
                value = interpreter.evaljs(_EVAL % request.expr, scope=request.scope or {})
                answer = {"id": request.id, "ok": True, "value": bool(value)}
        except Exception as exc:
            answer = {"id": request.id, "ok": False, "error": _first_line(str(exc))}
        out.write(encoder.encode(answer) + b"\n")
        out.flush()


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else "error"


if __name__ == "__main__":
    main()
