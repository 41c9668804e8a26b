"""What http.request makes of answers that are odd but real (a review of the connectors): compressed
bodies cut short or in several gzip members, a HEAD's Content-Length, charsets whose codec cannot
replace what it cannot read, JSON media types in another case, a Location httpx cannot read, and a
node's own Host header beside a connection's credential."""

from __future__ import annotations

import gzip
import uuid
import zlib
from typing import Any

import httpx
import msgspec
import pytest

from dataworkflows.actions import ActionContext, ActionResult, ActionServices
from dataworkflows.actions.http import HttpRequestAction, HttpRequestParams
from dataworkflows.credentials import Secret
from dataworkflows.statuses import AttemptStatus


class _Connection:
    async def get(self, name: str, *, workflow_id: str | None = None) -> Secret:
        return Secret('{"hosts": ["api.test:80"], "bearer": "bearer-secret-1234"}')


def action_context(client: httpx.AsyncClient, credentials: Any = None) -> ActionContext:
    """An http.request attempt's context whose HTTP client is `client` (and connections `credentials`)."""
    services = ActionServices(credentials=credentials, http=client, resources=None)
    return ActionContext(
        execution_id=uuid.uuid4(),
        workflow_id="w",
        workflow_version=1,
        node_id="n",
        attempt=1,
        max_attempts=3,
        trigger={},
        services=services,
    )


def _context(handler: Any) -> ActionContext:
    return action_context(httpx.AsyncClient(transport=httpx.MockTransport(handler)), _Connection())


async def _call(handler: Any, **parameters: Any) -> ActionResult:
    params = msgspec.convert({"url": "http://api.test/x", **parameters}, HttpRequestParams)
    return await HttpRequestAction().execute(_context(handler), params)


def _answer(body: bytes, status: int = 200, **headers: str) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    return handler


GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


