"""Every JSON answer ends with a newline, like any text a terminal prints (`curl` and `http` users
get their prompt back on its own line). A before-send hook, so that it covers every answer: the
handlers', the problem details, Litestar's own 404s and the OpenAPI document. A JSON body is whole
in its answer's Content-Length, which grows by the byte; streams (server-sent events) are left alone,
and so is an answer with an ETag: its bytes are a stored thing's (a rendered JSON document, whose
checksum the ETag and X-Document-Checksum give), served exactly."""

from __future__ import annotations

from litestar.types import Message, Scope

_MARK = "dw.json_newline"


def _is_json(content_type: bytes) -> bool:
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


async def end_json_with_newline(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start":
        headers = list(message.get("headers") or [])
        fields = {name.lower(): value for name, value in headers}
        length = fields.get(b"content-length")
        if not _is_json(fields.get(b"content-type", b"")) or length is None or not length.isdigit() or length == b"0":
            return
        if b"etag" in fields:
            return
        message["headers"] = [
            (name, str(int(value) + 1).encode() if name.lower() == b"content-length" else value)
            for name, value in headers
        ]
        scope[_MARK] = True  # type: ignore[literal-required]
    elif (
        message["type"] == "http.response.body"
        and scope.get(_MARK)
        and not message.get("more_body", False)
        # A HEAD answer has no body (its Content-Length is the GET's, newline included).
        and scope.get("method") != "HEAD"
    ):
        message["body"] = bytes(message.get("body", b"")) + b"\n"
