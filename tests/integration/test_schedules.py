"""Schedules in the database: dw.schedule_v1 from SQL, the scheduler firing ticks exactly once
(two schedulers on their own pools at once), catch-up after downtime, refusals, v_schedules."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.data.schedules import FiredTick
from dataworkflows.db import Database, make_pool
from dataworkflows.errors import DatabaseUnavailable, InvalidInput, WorkflowNotFound
from dataworkflows.schedules import CONFIG_KEYS, CronError, parse_cron
from dataworkflows.sqlfiles import load_migrations
from dataworkflows.workers.app import build_app
from dataworkflows.workers.scheduler import Scheduler
from tests.conftest import publish
from tests.integration.test_runtime import echo, make_runtime, wf
from tests.unit.test_schedules import INVALID_CRONS

WORKFLOW = "sched-echo"
SETTINGS = Settings(scheduler_interval_seconds=0.5)


async def sql(db: Database, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, args)
        return await cur.fetchall() if cur.description else []


async def one(db: Database, query: str, *args: Any) -> Any:
    rows = await sql(db, query, *args)
    assert len(rows) == 1
    return rows[0][0] if len(rows[0]) == 1 else rows[0]


@pytest.fixture
async def echo_workflow(db: Database) -> str:
    await publish(db, wf(WORKFLOW, echo("echo1")))
    return WORKFLOW


async def create(db: Database, name: str, cron: str, workflow_id: str = WORKFLOW, **config: Any) -> UUID:
    """A schedule as the triggers API creates one."""
    trigger = await db.triggers.create(
        workflow_id=workflow_id,
        kind="schedule",
        name=name,
        enabled=True,
        config={"cron": cron, **config},
        principal="tests",
        trigger_id=uuid4(),
        secret=None,
    )
    return trigger.id


async def ticks(db: Database, trigger_id: UUID) -> list[tuple[Any, ...]]:
    return await sql(
        db,
        "SELECT tick_at, execution_id, missed_ticks FROM dw.schedule_ticks WHERE trigger_id = %s ORDER BY tick_at",
        trigger_id,
    )


async def make_due(db: Database, trigger_id: UUID, tick: datetime) -> None:
    await sql(db, "UPDATE dw.triggers SET next_tick_at = %s WHERE id = %s", tick, trigger_id)


def this_second() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def a_second_just_begun() -> datetime:
    """The next whole second, once it has begun: an every-second schedule made due at this_second()
    and passed over late in that second was found due twice, at that second and the next."""
    tick = this_second() + timedelta(seconds=1)
    await asyncio.sleep((tick - datetime.now(UTC)).total_seconds() + 0.01)
    return tick


# -- from SQL ------------------------------------------------------------------------------------


async def test_schedule_v1_creates_and_replaces_a_schedule_like_cron_schedule(db: Database, echo_workflow: str) -> None:
    trigger_id = await one(
        db, "SELECT dw.schedule_v1('nightly', %s, '0 2 * * *', 'Europe/Berlin', '{\"report\": true}')", echo_workflow
    )
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None
    assert (trigger.kind, trigger.name, trigger.workflow_id, trigger.enabled, trigger.tenant_id) == (
        "schedule",
        "nightly",
        echo_workflow,
        True,
        "default",
    )
    assert trigger.config == {"cron": "0 2 * * *", "timezone": "Europe/Berlin", "payload": {"report": True}}
    assert trigger.next_tick_at is None
    assert trigger.created_by == await one(db, "SELECT session_user::text")

    # Same name: replaced (time zone and payload default to UTC and {}); catchUp stays; the next
    # tick is computed again.
    await sql(
        db,
        'UPDATE dw.triggers SET config = config || \'{"catchUp": "all"}\', next_tick_at = now() WHERE id = %s',
        trigger_id,
    )
    assert await one(db, "SELECT dw.schedule_v1('nightly', %s, ' */5 * * * * ')", echo_workflow) == trigger_id
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None
    assert trigger.config == {"cron": "*/5 * * * *", "timezone": "UTC", "payload": {}, "catchUp": "all"}
    assert trigger.next_tick_at is None

    assert await one(db, "SELECT dw.unschedule_v1('nightly')") is True
    assert await one(db, "SELECT dw.unschedule_v1('nightly')") is False
    assert await db.triggers.get(trigger_id) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            "SELECT dw.schedule_v1('x', %s, '0 25 * * *')",
            'invalid cron expression "0 25 * * *": hour field: 25 is out of range 0-23',
        ),
        (
            "SELECT dw.schedule_v1('x', %s, '@fortnightly')",
            'invalid cron expression "@fortnightly": unknown cron name "@fortnightly"; use one of @yearly, '
            "@annually, @monthly, @weekly, @daily, @midnight, @hourly",
        ),
        (
            "SELECT dw.schedule_v1('x', %s, '0 2 * * *', 'Europe/Bonn')",
            'unknown time zone "Europe/Bonn"; use an IANA name such as Europe/Berlin or UTC',
        ),
        (
            "SELECT dw.schedule_v1('x', %s, '0 2 * * *', 'UTC', '[1]')",
            "the payload of schedule x must be a JSON object",
        ),
        ("SELECT dw.schedule_v1('', %s, '0 2 * * *')", "a schedule needs a name of 1 to 200 characters"),
        # The API's rules, which the SQL did not apply: a trigger's name, and a payload's depth.
        (
            "SELECT dw.schedule_v1('nightly report (eu)!', %s, '0 2 * * *')",
            "schedule name \"nightly report (eu)!\": a trigger name is 1-128 letters, digits, '.', '_' or '-'",
        ),
        (
            "SELECT dw.schedule_v1('deep', %s, '0 2 * * *', 'UTC', '" + '{"a": ' * 40 + "1" + "}" * 40 + "')",
            "the payload of schedule deep is nested deeper than 32 levels (as the API refuses it)",
        ),
    ],
)
async def test_schedule_v1_refuses_an_invalid_cron_or_time_zone(
    db: Database, echo_workflow: str, call: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await sql(db, call, echo_workflow)
    assert str(caught.value) == message
    assert await one(db, "SELECT count(*) FROM dw.triggers") == 0


async def test_schedule_v1_keeps_the_api_depth_limit_exactly_and_a_name_it_made_before(
    db: Database, echo_workflow: str
) -> None:
    # 32 levels as the API counts them (dataworkflows.validation.json_depth): the 31st object's value.
    deepest = '{"a": ' * 31 + "1" + "}" * 31
    assert await one(db, "SELECT dw.schedule_v1('deep', %s, '0 2 * * *', 'UTC', %s::jsonb)", echo_workflow, deepest)
    assert await one(db, "SELECT dw.jsonb_depth_v1(%s::jsonb, 32)", deepest) == 32
    assert await one(db, "SELECT dw.jsonb_depth_v1('[1, {\"a\": []}]'::jsonb, 32)") == 3
    # A schedule made (through SQL) before the name rule keeps working under its name (a deploy
    # script that runs it again).
    await sql(
        db,
        "INSERT INTO dw.triggers (tenant_id, workflow_id, kind, name, config) VALUES ('default', %s, 'schedule',"
        ' \'old name!\', \'{"cron": "0 3 * * *", "timezone": "UTC", "payload": {}}\')',
        echo_workflow,
    )
    assert await one(db, "SELECT dw.schedule_v1('old name!', %s, '0 4 * * *')", echo_workflow)


async def test_schedule_v1_needs_the_workflow(db: Database) -> None:
    with pytest.raises(WorkflowNotFound, match="workflow nope not found"):
        await sql(db, "SELECT dw.schedule_v1('x', 'nope', '0 2 * * *')")


async def test_the_sql_cron_check_agrees_with_the_python_one(db: Database) -> None:
    expressions = [e for e, _ in INVALID_CRONS] + [
        "0 2 * * *",
        "*/15 0-23/2 1,15 jan-JUN mon-fri",
        "0 0 * * 7",
        "5/20 * * * *",
        "* * * * * */10",
        "@Weekly",
        "0 0 29 2 *",
        "0 0 30 2 1",
        "0 0 1-31/40 * *",
        "0 0 31 2,3 *",
        "1-1 * * * *",
        "\t0 2 * * *\n",
        "0 2 * * * \u00a0",
        "0 2 * * fr\u00ed",
    ]
    for expression in expressions:
        try:
            parse_cron(expression)
            expected = None
        except CronError as exc:
            expected = str(exc)
        assert await one(db, "SELECT dw.cron_problem_v1(%s)", expression) == expected, expression


# -- firing --------------------------------------------------------------------------------------


@pytest.fixture
async def second_db(dsn: str) -> AsyncIterator[Database]:
    pool = make_pool(dsn, min_size=1, max_size=4, name="second-scheduler")
    await pool.open(wait=True)
    try:
        yield Database(pool)
    finally:
        await pool.close()


class RecordingScheduler(Scheduler):
    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings)
        self.handled: list[FiredTick] = []

    async def run_pass(self, stop: asyncio.Event | None = None) -> list[FiredTick]:
        fired = await super().run_pass(stop)
        self.handled.extend(fired)
        return fired


async def test_two_schedulers_fire_each_tick_of_a_per_second_schedule_once(
    db: Database, second_db: Database, echo_workflow: str
) -> None:
    # Read before the call: the first tick is the first second after the call's transaction began, which on a
    # slow host can be a while before the call returns.
    created = datetime.now(UTC)
    trigger_id = await one(
        db, "SELECT dw.schedule_v1('every-second', %s, '* * * * * *', 'UTC', '{\"a\": 1}')", echo_workflow
    )
    stop = asyncio.Event()
    settings = Settings(scheduler_interval_seconds=0.2)
    schedulers = [RecordingScheduler(db, settings), RecordingScheduler(second_db, settings)]
    tasks = [asyncio.create_task(s.run(stop)) for s in schedulers]
    await asyncio.sleep(4.6)
    stop.set()
    await asyncio.gather(*tasks)
    ended = datetime.now(UTC)

    rows = await ticks(db, trigger_id)
    at = [row[0] for row in rows]
    # Each tick was handled by one of the schedulers, never by both (not even as a duplicate).
    handled = [t for s in schedulers for t in s.handled]
    assert sorted(t.tick_at for t in handled) == at
    assert {t.outcome for t in handled} == {"started"}
    # Every second from the first one after the schedule was created, none twice.
    assert len(at) >= 3
    assert created < at[0] <= created + timedelta(seconds=2)
    assert at[-1] >= ended - timedelta(seconds=2)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(at))
    executions = [row[1] for row in rows]
    assert None not in executions and len(set(executions)) == len(executions)
    assert {row[2] for row in rows} == {0}
    runs = await sql(
        db,
        "SELECT id, request_id, trigger, principal_type FROM dw.executions WHERE trigger_id = %s ORDER BY created_at",
        trigger_id,
    )
    assert sorted(r[0] for r in runs) == sorted(executions)
    first = next(r for r in runs if r[0] == executions[0])
    tick = at[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first[1] == f"schedule:{trigger_id}:{tick}"
    assert first[2] == {
        "a": 1,
        "firedBy": {
            "kind": "schedule",
            "triggerId": str(trigger_id),
            "name": "every-second",
            "tick": tick,
            "missedTicks": 0,
        },
    }
    assert first[3] == "schedule"

    view = await one(
        db,
        "SELECT next_tick_at, last_tick_at, last_run_status, last_run_id, recent_ticks, lateness_p50_seconds,"
        " lateness_p95_seconds, error FROM dw.v_schedules WHERE id = %s",
        trigger_id,
    )
    next_tick_at, last_tick_at, status, last_run, recent, p50, p95, error = view
    assert last_tick_at == at[-1] and next_tick_at > last_tick_at
    assert (status, last_run, recent, error) == ("Pending", executions[-1], len(at), None)
    # Each tick fired within a fraction of a second (both schedulers sleep until the next tick).
    assert 0 <= p50 <= p95 < 0.5


async def test_a_new_schedule_starts_from_now(db: Database, echo_workflow: str) -> None:
    trigger_id = await create(db, "hourly", "0 * * * *", catchUp="all")
    assert await Scheduler(db, SETTINGS).run_pass() == []
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None and trigger.next_tick_at is not None
    now = datetime.now(UTC)
    assert trigger.next_tick_at == now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert trigger.last_tick_at is None and await ticks(db, trigger_id) == []


@pytest.mark.parametrize(
    ("policy", "fired", "missed"),
    [("none", [], []), ("latest", [0], [5]), ("all", [-2, -1, 0], [0, 0, 0])],
)
async def test_after_downtime_the_catch_up_policy_decides(
    db: Database, echo_workflow: str, policy: str, fired: list[int], missed: list[int]
) -> None:
    # An hourly schedule whose latest tick was about 30 minutes ago (older than the grace of none),
    # not seen for five hours: 6 ticks due.
    now = datetime.now(UTC)
    minute = (now.minute + 30) % 60
    latest = now.replace(minute=minute, second=0, microsecond=0)
    if latest > now:
        latest -= timedelta(hours=1)
    trigger_id = await create(db, f"hourly-{policy}", f"{minute} * * * *", catchUp=policy, maxCatchUp=3)
    await sql(
        db,
        "UPDATE dw.triggers SET next_tick_at = %s, last_tick_at = %s WHERE id = %s",
        latest - timedelta(hours=5),
        latest - timedelta(hours=6),
        trigger_id,
    )
    handled = await Scheduler(db, SETTINGS).run_pass()
    expected = [latest + timedelta(hours=h) for h in fired]
    assert [t.tick_at for t in handled] == expected
    assert {t.outcome for t in handled} <= {"started"}
    rows = await ticks(db, trigger_id)
    assert [(r[0], r[2]) for r in rows] == list(zip(expected, missed, strict=True))
    runs = await sql(
        db, "SELECT trigger -> 'firedBy' ->> 'missedTicks' FROM dw.executions WHERE trigger_id = %s", trigger_id
    )
    assert sorted(int(r[0]) for r in runs) == sorted(missed)
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None
    assert trigger.next_tick_at == latest + timedelta(hours=1)
    assert trigger.last_tick_at == (expected[-1] if expected else latest - timedelta(hours=6))


async def test_a_tick_fires_once_even_when_asked_twice(db: Database, echo_workflow: str) -> None:
    trigger_id = await create(db, "minutely", "* * * * *")
    tick = this_second().replace(second=0)
    fire = "SELECT outcome, execution_id FROM dw.fire_schedule_v1(%s, ARRAY[%s]::timestamptz[], ARRAY[0], %s, 'q')"
    first = await one(db, fire, trigger_id, tick, tick + timedelta(minutes=1))
    second = await one(db, fire, trigger_id, tick, tick + timedelta(minutes=1))
    assert first[0] == "started" and second == ("duplicate", first[1])
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 1
    # The tick row gone, the request id still finds the run: no second run either.
    await sql(db, "DELETE FROM dw.schedule_ticks WHERE trigger_id = %s", trigger_id)
    assert await one(db, fire, trigger_id, tick, tick + timedelta(minutes=1)) == ("existing", first[1])


async def test_a_workflow_that_cannot_run_is_recorded_and_the_schedule_keeps_ticking(
    db: Database, echo_workflow: str
) -> None:
    trigger_id = await create(db, "every-second", "* * * * * *")
    # Created without a time zone it runs in UTC, and the view says so (it said nothing).
    assert await one(db, "SELECT timezone, catch_up FROM dw.v_schedules WHERE id = %s", trigger_id) == ("UTC", "latest")
    scheduler = Scheduler(db, SETTINGS)
    await sql(db, "UPDATE dw.workflows SET is_enabled = false WHERE id = %s", echo_workflow)
    tick = await a_second_just_begun()
    await make_due(db, trigger_id, tick)
    [handled] = await scheduler.run_pass()
    assert (handled.tick_at, handled.outcome, handled.execution_id) == (tick, "refused", None)
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None
    assert (trigger.enabled, trigger.error, trigger.last_tick_at) == (
        True,
        f"workflow {echo_workflow} is disabled",
        tick,
    )
    assert trigger.next_tick_at is not None and trigger.next_tick_at > tick

    # A Draft that is also disabled says both, as a start's refusal does (it said only "a Draft", and
    # publishing it was then met by the other).
    await sql(db, "UPDATE dw.workflows SET status = 'Draft' WHERE id = %s", echo_workflow)
    both = await one(db, "SELECT dw.schedule_refusal_v1(%s)", echo_workflow)
    assert both == f"workflow {echo_workflow} is a Draft and disabled; publish it and enable it to run it", both
    await sql(db, "UPDATE dw.workflows SET status = 'Archived' WHERE id = %s", echo_workflow)
    both = await one(db, "SELECT dw.schedule_refusal_v1(%s)", echo_workflow)
    assert both == (
        f"workflow {echo_workflow} is Archived and disabled and refuses new executions;"
        " publish a version and enable it to run it again"
    ), both
    await sql(db, "UPDATE dw.workflows SET status = 'Active' WHERE id = %s", echo_workflow)

    await sql(db, "UPDATE dw.workflows SET is_enabled = true WHERE id = %s", echo_workflow)
    await make_due(db, trigger_id, tick + timedelta(seconds=1))
    await asyncio.sleep((tick + timedelta(seconds=1.05) - datetime.now(UTC)).total_seconds())
    [handled] = await scheduler.run_pass()
    assert handled.outcome == "started" and handled.execution_id is not None
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None and trigger.error is None


async def test_one_schedule_that_cannot_start_does_not_hold_up_the_others(db: Database, echo_workflow: str) -> None:
    await publish(db, wf("sched-broken", echo("echo1")))
    good = await create(db, "good", "* * * * * *")
    broken = await create(db, "broken", "* * * * * *", workflow_id="sched-broken")
    # Active and enabled, but its plan is gone: dw.start_execution_v2 raises, the batch rolls back.
    await sql(db, "DELETE FROM dw.workflow_plans WHERE workflow_id = 'sched-broken'")
    tick = await a_second_just_begun()
    for trigger_id in (good, broken):
        await make_due(db, trigger_id, tick)
    handled = await Scheduler(db, SETTINGS).run_pass()
    assert [(t.trigger_id, t.outcome) for t in handled] == [(good, "started")]
    assert [r[0] for r in await ticks(db, good)] == [tick]
    assert await ticks(db, broken) == []
    trigger = await db.triggers.get(broken)
    assert trigger is not None and trigger.enabled
    assert trigger.error is not None and trigger.error.startswith("a run could not start: ")
    assert "has no compiled plan" in trigger.error
    # Its due tick is skipped; it tries again at the next one.
    assert trigger.next_tick_at is not None and trigger.next_tick_at > tick


async def test_a_config_that_cannot_be_used_disables_the_schedule(db: Database, echo_workflow: str) -> None:
    trigger_id = await create(db, "bad", "0 * * * *")
    # Past the API's check (which would have refused it).
    await sql(db, 'UPDATE dw.triggers SET config = \'{"cron": "0 24 * * *"}\' WHERE id = %s', trigger_id)
    assert await Scheduler(db, SETTINGS).run_pass() == []
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None
    assert (trigger.enabled, trigger.next_tick_at) == (False, None)
    assert trigger.error == "its config is not valid: /cron: hour field: 24 is out of range 0-23"


async def test_the_scheduler_sleeps_until_the_next_tick_at_most_its_interval(db: Database, echo_workflow: str) -> None:
    scheduler = Scheduler(db, Settings(scheduler_interval_seconds=0.8))
    assert await scheduler.delay() == 0.8
    trigger_id = await create(db, "daily", "@daily")
    # Not computed yet: look at once (soon).
    assert await scheduler.delay() == Scheduler.MIN_SLEEP
    await scheduler.run_pass()
    assert await scheduler.delay() == 0.8
    await make_due(db, trigger_id, datetime.now(UTC) + timedelta(seconds=0.4))
    assert 0.3 < await scheduler.delay() < 0.41


# -- re-scheduling and changes keep the ticks due --------------------------------------------------


def hour_ago() -> datetime:
    """The hourly tick that came due most recently."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


