"""Headers that keep a browser from treating an answer as a page of the console's origin. A
before-send hook, so that it covers every answer: the handlers', the problem details, Litestar's own
404s, the OpenAPI document and the stored documents.

- Every answer: `X-Content-Type-Options: nosniff` (a JSON or text answer is never sniffed into
  HTML or script), `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.
- /api/v1 answers: `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; sandbox`.
  Opened in a tab, an answer that holds a stored value (a workflow's display name, a trigger's
  data, a document) runs nothing, and `sandbox` gives it an opaque origin: not the console's, so
  it reaches neither the console's stored token nor, as same-origin, the API.
- The docs page (/schema, /schema/swagger): SWAGGER_POLICY. The page is of the
  console's origin and shows the OpenAPI document's text; it runs scripts of this origin only
  (its configuration is a JSON data block, read by /schema/swagger-init.js), never inline code.
  The rest of /schema (the documents, the page's files) has API_POLICY.
- A stored HTML document (GET /api/v1/documents/{id}) is one such answer: it is a template's
  output, so it may hold any markup its data put there. It keeps inline styles and data: images,
  so that it can be looked at, and nothing else (api/documents.py sets DOCUMENT_POLICY).

A handler's own header of the same name wins (the console's pages and the Swagger page set
theirs)."""

from __future__ import annotations

from litestar.types import Message, Scope

API_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
SWAGGER_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        # Swagger UI sets inline styles, and its CSS embeds its icons as data: images.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
DOCUMENT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox"

EVERY_ANSWER = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_API_PREFIX = "/api/"
_DOCS_PAGES = frozenset({"/schema", "/schema/", "/schema/swagger"})
_DOCS_PREFIX = "/schema/"


async def add_security_headers(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or [])
    present = {name.lower() for name, _ in headers}
    added = [(name, value) for name, value in EVERY_ANSWER if name not in present]
    if b"content-security-policy" not in present:
        path = str(scope.get("path", ""))
        if path in _DOCS_PAGES:
            added.append((b"content-security-policy", SWAGGER_POLICY.encode()))
        elif path.startswith((_API_PREFIX, _DOCS_PREFIX)):
            added.append((b"content-security-policy", API_POLICY.encode()))
    if added:
        message["headers"] = headers + added
