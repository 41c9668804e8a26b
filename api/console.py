"""The operator console: static files served at /ui (and / redirects there).

Plain ES modules and hand-written CSS shipped in the package (api/ui/), no CDN and no build step,
so the console works offline. The page reads the same /api/v1 routes as any client, with the
caller's own credentials: these routes serve only files, never data, so they are open in every
auth mode. A strict Content-Security-Policy keeps any data the page shows from running as code
(the scripts also only ever set textContent)."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, Router, get
from litestar.params import FromPath
from litestar.response import Redirect

from dataworkflows.errors import NotFound

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
    # Small files, changed with the package: always revalidated (no stale console after an upgrade).
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


def _asset(name: str) -> Response[bytes]:
    found = ASSETS.get(name)
    if found is None:
        raise NotFound(f"the console has no file {name[:200]!r}")
    content, media_type = found
    return Response(content, media_type=media_type, headers=HEADERS)


@get("/", include_in_schema=False)
async def root() -> Redirect:
    return Redirect(path="/ui")


@get(["/ui", "/ui/"], include_in_schema=False)
async def console_index() -> Response[bytes]:
    return _asset("index.html")


@get("/ui/{name:path}", include_in_schema=False)
async def console_asset(name: FromPath[str]) -> Response[bytes]:
    return _asset(name.lstrip("/"))


console_router = Router(path="/", route_handlers=[root, console_index, console_asset])
