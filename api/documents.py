"""/api/v1/documents: documents core.template.render stored because they were too large for a
node's outputs (the outputs carry their documentId)."""

from __future__ import annotations

import uuid

from litestar import Controller, Response, get
from litestar.params import FromPath

from dataworkflows.errors import NotFound

from .openapi_docs import PROBLEMS
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
            media_type=document.content_type,
            headers={"ETag": f'"{document.checksum}"', "X-Document-Checksum": document.checksum},
        )
