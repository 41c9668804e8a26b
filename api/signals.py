"""POST /api/v1/signals/{name}: a signal to every run that waits for it, by name and correlation key
(README "Signals to every run that waits"). A sender that knows an order id, not the run that waits
for the order's payment, reaches it this way; POST /executions/{id}/signals/{name} reaches one run."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, post
from litestar.params import FromPath, JSONBody

from dataworkflows.errors import InvalidInput
from dataworkflows.json_depth import json_depth
from dataworkflows.waits import SIGNAL_NAME

from .openapi_docs import PROBLEMS
from .schemas import BroadcastRequest, BroadcastResponse, from_row
from .services import REQUIRES_PRINCIPAL, PrincipalDep, ServicesDep


def check_signal(name: str, payload: Any, depth: int) -> None:
    """A signal's name and payload, as a run's own signal and a broadcast take them (422)."""
    if not SIGNAL_NAME.match(name):
        raise InvalidInput(
            "the signal name must be 1-200 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
        )
    if json_depth(payload, depth) > depth:
        raise InvalidInput(f"the signal payload is nested deeper than {depth} levels")


class SignalController(Controller):
    path = "/signals"
    tags = ["executions"]

    @post(
        "/{name:str}",
        status_code=200,
        responses=PROBLEMS,
        summary="Send a signal to every run waiting for it by name and correlation key (idempotent on signalId)",
        opt={REQUIRES_PRINCIPAL: "send signals", "role": "operator"},
    )
    async def broadcast(
        self,
        svc: ServicesDep,
        principal: PrincipalDep,
        name: FromPath[str],
        data: JSONBody[BroadcastRequest | None] = None,
    ) -> BroadcastResponse:
        body = data if data is not None else BroadcastRequest()
        check_signal(name, body.payload, svc.settings.max_trigger_depth)
        sent = await svc.db.control.broadcast(
            name,
            payload=body.payload,
            signal_id=body.signal_id or str(uuid.uuid4()),
            correlation_key=None if body.correlation_key is None else str(body.correlation_key),
            workflow_id=body.workflow_id,
            principal=principal.id,
            queue=svc.settings.queue,
            limit=body.limit,
        )
        return from_row(BroadcastResponse, sent)
