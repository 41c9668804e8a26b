"""core.template.render: renders a document template of a template set (issue 15) with data.

The template is `templateId` ("<set>/<name>") or `set` + `name`. Without `version`, the template's
latest version when the attempt runs (resolved per run, not at publish); the other templates of the
set that it includes, imports or extends are their latest versions then too. With `version`, that
version, and the set's other templates as they were when that version was saved (a template added
later: its first version), so a pinned render stays the same document whatever is saved later.
Versions are immutable, so a pinned version cannot change under a published workflow.

It renders in the template helpers (TemplatePool.document): the step budget and wall-clock limit
of every other template apply, and a budget failure fails the node (template_budget_exceeded);
a helper that cannot start is retried. A document of more than DW_DOCUMENT_INLINE_BYTES is stored
in dw.documents (once per execution, node and checksum) and the outputs carry its documentId.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import msgspec

from dataworkflows.actions import ActionContext, ActionResult
from dataworkflows.documents import MAX_SET_CHARS, sources_for_render
from dataworkflows.templating import TemplateRenderError, TemplateUnavailable

DEFAULT_INLINE_BYTES = 16 * 1024


@dataclass(frozen=True)
class DocumentServices:
    """What core.template.render needs: the database (template versions, stored documents), the
    template helpers, and the size past which a document is stored rather than inlined."""

    db: Any
    templates: Any
    inline_bytes: int = DEFAULT_INLINE_BYTES


MAX_VERSION = 2**31 - 1


class TemplateRenderParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    template_id: str | None = None
    set: str | None = None
    name: str | None = None
    version: int | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    as_: Literal["html"] | None = msgspec.field(default=None, name="as")

    def __post_init__(self) -> None:
        if self.template_id is not None:
            if self.set is not None or self.name is not None:
                raise ValueError("give templateId or set and name, not both")
            if self.template_id.count("/") != 1 or not all(self.template_id.split("/")):
                raise ValueError('templateId is "<set>/<name>"')
        elif not self.set or not self.name:
            raise ValueError("templateId, or set and name, is required")
        # A version is a PostgreSQL integer: past it the lookup failed as an action_exception.
        if self.version is not None and not 1 <= self.version <= MAX_VERSION:
            raise ValueError(f"version must be a version number (1 to {MAX_VERSION})")

    def target(self) -> tuple[str, str]:
        if self.template_id is not None:
            set_id, name = self.template_id.split("/")
            return set_id, name
        assert self.set is not None and self.name is not None
        return self.set, self.name


class TemplateRenderAction:
    type_name: ClassVar[str] = "core.template.render"
    description: ClassVar[str] = (
        "Renders a document template (templateId or set + name, optional version) with data: outputs the "
        "document (or documentId when large), contentType, checksum, templateVersion and bytes."
    )
    connector: ClassVar[str] = "core"
    Params: ClassVar[type[msgspec.Struct]] = TemplateRenderParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        assert isinstance(params, TemplateRenderParams)
        documents = getattr(ctx.require_services(), "documents", None)
        if not isinstance(documents, DocumentServices):
            return ActionResult.failed("documents_unavailable", "this runtime cannot render document templates")
        set_id, name = params.target()
        store = documents.db.document_templates
        row = await store.get_version(set_id, name, params.version)
        if row is None:
            which = f" version {params.version}" if params.version is not None else ""
            return ActionResult.failed("template_not_found", f"template {set_id}/{name}{which} not found")
        if params.as_ is not None and row.format not in ("markdown", "html"):
            return ActionResult.failed(
                "invalid_parameters", f'"as": "html" renders Markdown to HTML; template {set_id}/{name} is {row.format}'
            )
        as_of = row.created_at if params.version is not None else None
        # Only what the template loads (the rest of the set may have grown since, past the limit).
        sources = await sources_for_render(name, await store.sources(set_id, as_of=as_of) | {name: row.body})
        if sum(len(body) for body in sources.values()) > MAX_SET_CHARS:
            return ActionResult.failed(
                "template_set_too_large", f"template set {set_id!r} holds more than {MAX_SET_CHARS:,} characters"
            )
        try:
            rendered = await documents.templates.document(
                name, sources, params.data, row.format, as_html=params.as_ == "html"
            )
        except TemplateUnavailable as exc:
            return ActionResult.retriable(exc.code, exc.message)
        except TemplateRenderError as exc:
            where = {key: getattr(exc, "attributes", {}).get(key) for key in ("template", "line", "column")}
            return ActionResult.failed(exc.code, exc.message, **{k: v for k, v in where.items() if v is not None})
        return await _outputs(ctx, documents, f"{set_id}/{name}", row.version, rendered)


async def _outputs(
    ctx: ActionContext, documents: DocumentServices, template_id: str, version: int, rendered: dict[str, Any]
) -> ActionResult:
    document = str(rendered["document"])
    content_type = str(rendered["contentType"])
    encoded = document.encode()
    checksum = "sha256:" + hashlib.sha256(encoded).hexdigest()
    outputs: dict[str, Any] = {
        "templateId": template_id,
        "templateVersion": version,
        "contentType": content_type,
        "checksum": checksum,
        "bytes": len(encoded),
    }
    if len(encoded) <= documents.inline_bytes:
        return ActionResult.succeeded(outputs | {"document": document})
    document_id = await documents.db.document_templates.store_document(
        execution_id=ctx.execution_id,
        node_id=ctx.node_id,
        attempt=ctx.attempt,
        content_type=content_type,
        checksum=checksum,
        body=document,
    )
    return ActionResult.succeeded(outputs | {"documentId": str(document_id)})