async def test_a_compressed_body_cut_short_is_a_transport_error_not_a_success() -> None:
    """Half a gzip stream (the server closed early) was stored as the whole answer: a success whose
    body was a cut-off string where the JSON object belonged."""
    whole = gzip.compress(b'{"items": [' + b",".join(b'"%032x"' % i for i in range(500)) + b"]}")
    result = await _call(_answer(whole[: len(whole) // 2], **GZIP_JSON))
    assert result.status == AttemptStatus.RETRIABLE_FAILURE and result.error is not None
    assert result.error.code == "transport_error" and "ends before its compressed stream" in result.error.message
    # The whole stream reads, and an empty body with the header is an empty body.
    assert (await _call(_answer(whole, **GZIP_JSON))).outputs["body"]["items"][499] == f"{499:032x}"
    assert (await _call(_answer(b"", **GZIP_JSON))).status == AttemptStatus.SUCCEEDED


async def test_every_member_of_a_gzip_body_is_read_and_still_bounded() -> None:
    """RFC 1952 allows members one after the other (pigz, appended logs): only the first was read."""
    two = gzip.compress(b'{"a": 1, ') + b"\x00\x00" + gzip.compress(b'"b": 2}')
    assert (await _call(_answer(two, **GZIP_JSON))).outputs["body"] == {"a": 1, "b": 2}
    many = b"".join(gzip.compress(b"x" * 1000) for _ in range(50))
    bounded = await _call(_answer(many, **GZIP_JSON), maxResponseBytes=20_000)
    assert bounded.error is not None and bounded.error.code == "response_too_large"
    # What follows the last member that is no member is ignored, as browsers and curl do; a member
    # whose magic a chunk boundary splits is still read.
    garbage = gzip.compress(b"{}") + b"not gzip"
    assert (await _call(_answer(garbage, **GZIP_JSON))).outputs["body"] == {}
    first, second = gzip.compress(b'{"a": 1, '), gzip.compress(b'"b": 2}')
    split = _chunks(first + second[:1], second[1:])
    assert (await _call(split)).outputs["body"] == {"a": 1, "b": 2}
    bad_member = gzip.compress(b"{}") + b"\x1f\x8b not a member"
    refused = await _call(_answer(bad_member, **GZIP_JSON))
    assert refused.error is not None and refused.error.code == "unsupported_encoding"


class _Chunked(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> Any:
        for chunk in self.chunks:
            yield chunk


def _chunks(*chunks: bytes, **headers: str) -> Any:
    """An answer that arrives in these chunks (gzip JSON unless told)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers or GZIP_JSON, stream=_Chunked(*chunks))

    return handler


async def test_bytes_that_inflate_to_nothing_are_bounded_too() -> None:
    """A review: zero padding after a member, junk after a deflate stream's end and endless empty
    members were read without end (the padding kept, and stripped again at each chunk: 47 s for 40
    MiB); the compressed bytes are bounded at twice maxResponseBytes and 1 MiB."""
    padding = _chunks(gzip.compress(b"{}"), *[b"\x00" * 65536] * 64)
    empty_members = _chunks(*[gzip.compress(b"") * 3000] * 64)
    deflate_junk = _chunks(zlib.compress(b"{}"), *[b"junk" * 16384] * 64, **{"Content-Encoding": "deflate"})
    for handler in (padding, empty_members, deflate_junk):
        result = await _call(handler, maxResponseBytes=1024)
        assert result.error is not None and result.error.code == "response_too_large", result
    # Within the bound, padding and empty members are nothing.
    assert (await _call(_chunks(gzip.compress(b"{}"), b"\x00" * 1000, gzip.compress(b"")))).outputs["body"] == {}


async def test_a_head_or_304_is_read_whatever_its_content_length() -> None:
    """A HEAD's Content-Length is the GET body's size (RFC 9110): it failed response_too_large, for
    good, so a 'how big is it' check could not be made."""
    head = await _call(_answer(b"", **{"Content-Length": "5000000"}), method="HEAD")
    assert head.status == AttemptStatus.SUCCEEDED, head.error
    assert head.outputs["headers"]["content-length"] == "5000000"
    not_modified = await _call(_answer(b"", 304, **{"Content-Length": "5000000"}), expectedStatus=[304])
    assert not_modified.status == AttemptStatus.SUCCEEDED, not_modified.error
    get = await _call(_answer(b"", **{"Content-Length": "5000000"}))
    assert get.error is not None and get.error.code == "response_too_large"


@pytest.mark.parametrize("charset", ["idna", "undefined", "punycode"])
async def test_a_charset_that_cannot_replace_is_read_as_utf8(charset: str) -> None:
    """These codecs refuse errors="replace": the node ended action_exception with a traceback."""
    result = await _call(_answer(b"h\xffi \xc3\xa9", **{"Content-Type": f"text/plain; charset={charset}"}))
    assert result.status == AttemptStatus.SUCCEEDED, result.error
    assert result.outputs["body"] == "h\ufffdi é"


async def test_json_media_types_are_matched_in_any_case() -> None:
    for content_type in ("Application/JSON", "application/problem+JSON; charset=UTF-8"):
        result = await _call(_answer(b'{"x": 1}', **{"Content-Type": content_type}))
        assert result.outputs["body"] == {"x": 1}, content_type
    # A parameter that mentions json does not make a text type JSON.
    text = await _call(_answer(b'{"x": 1}', **{"Content-Type": "text/plain; profile=json"}))
    assert text.outputs["body"] == '{"x": 1}'


async def test_a_location_httpx_cannot_read_fails_for_good() -> None:
    """httpx reads a redirect's Location as it builds the response: it was a retriable
    transport_error, the same answer at every attempt."""
    result = await _call(_answer(b"", 302, Location="http://[::1"))
    assert result.status == AttemptStatus.FAILED and result.error is not None
    assert result.error.code == "invalid_redirect"


@pytest.mark.parametrize("name", ["Host", "host", "Content-Length", "Transfer-Encoding"])
async def test_a_node_cannot_give_the_headers_written_from_the_url_and_body(name: str) -> None:
    """A node's Host went with the connection's credential (and the URL passed its hosts check): behind
    a proxy that routes by Host, the credential reached a service the connection does not name."""
    with pytest.raises(msgspec.ValidationError, match=f"headers: {name} is written from the url and the body"):
        msgspec.convert(
            {"url": "http://api.test/x", "connection": "api", "headers": {name: "other.vhost"}}, HttpRequestParams
        )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["host"])
        return httpx.Response(200, stream=httpx.ByteStream(b"ok"))

    assert (await _call(handler, connection="api")).status == AttemptStatus.SUCCEEDED
    assert seen == ["api.test"]