async def test_running_the_same_schedule_v1_again_keeps_the_missed_tick(db: Database, echo_workflow: str) -> None:
    call = "SELECT dw.schedule_v1('hourly', %s, '0 * * * *', 'UTC', %s)"
    trigger_id = await one(db, call, echo_workflow, '{"a": 1}')
    # The workers were down across a tick; then a deploy runs the same call (and one with only a
    # new payload) again.
    missed = hour_ago()
    await make_due(db, trigger_id, missed)
    await one(db, call, echo_workflow, '{"a": 1}')
    await one(db, call, echo_workflow, '{"a": 2}')
    await one(db, "SELECT dw.schedule_v1('hourly', %s, ' 0 * * * * ', NULL, '{\"a\": 2}')", echo_workflow)
    assert await one(db, "SELECT next_tick_at FROM dw.triggers WHERE id = %s", trigger_id) == missed
    [handled] = await Scheduler(db, SETTINGS).run_pass()
    assert (handled.tick_at, handled.outcome) == (missed, "started")
    # A new cron or time zone: computed again.
    for cron, zone in (("0 * * * *", "Europe/Berlin"), ("30 * * * *", "Europe/Berlin")):
        await make_due(db, trigger_id, missed)
        await one(db, "SELECT dw.schedule_v1('hourly', %s, %s, %s)", echo_workflow, cron, zone)
        assert await one(db, "SELECT next_tick_at FROM dw.triggers WHERE id = %s", trigger_id) is None


