"""Requests a web page made on a browser's behalf: refused on /api/v1 before the caller is looked at.

In loose auth mode the API trusts whoever calls it (README "Authentication and roles"), so any page an
operator opens could call a local API: a browser sends a form post or a `text/plain` or body-less
`fetch` to another origin without asking first (no CORS preflight), and the JSON handlers used to
read such a body as JSON (cross-site request forgery). And a page whose host name is rebound to
127.0.0.1 reads the answers too, as its own origin (DNS rebinding). Three checks, on every /api/v1
route but the webhook receiver (its signatures authenticate; an unsigned hook is open by design):

- a write (any method but GET, HEAD and OPTIONS) whose `Origin` is not the request's own host (its
  `Host`, or the `X-Forwarded-Host` a proxy in front set): 403 `cross_site_request`. Browsers send
  `Origin` on every such request; other clients (the CLI, curl, servers) send none and pass;
- a write with a body, or naming a content type, that is not JSON (`application/json` or
  `application/*+json`): 415 `unsupported_media_type`. A cross-site page cannot send JSON without a
  preflight, which this API never answers;
- a `Host`, `Origin` or `Content-Type` given more than once: 400 (which copy would count is not clear);
- when the settings name allowed hosts (`DW_API_ALLOWED_HOSTS`; `up` and `api` name the loopback
  ones in loose mode unless it is set): a request for another `Host`, 403 `host_not_allowed`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException
from litestar.handlers.base import BaseRouteHandler

from .auth import PUBLIC, ROLE_OPT
from .problems import CrossSiteRequest, HostNotAllowed, UnsupportedMediaType
from .services import services_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Headers these checks read that a request may give once only (a repeated one: 400).
ONCE = ("host", "origin", "content-type")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_name(host: str) -> str:
    """The name in a Host header, without its port, lower case (an IPv6 address without brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(setting: str) -> frozenset[str] | None:
    """DW_API_ALLOWED_HOSTS as names (None: any host; `*` among them: any host)."""
    names = frozenset(host_name(name) for name in setting.split(",") if name.strip())
    return None if not names or "*" in names else names


def _same_origin(origin: str, hosts: list[str]) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (a sandboxed frame, a file) or garbage
    netloc = parts.netloc.lower()
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    return any(netloc in (host, host + default) or netloc + default == host for host in hosts)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def refuse_cross_site(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app-level guard (guards of every layer run; this one before the caller is resolved)."""
    if not connection.scope["path"].startswith("/api/v1/") or handler.opt.get(ROLE_OPT) == PUBLIC:
        return
    headers = connection.headers
    for name in ONCE:
        # The first of two was checked and the other may be what a server behind reads (RFC 9110: a
        # request with two Host headers is a 400): refused, as repeated principal headers are.
        if len(headers.getall(name, [])) > 1:
            raise ClientException(f"give the header {name.title()} once")
    _check_host(headers.get("host", ""), services_of(connection.app.state).settings.api_allowed_hosts)
    if connection.scope.get("method", "GET") in SAFE_METHODS:
        return
    # A proxy's public name counts only where a proxy is declared: without one, whoever sends the
    # request names X-Forwarded-Host as it likes.
    proxied = bool(services_of(connection.app.state).settings.trusted_proxies)
    _check_origin(
        headers.get("origin"), headers.get("host", ""), headers.get("x-forwarded-host", "") if proxied else ""
    )
    _check_content_type(
        headers.get("content-type"),
        has_body=headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers,
    )


def _check_host(host: str, setting: str) -> None:
    hosts = allowed_hosts(setting)
    if hosts is not None and host_name(host) not in hosts:
        raise HostNotAllowed(
            f"this API answers requests for {', '.join(sorted(hosts))} only (DW_API_ALLOWED_HOSTS), not"
            f" for {host_name(host)[:100]!r}: a page that reached it under another name may be a DNS"
            " rebinding attack"
        )


def _check_origin(origin: str | None, host: str, forwarded_host: str) -> None:
    if origin is None:
        return
    own = [h.strip().lower() for h in (host, *forwarded_host.split(",")) if h.strip()]
    if not _same_origin(origin, own):
        raise CrossSiteRequest(
            f"a write from another origin ({origin[:100]!r}) is refused: browsers send this header for a"
            " page's requests, and a page of another site may not change this API"
        )


def _check_content_type(content_type: str | None, *, has_body: bool) -> None:
    if (content_type is not None or has_body) and not _is_json(content_type or ""):
        raise UnsupportedMediaType(
            f"the body must be JSON (Content-Type: application/json), not {(content_type or 'untyped')[:100]!r}"
        )
