"""Resource links: which runs created or found which external resource, and the claims that let
one attempt create a resource while others wait for it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

if TYPE_CHECKING:
    from dataworkflows.db import Database


class ResourceClaim(msgspec.Struct, frozen=True):
    # exists (external_id is set), claimed (by this owner: create it now), in_doubt (claimed by this
    # owner from an attempt that may have created it: look it up first) or pending (another owner
    # is creating it).
    state: str
    external_id: str | None
    # When the key was first claimed: the earliest an in-doubt resource can have been created.
    claimed_at: datetime


class ResourceLink(msgspec.Struct, frozen=True):
    link_id: int
    resource_type: str
    resource_key: str
    external_id: str | None
    action: str
    execution_id: UUID | None
    workflow_id: str | None
    node_id: str | None
    at: datetime


class ResourceData:
    """dw.resource_links and their claims, per tenant."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(
        self,
        *,
        tenant: str,
        resource_type: str,
        key: str,
        workflow_id: str,
        execution_id: UUID,
        node_id: str,
        owner: str,
        claim_seconds: float,
    ) -> ResourceClaim:
        claim = await self._db.fetch_one_as(
            ResourceClaim,
            "claim_resource",
            tenant=tenant,
            type=resource_type,
            key=key,
            workflow_id=workflow_id,
            execution_id=execution_id,
            node_id=node_id,
            owner=owner,
            claim_seconds=claim_seconds,
        )
        assert claim is not None
        return claim

    async def link(
        self,
        *,
        tenant: str,
        resource_type: str,
        key: str,
        external_id: str,
        workflow_id: str,
        execution_id: UUID,
        node_id: str,
        data: dict[str, Any] | None,
    ) -> str:
        """Links the resource to the run; returns the external id that holds (the first one wins)."""
        row = await self._db.fetch_one(
            "link_resource",
            tenant=tenant,
            type=resource_type,
            key=key,
            external_id=external_id,
            workflow_id=workflow_id,
            execution_id=execution_id,
            node_id=node_id,
            data=data,
        )
        assert row is not None
        return str(row["external_id"])

    async def release_claim(self, *, tenant: str, resource_type: str, key: str, owner: str) -> None:
        """Gives up a claim after a failed create."""
        await self._db.fetch_one("release_resource_claim", tenant=tenant, type=resource_type, key=key, owner=owner)

    async def linked(self, *, tenant: str, resource_type: str, external_ids: list[str]) -> set[str]:
        """Which of these external ids a key of this type is linked to already, or was until a
        compensation released it (undone: never an in-doubt create's item)."""
        rows = await self._db.fetch_all("linked_external_ids", tenant=tenant, type=resource_type, ids=external_ids)
        return {str(row["external_id"]) for row in rows}

    async def check(self, *, tenant: str, resource_type: str, key: str) -> str | None:
        """The external id of a linked resource, or None."""
        row = await self._db.fetch_one("check_resource", tenant=tenant, type=resource_type, key=key)
        external_id = None if row is None else row["external_id"]
        return None if external_id is None else str(external_id)

    async def links(
        self, *, resource_type: str | None, key: str | None, execution_id: UUID | None, limit: int
    ) -> list[ResourceLink]:
        """Which runs touched which resource, newest first."""
        return await self._db.fetch_all_as(
            ResourceLink, "list_resource_links", type=resource_type, key=key, execution_id=execution_id, limit=limit
        )
