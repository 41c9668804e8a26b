"""What connector actions share: status classification, Retry-After, capped and bounded reads,
secret scrubbing."""

from __future__ import annotations

import codecs
import email.utils
import json
import re
import zlib
from collections.abc import Iterable
from datetime import UTC
from typing import Any

import httpx

from dataworkflows import clock
from dataworkflows.actions import ActionResult
from dataworkflows.circuit_breaker import CircuitOpen
from dataworkflows.credentials import CredentialNotFound, Secret
from dataworkflows.errors import ConnectionKindMismatch, ConnectionNotAllowed, ConnectionSecretTooShort
from dataworkflows.http_client import BlockedDestination
from dataworkflows.json_depth import MAX_RESULT_DEPTH, any_string, json_depth

# Timeouts, too early, too many requests, and every server error but the two that say the request
# itself will never work (501 Not Implemented, 505 HTTP Version Not Supported): a proxy's 520-524
# or a 507 failed the node for good at its first answer.
RETRIABLE_STATUSES = frozenset({408, 425, 429, *(s for s in range(500, 600) if s not in (501, 505))})
REDACTED = "[redacted]"


def _http_date(value: str) -> float:
    """An HTTP date as seconds since 1970 (one without a zone, "-0000", is UTC); ValueError if it is none."""
    at = email.utils.parsedate_to_datetime(value)
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped at an hour. An HTTP date is
    counted from the answer's own Date (the server's clock, which set it), else from the database's
    clock (dataworkflows.clock), as the retry's time is: this host's clock may be off (a review: an
    hour behind, "retry in a minute" waited the hour's cap; ahead, it retried at once)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        # Not delta-seconds, so an HTTP date (or nothing usable).
        try:
            until = _http_date(value)
        except (TypeError, ValueError):
            return None
        try:
            now = _http_date(response.headers["date"])
        except (KeyError, TypeError, ValueError):
            now = clock.now().timestamp()
        seconds = until - now
    return min(max(seconds, 0.0), 3600.0)


class ResponseTooLarge(Exception):
    pass


class UnsupportedEncoding(Exception):
    pass


class _Inflater:
    """A Content-Encoding's decompressor that never yields more than asked: gzip (every member of a
    multi-member body, RFC 1952, as `gzip -d` reads them: they were cut to the first; zeros between
    members skipped; what follows the last member that is no member ignored, as browsers and curl
    do) and deflate, in zlib's format or raw (as many servers send it; browsers and httpx read both;
    what follows its end ignored). The compressed bytes are bounded too, at twice the limit and
    1 MiB: bytes that inflate to nothing (zero padding, empty members, junk after the end) were read
    without end, and kept (a review)."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.gzip = encoding in ("gzip", "x-gzip")
        self.decoder = self._new()
        self.first = True
        self.received = 0
        self.raw_limit = 2 * limit + 1_048_576
        # The stream ended and what follows is not read (a deflate stream's end, or no gzip member).
        self.done = False
        # A gzip magic's first byte at a chunk's end, after a member: the next chunk says.
        self.pending = b""

    def _new(self) -> Any:
        return zlib.decompressobj(16 + zlib.MAX_WBITS if self.gzip else zlib.MAX_WBITS)

    def feed(self, chunk: bytes, room: int) -> bytes:
        """At most `room` + 1 bytes of what `chunk` inflates to (ResponseTooLarge past that)."""
        self.received += len(chunk)
        if self.received > self.raw_limit:
            raise ResponseTooLarge(self.received)
        out = bytearray()
        chunk, self.pending = self.pending + chunk, b""
        while chunk and not self.done:
            if self.decoder.eof:
                chunk = self._next_member(chunk)
                continue
            try:
                out += self.decoder.decompress(chunk, room + 1 - len(out))
            except zlib.error as exc:
                if not (self.first and self.encoding == "deflate"):
                    raise UnsupportedEncoding(f"{self.encoding}: {exc}") from exc
                # "deflate" is zlib's format by the standard, and raw deflate from many servers: the
                # first chunk tells which.
                self.decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                self.first = False
                continue
            self.first = False
            if self.decoder.unconsumed_tail or len(out) > room:
                raise ResponseTooLarge(len(out))
            # What this chunk holds past the stream's end (a decoder at its end is never fed again:
            # it keeps what it is given).
            chunk = self.decoder.unused_data if self.decoder.eof else b""
        return bytes(out)

    def _next_member(self, chunk: bytes) -> bytes:
        """After a stream's end: the next gzip member's bytes (zeros before it skipped, a new decoder
        for it), or nothing, and nothing more read (deflate, or bytes that are no gzip member)."""
        rest = chunk.lstrip(b"\x00") if self.gzip else b""
        if rest[:2] == _GZIP_MAGIC:
            self.decoder = self._new()
            return rest
        if rest == _GZIP_MAGIC[:1]:
            self.pending = rest
        elif rest or not self.gzip:
            self.done = True
        return b""

    def finish(self) -> None:
        """A body cut inside its compressed stream is cut (the connection closed early, or the server
        stopped): it was taken as the whole answer, a success with part of the data."""
        if self.received and not self.decoder.eof:
            raise httpx.RemoteProtocolError(f"the {self.encoding} body ends before its compressed stream does")


_GZIP_MAGIC = b"\x1f\x8b"


def _bodiless(response: httpx.Response) -> bool:
    """An answer without a body whatever its Content-Length says (RFC 9110: a HEAD's Content-Length is
    the size of the GET's body; 1xx, 204 and 304 have none)."""
    return response.request.method == "HEAD" or response.status_code in (204, 304) or response.status_code < 200


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body, decompressed, refusing more than `limit` bytes at any point (also inside a
    compressed stream: a small gzip body cannot expand into gigabytes)."""
    if _bodiless(response):
        return b""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(int(declared))
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        inflater = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflater = _Inflater(encoding, limit)
    else:
        raise UnsupportedEncoding(encoding)
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk if inflater is None else inflater.feed(chunk, limit - len(body))
        if len(body) > limit:
            raise ResponseTooLarge(len(body))
    if inflater is not None:
        inflater.finish()
    return bytes(body)


def _decoded(body: bytes, charset: str) -> str:
    """The body as text in the answer's charset; as UTF-8 when the charset is unknown (a server's
    unknown charset name is not a reason to fail the node), names a codec that is no text encoding
    (hex, base64, rot13: bytes.decode refuses them), or one that cannot replace what it cannot read
    (idna, punycode, undefined raise UnicodeError even with errors="replace": a review)."""
    try:
        if not getattr(codecs.lookup(charset), "_is_text_encoding", True):
            charset = "utf-8"
        return body.decode(charset, errors="replace")
    except (LookupError, UnicodeError):
        return body.decode("utf-8", errors="replace")


def _is_json(content_type: str) -> bool:
    """application/json, any `+json` type (problem+json, ld+json) or a `json` subtype, in any case
    (media types are case-insensitive, RFC 9110 8.3.1: Application/JSON was kept as text)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return "json" in media_type


def decode_body(response: httpx.Response, body: bytes) -> Any:
    content_type = response.headers.get("content-type", "")
    # A NUL is stored nowhere (PostgreSQL's text and jsonb hold none): it becomes U+FFFD, as bytes
    # the charset cannot read do, instead of failing the node unrecordable_result for good; so does a
    # lone surrogate a charset such as utf-7 can decode to (UTF-8 and PostgreSQL hold none).
    text = _decoded(body, response.charset_encoding or "utf-8")
    text = _LONE_SURROGATE.sub(NUL_STAND_IN, text.replace("\x00", NUL_STAND_IN))
    if _is_json(content_type) and body:
        try:
            value = loads_json(text)
        except (ValueError, RecursionError):
            return text
        # Nested past what an attempt's outputs may be (the body is one level in), it stays text.
        if json_depth(value, MAX_RESULT_DEPTH - 1) > MAX_RESULT_DEPTH - 1:
            return text
        # The text holds neither a NUL nor a lone surrogate now, so only an escape can have put one
        # in the value: without one, its strings are not walked (2.6 s for a 24 MB array).
        return storable_strings(value) if _UNSTORABLE_ESCAPE.search(text) else value
    return text


def loads_json(text: str | bytes) -> Any:
    """JSON as RFC 8259 has it: NaN, Infinity and numbers past a double's range (1e999) are refused
    (ValueError), where Python's json took them as floats that the engine then stored as null, while
    the worker holding the run went on with nan (a review: a template read them and failed, or read
    null after the run was parked and loaded again)."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is past a double's range")
    return value


# A lone UTF-16 surrogate: an escape "\ud800" without its pair (a server that cut an emoji in half).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON escape that decodes to a NUL or to a surrogate (a lone one, or half of a pair: a text
# without any has neither).
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def storable_strings(value: Any) -> Any:
    """The parsed JSON with the characters nothing stores replaced by U+FFFD in its strings and keys, as
    bytes the charset cannot read are: NUL (an escaped \u0000: PostgreSQL holds none) and lone
    surrogates (UTF-8, JSON text and PostgreSQL hold none; until this release the node failed
    unrecordable_result, or crashed, engine_error, a review)."""
    if any_string(value, lambda s: "\x00" in s or _LONE_SURROGATE.search(s) is not None):
        return _stand_ins(value)
    return value


NUL_STAND_IN = "\ufffd"


def _stand_ins(value: Any) -> Any:
    """The value with U+FFFD for each NUL and lone surrogate in its strings and keys."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(NUL_STAND_IN, value.replace("\x00", NUL_STAND_IN))
    if isinstance(value, dict):
        return {_stand_ins(k): _stand_ins(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_ins(v) for v in value]
    return value


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """The value with every secret string replaced by [redacted] (outputs, error messages)."""
    needles = [s for s in secrets if s and len(s) >= 4]
    # Also as they appear inside a JSON string (escaped quotes, backslashes, unicode).
    needles += [e for e in (json.dumps(s)[1:-1] for s in needles) if e not in needles]
    if not needles:
        return value
    # Whatever the case: a server may echo a token lower-cased (a header value it normalised), as
    # the run's scrubber (dataworkflows.scrubbing) takes it.
    pattern = re.compile("|".join(map(re.escape, sorted(needles, key=len, reverse=True))), re.IGNORECASE)
    # Secrets are header values (ASCII): looked for in the folded text first. Any other: the pattern.
    folded = tuple({_folded(n) for n in needles}) if all(n.isascii() for n in needles) else None
    return _scrubbed(value, pattern, folded)


# What the case-insensitive pattern takes for an ASCII letter besides its two cases (Python's re): a
# dotted capital I and a dotless i are an i (a Turkish locale's case mapping), a long s is an s; the
# Kelvin sign lower-cases to a k.
_ASCII_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def _folded(text: str) -> str:
    return (text if text.isascii() else text.translate(_ASCII_FOLD)).lower()


def _scrubbed(value: Any, pattern: re.Pattern[str], folded: tuple[str, ...] | None) -> Any:
    if isinstance(value, str):
        # Most texts hold no secret: a substring scan of the folded text is far cheaper than the
        # case-insensitive pattern, which cannot skip ahead to a literal (a review: 1 s on the event
        # loop for a 50 MB response body, where the case-sensitive replace took 0.02 s).
        if folded is not None:
            text = _folded(value)
            if not any(n in text for n in folded):
                return value
        return pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        return {_scrubbed(k, pattern, folded): _scrubbed(v, pattern, folded) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, pattern, folded) for v in value]
    return value


# What a remote service's own error code may be to become part of a node's error code.
_REMOTE_CODE = re.compile(r"[A-Za-z0-9_]{1,64}")


def remote_code(service: str, code: str) -> str:
    """A node's error code from the code a remote service answered: `<service>_<code>` when it is one
    (letters, digits and underscores, at most 64: `channel_not_found`, `InvalidBoardIdException`),
    else `<service>_error`. A node's error code is a structural key, kept as it is wherever the run
    is scrubbed (and a trace's error.type); free text from the remote, which may repeat the
    credential it was sent, goes in the message, which is scrubbed."""
    return f"{service}_{code}" if _REMOTE_CODE.fullmatch(code) else f"{service}_error"


def scrub_result(result: ActionResult, secrets: Iterable[str]) -> ActionResult:
    needles = list(secrets)
    error = result.error
    if error is not None:
        code = error.code
        if scrub(code, needles) != code:
            # A secret shaped like a code: the code keeps its service's prefix only.
            code = f"{code.split('_', 1)[0]}_error"
        error = type(error)(code, scrub(error.message, needles), error.retry_after, scrub(error.details, needles))
    return ActionResult(result.status, scrub(result.outputs, needles), error, result.resource_links)


def transport_failure(exc: Exception, what: str) -> ActionResult:
    """Blocked destinations are permanent; network trouble is retriable; an open circuit is retriable
    once it may close (its retry-after)."""
    if isinstance(exc, BlockedDestination):
        return ActionResult.failed(exc.code, exc.message)
    if isinstance(exc, CircuitOpen):
        return ActionResult.retriable(CircuitOpen.code, f"{what}: {exc}", retry_after=exc.retry_after)
    if isinstance(exc, httpx.TimeoutException):
        return ActionResult.retriable("timeout", f"{what} timed out: {type(exc).__name__}")
    if isinstance(exc, httpx.LocalProtocolError):
        # Raised before sending, e.g. a header value with a newline: retrying cannot help.
        return ActionResult.failed("invalid_request", f"{what}: the request is malformed: {exc}")
    return ActionResult.retriable("transport_error", f"{what} failed: {type(exc).__name__}: {exc}")


async def secret_for(ctx_services: Any, connection: str) -> Secret | ActionResult:
    try:
        secret = await ctx_services.credentials.get(connection)
    except (CredentialNotFound, ConnectionNotAllowed, ConnectionKindMismatch, ConnectionSecretTooShort) as exc:
        # Permanent: retrying cannot make the connection appear, admit the workflow or change kind.
        return ActionResult.failed(exc.code, exc.message, connection=connection)
    assert isinstance(secret, Secret)
    return secret


async def post_json(
    client: httpx.AsyncClient, url: str, payload: Any, headers: dict[str, str], limit: int = 8 * 1024 * 1024
) -> tuple[httpx.Response, Any]:
    """POST JSON and read a capped JSON answer (None when it is not JSON)."""
    request = client.build_request("POST", url, json=payload, headers={"Accept-Encoding": "gzip", **headers})
    response = await client.send(request, stream=True)
    try:
        body = await read_capped(response, limit)
    finally:
        await response.aclose()
    try:
        return response, storable_strings(loads_json(body)) if body else None
    except (ValueError, RecursionError):
        return response, None
