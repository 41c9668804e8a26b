"""Local stand-ins for Slack, monday.com and an HTTP API, served on loopback by uvicorn. They speak
the real request and response shapes (Slack's ok/error bodies and Retry-After, monday's GraphQL
errors with extensions and cursors) and record every call."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from litestar import Litestar, Request, Response, get, post, route
from litestar.params import FromPath
from litestar.response import Stream

SLACK_TOKEN = "xoxb-test-token-123"
MONDAY_TOKEN = "monday-test-token-456"
HTTP_TOKEN = "http-bearer-secret-789"


@dataclass
class FakeState:
    calls: Counter[str] = field(default_factory=Counter)
    slack_messages: list[dict[str, Any]] = field(default_factory=list)
    boards: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    create_delay: float = 0.0
    # Seconds a create_item answers late, after the item was made (a caller that gives up first does
    # not know it exists).
    answer_delay: float = 0.0
    next_id: int = 1000
    # /http/record/{key}: the Idempotency-Key header (None: none) of each call, per key.
    idempotency_keys: dict[str, list[str | None]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[int]:
    """The app on a real uvicorn server on loopback (what the in-process test client cannot show:
    repeated headers, concurrent requests); yields its port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(250):
            if server.started:
                break
            await asyncio.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


def build_app(state: FakeState) -> Litestar:
    @post("/slack/api/chat.postMessage")
    async def slack_post(request: Request[Any, Any, Any]) -> Response[Any]:
        body = await request.json()
        channel = body.get("channel", "")
        state.calls[f"slack:{channel}"] += 1
        if request.headers.get("authorization") != f"Bearer {SLACK_TOKEN}":
            return Response({"ok": False, "error": "invalid_auth"})
        if channel == "C-missing":
            return Response({"ok": False, "error": "channel_not_found"})
        if channel == "C-echo-auth":
            # A service (or whatever sits on the way to it) that repeats the credential in its error.
            return Response({"ok": False, "error": f"invalid_auth {request.headers.get('authorization')}"})
        if channel == "C-ratelimited" and state.calls[f"slack:{channel}"] <= 1:
            return Response({"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": "1"})
        if channel == "C-busy" and state.calls[f"slack:{channel}"] <= 1:
            return Response({"ok": False, "error": "service_unavailable"})
        ts = f"1700000000.{len(state.slack_messages):06d}"
        state.slack_messages.append({**body, "ts": ts})
        message = {
            "text": body.get("text"),
            "ts": ts,
            **({"thread_ts": body["thread_ts"]} if body.get("thread_ts") else {}),
        }
        return Response({"ok": True, "channel": channel, "ts": ts, "message": message})

    @post("/monday/v2")
    async def monday(request: Request[Any, Any, Any]) -> Response[Any]:
        if request.headers.get("authorization") != MONDAY_TOKEN:
            return Response({"error_message": "Not Authenticated", "status_code": 401}, status_code=401)
        payload = await request.json()
        query, variables = payload["query"], payload.get("variables") or {}
        misshapen = _misshapen_monday(query, variables)
        if misshapen is not None:
            return misshapen
        if "create_item" in query:
            return await _create(state, variables)
        if "change_multiple_column_values" in query:
            state.calls["monday:update"] += 1
            for items in state.boards.values():
                for item in items:
                    if item["id"] == variables["item"]:
                        item["columns"].update(json.loads(variables["values"]))
                        return Response({"data": {"change_multiple_column_values": {"id": item["id"]}}})
            return Response(
                {"errors": [{"message": "Item not found", "extensions": {"code": "ItemNotFoundException"}}]}
            )
        if "next_items_page" in query:
            state.calls["monday:next_page"] += 1
            board, offset, rules = json.loads(variables["cursor"])
            return Response({"data": {"next_items_page": _page(state, board, offset, variables["limit"], rules)}})
        if "items_page" in query:
            board = variables["board"][0]
            state.calls[f"monday:items_page:{board}"] += 1
            if board == "budget" and state.calls[f"monday:items_page:{board}"] == 1:
                return Response(
                    {
                        "errors": [
                            {
                                "message": "Complexity budget exhausted",
                                "extensions": {"code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": 1},
                            }
                        ],
                        "account_id": 1,
                    }
                )
            if board not in state.boards:
                return Response({"data": {"boards": []}})
            rules = (variables.get("qp") or {}).get("rules") or []
            return Response({"data": {"boards": [{"items_page": _page(state, board, 0, variables["limit"], rules)}]}})
        return Response({"errors": [{"message": "Unsupported query"}]}, status_code=400)

    @get("/http/json")
    async def http_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
        state.calls["http:json"] += 1
        return {
            "hello": "world",
            "query": dict(request.query_params),
            "authorized": request.headers.get("authorization") == f"Bearer {HTTP_TOKEN}",
        }

    @route("/http/status/{code:int}", http_method=["GET", "POST"])
    async def http_status(request: Request[Any, Any, Any], code: FromPath[int]) -> Response[Any]:
        state.calls[f"http:status:{code}"] += 1
        headers = {"Retry-After": request.query_params["retryAfter"]} if "retryAfter" in request.query_params else {}
        return Response({"status": code}, status_code=code, headers=headers)

    @get("/http/flaky/{key:str}")
    async def http_flaky(key: FromPath[str]) -> Response[Any]:
        state.calls[f"http:flaky:{key}"] += 1
        if state.calls[f"http:flaky:{key}"] <= 2:
            return Response({"error": "try later"}, status_code=503)
        return Response({"ok": True, "attempts": state.calls[f"http:flaky:{key}"]})

    @get("/http/big")
    async def http_big() -> Response[bytes]:
        return Response(b"x" * 2_000_000, media_type="application/octet-stream")

    @get("/http/redirect")
    async def http_redirect(request: Request[Any, Any, Any]) -> Response[Any]:
        return Response(None, status_code=302, headers={"Location": request.query_params["to"]})

    @get("/http/echo-headers")
    async def http_echo_headers(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return {"headers": dict(request.headers)}

    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # ~50 KB on the wire, 50 MB inflated

    @get("/http/gzip-bomb")
    async def http_gzip_bomb() -> Response[bytes]:
        return Response(bomb, media_type="application/octet-stream", headers={"Content-Encoding": "gzip"})

    @get("/http/drip")
    async def http_drip() -> Stream:
        """A byte every 0.2 s, for 10 s: each read is quick, the whole answer is not."""

        async def drip() -> AsyncIterator[bytes]:
            for _ in range(50):
                await asyncio.sleep(0.2)
                yield b"."

        return Stream(drip(), media_type="text/plain")

    @route("/http/record/{key:str}", http_method=["GET", "POST", "PUT", "DELETE"])
    async def http_record(request: Request[Any, Any, Any], key: FromPath[str]) -> Response[Any]:
        """Records the call's Idempotency-Key; ?sleepMs= answers that much later, ?status= with it."""
        state.idempotency_keys.setdefault(key, []).append(request.headers.get("idempotency-key"))
        await asyncio.sleep(int(request.query_params.get("sleepMs", "0")) / 1000)
        return Response(
            {"calls": len(state.idempotency_keys[key])}, status_code=int(request.query_params.get("status", "200"))
        )

    @get("/http/echo-raw-headers")
    async def http_echo_raw_headers(request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Every header as sent, repeats included (a dict keeps one of each name)."""
        return {"headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]]}

    @get("/http/raw-deflate")
    async def http_raw_deflate() -> Response[bytes]:
        """Content-Encoding deflate as many servers send it: raw deflate, without zlib's header."""
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = compressor.compress(b'{"hello": "world"}') + compressor.flush()
        return Response(body, media_type="application/json", headers={"Content-Encoding": "deflate"})

    @get("/http/odd-json/{kind:str}")
    async def http_odd_json(kind: FromPath[str]) -> Response[bytes]:
        """Bodies PostgreSQL or the recorder cannot take as they are: a NUL, raw or escaped, and JSON
        nested 150 deep."""
        bodies = {
            "nul-text": (b"before\x00after", "text/plain"),
            "nul-json": (b'{"a": "x\\u0000y", "k\\u0000": 1}', "application/json"),
            "deep": (b"[" * 150 + b"]" * 150, "application/json"),
            "very-deep": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
            # A lone surrogate escape (an emoji cut in half), in a string and a key; a pair stays one.
            "surrogate": (b'{"a": "cut \\ud83d", "\\udc00k": "pair \\ud83d\\ude00"}', "application/json"),
            # Not JSON, though Python's json reads them: NaN, Infinity, a number past a double's range.
            "nan": (b'{"x": NaN}', "application/json"),
            "infinity": (b"[-Infinity]", "application/json"),
            "overflow": (b'{"a": 1e999}', "application/json"),
            # Text in a charset that decodes to a lone surrogate, and a codec that is not a charset.
            "utf7-text": (b"cut +2D0-", "text/plain; charset=utf-7"),
            "hex-text": (b"plain", "text/plain; charset=hex"),
        }
        body, media_type = bodies[kind]
        return Response(body, media_type=media_type)

    @post("/http/echo")
    async def http_echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return {"received": await request.json(), "contentType": request.headers.get("content-type")}

    return Litestar(
        [
            slack_post,
            monday,
            http_json,
            http_status,
            http_flaky,
            http_big,
            http_redirect,
            http_echo,
            http_record,
            http_echo_headers,
            http_echo_raw_headers,
            http_raw_deflate,
            http_odd_json,
            http_gzip_bomb,
            http_drip,
        ],
        logging_config=None,
    )


def _misshapen_monday(query: str, variables: dict[str, Any]) -> Response[Any] | None:
    """Answers of the wrong shape, by board: "errors-object" (one error, not a list), "data-string",
    "created-string", a cursor that comes back forever ("loop", with an item on every page) or with
    empty pages ("empty-loop")."""
    board = variables.get("board")
    board = board[0] if isinstance(board, list) else board
    cursor = variables.get("cursor")
    if board == "errors-object":
        return Response({"errors": {"message": "one error, not a list"}})
    if board == "data-string":
        return Response({"data": "a string"})
    if board == "created-string" and "create_item" in query:
        return Response({"data": {"create_item": "oops"}})
    if board in ("loop", "empty-loop") or cursor in ("loop", "empty-loop"):
        which = board if board in ("loop", "empty-loop") else cursor
        items = [] if which == "empty-loop" else [{"id": "1", "name": "again", "column_values": []}]
        page = {"cursor": which, "items": items}
        if "next_items_page" in query:
            return Response({"data": {"next_items_page": page}})
        return Response({"data": {"boards": [{"items_page": {"cursor": which, "items": items}}]}})
    return None


async def _create(state: FakeState, variables: dict[str, Any]) -> Response[Any]:
    state.calls["monday:create"] += 1
    board = variables["board"]
    if board == "echo-auth":
        return Response(
            {"errors": [{"message": "Not allowed", "extensions": {"code": f"Unauthorized {MONDAY_TOKEN}"}}]}
        )
    if board == "999":
        return Response({"errors": [{"message": "Board not found", "extensions": {"code": "InvalidBoardIdException"}}]})
    await asyncio.sleep(state.create_delay)
    state.next_id += 1
    item = {
        "id": str(state.next_id),
        "name": variables["name"],
        "columns": json.loads(variables.get("values") or "{}"),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    state.boards.setdefault(board, []).append(item)
    state.created.append(item)
    await asyncio.sleep(state.answer_delay)
    return Response({"data": {"create_item": {"id": item["id"]}}})


def _matches(item: dict[str, Any], rule: dict[str, Any]) -> bool:
    """monday.com's any_of rule on a column, or on the item's name (column "name")."""
    value = item["name"] if rule["column_id"] == "name" else item["columns"].get(rule["column_id"])
    return str(value) in [str(v) for v in rule["compare_value"]]


def _page(state: FakeState, board: str, offset: int, limit: int, rules: list[dict[str, Any]]) -> dict[str, Any]:
    items = [i for i in state.boards.get(board, []) if all(_matches(i, r) for r in rules)]
    chunk = items[offset : offset + limit]
    more = offset + limit < len(items)
    return {
        "cursor": json.dumps([board, offset + limit, rules]) if more else None,
        "items": [
            {
                "id": i["id"],
                "name": i["name"],
                "created_at": i.get("created_at"),
                "column_values": [{"id": k, "text": str(v), "value": json.dumps(v)} for k, v in i["columns"].items()],
            }
            for i in chunk
        ],
    }


@dataclass
class FakeServers:
    port: int
    state: FakeState

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def fake_servers() -> AsyncIterator[FakeServers]:
    state = FakeState()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(state), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield FakeServers(port, state)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextmanager
def loopback_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A plain threaded HTTP server on a free loopback port, answering with `handler`: its base URL,
    until the block ends (then it is shut down and its thread joined)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
