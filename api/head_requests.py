"""HEAD wherever GET is answered (RFC 9110 9.3.2: a general-purpose server supports both): the
request goes through the GET route, as a GET (its guards, rate limits and metrics alike), and the
answer's status and headers are sent without its body; Content-Length stays the GET's. A route with
a HEAD handler of its own (the health checks) keeps it. A streamed answer (an event stream) ends
after its headers: the application is told that the client has gone, as when it hangs up.

Until this release only the health checks took HEAD; every other route answered 405.

The app refuses a path with an encoded slash (%2F) in a segment before it is routed, too
(api/params.py, encoded_slash_refusal)."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.middleware._internal.exceptions import ExceptionHandlerMiddleware
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, LifeSpanReceive, LifeSpanScope, LifeSpanSend, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from .params import encoded_slash_refusal

# Set on a HEAD request's scope that goes through its GET route: the metrics count it as HEAD.
MARK = "dw.head_as_get"
# Set on a request's scope that is refused before routing: the exception its answer is made from.
_REFUSAL = "dw.refusal"


class HeadAsGet(Litestar):
    """Litestar, answering HEAD through the GET route of a path that has no HEAD handler."""

    _own_head: frozenset[str] | None = None
    _allowed: dict[str, list[str]] | None = None

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        fields: Any = scope
        if fields["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if fields["method"] != "HEAD" or fields["path"] in self._paths_with_head():
            await super().__call__(scope, receive, self._allow_all(fields, send))
            return
        answered = False
        forward: Any = self._allow_all(fields, send)
        take: Any = receive

        async def send_head(message: Message) -> None:
            nonlocal answered
            if answered:
                return
            if message["type"] == "http.response.body":
                answered = True
                await forward({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await forward(message)

        async def receive_until_answered() -> Any:
            # A stream waits on receive for the client to go: once the headers are out, it has.
            if answered:
                return {"type": "http.disconnect"}
            return await take()

        as_get: Any = {**fields, "method": "GET", MARK: True}
        await super().__call__(as_get, receive_until_answered, send_head)

    def _create_asgi_handler(self) -> ASGIApp:
        """Litestar's handler (the router inside its exception handling), after a check that the
        raw path holds no encoded slash: the router sees the path decoded, where `a%2Fb` is two
        segments. The refusal goes through the app's exception handlers, after_exception and
        before_send hooks, as the router's own 404 does. Litestar has no public hook that runs
        before routing."""
        routed = super()._create_asgi_handler()

        async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
            # As the router does for a path it has no route for: the app's exception handlers answer.
            ScopeState.from_scope(scope).exception_handlers = self.exception_handlers
            raise scope[_REFUSAL]  # type: ignore[literal-required]

        refused = ExceptionHandlerMiddleware(app=refuse, debug=None)

        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                paths = (route.path for route in self.routes if isinstance(route, HTTPRoute))
                found = encoded_slash_refusal(scope.get("raw_path") or b"", paths)
                if found is not None:
                    scope[_REFUSAL] = found  # type: ignore[literal-required]
                    await refused(scope, receive, send)
                    return
            await routed(scope, receive, send)

        return handler

    def _allow_all(self, scope: Any, send: Any) -> Any:
        """OPTIONS, and a 405, answer every method of its path in Allow: Litestar's answer named one
        route's (a path with a GET and a POST handler said `OPTIONS, POST`), and never HEAD, which
        every GET route takes here."""
        options = scope["method"] == "OPTIONS"

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and (options or message["status"] == 405):
                methods = self._methods_by_path().get(scope.get("path_template", ""))
                if methods is None and not options:
                    # A 405 leaves no path template in the scope, but its Allow names every
                    # method of the path's routes (Litestar's router), HEAD aside.
                    named = [v for k, v in message.get("headers", []) if k.lower() == b"allow"]
                    methods = _ordered({m.strip() for m in b",".join(named).decode().split(",") if m.strip()})
                if methods is not None:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    headers.append((b"allow", ", ".join(methods).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        return send_allow

    def _methods_by_path(self) -> dict[str, list[str]]:
        if self._allowed is None:
            allowed: dict[str, set[str]] = {}
            for route in self.routes:
                if isinstance(route, HTTPRoute):
                    # The router names a matched path by its format (`/api/v1/connections/{name}`).
                    allowed.setdefault(route.path_format, set()).update(route.methods)
            self._allowed = {path: _ordered(methods) for path, methods in allowed.items()}
        return self._allowed

    def _paths_with_head(self) -> frozenset[str]:
        if self._own_head is None:
            self._own_head = frozenset(
                route.path for route in self.routes if isinstance(route, HTTPRoute) and "HEAD" in route.methods
            )
        return self._own_head


_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _ordered(methods: set[str]) -> list[str]:
    """An Allow header's methods in one order, HEAD wherever GET is."""
    return [m for m in _ORDER if m in methods or (m == "HEAD" and "GET" in methods)] + sorted(methods - set(_ORDER))