async def test_a_change_resets_the_next_tick_only_for_a_new_cron_time_zone_or_when_enabled_again(
    db: Database, echo_workflow: str
) -> None:
    trigger_id = await create(db, "patched", "0 * * * *", timezone="UTC")
    due = hour_ago()
    await make_due(db, trigger_id, due)

    async def patch(config: dict[str, Any] | None = None, enabled: bool | None = None) -> datetime | None:
        trigger = await db.triggers.update(trigger_id, name=None, enabled=enabled, config=config)
        assert trigger is not None
        return trigger.next_tick_at

    assert await patch({"cron": "0 * * * *", "timezone": "UTC", "payload": {"x": 1}, "catchUp": "all"}) == due
    assert await patch({"cron": " 0 * * * * ", "payload": {"x": 1}}) == due  # UTC is the default
    assert await patch(enabled=True) == due  # enabled already
    assert await patch({"cron": "0 * * * *", "timezone": "Europe/Berlin"}) is None
    await make_due(db, trigger_id, due)
    assert await patch({"cron": "5 * * * *", "timezone": "Europe/Berlin"}) is None
    await make_due(db, trigger_id, due)
    # Disabled: no next tick (it kept the one it had, which the API, the CLI and dw.v_schedules
    # showed though it would never fire), whatever else changes while it is disabled.
    assert await patch(enabled=False) is None
    assert await patch({"cron": "0 * * * *", "timezone": "UTC", "payload": {"x": 2}}) is None
    # Enabled again: from now on (the ticks missed while disabled are not caught up).
    assert await patch(enabled=True) is None

    # A schedule disabled before this release kept its tick: migration 0036 clears it.
    await db.triggers.update(trigger_id, name=None, enabled=False, config=None)
    await make_due(db, trigger_id, due)
    (migration,) = [m for m in load_migrations() if m.version == "0036"]
    await sql(db, migration.sql)
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None and trigger.next_tick_at is None


