"""Resource links for actions: claim before creating, link after, so runs that share an
idempotency key create the resource once (also when they race), through db.resources."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from dataworkflows.db import Database
from dataworkflows.errors import InvariantViolation
from dataworkflows.tenancy import ALL_TENANTS, current_tenant


def _owner(execution_id: UUID, node_id: str, attempt: int, compensating: bool = False) -> str:
    """execution:node:attempt; a compensation's attempt execution:node:compensation:attempt. Its
    attempt numbers are its step's, not its node's: as execution:node:attempt, the live claim of its
    attempt 1 was taken by another run as over (its node's attempt 1 had ended), found in doubt,
    and the other run looked its item up before it existed or failed for good (a review)."""
    if compensating:
        return f"{execution_id}:{node_id}:compensation:{attempt}"
    return f"{execution_id}:{node_id}:{attempt}"


@dataclass(frozen=True)
class Claim:
    state: str  # exists | claimed | in_doubt | pending
    external_id: str | None
    # When the key was first claimed (in_doubt: the earliest the resource can have been created).
    claimed_at: datetime | None = None


class DatabaseResources:
    """What an action sees as ctx.services.resources."""

    def __init__(self, db: Database, *, claim_seconds: float = 120.0) -> None:
        self._data = db.resources
        self._claim_seconds = claim_seconds

    @property
    def _tenant(self) -> str:
        """Keys are unique per tenant: the tenant of the run the calling action belongs to."""
        tenant = current_tenant()
        if tenant is None or tenant == ALL_TENANTS:
            raise InvariantViolation("resource links are per tenant: no tenant is set for this run")
        return tenant

    async def claim(
        self,
        resource_type: str,
        key: str,
        *,
        workflow_id: str,
        execution_id: UUID,
        node_id: str,
        attempt: int,
        compensating: bool = False,
    ) -> Claim:
        """Claims the key for this attempt (another attempt of the same node sees 'pending')."""
        claim = await self._data.claim(
            tenant=self._tenant,
            resource_type=resource_type,
            key=key,
            workflow_id=workflow_id,
            execution_id=execution_id,
            node_id=node_id,
            owner=_owner(execution_id, node_id, attempt, compensating),
            claim_seconds=self._claim_seconds,
        )
        return Claim(claim.state, claim.external_id, claim.claimed_at)

    async def link(
        self,
        resource_type: str,
        key: str,
        external_id: str,
        *,
        workflow_id: str,
        execution_id: UUID,
        node_id: str,
        data: dict[str, Any] | None = None,
    ) -> str:
        return await self._data.link(
            tenant=self._tenant,
            resource_type=resource_type,
            key=key,
            external_id=external_id,
            workflow_id=workflow_id,
            execution_id=execution_id,
            node_id=node_id,
            data=data,
        )

    async def release(
        self,
        resource_type: str,
        key: str,
        *,
        execution_id: UUID,
        node_id: str,
        attempt: int,
        compensating: bool = False,
    ) -> None:
        await self._data.release_claim(
            tenant=self._tenant,
            resource_type=resource_type,
            key=key,
            owner=_owner(execution_id, node_id, attempt, compensating),
        )

    async def linked(self, resource_type: str, external_ids: list[str]) -> set[str]:
        return await self._data.linked(tenant=self._tenant, resource_type=resource_type, external_ids=external_ids)

    async def check(self, resource_type: str, key: str) -> str | None:
        return await self._data.check(tenant=self._tenant, resource_type=resource_type, key=key)
