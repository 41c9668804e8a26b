"""Document template sets, their templates and the templates' immutable versions."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from dataworkflows import errors
from dataworkflows.documents import needed_sources

if TYPE_CHECKING:
    from dataworkflows.db import Database, Transaction


class TemplateSet(msgspec.Struct, frozen=True):
    id: str
    display_name: str
    description: str | None
    created_at: datetime
    created_by: str | None


class DocumentTemplate(msgspec.Struct, frozen=True):
    """A template's latest version, without its body (lists)."""

    set_id: str
    name: str
    latest_version: int
    format: str
    checksum: str
    created_at: datetime
    created_by: str | None
    updated_at: datetime


class DocumentTemplateVersion(msgspec.Struct, frozen=True):
    set_id: str
    name: str
    version: int
    format: str
    checksum: str
    created_at: datetime
    created_by: str | None
    # Only when one version is read: listing versions leaves them out.
    body: str | None = None
    sample_data: dict[str, Any] | None = None
    latest_version: int | None = None


class StoredDocument(msgspec.Struct, frozen=True):
    id: UUID
    execution_id: UUID
    node_id: str
    attempt: int
    content_type: str
    checksum: str
    bytes: int
    body: str
    created_at: datetime


class DocumentTemplateData:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_set(
        self, *, set_id: str, display_name: str, description: str | None, principal: str | None
    ) -> TemplateSet:
        row = await self._db.fetch_one_as(
            TemplateSet,
            "insert_template_set",
            id=set_id,
            display_name=display_name,
            description=description,
            principal=principal,
        )
        assert row is not None
        return row

    async def get_set(self, set_id: str) -> TemplateSet | None:
        return await self._db.fetch_one_as(TemplateSet, "get_template_set", id=set_id)

    async def page_sets(self, *, after: str | None, limit: int) -> list[TemplateSet]:
        return await self._db.fetch_all_as(TemplateSet, "list_template_sets", after=after, limit=limit)

    async def delete_set(self, set_id: str) -> bool:
        """Deletes a set with its templates, unless a published workflow renders one of them (as
        delete counts it: TemplateInUse, naming them)."""
        async with self._db.transaction() as tx:
            if await tx.fetch_one("lock_template_set_for_delete", id=set_id) is None:
                return False
            uses = await tx.fetch_all("template_uses", set_id=set_id)
            if uses:
                raise errors.TemplateInUse(f"template set {set_id}", _uses_text(uses))
            return await tx.fetch_one("delete_template_set", id=set_id) is not None

    async def create(
        self,
        *,
        set_id: str,
        name: str,
        format: str,
        body: str,
        sample_data: dict[str, Any],
        checksum: str,
        principal: str | None,
    ) -> None:
        """Creates a template with version 1."""
        async with self._db.transaction() as tx:
            if await tx.fetch_one("lock_template_set", id=set_id) is None:
                raise errors.NotFound(f"template set {set_id!r} not found")
            if await tx.fetch_one("lock_document_template", set_id=set_id, name=name) is not None:
                raise errors.Conflict(
                    f"template {set_id}/{name} already exists; PUT /api/v1/templates/{set_id}/{name} adds a version"
                )
            await tx.fetch_one("insert_document_template", set_id=set_id, name=name, principal=principal)
            await tx.fetch_one(
                "insert_document_template_version",
                set_id=set_id,
                name=name,
                format=format,
                body=body,
                sample_data=sample_data,
                checksum=checksum,
                principal=principal,
            )

    async def add_version(
        self,
        *,
        set_id: str,
        name: str,
        format: str,
        body: str,
        sample_data: dict[str, Any],
        checksum: str,
        principal: str | None,
    ) -> tuple[int, bool]:
        """The new version, or the existing one with the same checksum; and whether it is new."""
        async with self._db.transaction() as tx:
            if await tx.fetch_one("lock_document_template", set_id=set_id, name=name) is None:
                raise errors.NotFound(f"template {set_id}/{name} not found")
            existing = await tx.fetch_one("find_document_template_version", set_id=set_id, name=name, checksum=checksum)
            if existing is not None:
                return int(existing["version"]), False
            row = await tx.fetch_one(
                "insert_document_template_version",
                set_id=set_id,
                name=name,
                format=format,
                body=body,
                sample_data=sample_data,
                checksum=checksum,
                principal=principal,
            )
            assert row is not None
            return int(row["version"]), True

    async def get_version(self, set_id: str, name: str, version: int | None) -> DocumentTemplateVersion | None:
        return await self._db.fetch_one_as(
            DocumentTemplateVersion, "get_document_template_version", set_id=set_id, name=name, version=version
        )

    async def versions(
        self, set_id: str, name: str, *, before: int | None = None, limit: int = 1000
    ) -> list[DocumentTemplateVersion]:
        """Newest first: at most `limit`, those before version `before` (None: from the newest)."""
        return await self._db.fetch_all_as(
            DocumentTemplateVersion,
            "list_document_template_versions",
            set_id=set_id,
            name=name,
            before=before,
            limit=limit,
        )

    async def page(self, *, set_id: str | None, after: tuple[str, str] | None, limit: int) -> list[DocumentTemplate]:
        after_set, after_name = after if after is not None else (None, None)
        return await self._db.fetch_all_as(
            DocumentTemplate,
            "list_document_templates",
            set_id=set_id,
            after_set=after_set,
            after_name=after_name,
            limit=limit,
        )

    async def sources(self, set_id: str, *, as_of: datetime | None = None) -> dict[str, str]:
        """The latest body of every template in the set, by name; as of a time, when given (each
        template's latest version saved by then, or its first if it came later)."""
        rows = await self._db.fetch_all("set_template_sources", set_id=set_id, as_of=as_of)
        return {str(row["name"]): str(row["body"]) for row in rows}

    async def delete(self, set_id: str, name: str) -> bool:
        """Deletes a template with its versions, unless a published version of a workflow that is not
        archived (or one with runs not finished) renders it, or renders a template of its set that
        includes, imports or extends it (TemplateInUse, naming them): deleted, it broke those
        versions' renders, and made again it rendered other text under the same version number. The
        set is held against publishes meanwhile (lock_rendered_template_sets)."""
        async with self._db.transaction() as tx:
            if await tx.fetch_one("lock_template_set_for_delete", id=set_id) is None:
                return False
            uses = await tx.fetch_all("template_uses", set_id=set_id)
            # Whether rendering (template, pinned version) loads `name`: once per pair, however
            # many workflow versions render it. A version given by a template (any_version) may be
            # any of the template's versions: each one is asked.
            loads: dict[tuple[str, int | None], bool] = {}
            blocking = []
            for use in uses:
                rendered = str(use["name"])
                if use["any_version"]:
                    versions = [
                        row["version"]
                        for row in await tx.fetch_all("document_template_version_numbers", set_id=set_id, name=rendered)
                    ]
                else:
                    versions = [use["pinned"]]
                for version in versions:
                    key = (rendered, version)
                    if key not in loads:
                        loads[key] = rendered == name or await self._loads(tx, set_id, rendered, version, name)
                    if loads[key]:
                        blocking.append(use)
                        break
            if blocking:
                raise errors.TemplateInUse(f"template {set_id}/{name}", _uses_text(blocking))
            return await tx.fetch_one("delete_document_template", set_id=set_id, name=name) is not None

    @staticmethod
    async def _loads(tx: Transaction, set_id: str, rendered: str, version: int | None, name: str) -> bool:
        """Whether rendering `rendered` (at `version`, with the set as it was then; None: the latest)
        includes, imports or extends `name`, directly or through another template."""
        as_of = None
        if version is not None:
            pinned = await tx.fetch_one("get_document_template_version", set_id=set_id, name=rendered, version=version)
            if pinned is None:
                return False  # that version is not there: its renders fail already
            as_of = pinned["created_at"]
        rows = await tx.fetch_all("set_template_sources", set_id=set_id, as_of=as_of)
        sources = {str(row["name"]): str(row["body"]) for row in rows}
        return name in await asyncio.to_thread(needed_sources, rendered, sources)

    async def store_document(
        self, *, execution_id: UUID, node_id: str, attempt: int, content_type: str, checksum: str, body: str
    ) -> UUID:
        """Stores a rendered document once per (execution, node, checksum): its id."""
        row = await self._db.fetch_one(
            "store_document",
            execution_id=execution_id,
            node_id=node_id,
            attempt=attempt,
            content_type=content_type,
            checksum=checksum,
            bytes=len(body.encode()),
            body=body,
        )
        assert row is not None
        return UUID(str(row["id"]))

    async def get_document(self, document_id: UUID) -> StoredDocument | None:
        return await self._db.fetch_one_as(StoredDocument, "get_document", id=document_id)


def _uses_text(uses: list[Any]) -> str:
    """The published versions that render it, a few named: "invoice v2 (renders main v1), ..."."""
    named = [
        f"{use['workflow_id']} v{use['workflow_version']} (renders {use['name']}"
        f"{' v' + str(use['pinned']) if use['pinned'] is not None else ''}"
        f"{', a version its run chooses' if use['any_version'] else ''})"
        for use in uses[:5]
    ]
    more = f" and {len(uses) - 5} more" if len(uses) > 5 else ""
    return ", ".join(named) + more