async def test_a_tick_right_after_a_change_is_not_lost(db: Database, echo_workflow: str) -> None:
    # A change committed 0.4 s before a minute's tick, the scheduler's next look after that tick.
    trigger_id = await create(db, "minutely", "* * * * *")
    tick = this_second().replace(second=0)
    await sql(
        db,
        "UPDATE dw.triggers SET next_tick_at = NULL, updated_at = %s WHERE id = %s",
        tick - timedelta(seconds=0.4),
        trigger_id,
    )
    handled = await Scheduler(db, SETTINGS).run_pass()
    assert [(t.tick_at, t.outcome) for t in handled] == [(tick, "started")]
    trigger = await db.triggers.get(trigger_id)
    assert trigger is not None and trigger.next_tick_at == tick + timedelta(minutes=1)


async def test_a_failure_is_not_recorded_over_a_concurrent_fire_or_change(db: Database, echo_workflow: str) -> None:
    trigger_id = await create(db, "raced", "0 * * * *")
    due = hour_ago()
    await make_due(db, trigger_id, due)
    updated_at = await one(db, "SELECT updated_at FROM dw.triggers WHERE id = %s", trigger_id)
    failed = "SELECT dw.schedule_failed_v1(%s, 'boom', %s, %s, %s, %s)"
    later = due + timedelta(hours=1)
    # Another scheduler fired it meanwhile (its next tick moved): not overwritten.
    await one(db, failed, trigger_id, later, True, due - timedelta(hours=1), updated_at)
    # A PATCH changed it meanwhile (updated_at moved): not overwritten.
    await one(db, failed, trigger_id, later, True, due, updated_at - timedelta(seconds=1))
    row = await one(db, "SELECT enabled, next_tick_at, error FROM dw.triggers WHERE id = %s", trigger_id)
    assert row == (True, due, None)
    # As claimed: recorded.
    await one(db, failed, trigger_id, later, False, due, updated_at)
    row = await one(db, "SELECT enabled, next_tick_at, error FROM dw.triggers WHERE id = %s", trigger_id)
    assert row == (True, later, "boom")


async def test_sql_refuses_a_long_cron_and_host_dependent_time_zones(db: Database, echo_workflow: str) -> None:
    assert await one(db, "SELECT dw.cron_problem_v1(%s)", "0 2 * * *" + " " * 191) is None
    assert await one(db, "SELECT dw.cron_problem_v1(%s)", "0 2 * * *" + " " * 192) == (
        "the cron expression is longer than 200 characters"
    )
    for zone in ("localtime", "posix/Europe/Berlin", "right/UTC", "posixrules"):
        with pytest.raises(InvalidInput, match="unknown time zone"):
            await one(db, "SELECT dw.schedule_v1('x', %s, '0 2 * * *', %s)", echo_workflow, zone)


# -- pruning ---------------------------------------------------------------------------------------


async def test_old_ticks_are_pruned_keeping_each_schedules_newest(db: Database, echo_workflow: str) -> None:
    from dataworkflows.workers.app import prune_schedule_ticks

    trigger_id = await create(db, "old", "0 * * * *")
    quiet = await create(db, "quiet", "0 * * * *")
    now = this_second()
    days = [40, 35, 31, 1]
    for d in days:
        tick = now - timedelta(days=d)
        await sql(
            db,
            "INSERT INTO dw.schedule_ticks (trigger_id, tick_at, fired_at) VALUES (%s, %s, %s), (%s, %s, %s)",
            trigger_id,
            tick,
            tick,
            quiet,
            tick - timedelta(days=10),
            tick - timedelta(days=10),
        )
    assert await prune_schedule_ticks(db, Settings(schedule_tick_retention_days=0)) == 0
    assert await prune_schedule_ticks(db, Settings(schedule_tick_retention_days=30)) == 3 + 3
    assert [r[0] for r in await ticks(db, trigger_id)] == [now - timedelta(days=1)]
    # All of its ticks are old: the newest stays (v_schedules shows it).
    assert [r[0] for r in await ticks(db, quiet)] == [now - timedelta(days=11)]
    assert await prune_schedule_ticks(db, Settings(schedule_tick_retention_days=30)) == 0


@pytest.mark.parametrize("overlap", ["allow", "skip", "cancelOther"])
async def test_a_tick_while_the_schedules_run_still_goes_follows_its_overlap_policy(
    db: Database, conditions: ConditionPool, overlap: str
) -> None:
    """allow starts a second run beside the first; skip records the tick without a run, naming the
    run still going; cancelOther cancels that run and starts its own."""
    trigger_id, tick, first = await lingering_schedule(db, f"overlap-{overlap}", overlap=overlap)
    fire = FIRE_ONE
    # The first run is still going (Pending: no worker here) when the next tick fires.
    outcome, second = await one(db, fire, trigger_id, tick + timedelta(minutes=1), tick + timedelta(minutes=2))
    rows = await sql(
        db,
        "SELECT execution_id, overlapped_by FROM dw.schedule_ticks WHERE trigger_id = %s ORDER BY tick_at",
        trigger_id,
    )
    first_status = await one(db, "SELECT status FROM dw.executions WHERE id = %s", first)
    if overlap == "allow":
        assert outcome == "started" and second not in (None, first)
        assert rows == [(first, None), (second, None)] and first_status == "Pending"
    elif overlap == "skip":
        assert (outcome, second) == ("overlapped", None)
        assert rows == [(first, None), (None, first)] and first_status == "Pending"
        # Once the run has ended, the next tick runs.
        await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = %s", first)
        outcome, third = await one(db, fire, trigger_id, tick + timedelta(minutes=2), tick + timedelta(minutes=3))
        assert outcome == "started" and third is not None
    else:
        assert outcome == "started" and second not in (None, first)
        assert rows == [(first, None), (second, first)]
        # Its row free and nobody holding the run: cancelled at once, in the scheduler's name, saying
        # why; no job for it.
        assert first_status == "Cancelled"
        assert await run_cancel_overlapped_jobs(db, conditions) == 0
        cancelled = await one(
            db, "SELECT status, cancel_requested_by, cancel_reason FROM dw.executions WHERE id = %s", first
        )
        tick_text = (tick + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert cancelled == (
            "Cancelled",
            "scheduler",
            f"schedule overlap-cancelOther: its tick {tick_text} replaces this run (overlap cancelOther)",
        )
        assert await one(db, "SELECT status FROM dw.executions WHERE id = %s", second) == "Pending"


async def tick_rows(db: Database, trigger_id: UUID) -> list[tuple[Any, ...]]:
    """The schedule's ticks, oldest first: (its run, the run it met, whether it waited)."""
    return await sql(
        db,
        "SELECT execution_id, overlapped_by, buffered FROM dw.schedule_ticks WHERE trigger_id = %s ORDER BY tick_at",
        trigger_id,
    )


FIRE_ONE = "SELECT outcome, execution_id FROM dw.fire_schedule_v1(%s, ARRAY[%s]::timestamptz[], ARRAY[0], %s, 'q')"


async def lingering_schedule(db: Database, name: str, **config: Any) -> tuple[UUID, datetime, UUID]:
    """A per-minute schedule whose runs wait for a signal nobody sends, its first tick (this minute's)
    fired: (the schedule, that tick, its run, still Pending: no worker here)."""
    from tests.integration.test_waits import signal

    await publish(db, wf("sched-lingers", signal("s", name="never")))
    trigger_id = await create(db, name, "* * * * *", "sched-lingers", **config)
    tick = this_second().replace(second=0)
    outcome, first = await one(db, FIRE_ONE, trigger_id, tick, tick + timedelta(minutes=1))
    assert outcome == "started"
    return trigger_id, tick, first


async def run_cancel_overlapped_jobs(db: Database, conditions: ConditionPool) -> int:
    """Runs the queued dw.cancel_overlapped jobs through the worker's task, as a worker would; returns
    how many ran."""
    jobs = await sql(db, "DELETE FROM procrastinate_jobs WHERE task_name = 'dw.cancel_overlapped' RETURNING args")
    task = build_app(make_runtime(db, conditions)).tasks["dw.cancel_overlapped"]
    for (args,) in jobs:
        await task.func(**args)
    return len(jobs)


async def test_under_overlap_cancel_other_a_run_held_elsewhere_holds_up_no_tick(
    db: Database, conditions: ConditionPool
) -> None:
    """The cancel locks its run's row: in the scheduler's transaction, a row held by another session
    (an operator's, a slow record) held every schedule it had claimed, of every tenant. The tick
    leaves that run's cancel to a job, and its own run waits for the cancelled one's end."""
    trigger_id, tick, first = await lingering_schedule(db, "overlap-held", overlap="cancelOther")
    fire = FIRE_ONE
    async with db.connection() as holder, db.connection() as firing, holder.transaction():
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (first,))
        async with firing.transaction():
            await firing.execute("SET LOCAL lock_timeout = '2s'")
            cur = await firing.execute(fire, (trigger_id, tick + timedelta(minutes=1), tick + timedelta(minutes=2)))
            outcome, second = await cur.fetchone() or (None, None)
    assert (outcome, second) == ("buffered", None)
    assert await run_cancel_overlapped_jobs(db, conditions) == 1
    assert await one(db, "SELECT status FROM dw.executions WHERE id = %s", first) == "Cancelled"
    [started] = await Scheduler(db, SETTINGS).run_pass()
    assert started.outcome == "buffer_started"
    second = started.execution_id
    # A run that ended before the job ran is passed over.
    await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = %s", second)
    await one(db, fire, trigger_id, tick + timedelta(minutes=2), tick + timedelta(minutes=3))
    assert await run_cancel_overlapped_jobs(db, conditions) == 0


