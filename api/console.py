"""The operator console: static files served at /ui (and / redirects there).

Plain ES modules and hand-written CSS shipped in the package (api/ui/), no CDN and no build step,
so the console works offline. The page reads the same /api/v1 routes as any client, with the
caller's own credentials: these routes serve only files, never data, so they are open in every
auth mode. A strict Content-Security-Policy keeps any data the page shows from running as code
(the scripts also only ever set textContent)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.params import FromPath
from litestar.response import Redirect

from dataworkflows.errors import NotFound

from .documents import etag_matches

UI_DIR = Path(__file__).resolve().parent / "ui"

# Litestar adds "; charset=utf-8" to a text/ type itself (given here too, it was sent twice).
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Small files, changed with the package: always revalidated (no stale console after an upgrade),
    # by their ETag (a 304 when unchanged).
    "Cache-Control": "no-cache",
}


def _load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file under ui/, by its path relative to it: what /ui/{path} may serve, read once."""
    assets: dict[str, tuple[bytes, str]] = {}
    if UI_DIR.is_dir():
        for path in sorted(UI_DIR.rglob("*")):
            media_type = _TYPES.get(path.suffix)
            if path.is_file() and media_type is not None:
                assets[path.relative_to(UI_DIR).as_posix()] = (path.read_bytes(), media_type)
    return assets


ASSETS = _load_assets()
# Each file's strong validator, its content's hash, computed once: `no-cache` made the browser fetch
# every file in full on every load, since nothing let it ask whether its copy was still good.
ETAGS = {name: '"' + hashlib.sha256(content).hexdigest()[:32] + '"' for name, (content, _) in ASSETS.items()}


def _asset(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    found = ASSETS.get(name)
    if found is None:
        raise NotFound(f"the console has no file {name[:200]!r}")
    content, media_type = found
    etag = ETAGS[name]
    headers = {**HEADERS, "ETag": etag}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(b"", status_code=304, media_type=media_type, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


@get("/", include_in_schema=False)
async def root() -> Redirect:
    return Redirect(path="/ui")


@get(["/ui", "/ui/"], include_in_schema=False)
async def console_index(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _asset(request, "index.html")


@get("/ui/{name:path}", include_in_schema=False)
async def console_asset(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    return _asset(request, name.lstrip("/"))


console_router = Router(path="/", route_handlers=[root, console_index, console_asset])
