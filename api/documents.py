"""/api/v1/documents: documents core.template.render stored because they were too large for a
node's outputs (the outputs carry their documentId)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from dataworkflows.errors import NotFound

from .openapi_docs import PROBLEMS
from .security_headers import DOCUMENT_POLICY
from .services import DatabaseDep


class DocumentController(Controller):
    path = "/documents"
    tags = ["document templates"]

    @get(
        "/{document_id:str}",
        # Its content types and headers: api/openapi_contract.py.
        responses={
            **PROBLEMS,
            304: ResponseSpec(
                data_container=None, description="If-None-Match names its ETag: the copy the client has is this one"
            ),
        },
        summary="A stored document, with its content type",
        opt={"role": "viewer"},
    )
    async def get_document(
        self, request: Request[Any, Any, Any], db: DatabaseDep, document_id: FromPath[str]
    ) -> Response[bytes]:
        try:
            key = uuid.UUID(document_id)
        except ValueError:
            raise NotFound(f"document {document_id!r} not found") from None
        # Row-level security: another tenant's document is not found, like a missing one.
        document = await db.document_templates.get_document(key)
        if document is None:
            raise NotFound(f"document {document_id} not found")
        etag = f'"{document.checksum}"'
        headers = {
            "ETag": etag,
            "X-Document-Checksum": document.checksum,
            # A template's output, markup and all: opened in a tab it runs no script, and in an
            # origin of its own (api/security_headers.py).
            "Content-Security-Policy": DOCUMENT_POLICY,
        }
        if etag_matches(request.headers.get("if-none-match"), etag):
            # The copy the client has is this one (a document never changes: its ETag is its
            # checksum). RFC 9110 13.1.2, 15.4.5: 304, no body, the same validator.
            return Response(b"", status_code=304, headers=headers)
        return Response(
            document.body.encode(),
            # Litestar adds "; charset=utf-8" to a text/ type (the body is UTF-8): not twice.
            media_type=document.content_type.removesuffix("; charset=utf-8"),
            headers=headers,
        )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match names this ETag, or is `*` (weak comparison: W/ ignored)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
