"""The condition helper process: evaluates JavaScript conditions with dukpy, one request a line.

Started by dataworkflows.conditions with an empty environment (so dukpy's process.env is empty),
an empty working directory, no `require`, frozen builtins and resource limits. The parent enforces
the wall-clock limit by killing this process. Protocol: one JSON object per line on stdin,
{"id", "op": "eval"|"value"|"check", "expr", "scope", "max_bytes"}; one JSON answer per line on
stdout, {"id", "ok", "value"} or {"id", "ok": false, "error"}. "eval" coerces the value to a
boolean (a condition); "value" returns it as JSON (a transform), up to max_bytes.
"""

from __future__ import annotations

import resource
from typing import Any

import msgspec

from dataworkflows.confinement import drop_privileges, serve
from dataworkflows.json_depth import MAX_RESULT_DEPTH, json_depth

# Runs once per helper. Removes every host capability dukpy installs (call_python reaches Python,
# require/_dukpy_* load files, process/console talk to the host), then locks the global object so
# one condition cannot leave state behind for the next: every binding becomes non-writable and
# non-configurable (dukpy's per-call `dukpy` variable stays writable but cannot become an accessor),
# builtins and their prototypes are frozen, and no global can be added.
_PRELUDE = """
(function () {
  'use strict';
  var g = globalThis;
  // call_python is re-installed by dukpy before every evaluation, so it stays; the sealed
  // interpreter refuses every call through it.
  var hostile = ['require', 'process', 'console', '_dukpy_cjs_source_compiles',
                 '_dukpy_eval_cjs_source', 'performance', 'queueMicrotask', 'SharedArrayBuffer', 'Atomics',
                 'WeakRef', 'FinalizationRegistry'];
  for (var h = 0; h < hostile.length; h++) { delete g[hostile[h]]; }
  // Scripts written for Node may test process.env: it exists, and it is empty.
  g.process = {env: {}};

  // Deep-freeze everything reachable from the global object, and the intrinsics that are reachable
  // only through values (iterator, generator and typed-array prototypes): shared state is what
  // would let one condition change what the next one computes.
  var seen = [];
  var queue = [g];
  function push(v) {
    if (v !== null && (typeof v === 'object' || typeof v === 'function') && seen.indexOf(v) < 0) {
      seen.push(v); queue.push(v);
    }
  }
  function* gen() {}
  async function* agen() {}
  async function afn() {}
  var extras = [
    Object.getPrototypeOf([][Symbol.iterator]()),
    Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())),
    Object.getPrototypeOf(new Map()[Symbol.iterator]()),
    Object.getPrototypeOf(new Set()[Symbol.iterator]()),
    Object.getPrototypeOf(''[Symbol.iterator]()),
    Object.getPrototypeOf(/x/[Symbol.matchAll](''))
  ];
  [gen, agen, afn, gen(), agen(), Object.getPrototypeOf(Int8Array)].forEach(function (v) { extras.push(v); });
  extras.forEach(push);
  while (queue.length) {
    var o = queue.pop();
    push(Object.getPrototypeOf(o));
    var keys = Object.getOwnPropertyNames(o).concat(Object.getOwnPropertySymbols(o));
    for (var i = 0; i < keys.length; i++) {
      var key = keys[i];
      if (o === g && (key === 'dukpy' || key === 'call_python')) { continue; }
      var d = Object.getOwnPropertyDescriptor(o, key);
      if (!d) { continue; }
      if ('value' in d) { push(d.value); } else { push(d.get); push(d.set); }
    }
    if (o !== g) { Object.freeze(o); }
  }
  // Global bindings: fixed; dukpy's own two stay writable (it re-sets them per call) but cannot
  // become accessors.
  var names = Object.getOwnPropertyNames(g);
  for (var n = 0; n < names.length; n++) {
    var name = names[n];
    var writable = name === 'dukpy' || name === 'call_python';
    Object.defineProperty(g, name, writable ? {configurable: false} : {writable: false, configurable: false});
  }
  Object.preventExtensions(g);
})();
"""

# After every evaluation: if a condition managed to make dukpy's bindings unusable, this helper
# must not serve another one.
_INTEGRITY = """(function () {
  var d = Object.getOwnPropertyDescriptor(globalThis, 'dukpy');
  var c = Object.getOwnPropertyDescriptor(globalThis, 'call_python');
  return !!(d && c && d.writable && c.writable && !d.get && !c.get && !d.configurable && !c.configurable);
})()"""

# The scope is taken off dukpy's global before the expression runs: the expression reaches it only
# through the names bound here, which the plan sees spelled (planning.outputs_read keeps a node's
# outputs in a run only when something names it; `globalThis['duk' + 'py'].scope` names none).
_EVAL = """(function () { 'use strict';
  var __s = dukpy.scope; var trigger = __s.trigger, nodes = __s.nodes, execution = __s.execution;
  var errors = __s.errors || {}; dukpy.scope = undefined;
  return !!(%s
  );
})()"""

