"""What the controllers share, stored on app.state: database, settings, registry, the condition
sandbox (for validating conditions at publish time), the template sandbox (for instantiating
workflow templates) and the principal resolver. Handlers receive them as Litestar dependencies
(`svc`, `db`, `principal`), declared once, in app.py; the /api/v1 guard (api/auth.py) checks roles
and DW_REQUIRE_PRINCIPAL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from dataworkflows.actions import ActionRegistry
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.event_stream import EventHub
from dataworkflows.publishing import PreparedDefinition, prepare_definition
from dataworkflows.rate_limits import BucketPolicy
from dataworkflows.template_pool import TemplatePool

from .principals import Principal, PrincipalResolver, authenticate
from .stream_slots import StreamSlots

# A route's opt entry that makes DW_REQUIRE_PRINCIPAL apply to it; the value completes "this server
# requires a principal to ...".
REQUIRES_PRINCIPAL = "requires_principal"


@dataclass
class Services:
    db: Database
    settings: Settings
    registry: ActionRegistry
    conditions: ConditionPool
    principals: PrincipalResolver
    events: EventHub
    # Renders workflow templates at instantiation (helper processes for anything beyond lookups).
    templates: TemplatePool
    # The API's rate limit per caller (api/rate_limits.py); None: off.
    rate_policy: BucketPolicy | None = None
    # Live event streams per caller (api/stream_slots.py, DW_MAX_STREAMS_PER_CALLER); no limit unless given.
    streams: StreamSlots = field(default_factory=lambda: StreamSlots(0))

    async def prepare(self, raw: Any, *, expected_id: str | None = None) -> PreparedDefinition:
        """Validates a definition: conditions compile in the sandbox, then everything else."""
        return await prepare_definition(raw, self.registry, self.conditions, expected_id=expected_id)


def services_of(state: State) -> Services:
    """The services the lifespan stored on app.state."""
    found = state.services
    assert isinstance(found, Services)
    return found


# What handlers declare to receive them: parameters named svc, db and principal of these types.
ServicesDep = NamedDependency[Services]
DatabaseDep = NamedDependency[Database]
PrincipalDep = NamedDependency[Principal]


def _database(svc: ServicesDep) -> Database:
    return svc.db


async def _principal(request: Request[Any, Any, Any], svc: ServicesDep) -> Principal:
    # The one the guard resolved for this request (a token is verified once per request).
    return await authenticate(request, svc.principals)


DEPENDENCIES = {
    "svc": Provide(services_of, sync_to_thread=False),
    "db": Provide(_database, sync_to_thread=False),
    "principal": Provide(_principal),
}