async def test_under_overlap_cancel_other_a_lock_the_cancel_needs_holds_up_no_tick(
    db: Database, conditions: ConditionPool
) -> None:
    """The run's row free, the cancel still takes other locks: ending a run nobody holds deletes its
    queued job, whose row a worker's fetch holds until its transaction ends (a review stalled the
    batch for as long as a fetch waited, and made a deadlock of it with a workflow's disable). The
    cancel waits 50 ms at most, then the run goes to the job; the caller's lock_timeout is kept."""
    trigger_id, tick, first = await lingering_schedule(db, "overlap-job-held", overlap="cancelOther")
    fire = FIRE_ONE
    async with db.connection() as holder, db.connection() as firing, holder.transaction():
        held = await holder.execute(
            "SELECT id FROM procrastinate_jobs WHERE args ->> 'execution_id' = %s AND status = 'todo' FOR UPDATE",
            (str(first),),
        )
        assert len(await held.fetchall()) == 1
        async with firing.transaction():
            # Waiting for the job's row, it would fail with this lock timeout (as it did).
            await firing.execute("SET LOCAL lock_timeout = '2s'")
            cur = await firing.execute(fire, (trigger_id, tick + timedelta(minutes=1), tick + timedelta(minutes=2)))
            outcome, second = await cur.fetchone() or (None, None)
            assert await (await firing.execute("SHOW lock_timeout")).fetchone() == ("2s",)
    assert (outcome, second) == ("buffered", None)
    assert await one(db, "SELECT status, cancel_requested_at FROM dw.executions WHERE id = %s", first) == (
        "Pending",
        None,
    ), "the cancel that could not finish left nothing behind"
    assert await run_cancel_overlapped_jobs(db, conditions) == 1
    assert await one(db, "SELECT status FROM dw.executions WHERE id = %s", first) == "Cancelled"
    [started] = await Scheduler(db, SETTINGS).run_pass()
    assert started.outcome == "buffer_started"
    second = started.execution_id
    # Nothing contended: cancelled in the tick, and the caller's lock_timeout kept too.
    async with db.connection() as firing, firing.transaction():
        await firing.execute("SET LOCAL lock_timeout = '3s'")
        await firing.execute(fire, (trigger_id, tick + timedelta(minutes=2), tick + timedelta(minutes=3)))
        assert await (await firing.execute("SHOW lock_timeout")).fetchone() == ("3s",)
    assert await one(db, "SELECT status FROM dw.executions WHERE id = %s", second) == "Cancelled"
    assert await run_cancel_overlapped_jobs(db, conditions) == 0


async def test_under_overlap_cancel_other_a_catch_up_runs_only_the_newest_tick(db: Database) -> None:
    """Each of a catch-up's ticks would cancel the run of the one before at once: only the newest
    starts one, and the older ones name it."""
    from tests.integration.test_waits import signal

    await publish(db, wf("sched-lingers", signal("s", name="never")))
    trigger_id = await create(
        db, "overlap-cancel-all", "* * * * *", "sched-lingers", overlap="cancelOther", catchUp="all"
    )
    await make_due(db, trigger_id, this_second().replace(second=0) - timedelta(minutes=3))
    handled = await Scheduler(db, SETTINGS).run_pass()
    assert [t.outcome for t in handled] == ["overlapped", "overlapped", "overlapped", "started"]
    newest = handled[-1].execution_id
    rows = await sql(
        db,
        "SELECT execution_id, overlapped_by FROM dw.schedule_ticks WHERE trigger_id = %s ORDER BY tick_at",
        trigger_id,
    )
    assert rows == [(None, newest)] * 3 + [(newest, None)]
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 1

    # Its newest tick fired already (another scheduler's call): the older ones name that tick's run.
    fire = "SELECT outcome, execution_id FROM dw.fire_schedule_v1(%s, %s::timestamptz[], %s, %s, 'q')"
    later = [handled[-1].tick_at + timedelta(minutes=m) for m in (1, 2, 3)]
    _, third = await one(db, fire, trigger_id, later[2:], [0], later[2] + timedelta(minutes=1))
    again = await sql(db, fire, trigger_id, later, [0, 0, 0], later[2] + timedelta(minutes=1))
    assert again == [("overlapped", None), ("overlapped", None), ("duplicate", third)]
    rows = await sql(
        db,
        "SELECT overlapped_by FROM dw.schedule_ticks WHERE trigger_id = %s AND tick_at = ANY(%s) ORDER BY tick_at",
        trigger_id,
        later[:2],
    )
    assert rows == [(third,), (third,)]


async def test_under_overlap_a_tick_that_finds_its_own_run_leaves_it_be(
    db: Database, conditions: ConditionPool
) -> None:
    """A tick whose row was pruned while its run went on finds that run by its request id (outcome
    existing): not a run of another tick, to skip for or to cancel."""
    from tests.integration.test_waits import signal

    await publish(db, wf("sched-lingers", signal("s", name="never")))
    fire = "SELECT outcome, execution_id FROM dw.fire_schedule_v1(%s, ARRAY[%s]::timestamptz[], ARRAY[0], %s, 'q')"
    tick = this_second().replace(second=0)
    for overlap in ("skip", "cancelOther"):
        trigger_id = await create(db, f"own-run-{overlap}", "* * * * *", "sched-lingers", overlap=overlap)
        _, first = await one(db, fire, trigger_id, tick, tick + timedelta(minutes=1))
        await sql(db, "DELETE FROM dw.schedule_ticks WHERE trigger_id = %s", trigger_id)
        assert await one(db, fire, trigger_id, tick, tick + timedelta(minutes=1)) == ("existing", first)
        assert await one(db, "SELECT status FROM dw.executions WHERE id = %s", first) == "Pending"
        assert await one(db, "SELECT overlapped_by FROM dw.schedule_ticks WHERE trigger_id = %s", trigger_id) is None
    assert await run_cancel_overlapped_jobs(db, conditions) == 0


