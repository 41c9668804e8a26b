"""What the controllers share, stored on app.state: database, settings, registry, the condition
sandbox (for validating conditions at publish time), the template sandbox (for instantiating
workflow templates) and the principal resolver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from dataworkflows.actions import ActionRegistry
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.errors import DefinitionError
from dataworkflows.event_stream import EventHub
from dataworkflows.publishing import PreparedDefinition, collect_conditions, prepare_definition
from dataworkflows.template_pool import TemplatePool
from dataworkflows.validation import Problem

from .principals import PrincipalResolver

# Each distinct condition is compiled in the sandbox at validation: bound the work one request causes.
MAX_CONDITIONS = 500


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

    async def prepare(self, raw: Any, *, expected_id: str | None = None) -> PreparedDefinition:
        """Validates a definition: conditions compile in the sandbox, then everything else."""
        expressions = list(dict.fromkeys(collect_conditions(raw)))
        if len(expressions) > MAX_CONDITIONS:
            raise DefinitionError(
                [Problem("/nodes", "too_many", f"at most {MAX_CONDITIONS} distinct edge conditions per workflow")]
            )
        errors = await self.conditions.check_many(expressions) if expressions else {}
        return prepare_definition(raw, self.registry, errors, expected_id=expected_id)


def services(request: Request[Any, Any, Any]) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found
