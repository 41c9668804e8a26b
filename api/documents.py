"""/api/v1/documents: documents core.template.render stored because they were too large for a
node's outputs (the outputs carry their documentId)."""

from __future__ import annotations

import uuid

from litestar import Controller, Response, get
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
        responses=PROBLEMS,
        summary="A stored document, with its content type",
        opt={"role": "viewer"},
    )
    async def get_document(self, db: DatabaseDep, document_id: FromPath[str]) -> Response[bytes]:
        try:
            key = uuid.UUID(document_id)
        except ValueError:
            raise NotFound(f"document {document_id!r} not found") from None
        # Row-level security: another tenant's document is not found, like a missing one.
        document = await db.document_templates.get_document(key)
        if document is None:
            raise NotFound(f"document {document_id} not found")
        return Response(
            document.body.encode(),
            # Litestar adds "; charset=utf-8" to a text/ type (the body is UTF-8): not twice.
            media_type=document.content_type.removesuffix("; charset=utf-8"),
            headers={
                "ETag": f'"{document.checksum}"',
                "X-Document-Checksum": document.checksum,
                # A template's output, markup and all: opened in a tab it runs no script, and in an
                # origin of its own (api/security_headers.py).
                "Content-Security-Policy": DOCUMENT_POLICY,
            },
        )