async def test_recovery_queues_again_a_cancel_overlapped_job_whose_worker_died(
    db: Database, conditions: ConditionPool
) -> None:
    trigger_id, tick, first = await lingering_schedule(db, "overlap-stalled", overlap="cancelOther")
    fire = FIRE_ONE
    async with db.connection() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (first,))
        await one(db, fire, trigger_id, tick + timedelta(minutes=1), tick + timedelta(minutes=2))
    # A worker took the job and died.
    taken = await sql(
        db,
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL"
        " WHERE task_name = 'dw.cancel_overlapped' AND status = 'todo' RETURNING id",
    )
    assert len(taken) == 1
    recovered = await db.operations.recover(max_recoveries=5, stalled_worker_seconds=30, queue="executions")
    assert [(r.execution_id, r.action) for r in recovered if r.action != "requeued"] == [
        (first, "overlap_cancel_requeued")
    ]
    await sql(db, "UPDATE procrastinate_jobs SET status = 'todo' WHERE task_name = 'dw.cancel_overlapped'")
    assert await run_cancel_overlapped_jobs(db, conditions) == 1
    assert await one(db, "SELECT status FROM dw.executions WHERE id = %s", first) == "Cancelled"


async def test_under_overlap_buffer_one_a_tick_waits_for_the_run_and_one_tick_only(db: Database) -> None:
    """bufferOne: a tick while the run goes waits (no run yet; buffered, naming the run); a tick while
    one waits is recorded as skip records it; once the run has ended the scheduler's next pass starts
    the waiting tick's run, as that tick's (its request id and firedBy), and the next tick waits for it."""
    trigger_id, tick, first = await lingering_schedule(db, "buffer-one", overlap="bufferOne")
    second_tick, third_tick = tick + timedelta(minutes=1), tick + timedelta(minutes=2)
    assert await one(db, FIRE_ONE, trigger_id, second_tick, third_tick) == ("buffered", None)
    assert await one(db, FIRE_ONE, trigger_id, third_tick, third_tick + timedelta(minutes=1)) == ("overlapped", None)
    rows = await tick_rows(db, trigger_id)
    assert rows == [(first, None, False), (None, first, True), (None, first, False)]
    scheduler = Scheduler(db, SETTINGS)
    # Still going: nothing starts (the schedule is not due: only the waiting tick is looked at).
    await sql(db, "UPDATE dw.triggers SET next_tick_at = now() + interval '1 hour' WHERE id = %s", trigger_id)
    assert await scheduler.run_pass() == []
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 1

    await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = %s", first)
    [started] = await scheduler.run_pass()
    assert (started.trigger_id, started.tick_at, started.outcome) == (trigger_id, second_tick, "buffer_started")
    second = started.execution_id
    run = await one(db, "SELECT request_id, trigger -> 'firedBy' ->> 'tick' FROM dw.executions WHERE id = %s", second)
    second_text = second_tick.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run == (f"schedule:{trigger_id}:{second_text}", second_text)
    assert await one(
        db,
        "SELECT execution_id, buffered FROM dw.schedule_ticks WHERE trigger_id = %s AND tick_at = %s",
        trigger_id,
        second_tick,
    ) == (second, True)
    assert await scheduler.run_pass() == []
    # The API's list says so (the CLI and the console read it).
    [listed] = [t for t in await db.schedules.ticks(trigger_id, limit=10) if t.tick_at == second_tick]
    assert (listed.execution_id, listed.overlapped_by, listed.buffered) == (second, first, True)
    # The next tick waits for that run.
    fourth_tick = third_tick + timedelta(minutes=1)
    assert await one(db, FIRE_ONE, trigger_id, fourth_tick, fourth_tick + timedelta(minutes=1)) == ("buffered", None)


async def test_under_overlap_buffer_all_every_tick_waits_and_they_run_in_order(db: Database) -> None:
    """bufferAll (Temporal's BUFFER_ALL): every tick while the run goes waits, and so does a tick while
    others wait; once the run has ended the scheduler's pass starts the oldest waiting tick's run, and
    the next one's only after that run has ended, in the ticks' order (planning list: not offered)."""
    trigger_id, tick, first = await lingering_schedule(db, "buffer-all", overlap="bufferAll")
    ticks = [tick + timedelta(minutes=m) for m in (1, 2, 3)]
    for at in ticks:
        assert await one(db, FIRE_ONE, trigger_id, at, at + timedelta(minutes=1)) == ("buffered", None)
    assert await tick_rows(db, trigger_id) == [(first, None, False), *[(None, first, True)] * 3]
    scheduler = Scheduler(db, SETTINGS)
    await sql(db, "UPDATE dw.triggers SET next_tick_at = now() + interval '1 hour' WHERE id = %s", trigger_id)
    assert await scheduler.run_pass() == []
    previous = first
    for at in ticks:
        await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = %s", previous)
        [started] = await scheduler.run_pass()
        assert (started.trigger_id, started.tick_at, started.outcome) == (trigger_id, at, "buffer_started")
        text = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        request_id = await one(db, "SELECT request_id FROM dw.executions WHERE id = %s", started.execution_id)
        assert request_id == f"schedule:{trigger_id}:{text}"
        assert await scheduler.run_pass() == []  # the next tick waits for this run
        previous = started.execution_id
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 4


async def test_under_overlap_buffer_all_the_waiting_ticks_are_bounded_and_dropped_together(db: Database) -> None:
    """At most 1,000 ticks of a schedule wait (a tick past them is recorded as skip records it); a
    disabled schedule's waiting ticks are all dropped in one pass, not one a pass."""
    trigger_id, tick, first = await lingering_schedule(db, "buffer-all-full", overlap="bufferAll")
    await sql(
        db,
        "INSERT INTO dw.schedule_ticks (trigger_id, tick_at, fired_at, buffered, overlapped_by)"
        " SELECT %s, %s::timestamptz + make_interval(mins => n), now(), true, %s FROM generate_series(1, 1000) n",
        trigger_id,
        tick,
        first,
    )
    full = tick + timedelta(minutes=1001)
    assert await one(db, FIRE_ONE, trigger_id, full, full + timedelta(minutes=1)) == ("overlapped", None)
    await sql(db, "UPDATE dw.triggers SET enabled = false, next_tick_at = NULL WHERE id = %s", trigger_id)
    await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = %s", first)
    dropped = await Scheduler(db, SETTINGS).run_pass()
    assert len(dropped) == 1000 and {(t.trigger_id, t.outcome) for t in dropped} == {(trigger_id, "buffer_dropped")}
    waiting = "SELECT count(*) FROM dw.schedule_ticks WHERE trigger_id = %s AND buffered AND execution_id IS NULL"
    assert await one(db, waiting, trigger_id) == 0


async def test_a_waiting_tick_of_a_schedule_disabled_or_whose_workflow_cannot_run_starts_nothing(
    db: Database,
) -> None:
    """A disabled schedule's waiting tick is dropped (a disabled schedule's ticks are not caught up);
    a workflow that cannot run any more ends the wait as a refusal, its reason the schedule's error."""
    scheduler = Scheduler(db, SETTINGS)
    disabled, tick, first = await lingering_schedule(db, "buffer-disabled", overlap="bufferOne")
    refused, _, other = await lingering_schedule(db, "buffer-refused", overlap="bufferOne")
    later = tick + timedelta(minutes=1)
    for trigger_id in (disabled, refused):
        assert await one(db, FIRE_ONE, trigger_id, later, later + timedelta(minutes=1)) == ("buffered", None)
    await sql(db, "UPDATE dw.triggers SET enabled = false, next_tick_at = NULL WHERE id = %s", disabled)
    await sql(db, "UPDATE dw.triggers SET next_tick_at = now() + interval '1 hour' WHERE id = %s", refused)
    await sql(db, "UPDATE dw.workflows SET is_enabled = false WHERE id = 'sched-lingers'")
    await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = ANY(%s)", [first, other])
    handled = sorted(await scheduler.run_pass(), key=lambda t: t.outcome)
    assert [(t.trigger_id, t.outcome, t.execution_id) for t in handled] == [
        (disabled, "buffer_dropped", None),
        (refused, "buffer_refused", None),
    ]
    rows = await sql(
        db,
        "SELECT execution_id, overlapped_by, buffered FROM dw.schedule_ticks WHERE tick_at = %s ORDER BY trigger_id",
        later,
    )
    assert sorted(rows) == sorted([(None, first, False), (None, other, False)])
    assert await one(db, "SELECT error FROM dw.triggers WHERE id = %s", refused) == "workflow sched-lingers is disabled"
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = ANY(%s)", [disabled, refused]) == 2
    assert await scheduler.run_pass() == []


