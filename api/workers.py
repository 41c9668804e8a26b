"""/api/v1/workers: what is running, from the same rows recovery reads (leases, Procrastinate's
heartbeats). Read-only."""

from __future__ import annotations

from litestar import Controller, get

from .openapi_docs import PROBLEMS
from .schemas import FetchLoopRead, WorkerLeaseRead, WorkersRead, from_row
from .services import ServicesDep


class WorkerController(Controller):
    path = "/workers"
    tags = ["workers"]

    @get(
        "/",
        responses=PROBLEMS,
        summary="Live workers: who holds this tenant's runs, and every fetch loop's heartbeat",
        opt={"role": "viewer"},
    )
    async def list_workers(self, svc: ServicesDep) -> WorkersRead:
        leases = await svc.db.operations.worker_leases()
        loops = await svc.db.operations.fetch_loops(stalled_seconds=svc.settings.stalled_worker_seconds)
        return WorkersRead(
            leases=[from_row(WorkerLeaseRead, row) for row in leases],
            fetch_loops=[from_row(FetchLoopRead, row) for row in loops],
        )