# A transform: the expression's value, as JSON (as JSON.stringify writes it: a function or an
# undefined property is left out). A value that is undefined, or a number JSON has no value for
# (NaN, Infinity: a typo such as `l.qty * l.prcie`), is an error; both were recorded as null.
_VALUE = """(function () { 'use strict';
  var __s = dukpy.scope; var trigger = __s.trigger, nodes = __s.nodes, execution = __s.execution;
  var errors = __s.errors || {}; dukpy.scope = undefined;
  var __v = (%s
  );
  if (__v === undefined) { throw new Error("the expression's value is undefined"); }
  var __text = JSON.stringify(__v, function (key, x) {
    if (typeof x === 'number' && !isFinite(x)) {
      throw new Error((key === '' ? 'the value' : 'the value at ' + JSON.stringify(key)) + ' is ' + x
                      + ', which JSON has no value for');
    }
    return x;
  });
  if (__text === undefined) { throw new Error("the expression's value is a " + typeof __v + ', which is not JSON'); }
  return JSON.parse(__text);
})()"""

# Compiled twice: within the parentheses it runs in, and within brackets, so that an expression
# that closes the wrapper's parenthesis and opens one of its own (`a == 1)||(true`) is refused: it
# compiled inside the parentheses, and ran spliced into the wrapper.
_CHECK = """(function () { 'use strict';
  new Function('trigger', 'nodes', 'execution', 'errors', "'use strict'; return (" + dukpy.expr + "\\n);");
  new Function('trigger', 'nodes', 'execution', 'errors', "'use strict'; return [" + dukpy.expr + "\\n];");
  return true;
})()"""


# An error's text, as the helper answers it (the worker keeps its first line, at most 500 characters).
MAX_ERROR_TEXT = 16_384

# Duktape's error for an allocation that failed (a large buffer or string)...
_OUT_OF_MEMORY = "InternalError: out of memory"
# ...and, when not even that error could be allocated (an array grown until the limit), a thrown
# null, which dukpy passes on as the text "null": a transform failed with the message "null". Code
# that throws null itself cannot be told apart from it.
_THROWN_NULL = "null"


class Request(msgspec.Struct):
    id: int
    op: str
    expr: str
    scope: dict[str, Any] | None = None
    # For op "value": the largest answer, in bytes of JSON.
    max_bytes: int = 1_000_000


def _sealed_interpreter() -> Any:
    """dukpy's interpreter with its ways back into Python shut: no module loading (import()),
    no exported Python functions."""
    import dukpy

    class Sealed(dukpy.JSInterpreter):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._funcs.clear()

        def _normalize_module(self, base_name: Any, module_name: Any) -> Any:
            raise RuntimeError("modules are disabled in conditions")

        def _call_python(self, func: Any, json_args: Any) -> Any:
            raise RuntimeError("host calls are disabled in conditions")

        def _check_exported_function_exists(self, func: Any) -> bool:
            return False

    interpreter = Sealed()
    interpreter.evaljs(_PRELUDE)
    return interpreter


def main() -> None:
    interpreter = _sealed_interpreter()
    drop_privileges()

    def answer(request: Request) -> dict[str, Any]:
        try:
            if request.op == "check":
                interpreter.evaljs(_CHECK, expr=request.expr)
                return {"id": request.id, "ok": True, "value": True}
            if request.op == "value":
                return _value(request, interpreter.evaljs(_VALUE % request.expr, scope=request.scope or {}))
            value = interpreter.evaljs(_EVAL % request.expr, scope=request.scope or {})
            return {"id": request.id, "ok": True, "value": bool(value)}
        except Exception as exc:
            # Whole (bounded): the worker cuts it to its first line once the run's scrubber has
            # seen it (cut here, the first line of a multi-line secret was not recognized).
            return {"id": request.id, "ok": False, "error": _error_text(str(exc).strip()) or "error"}

    def intact() -> bool:
        # If a condition managed to make dukpy's bindings unusable, this helper must not serve
        # another one.
        try:
            return interpreter.evaljs(_INTEGRITY) is True
        except Exception:
            return False

    serve(Request, answer, intact=intact)


def _error_text(text: str) -> str:
    """An evaluation's error as the helper answers it: one that ran out of memory says so, and what
    the limit is (until this, a transform that did failed with the message "null")."""
    if text == _THROWN_NULL:
        return f"{_out_of_memory()}, or threw null"
    if text.startswith(_OUT_OF_MEMORY):
        return _out_of_memory()
    return text[:MAX_ERROR_TEXT]


def _out_of_memory() -> str:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return "the expression ran out of memory"
    return f"the expression ran out of memory (its helper's limit is {limit // (1024 * 1024)} MB)"


def _value(request: Request, value: Any) -> dict[str, Any]:
    try:
        size = len(msgspec.json.encode(value))
    except UnicodeEncodeError as exc:
        # A JavaScript string may hold half of a UTF-16 pair ('\ud800'); no JSON text (UTF-8) can.
        lone = "".join(f"\\u{ord(c):04x}" for c in exc.object[exc.start : exc.end][:4])
        error = f"the result holds a lone UTF-16 surrogate ({lone}), which no JSON text can store"
        return {"id": request.id, "ok": False, "error": error}
    if size > request.max_bytes:
        return {"id": request.id, "ok": False, "error": f"the result is {size} bytes of JSON, over {request.max_bytes}"}
    if json_depth(value, MAX_RESULT_DEPTH) > MAX_RESULT_DEPTH:
        # Its answer would nest as deep, and the worker's decoder recurses (about 960 levels
        # crashed it as engine_error).
        return {"id": request.id, "ok": False, "error": f"the result is nested deeper than {MAX_RESULT_DEPTH} levels"}
    return {"id": request.id, "ok": True, "value": value}


if __name__ == "__main__":
    main()
