"""POST /api/v1/events: publish a CloudEvent (structured JSON mode, specversion 1.0) to the caller's
tenant; each enabled event trigger whose eventType (and source) matches starts a run of its
workflow (README "Events"). Idempotent on the event's (source, id), as CloudEvents defines an
event's identity: a redelivery starts nothing and answers the first delivery's runs."""

from __future__ import annotations

from typing import Any

from litestar import Controller, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from dataworkflows.errors import InvalidInput
from dataworkflows.events import check_event, parse_time
from dataworkflows.json_depth import json_depth

from .openapi_docs import PROBLEMS
from .schemas import EventPublished, from_row
from .services import REQUIRES_PRINCIPAL, PrincipalDep, ServicesDep


class EventController(Controller):
    path = "/events"
    tags = ["triggers"]

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        responses=PROBLEMS,
        summary="Publish a CloudEvent: each matching event trigger starts a run (idempotent on source and id)",
        opt={REQUIRES_PRINCIPAL: "publish events", "role": "operator"},
    )
    async def publish(
        self, svc: ServicesDep, principal: PrincipalDep, data: JSONBody[dict[str, Any]]
    ) -> EventPublished:
        found = check_event(data)
        if found:
            attribute, message = found[0]
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise InvalidInput(f"the event's {attribute} {message}{more}")
        payload = data.get("data")
        # The run's trigger is the data when it is an object, else {"data": ...}: one level down, as a
        # webhook's body is (the trigger was a level deeper than an execute's may be).
        limit = svc.settings.max_trigger_depth - (0 if isinstance(payload, dict) else 1)
        if json_depth(payload, limit) > limit:
            under = (
                "" if isinstance(payload, dict) else " (data that is not an object sits a level down in the trigger)"
            )
            raise InvalidInput(f"the event's data is nested deeper than {limit} levels{under}")
        published = await svc.db.events.publish(
            source=data["source"],
            event_id=data["id"],
            type=data["type"],
            subject=data.get("subject"),
            time=parse_time(data.get("time")),
            data=payload,
            principal=principal.id,
            queue=svc.settings.queue,
        )
        return from_row(EventPublished, published, event_id=data["id"], source=data["source"], type=data["type"])