async def test_under_overlap_cancel_other_the_ticks_run_waits_for_the_cancelled_runs_end(
    db: Database, conditions: ConditionPool
) -> None:
    """cancelOther, Temporal's way: the new run starts once the cancelled one has ended, not beside
    it. Here the run's row is held when the tick fires, so its cancel goes to a job and the tick waits;
    a newer tick takes the place of the waiting one; the job cancels the run and the scheduler's next
    pass starts the newest tick's run."""
    trigger_id, tick, first = await lingering_schedule(db, "cancel-waits", overlap="cancelOther")
    second_tick, third_tick = tick + timedelta(minutes=1), tick + timedelta(minutes=2)
    async with db.connection() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (first,))
        assert await one(db, FIRE_ONE, trigger_id, second_tick, third_tick) == ("buffered", None)
        assert await one(db, FIRE_ONE, trigger_id, third_tick, third_tick + timedelta(minutes=1)) == ("buffered", None)
    rows = await tick_rows(db, trigger_id)
    assert rows == [(first, None, False), (None, first, False), (None, first, True)]
    await sql(db, "UPDATE dw.triggers SET next_tick_at = now() + interval '1 hour' WHERE id = %s", trigger_id)
    scheduler = Scheduler(db, SETTINGS)
    assert await scheduler.run_pass() == []
    assert await run_cancel_overlapped_jobs(db, conditions) == 2
    assert await one(db, "SELECT status FROM dw.executions WHERE id = %s", first) == "Cancelled"
    [started] = await scheduler.run_pass()
    assert (started.tick_at, started.outcome) == (third_tick, "buffer_started")
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 2


async def test_a_scheduler_that_hangs_holding_its_claim_lets_it_go(db: Database, echo_workflow: str) -> None:
    """A review: a worker stopped between its claim and its fire held the claimed schedules for as long
    as it was stopped (SKIP LOCKED: the other schedulers passed over them). The claim's transaction
    ends the session once it sits idle past its bound; another scheduler then fires them."""
    trigger_id = await create(db, "hung-claim", "* * * * *")
    await make_due(db, trigger_id, this_second().replace(second=0))

    resumed = asyncio.Event()

    async def hangs(due: list[Any], now: datetime) -> list[Any]:
        await resumed.wait()  # the worker stopped here
        return []

    hung = asyncio.ensure_future(db.schedules.fire_due(limit=10, queue="q", planner=hangs, idle_timeout=0.2))
    await asyncio.sleep(0.6)
    # Meanwhile another scheduler fires the schedule the hung one had claimed.
    handled = await Scheduler(db, SETTINGS).run_pass()
    assert [(t.trigger_id, t.outcome) for t in handled] == [(trigger_id, "started")]
    resumed.set()
    with pytest.raises(DatabaseUnavailable):  # its session was ended: its batch is gone
        await hung
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 1


async def test_a_waiting_tick_that_cannot_start_holds_up_no_other_schedule(db: Database) -> None:
    """A review: one schedule whose waiting tick's run could not start (its workflow's plan gone)
    failed every pass, and with it every other schedule's waiting tick; and the scheduler's look took
    the first 500 schedules with a waiting tick, the same ones at every pass, whether their runs had
    ended or not, so the 501st waited for ever."""
    from tests.integration.test_waits import signal

    good, tick, first = await lingering_schedule(db, "buffer-good", overlap="bufferOne")
    await publish(db, wf("sched-lingers-too", signal("s", name="never")))
    bad = await create(db, "buffer-bad", "* * * * *", "sched-lingers-too", overlap="bufferOne")
    _, other = await one(db, FIRE_ONE, bad, tick, tick + timedelta(minutes=1))
    later = tick + timedelta(minutes=1)
    for trigger_id in (good, bad):
        assert await one(db, FIRE_ONE, trigger_id, later, later + timedelta(minutes=1)) == ("buffered", None)
        await sql(db, "UPDATE dw.triggers SET next_tick_at = now() + interval '1 hour' WHERE id = %s", trigger_id)
    await sql(db, "DELETE FROM dw.workflow_plans WHERE workflow_id = 'sched-lingers-too'")
    # Only the schedule whose runs ended is looked at, whatever the limit: good's run still goes.
    await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = %s", other)
    [failed] = await db.schedules.start_buffered(queue="q", limit=1)
    assert (failed.trigger_id, failed.outcome, failed.execution_id) == (bad, "buffer_failed", None)
    error = await one(db, "SELECT error FROM dw.triggers WHERE id = %s", bad)
    assert error.startswith("a run could not start: ") and "plan" in error, error
    dropped = "SELECT buffered, execution_id FROM dw.schedule_ticks WHERE trigger_id = %s AND tick_at = %s"
    assert await one(db, dropped, bad, later) == (False, None)
    await sql(db, "UPDATE dw.executions SET status = 'Succeeded', ended_at = now() WHERE id = %s", first)
    [started] = await Scheduler(db, SETTINGS).run_pass()
    assert (started.trigger_id, started.outcome) == (good, "buffer_started")


