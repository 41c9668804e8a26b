"""Bulk operations (README "Bulk operations"): a workflow's root runs cancelled, and open dead
letters redriven, many at a time, each as its own request would, every item's outcome answered, a
bounded number a request; and their CLI commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from tests.conftest import publish, start
from tests.integration.test_api import assert_problem
from tests.integration.test_control_api import OPS, client, sql
from tests.integration.test_run_priority import create, echo_workflow, execute
from tests.integration.test_runtime import echo, make_runtime, wf

__all__ = ["client"]


async def status(client: AsyncTestClient[Any], execution_id: str) -> str:
    return str((await client.get(f"/api/v1/executions/{execution_id}")).json()["status"])


async def test_a_bulk_cancel_takes_a_workflows_root_runs_oldest_first(
    client: AsyncTestClient[Any], db: Database
) -> None:
    await create(client, echo_workflow("noisy"))
    await create(client, echo_workflow("quiet"))
    runs = [await execute(client, "noisy") for _ in range(5)]
    other = await execute(client, "quiet")
    first = await client.post(
        "/api/v1/executions/bulk/cancel",
        json={"workflowId": "noisy", "limit": 3, "reason": "backlog"},
        headers=OPS,
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert [o["executionId"] for o in body["outcomes"]] == runs[:3]
    assert {o["outcome"] for o in body["outcomes"]} == {"cancelled"}
    assert (body["counts"], body["more"]) == ({"cancelled": 3}, True)
    # The same request again goes on to the next ones.
    second = (
        await client.post("/api/v1/executions/bulk/cancel", json={"workflowId": "noisy", "limit": 3}, headers=OPS)
    ).json()
    assert [o["executionId"] for o in second["outcomes"]] == runs[3:]
    assert second["more"] is False
    assert [await status(client, run) for run in runs] == ["Cancelled"] * 5
    assert await status(client, other) == "Pending"
    # Each is its own cancel: in its log, with who and why.
    logged = await sql(
        db,
        "SELECT principal, details ->> 'reason' FROM dw.execution_events WHERE execution_id = %s"
        " AND type = 'cancel_requested'",
        runs[0],
    )
    assert logged == [("ops", "backlog")]
    # Nothing left: an empty answer.
    empty = (await client.post("/api/v1/executions/bulk/cancel", json={"workflowId": "noisy"}, headers=OPS)).json()
    assert (empty["outcomes"], empty["counts"], empty["more"]) == ([], {}, False)


async def test_a_bulk_cancel_filters_by_status_and_age_and_leaves_children(
    client: AsyncTestClient[Any], db: Database
) -> None:
    await create(client, echo_workflow("parent-b"))
    await create(client, echo_workflow("child"))
    old = await execute(client, "parent-b")
    await sql(db, "UPDATE dw.executions SET created_at = now() - interval '2 hours' WHERE id = %s RETURNING id", old)
    new = await execute(client, "parent-b")
    # A child of the old run: cancelled with its parent's cascade, never by a bulk cancel directly.
    await sql(
        db,
        "SELECT c.o_execution_id FROM dw.executions p,"
        " dw.start_child_v2(p, 'echo1', 'child:b', 'child', NULL, '{}'::jsonb, 10) c WHERE p.id = %s",
        old,
    )
    before = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    running = (
        await client.post(
            "/api/v1/executions/bulk/cancel", json={"workflowId": "parent-b", "status": ["Running"]}, headers=OPS
        )
    ).json()
    assert running["outcomes"] == []
    aged = (
        await client.post(
            "/api/v1/executions/bulk/cancel",
            json={"workflowId": "parent-b", "status": ["Pending"], "createdBefore": before},
            headers=OPS,
        )
    ).json()
    assert [o["executionId"] for o in aged["outcomes"]] == [old]
    assert await status(client, new) == "Pending"
    for refused in ({"workflowId": "parent-b", "status": ["Succeeded"]}, {"workflowId": "parent-b", "status": []}):
        problem = assert_problem(await client.post("/api/v1/executions/bulk/cancel", json=refused, headers=OPS), 422)
        assert "status: one or more of Pending, Running, Waiting, Suspended" in problem["detail"], problem
    # Without a workflow: refused (no request cancels every workflow's runs), as is a limit past 1,000,
    # and a reason longer than a single cancel takes (2,000 characters: a review found a bulk cancel
    # wrote one of 900 KB into each run it cancelled).
    for refused in ({}, {"workflowId": "parent-b", "limit": 1001}, {"workflowId": "parent-b", "reason": "r" * 2001}):
        assert (await client.post("/api/v1/executions/bulk/cancel", json=refused, headers=OPS)).status_code == 400
    assert await status(client, new) == "Pending"


async def failed_runs(db: Database, conditions: ConditionPool, workflow_id: str, n: int) -> list[str]:
    runtime = make_runtime(db, conditions)
    await publish(db, wf(workflow_id, echo("boom", simulateFailure="permanent")), conditions)
    runs = []
    for _ in range(n):
        execution_id = await start(db, workflow_id)
        await runtime.run_execution(execution_id)
        runs.append(str(execution_id))
    return runs


async def test_a_bulk_redrive_redrives_open_letters_oldest_first(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    runs = await failed_runs(db, conditions, "flaky", 3)
    others = await failed_runs(db, conditions, "other-flaky", 1)
    first = (
        await client.post("/api/v1/dead-letters/bulk/redrive", json={"workflowId": "flaky", "limit": 2}, headers=OPS)
    ).json()
    assert [o["executionId"] for o in first["outcomes"]] == runs[:2]
    assert (first["counts"], first["more"]) == ({"requeued": 2}, True)
    rest = (
        await client.post(
            "/api/v1/dead-letters/bulk/redrive",
            json={"workflowId": "flaky", "afterId": first["lastId"], "kind": "node_failed"},
            headers=OPS,
        )
    ).json()
    assert [o["executionId"] for o in rest["outcomes"]] == runs[2:]
    assert rest["more"] is False
    assert {await status(client, run) for run in runs} == {"Pending"}
    assert await status(client, others[0]) == "Failed"
    # A letter its own redrive refuses (a compensated run's) is refused here too, said why, and
    # stays open; the next request goes on after it.
    await sql(db, "UPDATE dw.executions SET compensation_status = 'Compensated' WHERE id = %s RETURNING id", others[0])
    refused = (
        await client.post("/api/v1/dead-letters/bulk/redrive", json={"workflowId": "other-flaky"}, headers=OPS)
    ).json()
    (outcome,) = refused["outcomes"]
    assert (outcome["executionId"], outcome["outcome"]) == (others[0], "refused")
    assert "undone" in outcome["reason"] or "compensat" in outcome["reason"], outcome
    after = (
        await client.post(
            "/api/v1/dead-letters/bulk/redrive",
            json={"workflowId": "other-flaky", "afterId": refused["lastId"]},
            headers=OPS,
        )
    ).json()
    assert after["outcomes"] == [] and after["lastId"] == refused["lastId"]
    assert assert_problem(
        await client.post("/api/v1/dead-letters/bulk/redrive", json={"kind": "nonsense"}, headers=OPS), 422
    )


async def test_the_bulk_commands(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataworkflows.cli import EXIT_OK, EXIT_RUN_FAILED, cmd_dead_letters_redrive_all, cmd_executions_cancel_all
    from tests.integration.cli_api import cli_command, served_api

    await create(client, echo_workflow("by-cli-bulk"))
    pending = [await execute(client, "by-cli-bulk") for _ in range(2)]
    failed = await failed_runs(db, conditions, "by-cli-failing", 2)
    async with served_api(dsn) as url:
        cancel = cli_command(url, capsys, cmd_executions_cancel_all, "executions", "cancel-all")
        code, out, err = await cancel("by-cli-bulk", "--limit", "1", "--reason", "enough")
        assert code == EXIT_OK, err
        assert out.splitlines()[-2:] == [
            f"execution {pending[0]} cancelled (status Cancelled)",
            "1 executions: 1 cancelled",
        ], out
        assert "more: the same command again cancels the next ones" in err
        code, out, err = await cancel("by-cli-bulk", "--older-than", "6m")
        assert code != EXIT_OK and "ambiguous" in err, err
        redrive = cli_command(url, capsys, cmd_dead_letters_redrive_all, "dead-letters", "redrive-all")
        code, out, err = await redrive("--workflow", "by-cli-failing", "--limit", "1")
        assert code == EXIT_OK, err
        assert out.splitlines()[-1] == "1 dead letters: 1 requeued", out
        assert f"(execution {failed[0]})" in out
        assert err.startswith("more: add --after "), err
        after = err.split()[-1]
        code, out, err = await redrive("--workflow", "by-cli-failing", "--after", after)
        assert code == EXIT_OK and f"(execution {failed[1]})" in out and err == "", (out, err)
        # A batch with an item refused is exit code 1, said on stderr (until this release 0: a
        # script's `&&` went on as if every letter had been redriven).
        third = (await failed_runs(db, conditions, "by-cli-failing", 1))[0]
        await sql(db, "UPDATE dw.executions SET compensation_status = 'Compensated' WHERE id = %s RETURNING id", third)
        code, out, err = await redrive("--workflow", "by-cli-failing", "--after", after)
        assert code == EXIT_RUN_FAILED, (out, err)
        assert f"refused (execution {third})" in out and out.splitlines()[-1] == "1 dead letters: 1 refused", out
        assert err == "error: 1 of 1 not done (refused or failed: see their lines)", err


async def test_an_item_that_fails_otherwise_is_answered_and_the_others_go_on(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: an item whose request raised anything but a refusal (a 409) or a 404 made the whole
    answer a 500: the items done before it were done but not answered, those after it not tried,
    and the same request again met that item first again, and stopped there again. It is answered
    as failed (with why), and the others go on; a database that cannot be reached ends the batch
    there, with what was done answered and more: true."""
    from dataworkflows.data.control import ControlData
    from dataworkflows.data.operations import OperationsData
    from dataworkflows.errors import DatabaseUnavailable, InvalidInput

    letters = await failed_runs(db, conditions, "poisoned", 3)
    redrive = OperationsData.redrive
    tried: list[int] = []

    async def second_raises(self: OperationsData, dead_letter_id: int, **kwargs: Any) -> Any:
        tried.append(dead_letter_id)
        if len(tried) == 2:
            raise RuntimeError("a bug")
        return await redrive(self, dead_letter_id, **kwargs)

    monkeypatch.setattr(OperationsData, "redrive", second_raises)
    answer = await client.post("/api/v1/dead-letters/bulk/redrive", json={"workflowId": "poisoned"}, headers=OPS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(o["executionId"], o["outcome"]) for o in body["outcomes"]] == [
        (letters[0], "requeued"),
        (letters[1], "failed"),
        (letters[2], "requeued"),
    ]
    assert body["outcomes"][1]["reason"] == "an internal error occurred (logged)"
    assert (body["counts"], body["more"]) == ({"requeued": 2, "failed": 1}, False)
    # The letter that failed is still open; a database that cannot be reached stops the batch at
    # it, and lastId leaves it to the next request.
    tried.clear()

    async def unavailable(self: OperationsData, dead_letter_id: int, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("the database cannot be reached")

    monkeypatch.setattr(OperationsData, "redrive", unavailable)
    answer = await client.post(
        "/api/v1/dead-letters/bulk/redrive",
        json={"workflowId": "poisoned", "afterId": body["outcomes"][0]["deadLetterId"]},
        headers=OPS,
    )
    stopped = answer.json()
    assert [o["outcome"] for o in stopped["outcomes"]] == ["failed"], stopped
    assert (stopped["lastId"], stopped["more"]) == (body["outcomes"][0]["deadLetterId"], True)

    await create(client, echo_workflow("poisoned-runs"))
    runs = [await execute(client, "poisoned-runs") for _ in range(4)]
    cancel = ControlData.cancel
    asked: list[Any] = []

    async def fails_then_unavailable(self: ControlData, execution_id: Any, **kwargs: Any) -> Any:
        asked.append(execution_id)
        if len(asked) == 2:
            raise InvalidInput("not this one")
        if len(asked) == 3:
            raise DatabaseUnavailable("the database cannot be reached")
        return await cancel(self, execution_id, **kwargs)

    monkeypatch.setattr(ControlData, "cancel", fails_then_unavailable)
    answer = await client.post(
        "/api/v1/executions/bulk/cancel", json={"workflowId": "poisoned-runs", "limit": 10}, headers=OPS
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(o["executionId"], o["outcome"], o.get("reason")) for o in body["outcomes"]] == [
        (runs[0], "cancelled", None),
        (runs[1], "failed", "not this one"),
        (runs[2], "failed", "the database cannot be reached"),
    ]
    assert body["more"] is True
    assert [await status(client, run) for run in runs] == ["Cancelled", "Pending", "Pending", "Pending"]


async def test_a_bulk_request_takes_its_tenants_items_in_a_session_that_sees_every_tenant(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, dsn: str
) -> None:
    """A review: the items were chosen by row-level security alone, so an API whose sessions see
    every tenant (DW_DB_ROLE=none as a superuser: diagnosis, benchmarks) cancelled every tenant's
    runs of a workflow id, and redrove every tenant's letters, for a caller of one tenant; as
    publish and the limits do, they are the session's tenant's."""
    from dataworkflows.api.app import create_app
    from dataworkflows.config import Settings

    await create(client, echo_workflow("shared-id"))
    mine = await execute(client, "shared-id")
    letters = await failed_runs(db, conditions, "shared-failing", 1)
    acme = {**OPS, "X-Tenant-Id": "acme"}
    made = await client.post(
        "/api/v1/workflows", params={"autoActivate": "true"}, json=echo_workflow("shared-id"), headers=acme
    )
    assert made.status_code == 201, made.text
    theirs = (await client.post("/api/v1/workflows/shared-id/execute", json={"trigger": {}}, headers=acme)).json()[
        "executionId"
    ]
    app = create_app(Settings(database_url=dsn, db_role="none"))
    async with AsyncTestClient(app) as everything:
        cancelled = (
            await everything.post("/api/v1/executions/bulk/cancel", json={"workflowId": "shared-id"}, headers=acme)
        ).json()
        redriven = (await everything.post("/api/v1/dead-letters/bulk/redrive", json={}, headers=acme)).json()
    assert [o["executionId"] for o in cancelled["outcomes"]] == [theirs]
    assert redriven["outcomes"] == []
    assert await status(client, mine) == "Pending"
    assert await status(client, letters[0]) == "Failed"


async def test_a_created_before_without_an_offset_is_utc(db: Database, dsn: str) -> None:
    """A review: a createdBefore without an offset went to PostgreSQL as a timestamp without time
    zone, read in the session's TimeZone (the server's setting), where the API's other times
    without an offset are UTC (GET /executions?createdTo=...): on a server set to Pacific/Auckland
    a bulk cancel of the runs created before two hours ago (UTC) took none."""
    from dataworkflows.api.app import create_app
    from dataworkflows.config import Settings
    from tests.integration.test_retention import owner

    await owner(
        dsn,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET timezone = ''Pacific/Auckland''',"
        " current_database()); END $$",
    )
    app = create_app(Settings(database_url=dsn))
    async with AsyncTestClient(app) as client:
        await create(client, echo_workflow("aged"))
        old = await execute(client, "aged")
        await sql(
            db, "UPDATE dw.executions SET created_at = now() - interval '3 hours' WHERE id = %s RETURNING id", old
        )
        new = await execute(client, "aged")
        before = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None).isoformat()
        answer = await client.post(
            "/api/v1/executions/bulk/cancel", json={"workflowId": "aged", "createdBefore": before}, headers=OPS
        )
        assert answer.status_code == 200, answer.text
        assert [o["executionId"] for o in answer.json()["outcomes"]] == [old]
        assert await status(client, new) == "Pending"


async def test_a_bulk_cancel_takes_the_runs_not_started_before_those_that_hold_slots(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool
) -> None:
    """Under maxConcurrentExecutions, the end of a run that holds a slot hands it to a run held back
    (dw.hand_over_slot_v1: a job queued for it). Cancelled oldest first, the runs holding the slots
    went first, and each one's end queued a held-back run that the same request was about to cancel:
    a worker took it meanwhile and ran its first node (live: 6 of 38 held-back runs ran one while a
    bulk cancel cancelled them). Until this release the runs not started went first within one
    request only: with the slot holders among the oldest, a page's holders handed their slots to
    held-back runs the next page was to take (live: 2 of 8, pages of 5). The runs not started
    (Pending) are taken first across the pages, then the others, and answered in that order."""
    from tests.integration.test_throttled_wait import jobs_of, one_holding_two_held_back

    _, (first, second, third), _ = await one_holding_two_held_back(db, conditions, "held-bulk")
    # The slot holder as a parked run is (no worker holds it): a cancel ends it at once, and hands
    # its slot over.
    await sql(
        db,
        "UPDATE dw.executions SET status = 'Waiting', lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = %s RETURNING id",
        first,
    )
    request = {"workflowId": "held-bulk", "limit": 2}
    answer = await client.post("/api/v1/executions/bulk/cancel", json=request, headers=OPS)
    assert answer.status_code == 200, answer.text
    assert [o["executionId"] for o in answer.json()["outcomes"]] == [str(second), str(third)]
    assert (answer.json()["counts"], answer.json()["more"]) == ({"cancelled": 2}, True)
    answer = await client.post("/api/v1/executions/bulk/cancel", json=request, headers=OPS)
    assert [o["executionId"] for o in answer.json()["outcomes"]] == [str(first)]
    assert (answer.json()["counts"], answer.json()["more"]) == ({"cancelled": 1}, False)
    # The held-back runs were cancelled before the slot holder's end could hand one of them its slot.
    order = await sql(
        db,
        "SELECT execution_id FROM dw.execution_events WHERE type = 'cancel_requested'"
        " AND execution_id = ANY (%s) ORDER BY id",
        [first, second, third],
    )
    assert order == [(second,), (third,), (first,)], order
    assert [await jobs_of(db, run) for run in (first, second, third)] == [[], [], []]


async def test_a_letter_redriven_or_closed_meanwhile_is_gone_not_refused(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A letter another request redrove or acknowledged after this bulk redrive selected it: its
    redrive's 409 was answered `refused`, which says the letter stays open (and made `redrive-all`
    exit 1, two operators' bulk redrives at once refusing each other's letters). It is `gone`, with
    the 409's words; a letter still open that its redrive refuses stays `refused`."""
    from dataworkflows.data.operations import OperationsData

    runs = await failed_runs(db, conditions, "raced", 3)
    letters = [
        row[0]
        for row in await sql(
            db, "SELECT id FROM dw.dead_letters WHERE execution_id = ANY (%s) ORDER BY id", [*map(UUID, runs)]
        )
    ]
    redrive = OperationsData.redrive

    async def others_first(self: OperationsData, dead_letter_id: int, **kwargs: Any) -> Any:
        if dead_letter_id == letters[0]:
            # Meanwhile, someone else acknowledges the second letter and redrives the third.
            await self.acknowledge(letters[1], principal="bob", note=None)
            await redrive(self, letters[2], principal="carol", queue=kwargs["queue"])
        return await redrive(self, dead_letter_id, **kwargs)

    monkeypatch.setattr(OperationsData, "redrive", others_first)
    answer = await client.post("/api/v1/dead-letters/bulk/redrive", json={"workflowId": "raced"}, headers=OPS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [o["outcome"] for o in body["outcomes"]] == ["requeued", "gone", "gone"], body
    assert "(acknowledged)" in body["outcomes"][1]["reason"] and "by carol" in body["outcomes"][2]["reason"], body
    assert body["counts"] == {"requeued": 1, "gone": 2}


async def test_a_childs_letter_its_parents_redrive_closed_in_the_same_batch_is_superseded(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child's letter comes before its parent's (it failed first), and its redrive is refused while
    the parent's letter is open; the parent's redrive, later in the same batch, closes it as
    superseded. The answer said `refused` (the letter stays open) and `redrive-all` exited 1, for a
    letter the batch itself had closed. Each item is answered as it is at the batch's end: the child's
    `superseded`, with the close note; a letter its redrive refuses and nothing closed stays
    `refused`."""
    from dataworkflows.cli import EXIT_OK, cmd_dead_letters_redrive_all
    from tests.integration.cli_api import cli_command, served_api
    from tests.integration.test_subworkflows import children, drain, open_letter, sub

    runtime = make_runtime(db, conditions)
    await publish(db, wf("breaks", echo("boom", simulateFailure="permanent")), conditions)
    await publish(db, wf("waits-on", sub("call", "breaks")), conditions)
    trees = [await start(db, "waits-on") for _ in range(2)]
    await drain(db, runtime)
    kids = [(await children(db, root))[0]["id"] for root in trees]
    kid_letters = [await open_letter(db, kid) for kid in kids]
    root_letters = [await open_letter(db, root) for root in trees]
    assert max(kid_letters) < min(root_letters)
    answer = await client.post("/api/v1/dead-letters/bulk/redrive", json={"limit": 3}, headers=OPS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The second tree's parent is past this batch's limit: its child's letter is still open, refused.
    assert [(o["deadLetterId"], o["outcome"]) for o in body["outcomes"]] == [
        (kid_letters[0], "superseded"),
        (kid_letters[1], "refused"),
        (root_letters[0], "requeued"),
    ]
    assert body["outcomes"][0]["reason"] == f"execution {trees[0]} was redriven (dead letter {root_letters[0]})"
    assert body["counts"] == {"superseded": 1, "refused": 1, "requeued": 1}
    # The CLI from the first open letter: the second child's, then its parent's, which closes it.
    # Nothing is left undone: exit code 0 (until this release 1, for the refusal).
    async with served_api(dsn) as url:
        redrive = cli_command(url, capsys, cmd_dead_letters_redrive_all, "dead-letters", "redrive-all")
        code, out, err = await redrive()
    assert code == EXIT_OK, (out, err)
    assert [line for line in out.splitlines() if "[info" not in line][-3:] == [
        f"dead letter {kid_letters[1]} superseded (execution {kids[1]}): execution {trees[1]} was redriven"
        f" (dead letter {root_letters[1]})",
        f"dead letter {root_letters[1]} requeued (execution {trees[1]})",
        "2 dead letters: 1 requeued, 1 superseded",
    ], out
