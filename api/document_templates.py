"""/api/v1/template-sets and /api/v1/templates: document templates (not workflow templates), their
immutable versions and previews. A template's id is "<set>/<name>"."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from dataworkflows.data.document_templates import DocumentTemplateVersion
from dataworkflows.db import Database
from dataworkflows.definitions import checksum
from dataworkflows.documents import MAX_BODY_CHARS, MAX_SET_CHARS, sources_for_render
from dataworkflows.errors import InvalidInput, NotFound

from .auth import OWNER_OPT, TEMPLATE_SET, check_template_set_owner
from .locations import LOCATION, created
from .openapi_docs import PROBLEMS
from .paging import (
    PAGE_LIMIT,
    PageCursor,
    PageLimit,
    bare_page,
    body_page,
    decode_id_cursor,
    decode_name_cursor,
    decode_names_cursor,
    encode_scoped,
    next_page_header,
)
from .params import INT_MAX, VersionQuery, query_int
from .schemas import Camel, from_row
from .services import REQUIRES_PRINCIPAL, DatabaseDep, PrincipalDep, ServicesDep

Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
Format = Literal["text", "markdown", "html", "json"]
Body = Annotated[str, msgspec.Meta(max_length=MAX_BODY_CHARS)]
Version = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class TemplateSetCreate(Camel, forbid_unknown_fields=True):
    id: Id
    display_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class TemplateSetRead(Camel):
    id: str
    display_name: str
    description: str | None
    created_at: datetime
    created_by: str | None


class TemplateSetList(Camel):
    items: list[TemplateSetRead]
    next_cursor: str | None


class TemplateVersionWrite(Camel, forbid_unknown_fields=True):
    format: Format
    body: Body
    sample_data: dict[str, Any] = msgspec.field(default_factory=dict)


class TemplateCreate(Camel, forbid_unknown_fields=True):
    set: Id
    name: Id
    format: Format
    body: Body
    sample_data: dict[str, Any] = msgspec.field(default_factory=dict)


class TemplateRead(Camel):
    id: str
    set_id: str
    name: str
    version: int
    latest_version: int | None
    format: str
    body: str | None
    sample_data: dict[str, Any] | None
    checksum: str
    created_at: datetime
    created_by: str | None
    # Saves only (POST: true; PUT: false when the same body, format and sample were the latest
    # version already, nothing new); reads leave it out (null).
    created: bool | None = None


class TemplateVersionSummary(Camel):
    id: str
    version: int
    format: str
    checksum: str
    created_at: datetime
    created_by: str | None


class TemplateSummary(Camel):
    id: str
    set_id: str
    name: str
    latest_version: int
    format: str
    checksum: str
    created_at: datetime
    created_by: str | None
    updated_at: datetime


class TemplateList(Camel):
    items: list[TemplateSummary]
    next_cursor: str | None


class RenderRequest(Camel, forbid_unknown_fields=True):
    # The template's variables; absent: the version's stored sample data.
    data: dict[str, Any] | None = None
    version: Version | None = None
    # "html": a Markdown document rendered to HTML (CommonMark, raw HTML escaped).
    as_: Literal["html"] | None = msgspec.field(default=None, name="as")


class RenderResponse(Camel):
    template_id: str
    version: int
    format: str
    document: str
    content_type: str
    checksum: str


def _version_checksum(data: TemplateVersionWrite | TemplateCreate) -> str:
    return checksum({"format": data.format, "body": data.body, "sampleData": data.sample_data})


async def _require_version(db: Database, set_id: str, name: str, version: int | None) -> DocumentTemplateVersion:
    row = await db.document_templates.get_version(set_id, name, version)
    if row is None:
        which = f" version {version}" if version is not None else ""
        raise NotFound(f"template {set_id}/{name}{which} not found")
    return row


def _read(row: DocumentTemplateVersion, **extra: Any) -> TemplateRead:
    return from_row(TemplateRead, row, id=f"{row.set_id}/{row.name}", **extra)


class TemplateSetController(Controller):
    path = "/template-sets"
    tags = ["document templates"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        response_headers=LOCATION,
        responses=PROBLEMS,
        summary="Create a template set",
        opt={REQUIRES_PRINCIPAL: "change document templates", "role": "author"},
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db: DatabaseDep,
        principal: PrincipalDep,
        data: JSONBody[TemplateSetCreate],
    ) -> Response[TemplateSetRead]:
        row = await db.document_templates.create_set(
            set_id=data.id, display_name=data.display_name or data.id, description=data.description,
            principal=principal.id,
        )  # fmt: skip
        return created(request, from_row(TemplateSetRead, row), "template-sets", data.id)

    @get("/", responses=PROBLEMS, summary="List template sets", opt={"role": "viewer"})
    async def list_sets(
        self,
        db: DatabaseDep,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 100,
    ) -> TemplateSetList:
        # What the cursor was made for: this list (paging.scoped).
        scope = ("template-sets",)
        after = decode_name_cursor(cursor, scope=scope)
        rows = await db.document_templates.page_sets(after=after, limit=limit + 1)
        items, next_cursor = body_page(
            rows, limit, lambda row: from_row(TemplateSetRead, row), lambda last: encode_scoped(scope, last.id)
        )
        return TemplateSetList(items=items, next_cursor=next_cursor)

    @get("/{set_id:str}", responses=PROBLEMS, summary="A template set", opt={"role": "viewer"})
    async def get_set(self, db: DatabaseDep, set_id: FromPath[str]) -> TemplateSetRead:
        row = await db.document_templates.get_set(set_id)
        if row is None:
            raise NotFound(f"template set {set_id!r} not found")
        return from_row(TemplateSetRead, row)

    @delete(
        "/{set_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        responses=PROBLEMS,
        summary="Delete a template set with its templates",
        opt={REQUIRES_PRINCIPAL: "change document templates", "role": "author", OWNER_OPT: TEMPLATE_SET},
    )
    async def delete_set(self, db: DatabaseDep, set_id: FromPath[str]) -> None:
        if not await db.document_templates.delete_set(set_id):
            raise NotFound(f"template set {set_id!r} not found")


class DocumentTemplateController(Controller):
    path = "/templates"
    tags = ["document templates"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        response_headers=LOCATION,
        responses=PROBLEMS,
        summary="Create a template in a set (version 1)",
        opt={REQUIRES_PRINCIPAL: "change document templates", "role": "author", OWNER_OPT: TEMPLATE_SET},
    )
    async def create(
        self, request: Request[Any, Any, Any], svc: ServicesDep, principal: PrincipalDep, data: JSONBody[TemplateCreate]
    ) -> Response[TemplateRead]:
        if svc.principals.strict and not principal.has_role("admin"):
            await check_template_set_owner(svc.db, principal, data.set)  # its set is in the body
        await svc.templates.check_document(data.name, data.body)
        await svc.db.document_templates.create(
            set_id=data.set, name=data.name, format=data.format, body=data.body, sample_data=data.sample_data,
            checksum=_version_checksum(data), principal=principal.id,
        )  # fmt: skip
        template = _read(await _require_version(svc.db, data.set, data.name, None), created=True)
        return created(request, template, "templates", data.set, data.name)

    @get("/", responses=PROBLEMS, summary="List templates (latest versions, no bodies)", opt={"role": "viewer"})
    async def list_templates(
        self,
        db: DatabaseDep,
        set_id: Annotated[str | None, QueryParameter(name="set", required=False)] = None,
        cursor: Annotated[str | None, QueryParameter(name="cursor", required=False)] = None,
        limit: Annotated[int, query_int("limit", ge=1, le=500)] = 100,
    ) -> TemplateList:
        # What the cursor was made for: this list and its set filter (paging.scoped).
        scope = ("templates", set_id)
        after = decode_names_cursor(cursor, 2, scope=scope)
        rows = await db.document_templates.page(
            set_id=set_id, after=(after[0], after[1]) if after else None, limit=limit + 1
        )
        items, next_cursor = body_page(
            rows,
            limit,
            lambda row: from_row(TemplateSummary, row, id=f"{row.set_id}/{row.name}"),
            lambda last: encode_scoped(scope, [last.set_id, last.name]),
        )
        return TemplateList(items=items, next_cursor=next_cursor)

    @get(
        "/{set_id:str}/{name:str}",
        responses=PROBLEMS,
        summary="A template (latest version unless ?version=)",
        opt={"role": "viewer"},
    )
    async def get_template(
        self,
        db: DatabaseDep,
        set_id: FromPath[str],
        name: FromPath[str],
        version: VersionQuery = None,
    ) -> TemplateRead:
        return _read(await _require_version(db, set_id, name, version))

    @put(
        "/{set_id:str}/{name:str}",
        responses=PROBLEMS,
        summary="Save a template's body (a changed one becomes a new version)",
        opt={REQUIRES_PRINCIPAL: "change document templates", "role": "author", OWNER_OPT: TEMPLATE_SET},
    )
    async def add_version(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        set_id: FromPath[str],
        name: FromPath[str],
        data: JSONBody[TemplateVersionWrite],
    ) -> TemplateRead:
        await svc.templates.check_document(name, data.body)
        version, created = await svc.db.document_templates.add_version(
            set_id=set_id, name=name, format=data.format, body=data.body, sample_data=data.sample_data,
            checksum=_version_checksum(data), principal=principal.id,
        )  # fmt: skip
        return _read(await _require_version(svc.db, set_id, name, version), created=created)

    @get(
        "/{set_id:str}/{name:str}/versions",
        responses=PROBLEMS,
        summary="A template's versions, newest first",
        response_headers=next_page_header("/api/v1/templates/{set_id}/{name}/versions?cursor=C&limit=L"),
        opt={"role": "viewer"},
    )
    async def list_versions(
        self,
        db: DatabaseDep,
        request: Request[Any, Any, Any],
        set_id: FromPath[str],
        name: FromPath[str],
        limit: PageLimit = PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[TemplateVersionSummary]]:
        # Every PUT of another text adds a version: the list was unbounded, as a workflow's versions.
        scope = ("template-versions", set_id, name)
        before = decode_id_cursor(cursor, top=INT_MAX, scope=scope)
        rows = await db.document_templates.versions(set_id, name, before=before, limit=limit + 1)
        if not rows and (before is None or await db.document_templates.get_version(set_id, name, None) is None):
            raise NotFound(f"template {set_id}/{name} not found")
        return bare_page(
            request,
            rows,
            limit,
            lambda row: from_row(TemplateVersionSummary, row, id=f"{set_id}/{name}"),
            lambda last: encode_scoped(scope, last.version),
        )

    @get(
        "/{set_id:str}/{name:str}/versions/{version:int}",
        responses=PROBLEMS,
        summary="One version of a template",
        opt={"role": "viewer"},
    )
    async def get_version(
        self, db: DatabaseDep, set_id: FromPath[str], name: FromPath[str], version: FromPath[int]
    ) -> TemplateRead:
        return _read(await _require_version(db, set_id, name, version))

    @delete(
        "/{set_id:str}/{name:str}",
        status_code=HTTP_204_NO_CONTENT,
        responses=PROBLEMS,
        summary="Delete a template with its versions",
        opt={REQUIRES_PRINCIPAL: "change document templates", "role": "author", OWNER_OPT: TEMPLATE_SET},
    )
    async def delete_template(self, db: DatabaseDep, set_id: FromPath[str], name: FromPath[str]) -> None:
        if not await db.document_templates.delete(set_id, name):
            raise NotFound(f"template {set_id}/{name} not found")

    @post(
        "/{set_id:str}/{name:str}/render",
        status_code=200,
        responses=PROBLEMS,
        summary="Preview: render a template with data (or its sample)",
        opt={"role": "viewer"},
    )
    async def render(
        self,
        svc: ServicesDep,
        set_id: FromPath[str],
        name: FromPath[str],
        data: JSONBody[RenderRequest | None] = None,
    ) -> RenderResponse:
        # Every field is optional: no body renders the latest version with its sample data (it was a
        # 400 saying "'data'").
        data = data or RenderRequest()
        row = await _require_version(svc.db, set_id, name, data.version)
        if data.as_ is not None and row.format not in ("markdown", "html"):
            raise InvalidInput(f'"as": "html" renders Markdown to HTML; template {set_id}/{name} is {row.format}')
        assert row.body is not None
        # The set's latest bodies for includes, imports and extends; the requested version for itself.
        # Only what the template loads, as a run renders it (actions/template_render.py): as of the
        # version asked for, and not the templates of the set it does not load.
        as_of = row.created_at if data.version is not None else None
        sources = await sources_for_render(
            name, await svc.db.document_templates.sources(set_id, as_of=as_of) | {name: row.body}
        )
        if sum(len(body) for body in sources.values()) > MAX_SET_CHARS:
            raise InvalidInput(f"template set {set_id!r} holds more than {MAX_SET_CHARS:,} characters of templates")
        variables = data.data if data.data is not None else (row.sample_data or {})
        rendered = await svc.templates.document(name, sources, variables, row.format, as_html=data.as_ == "html")
        document = str(rendered["document"])
        return RenderResponse(
            template_id=f"{set_id}/{name}",
            version=row.version,
            format=row.format,
            document=document,
            content_type=str(rendered["contentType"]),
            checksum="sha256:" + hashlib.sha256(document.encode()).hexdigest(),
        )