async def test_under_overlap_cancel_other_a_newer_tick_replaces_the_waiting_one_unstarted(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: the runs a tick waited for ended, and in the same pass a newer tick came; the waiting
    tick's run was started, then cancelled at once by the newer tick. The newer tick takes its place."""
    trigger_id, tick, first = await lingering_schedule(db, "cancel-replaces", overlap="cancelOther")
    second_tick, third_tick = tick + timedelta(minutes=1), tick + timedelta(minutes=2)
    async with db.connection() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM dw.executions WHERE id = %s FOR NO KEY UPDATE", (first,))
        assert await one(db, FIRE_ONE, trigger_id, second_tick, third_tick) == ("buffered", None)
    assert await run_cancel_overlapped_jobs(db, conditions) == 1
    handled = await sql(db, FIRE_ONE, trigger_id, third_tick, third_tick + timedelta(minutes=1))
    assert [outcome for outcome, _ in handled] == ["started"], handled
    rows = await sql(
        db,
        "SELECT execution_id, buffered FROM dw.schedule_ticks WHERE trigger_id = %s ORDER BY tick_at",
        trigger_id,
    )
    assert rows == [(first, False), (None, False), (handled[0][1], False)]
    statuses = await sql(db, "SELECT status FROM dw.executions WHERE trigger_id = %s ORDER BY created_at", trigger_id)
    assert statuses == [("Cancelled",), ("Pending",)]


async def test_under_overlap_skip_a_catch_up_runs_only_the_first_tick(db: Database) -> None:
    from tests.integration.test_waits import signal

    await publish(db, wf("sched-lingers", signal("s", name="never")))
    trigger_id = await create(db, "overlap-catch-up", "* * * * *", "sched-lingers", overlap="skip", catchUp="all")
    await make_due(db, trigger_id, this_second().replace(second=0) - timedelta(minutes=3))
    handled = await Scheduler(db, SETTINGS).run_pass()
    assert [t.outcome for t in handled] == ["started", "overlapped", "overlapped", "overlapped"]
    # dw.v_schedules finds the schedule's last run among its runs (it read back through its ticks,
    # past every tick the policy left without a run), and says the policy.
    assert await one(
        db, "SELECT last_run_id, last_run_status, overlap FROM dw.v_schedules WHERE id = %s", trigger_id
    ) == (
        handled[0].execution_id,
        "Pending",
        "skip",
    )
    # The unfinished runs are read from their own index (not every run the schedule ever made).
    async with db.connection() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = await conn.execute(
            "EXPLAIN SELECT e.id FROM dw.executions e WHERE e.trigger_id = %s"
            " AND e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut') ORDER BY e.created_at DESC LIMIT 1",
            (trigger_id,),
        )
        text = "\n".join(row[0] for row in await plan.fetchall())
        await conn.execute("RESET enable_seqscan")
    assert "executions_trigger_unfinished_idx" in text, text


# -- Batches within the workers' answer bound (DW_WORKER_ANSWER_SECONDS) ---------------------------------


async def test_a_catch_up_past_the_cap_fires_every_tick_once_in_order(db: Database, echo_workflow: str) -> None:
    """A review: a far-behind `all` schedule split across batches (its first batch past the cap fires
    its oldest ticks, its next tick the first it left) fires each of its ticks once, in order, with the
    ticks past maxCatchUp counted skipped once, and ends with its next tick ahead; in one pass."""
    from dataworkflows import metrics

    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    trigger_id = await create(db, "far-behind", "0 * * * *", catchUp="all", maxCatchUp=20)
    await make_due(db, trigger_id, top - timedelta(hours=49))  # 50 due: the 20 newest fire, 30 skipped
    scheduler = Scheduler(db, SETTINGS)
    scheduler.ticks.value = 7
    skipped = metrics.SCHEDULE_TICKS.labels("skipped")._value.get()
    handled = await scheduler.run_pass()
    expected = [top - timedelta(hours=h) for h in range(19, -1, -1)]
    assert [t.tick_at for t in handled] == expected and {t.outcome for t in handled} == {"started"}
    rows = await sql(db, "SELECT tick_at FROM dw.schedule_ticks WHERE trigger_id = %s ORDER BY tick_at", trigger_id)
    assert [r[0] for r in rows] == expected
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 20
    assert await one(db, "SELECT next_tick_at > now() FROM dw.triggers WHERE id = %s", trigger_id)
    assert metrics.SCHEDULE_TICKS.labels("skipped")._value.get() - skipped == 30
    assert await scheduler.run_pass() == []


async def test_a_cancel_other_catch_up_past_the_cap_starts_one_run(db: Database) -> None:
    """A review: split across batches, a cancelOther catch-up started and cancelled a run for each
    batch's newest tick. It is never split: one run for its newest tick, as in one batch."""
    from tests.integration.test_waits import signal

    await publish(db, wf("sched-lingers", signal("s", name="never")))
    trigger_id = await create(db, "cancel-split", "* * * * *", "sched-lingers", overlap="cancelOther", catchUp="all")
    await make_due(db, trigger_id, this_second().replace(second=0) - timedelta(minutes=3))
    scheduler = Scheduler(db, SETTINGS)
    scheduler.ticks.value = 1
    outcomes = [t.outcome for t in await scheduler.run_pass()]
    assert sorted(outcomes) == ["overlapped"] * 3 + ["started"], outcomes
    assert await one(db, "SELECT count(*) FROM dw.executions WHERE trigger_id = %s", trigger_id) == 1


async def test_a_scheduler_cut_off_by_a_lock_with_nothing_planned_keeps_its_cap(dsn: str, db: Database) -> None:
    """A review: a claim the bound cut off while another session locked the triggers (or the database
    froze) halved the cap, twice a pass, for good, though it had planned nothing."""
    pool = make_pool(dsn, min_size=1, max_size=4, answer_seconds=1.0, answer_setting="DW_WORKER_ANSWER_SECONDS")
    await pool.open(wait=True)
    try:
        scheduler = Scheduler(Database(pool), SETTINGS)
        async with db.connection() as conn, conn.transaction():
            await conn.execute("LOCK TABLE dw.triggers IN ACCESS EXCLUSIVE MODE")
            for _ in range(2):
                with pytest.raises(DatabaseUnavailable, match="did not answer within 1 s"):
                    await scheduler.run_pass()
        assert (scheduler.ticks.value, scheduler.buffered.value) == (1000, 500)
    finally:
        await pool.close()


async def test_a_previous_release_scheduler_does_not_disable_a_schedule_with_a_field_it_lacks(
    db: Database, echo_workflow: str
) -> None:
    """The previous release's scheduler (0.1.0) checks a config against its own fields, which lack
    `overlap`, and sends dw.fire_schedules_v1 a plan that disables such a schedule (a review: during
    a rolling upgrade every schedule with `overlap` was switched off for good, its missed ticks never
    caught up). The plan is not carried out when this release reads every field of the config; a
    config with a field nobody reads is still disabled, and so is one this release finds invalid."""
    trigger_id = await create(db, "nightly-skip", "* * * * * */5", overlap="skip")
    await sql(db, "UPDATE dw.triggers SET next_tick_at = now() - interval '1 second' WHERE id = %s", trigger_id)

    async def old_plan(error: str) -> None:
        due, updated_at = await one(db, "SELECT next_tick_at, updated_at FROM dw.triggers WHERE id = %s", trigger_id)
        # What 0.1.0's workers/scheduler.py (_config_failure) plans for it, as its data layer sends it.
        plan = {
            "id": str(trigger_id),
            "error": error,
            "disable": True,
            "next": None,
            "due": due.isoformat(),
            "updatedAt": updated_at.isoformat(),
        }
        await sql(db, "SELECT * FROM dw.fire_schedules_v1(%s::jsonb, 'executions')", json.dumps([plan]))

    unknown = (
        "its config is not valid: /overlap: unknown field; expected one of cron, timezone, catchUp, maxCatchUp, payload"
    )
    await old_plan(unknown)
    enabled, error, due = await one(
        db, "SELECT enabled, error, next_tick_at FROM dw.triggers WHERE id = %s", trigger_id
    )
    assert (enabled, error) == (True, None) and due is not None, "left due, for this release's scheduler"
    # A field no release reads: the plan is carried out.
    await sql(db, "UPDATE dw.triggers SET config = config || '{\"colour\": 1}' WHERE id = %s", trigger_id)
    await old_plan("its config is not valid: /colour: unknown field; expected one of cron, timezone")
    assert await one(db, "SELECT enabled, error FROM dw.triggers WHERE id = %s", trigger_id) == (
        False,
        "its config is not valid: /colour: unknown field; expected one of cron, timezone",
    )
    keys = await one(db, "SELECT dw.schedule_config_keys_v1()")
    assert tuple(keys) == CONFIG_KEYS, "the procedure's list of fields is schedules.CONFIG_KEYS"


@pytest.mark.parametrize(
    "config", ['{"cron": "@unknown field"}', '{"cron": "0 * * * *", "timezone": "/unknown field"}']
)
async def test_this_releases_own_disable_is_carried_out_whatever_its_error_quotes(
    db: Database, echo_workflow: str, config: str
) -> None:
    """A second review: the guard for the previous release's plans read this release's errors too,
    which quote a config's values; a cron "@unknown field" kept its schedule due, claimed and dropped
    at every pass, and every other schedule's ticks fired up to a second late."""
    trigger_id = await create(db, "bad", "0 * * * *")
    # Past the API's checks, as test_a_config_that_cannot_be_used_disables_the_schedule writes one.
    await sql(
        db,
        "UPDATE dw.triggers SET config = %s::jsonb, next_tick_at = now() - interval '1 minute' WHERE id = %s",
        config,
        trigger_id,
    )
    assert await Scheduler(db, SETTINGS).run_pass() == []
    enabled, error, due = await one(
        db, "SELECT enabled, error, next_tick_at FROM dw.triggers WHERE id = %s", trigger_id
    )
    assert (enabled, due) == (False, None) and error.startswith("its config is not valid: "), (enabled, error, due)
