"""Schedules (dataworkflows.schedules): the cron grammar, the config check, ticks in a time zone
across daylight-saving transitions, and the catch-up decision."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from dataworkflows.data.schedules import DueSchedule
from dataworkflows.schedules import (
    MAX_CRON_CHARS,
    MISSED_LIMIT,
    ON_TIME_GRACE,
    CronError,
    Schedule,
    Tick,
    TickPlan,
    check_config,
    next_tick,
    parse_cron,
    plan_ticks,
    ticks_after,
    ticks_between,
    zone_problem,
    zone_unavailable,
)
from dataworkflows.workers.scheduler import ZONE_RETRY, plan_batch

BERLIN = ZoneInfo("Europe/Berlin")
# 2025 in Europe/Berlin: clocks go 02:00 CET -> 03:00 CEST on March 30 (01:00 UTC), and
# 03:00 CEST -> 02:00 CET on October 26 (01:00 UTC).
SPRING = datetime(2025, 3, 30)
FALL = datetime(2025, 10, 26)
SECOND = timedelta(seconds=1)
US = timedelta(microseconds=1)


def local_day(day: datetime, zone: ZoneInfo = BERLIN) -> tuple[datetime, datetime]:
    """(just before local midnight starting `day`, just before the next one) as instants."""
    start = day.replace(tzinfo=zone).astimezone(UTC)
    end = (day + timedelta(days=1)).replace(tzinfo=zone).astimezone(UTC)
    return start - US, end - US


def day_ticks(cron: str, day: datetime, zone: ZoneInfo = BERLIN) -> list[datetime]:
    return ticks_between(parse_cron(cron), zone, *local_day(day, zone))


def wall(ticks: list[datetime], zone: ZoneInfo = BERLIN) -> list[str]:
    return [t.astimezone(zone).strftime("%H:%M%z") for t in ticks]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- cron grammar --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "canonical"),
    [
        ("0 2 * * *", "0 2 * * *"),
        ("*/15 * * * *", "0,15,30,45 * * * *"),
        ("0 9-17/4 * * mon-FRI", "0 9,13,17 * * 1,2,3,4,5"),
        ("0 0 1 jan,Jul *", "0 0 1 1,7 *"),
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * 0-7", "0 0 * * *"),
        ("0 0 * * 6-7", "0 0 * * 0,6"),
        ("5/20 * * * *", "5,25,45 * * * *"),
        ("*/1 * * * *", "* * * * *"),
        ("00 00 1-31 1-12 *", "0 0 * * *"),
        ("  0\t2 * * *  ", "0 2 * * *"),
        ("* * * * * *", "* * * * * *"),
        ("* * * * * */10", "* * * * * 0,10,20,30,40,50"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("0 0 30 2 1", "0 0 30 2 1"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_valid_cron_expressions_and_what_croniter_is_given(expression: str, canonical: str) -> None:
    assert parse_cron(expression).canonical == canonical


INVALID_CRONS = [
    ("", "the cron expression is empty"),
    ("   ", "the cron expression is empty"),
    (
        "@reboot",
        'unknown cron name "@reboot"; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly',
    ),
    (
        "@daily 1",
        'unknown cron name "@daily 1"; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly',
    ),
    (
        "0 2 * *",
        "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds "
        "last; this one has 4",
    ),
    (
        "0 0 1 1 * 2030 x",
        "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with "
        "seconds last; this one has 7",
    ),
    ("60 * * * *", "minute field: 60 is out of range 0-59"),
    ("0 24 * * *", "hour field: 24 is out of range 0-23"),
    ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
    ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
    ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
    ("* * * * * 60", "second field: 60 is out of range 0-59"),
    ("0 0 * * monday", 'day-of-week field: unknown name "monday"'),
    ("0 0 * mon *", 'month field: unknown name "mon"'),
    ("jan * * * *", 'minute field: unknown name "jan"'),
    ("5-1 * * * *", 'minute field: the range "5-1" goes backwards'),
    ("0 0 * * sat-sun", 'day-of-week field: the range "sat-sun" goes backwards'),
    ("*/0 * * * *", "minute field: step 0 is out of range 1-60"),
    ("0 */25 * * *", "hour field: step 25 is out of range 1-24"),
    ("1,,2 * * * *", 'minute field: "" is not *, a value or a range a-b, each with an optional step /n'),
    ("*/2/3 * * * *", 'minute field: "*/2/3" is not *, a value or a range a-b, each with an optional step /n'),
    ("0 0 L * *", 'day-of-month field: unknown name "L"'),
    ("0 0 ? * *", 'day-of-month field: "?" is not *, a value or a range a-b, each with an optional step /n'),
    ("0 0 * * 1#2", 'day-of-week field: "1#2" is not *, a value or a range a-b, each with an optional step /n'),
    ("H * * * *", 'minute field: unknown name "H"'),
    ("0 0 30 2 *", "the schedule never fires: none of its months has a day 30"),
    ("0 0 31 4,6,9,11 *", "the schedule never fires: none of its months has a day 31"),
    ("99999999999999999999 * * * *", "minute field: 99999999999999999999 is out of range 0-59"),
]


@pytest.mark.parametrize(("expression", "message"), INVALID_CRONS)
def test_invalid_cron_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert str(caught.value) == message


# -- config --------------------------------------------------------------------------------------


def test_a_config_needs_only_a_cron_and_has_defaults() -> None:
    assert check_config({"cron": "0 2 * * *"}) == []
    schedule = Schedule.from_config({"cron": "0 2 * * *"})
    assert (schedule.zone.key, schedule.catch_up, schedule.max_catch_up, schedule.payload) == ("UTC", "latest", 100, {})
    full = {"cron": "@daily", "timezone": "Europe/Berlin", "catchUp": "all", "maxCatchUp": 1000, "payload": {"a": 1}}
    assert check_config(full) == []
    for overlap in ("allow", "skip", "bufferOne", "bufferAll", "cancelOther"):
        assert check_config({**full, "overlap": overlap}) == []


def test_every_config_problem_is_reported_with_its_pointer() -> None:
    problems = check_config(
        {
            "cron": "0 25 * * *",
            "timezone": "Mars/Olympus",
            "catchUp": "some",
            "maxCatchUp": 0,
            "overlap": "queueAll",
            "payload": [],
            "x~y": 1,
        }
    )
    assert problems == [
        (
            "/x~0y",
            "unknown_field",
            "unknown field; expected one of cron, timezone, catchUp, maxCatchUp, overlap, payload",
        ),
        ("/cron", "invalid_cron", "hour field: 25 is out of range 0-23"),
        (
            "/timezone",
            "invalid_timezone",
            'unknown time zone "Mars/Olympus"; use an IANA name such as Europe/Berlin or UTC',
        ),
        ("/catchUp", "enum", "must be one of none, latest, all"),
        ("/overlap", "enum", "must be one of allow, skip, bufferOne, bufferAll, cancelOther"),
        ("/maxCatchUp", "range", "must be between 1 and 1000"),
        ("/payload", "type", "must be a JSON object"),
    ]
    assert check_config({}) == [("/cron", "required", 'required: a cron expression such as "0 2 * * *"')]
    assert check_config([]) == [("", "type", "must be a JSON object")]
    assert [p[:2] for p in check_config({"cron": 5, "timezone": 1, "maxCatchUp": True})] == [
        ("/cron", "type"),
        ("/timezone", "type"),
        ("/maxCatchUp", "type"),
    ]
    for zone in ("", "../etc/passwd", "/etc/localtime", "Europe"):
        assert [p[1] for p in check_config({"cron": "@daily", "timezone": zone})] == ["invalid_timezone"]


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "posix/Europe/Berlin", "right/UTC"])
def test_time_zones_that_depend_on_the_host_are_refused(zone: str) -> None:
    assert zone_problem(zone) is not None and not zone_unavailable(zone)
    # PostgreSQL's names are case-sensitive: so are these.
    assert zone_problem("europe/berlin") is not None


def test_the_iana_time_zones_are_accepted_even_without_a_system_tz_database() -> None:
    # The tzdata package provides them (slim images have no /usr/share/zoneinfo).
    import tzdata  # noqa: F401

    for zone in ("UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
        assert zone_problem(zone) is None and not zone_unavailable(zone)
    assert MAX_CRON_CHARS == 200 and check_config({"cron": " " * 201 + "@daily"})[0][1] == "too_long"


# -- ticks and daylight saving ---------------------------------------------------------------------


def test_a_daily_job_in_the_skipped_hour_fires_once_an_hour_later() -> None:
    ticks = day_ticks("30 2 * * *", SPRING)
    # 02:30 does not exist that day: it maps (fold=0) to the instant one gap later, 03:30 CEST.
    assert ticks == [utc(2025, 3, 30, 1, 30)]
    assert wall(ticks) == ["03:30+0200"]
    # The days around are as usual.
    assert wall(day_ticks("30 2 * * *", SPRING - timedelta(days=1))) == ["02:30+0100"]
    assert wall(day_ticks("30 2 * * *", SPRING + timedelta(days=1))) == ["02:30+0200"]


def test_a_daily_job_in_the_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    ticks = day_ticks("30 2 * * *", FALL)
    assert ticks == [utc(2025, 10, 26, 0, 30)]
    assert wall(ticks) == ["02:30+0200"]


def test_an_hourly_job_fires_23_times_on_the_short_day_and_24_on_the_long_one() -> None:
    spring = day_ticks("0 * * * *", SPRING)
    assert len(spring) == 23
    # 02:00 does not exist: it maps to 03:00 CEST, which is also the 03:00 tick: one run.
    assert wall(spring)[:4] == ["00:00+0100", "01:00+0100", "03:00+0200", "04:00+0200"]
    fall = day_ticks("0 * * * *", FALL)
    # 25 hours, 24 ticks: 02:00 fires at its first occurrence (CEST), not again an hour later (CET).
    assert len(fall) == 24
    assert wall(fall)[:5] == ["00:00+0200", "01:00+0200", "02:00+0200", "03:00+0100", "04:00+0100"]
    assert utc(2025, 10, 26, 1) not in fall
    # In UTC nothing is special.
    assert (
        len(day_ticks("0 * * * *", SPRING, ZoneInfo("UTC"))) == len(day_ticks("0 * * * *", FALL, ZoneInfo("UTC"))) == 24
    )


def test_sub_hourly_jobs_follow_the_wall_clock() -> None:
    spring = day_ticks("*/15 * * * *", SPRING)
    # 02:00-02:45 map onto 03:00-03:45 CEST, which are ticks of their own: each instant once.
    assert len(spring) == 92 == len(set(spring))
    assert wall(spring)[7:10] == ["01:45+0100", "03:00+0200", "03:15+0200"]
    fall = day_ticks("* * * * *", FALL)
    # The repeated hour's second pass (01:00-02:00 UTC) is silent: 24 * 60 ticks on a 25-hour day.
    assert len(fall) == 1440
    assert not [t for t in fall if utc(2025, 10, 26, 1) <= t < utc(2025, 10, 26, 2)]
    assert fall[fall.index(utc(2025, 10, 26, 0, 59)) + 1] == utc(2025, 10, 26, 2)


def test_a_shifted_tick_and_a_real_one_keep_their_order() -> None:
    # 02:15, 02:30 (skipped: 03:15, 03:30 CEST) and 03:15, 03:30 (real): the same two instants.
    assert wall(day_ticks("15,30 2,3 * * *", SPRING)) == ["03:15+0200", "03:30+0200"]
    # 02:45 is shifted to 03:45 CEST: after the 03:10 tick, and one run with the 03:45 one.
    assert wall(day_ticks("10,45 2,3 * * 0", SPRING)) == ["03:10+0200", "03:45+0200"]


def test_new_york_skips_and_repeats_its_own_hour() -> None:
    new_york = ZoneInfo("America/New_York")
    assert wall(day_ticks("30 2 * * *", datetime(2025, 3, 9), new_york), new_york) == ["03:30-0400"]
    assert wall(day_ticks("30 1 * * *", datetime(2025, 11, 2), new_york), new_york) == ["01:30-0400"]


@pytest.mark.parametrize("cron", ["30 2 * * *", "0 * * * *", "*/20 * * * *", "15,30 2,3 * * *", "0 3 * * *"])
@pytest.mark.parametrize("day", [SPRING, FALL])
def test_the_ticks_do_not_depend_on_where_counting_starts(cron: str, day: datetime) -> None:
    """Ticks in (a, c] are those in (a, b] then (b, c], for b every 10 minutes across the day
    (next ticks are computed from wherever the previous look ended)."""
    parsed = parse_cron(cron)
    start, end = local_day(day)
    whole = ticks_between(parsed, BERLIN, start, end)
    assert whole == sorted(set(whole))
    b = start
    while b < end:
        assert ticks_between(parsed, BERLIN, start, b) + ticks_between(parsed, BERLIN, b, end) == whole, b
        b += timedelta(minutes=10)
    # next_tick from each tick gives the following one.
    for earlier, later in itertools.pairwise(whole):
        assert next_tick(parsed, BERLIN, earlier) == later


def test_ticks_over_a_year_are_increasing_and_unique() -> None:
    for cron in ("0 * * * *", "0 2 * * *", "30 1-3 * * *"):
        ticks = ticks_between(parse_cron(cron), BERLIN, utc(2025, 1, 1), utc(2026, 1, 1))
        assert all(a < b for a, b in itertools.pairwise(ticks)), cron


def test_per_second_and_rare_schedules() -> None:
    every_second = parse_cron("* * * * * *")
    start = utc(2025, 6, 1, 12, 0, 0) + timedelta(milliseconds=300)
    assert ticks_between(every_second, ZoneInfo("UTC"), start, start + 3 * SECOND) == [
        utc(2025, 6, 1, 12, 0, 1),
        utc(2025, 6, 1, 12, 0, 2),
        utc(2025, 6, 1, 12, 0, 3),
    ]
    leap_day = parse_cron("0 0 29 2 *")
    assert next_tick(leap_day, ZoneInfo("UTC"), utc(2025, 3, 1)) == utc(2028, 2, 29)
    # A tick exactly at `after` is not after it.
    assert next_tick(parse_cron("0 0 * * *"), ZoneInfo("UTC"), utc(2025, 1, 1)) == utc(2025, 1, 2)
    # The ticks end with the calendar.
    assert list(ticks_after(parse_cron("0 0 1 1 *"), ZoneInfo("UTC"), utc(9997, 6, 1))) == [
        utc(9998, 1, 1),
        utc(9999, 1, 1),
    ]


# -- catch-up ------------------------------------------------------------------------------------


def schedule(cron: str = "0 * * * *", **config: Any) -> Schedule:
    return Schedule.from_config({"cron": cron, **config})


NOW = utc(2025, 6, 1, 12, 20, 30)


def test_a_new_schedule_starts_from_now_without_catching_up() -> None:
    for policy in ("none", "latest", "all"):
        assert plan_ticks(schedule(catchUp=policy), next_due=None, now=NOW) == TickPlan((), utc(2025, 6, 1, 13))
    # Not due yet: nothing, same next tick.
    assert plan_ticks(schedule(), next_due=utc(2025, 6, 1, 13), now=NOW) == TickPlan((), utc(2025, 6, 1, 13))


def test_a_tick_seen_on_time_fires_under_every_policy() -> None:
    now = utc(2025, 6, 1, 13, 0, 0, 400_000)
    for policy in ("none", "latest", "all"):
        plan = plan_ticks(schedule(catchUp=policy), next_due=utc(2025, 6, 1, 13), now=now)
        assert plan == TickPlan((Tick(utc(2025, 6, 1, 13)),), utc(2025, 6, 1, 14)), policy


def test_after_downtime_none_skips_what_was_missed() -> None:
    # Down since 07:00: ticks 07:00 ... 12:00 are due, the latest 20 minutes old.
    plan = plan_ticks(schedule(catchUp="none"), next_due=utc(2025, 6, 1, 7), now=NOW)
    assert plan == TickPlan((), utc(2025, 6, 1, 13), skipped=6)
    # Back within the grace of the latest tick: that one still fires.
    soon = utc(2025, 6, 1, 12) + ON_TIME_GRACE
    plan = plan_ticks(schedule(catchUp="none"), next_due=utc(2025, 6, 1, 7), now=soon)
    assert plan == TickPlan((Tick(utc(2025, 6, 1, 12)),), utc(2025, 6, 1, 13), skipped=5)
    late = plan_ticks(schedule(catchUp="none"), next_due=utc(2025, 6, 1, 7), now=soon + US)
    assert late.fire == ()


def test_after_downtime_latest_fires_once_for_all_it_missed() -> None:
    plan = plan_ticks(schedule(), next_due=utc(2025, 6, 1, 7), now=NOW)
    assert plan == TickPlan((Tick(utc(2025, 6, 1, 12), missed=5),), utc(2025, 6, 1, 13))


def test_after_downtime_all_fires_each_missed_tick_up_to_its_bound() -> None:
    plan = plan_ticks(schedule(catchUp="all"), next_due=utc(2025, 6, 1, 7), now=NOW)
    assert plan.fire == tuple(Tick(utc(2025, 6, 1, h)) for h in range(7, 13))
    assert (plan.next_tick, plan.skipped) == (utc(2025, 6, 1, 13), 0)
    bounded = plan_ticks(schedule(catchUp="all", maxCatchUp=2), next_due=utc(2025, 6, 1, 7), now=NOW)
    assert bounded == TickPlan((Tick(utc(2025, 6, 1, 11)), Tick(utc(2025, 6, 1, 12))), utc(2025, 6, 1, 13), skipped=4)


def test_a_very_long_downtime_is_counted_up_to_a_limit() -> None:
    every_second = schedule("* * * * * *")
    since = NOW - timedelta(days=1)
    plan = plan_ticks(every_second, next_due=since, now=NOW)
    assert plan == TickPlan((Tick(utc(2025, 6, 1, 12, 20, 30), missed=MISSED_LIMIT),), utc(2025, 6, 1, 12, 20, 31))
    catch_all = plan_ticks(schedule("* * * * * *", catchUp="all", maxCatchUp=1000), next_due=since, now=NOW)
    assert [t.at for t in catch_all.fire] == [NOW - SECOND * i for i in range(999, -1, -1)]
    assert catch_all.skipped == MISSED_LIMIT
    # Just below the limit: exact.
    exact = plan_ticks(every_second, next_due=NOW - SECOND * MISSED_LIMIT, now=NOW)
    assert exact.fire == (Tick(NOW, missed=MISSED_LIMIT),)
    exact = plan_ticks(every_second, next_due=NOW - SECOND * (MISSED_LIMIT - 1), now=NOW)
    assert exact.fire == (Tick(NOW, missed=MISSED_LIMIT - 1),)


def test_a_next_tick_that_is_not_a_tick_of_the_cron_fires_nothing_of_its_own() -> None:
    # The config changed behind the scheduler's back (the API and dw.schedule_v1 reset the next tick).
    plan = plan_ticks(schedule(), next_due=utc(2025, 6, 1, 12, 10), now=NOW)
    assert plan == TickPlan((), utc(2025, 6, 1, 13))


# -- the scheduler's batch planning ----------------------------------------------------------------


def test_a_batch_plan_disables_schedules_whose_config_cannot_be_used() -> None:
    good, bad = uuid4(), uuid4()
    due = [
        DueSchedule(good, {"cron": "0 * * * *", "catchUp": "latest"}, utc(2025, 6, 1, 7), EARLIER),
        DueSchedule(bad, {"cron": "0 25 * * *"}, None, EARLIER),
        DueSchedule(uuid4(), {"cron": "0 * * * *", "catchUp": "latest"}, utc(2025, 6, 1, 7), EARLIER),
    ]
    plans = plan_batch(due, NOW)
    assert (plans[0].ticks, plans[0].missed, plans[0].next) == ([utc(2025, 6, 1, 12)], [5], utc(2025, 6, 1, 13))
    assert (plans[0].due, plans[0].updated_at) == (utc(2025, 6, 1, 7), EARLIER)
    assert plans[2].ticks == plans[0].ticks
    assert plans[1].disable and plans[1].error == "its config is not valid: /cron: hour field: 25 is out of range 0-23"
    assert (plans[1].due, plans[1].updated_at) == (None, EARLIER)


EARLIER = utc(2025, 5, 1)


def test_a_batch_plans_one_cron_once_whatever_the_payloads_and_within_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After an outage each schedule far behind walks up to MISSED_LIMIT ticks while the batch holds
    its rows locked: 2,000 schedules of one cron with their own payloads held them for minutes, and
    API writes and other schedules' ticks waited. A cron's ticks are computed once, whatever the
    payloads; and planning stops at its time budget, leaving the rest of the batch to the next."""
    from dataworkflows.workers import scheduler

    computed = []
    real = scheduler.plan_ticks
    monkeypatch.setattr(scheduler, "plan_ticks", lambda *a, **k: computed.append(1) or real(*a, **k))
    due = [
        DueSchedule(uuid4(), {"cron": "0 * * * *", "payload": {"n": n}}, utc(2025, 6, 1, 7), EARLIER) for n in range(50)
    ]
    plans = plan_batch(due, NOW)
    assert len(plans) == 50 and len(computed) == 1
    assert all(p.ticks == plans[0].ticks and p.next == plans[0].next for p in plans)
    assert [p.id for p in plan_batch(due, NOW, budget_seconds=0.0)] == [due[0].id], "the first, then the budget"


def test_a_batch_fires_at_most_max_ticks_and_always_its_first_schedule() -> None:
    """A review: 40 schedules far behind with catchUp "all" (500 ticks each) made one batch of 20,000 runs
    to start in one statement, 17 s here: past DW_WORKER_ANSWER_SECONDS every pass was cut off and rolled
    back, and none fired again. A batch stops before the schedule that would take it past max_ticks, and
    a first schedule past it alone fires its oldest max_ticks."""
    config = {"cron": "0 * * * *", "catchUp": "all", "maxCatchUp": 1000}
    behind = utc(2025, 6, 1, 12) - timedelta(hours=499)  # 500 hourly ticks due at NOW
    due = [DueSchedule(uuid4(), config, behind, EARLIER) for _ in range(40)]
    plans = plan_batch(due, NOW)
    assert [len(p.ticks) for p in plans] == [500, 500]
    assert [p.id for p in plans] == [d.id for d in due[:2]]
    assert len(plan_batch(due, NOW, max_ticks=20_000)) == 40
    # A first schedule with more due ticks than the bound fires its oldest; its next tick is the first
    # it left (due: the next batch goes on from there).
    [first] = plan_batch(due, NOW, max_ticks=10)
    assert first.ticks == [behind + timedelta(hours=n) for n in range(10)]
    assert first.next == behind + timedelta(hours=10) and len(first.missed) == 10


def _bound_failure(cause: BaseException) -> Exception:
    """As the data layer raises it: DatabaseUnavailable, caused by the driver's error."""
    from dataworkflows.errors import DatabaseUnavailable

    error = DatabaseUnavailable(f"the database is unavailable: {cause}")
    error.__cause__ = cause
    return error


def test_a_statement_the_answer_bound_cut_off_halves_the_cap_to_half_its_runs() -> None:
    """Reviews: a tick's cost grows with its workflow (1,000 ticks of a 1,000-node workflow took 11 s), so
    no fixed cap keeps a batch within DW_WORKER_ANSWER_SECONDS. A statement the bound cut off cuts the cap
    to half the runs it held; one that held a single run, or failed otherwise, changes nothing (a lock or
    a frozen database cut the cap of a scheduler with nothing due, twice a pass, for good); a full
    statement answered within a quarter of the bound doubles it again."""
    import psycopg

    from dataworkflows.answers import AnswerTimeout
    from dataworkflows.workers.scheduler import _Cap

    bound = _bound_failure(AnswerTimeout("the database did not answer within 10 s (DW_WORKER_ANSWER_SECONDS)"))
    cap = _Cap("a batch of schedules", 1000, 10.0)
    cap.failed(bound, 1000)
    assert cap.value == 500
    cap.failed(bound, 1000)  # the other parallel batch, as large: not compounded
    assert cap.value == 500
    cap.failed(_bound_failure(psycopg.OperationalError("server closed the connection unexpectedly")), 500)
    cap.failed(bound, 1)  # a claim that planned nothing, or one run: the bound, not the batch
    assert cap.value == 500
    cap.failed(bound, 500)
    assert cap.value == 250
    cap.answered(10, 0.1)  # not full
    cap.answered(250, 5.0)  # full, but slow
    assert cap.value == 250
    cap.answered(250, 0.5)
    cap.answered(500, 0.5)
    cap.answered(1000, 0.5)
    assert cap.value == 1000
    while cap.value > 1:
        cap.failed(bound, cap.value)
    assert cap.value == 1
    unbounded = _Cap("starting buffered ticks", 500, 0.0)  # DW_WORKER_ANSWER_SECONDS=0
    unbounded.answered(500, 0.0)
    assert unbounded.value == 500


async def test_the_scheduler_plans_within_its_cap_and_cuts_it_from_what_a_cut_off_batch_held() -> None:
    """The cap reaches the planner (a batch the bound cut off halves its runs for the next ones), and
    the buffered ticks' limit has its own cap."""
    from dataworkflows.answers import AnswerTimeout
    from dataworkflows.config import Settings
    from dataworkflows.data.schedules import Batch
    from dataworkflows.errors import DatabaseUnavailable
    from dataworkflows.workers.scheduler import Scheduler

    config = {"cron": "0 * * * *", "catchUp": "all", "maxCatchUp": 1000}
    behind = [DueSchedule(uuid4(), config, utc(2025, 6, 1, 12) - timedelta(hours=999), EARLIER)]
    planned: list[int] = []
    failing: list[bool] = []
    buffered_limits: list[int] = []

    class Schedules:
        async def fire_due(self, *, limit: int, queue: str, planner: Any, only: Any = None) -> Batch:
            if not failing:
                return Batch(0, [])  # nothing due
            failing.pop()
            plans = await planner(behind, NOW)
            planned.append(sum(len(p.ticks) for p in plans))
            raise _bound_failure(AnswerTimeout("the database did not answer"))

        async def start_buffered(self, *, queue: str, limit: int) -> list[Any]:
            buffered_limits.append(limit)
            return []

    class Db:
        schedules = Schedules()

    scheduler = Scheduler(Db(), Settings())  # type: ignore[arg-type]
    assert (scheduler.ticks.value, scheduler.buffered.value) == (1000, 500)
    failing.append(True)
    with pytest.raises(DatabaseUnavailable):
        await scheduler.run_pass()
    assert planned == [1000] and scheduler.ticks.value == 500
    failing.append(True)
    with pytest.raises(DatabaseUnavailable):
        await scheduler.run_pass()
    assert planned == [1000, 500] and scheduler.ticks.value == 250, "planned within the cap, then cut"
    await scheduler.run_pass()  # nothing due: nothing changes
    assert scheduler.ticks.value == 250 and buffered_limits == [500]


def test_a_cancel_other_catch_up_is_never_split() -> None:
    """A review: split across batches, a cancelOther catch-up started (and cancelled) a run for each
    batch's newest tick, where one batch starts one run for them all. Its ticks count as one run, and
    they are planned whole."""
    from dataworkflows.workers.scheduler import _starts

    config = {"cron": "0 * * * *", "catchUp": "all", "maxCatchUp": 1000, "overlap": "cancelOther"}
    behind = utc(2025, 6, 1, 12) - timedelta(hours=499)
    [plan] = plan_batch([DueSchedule(uuid4(), config, behind, EARLIER)], NOW, max_ticks=10)
    assert len(plan.ticks) == 500 and plan.next == utc(2025, 6, 1, 13)
    assert _starts(config, plan) == 1
    two = [DueSchedule(uuid4(), config, behind, EARLIER) for _ in range(2)]
    assert len(plan_batch(two, NOW, max_ticks=2)) == 2


def test_a_schedule_without_a_next_tick_starts_from_the_moment_it_changed() -> None:
    # Changed at 11:59:59.6, looked at 12:00:00.3: the 12:00 tick is due, whatever the policy.
    changed, now = utc(2025, 6, 1, 11, 59, 59) + timedelta(milliseconds=600), utc(2025, 6, 1, 12, 0, 0)
    now += timedelta(milliseconds=300)
    for policy in ("none", "latest", "all"):
        schedule = Schedule.from_config({"cron": "0 * * * *", "catchUp": policy})
        plan = plan_ticks(schedule, next_due=None, now=now, since=changed)
        assert plan == TickPlan((Tick(utc(2025, 6, 1, 12)),), utc(2025, 6, 1, 13))
        [batch] = plan_batch([DueSchedule(uuid4(), {"cron": "0 * * * *", "catchUp": policy}, None, changed)], now)
        assert (batch.ticks, batch.next, batch.error) == ([utc(2025, 6, 1, 12)], utc(2025, 6, 1, 13), None)
    # Without `since` (or changed after the tick): from now.
    schedule = Schedule.from_config({"cron": "0 * * * *"})
    assert plan_ticks(schedule, next_due=None, now=now) == TickPlan((), utc(2025, 6, 1, 13))
    assert plan_ticks(schedule, next_due=None, now=now, since=now) == TickPlan((), utc(2025, 6, 1, 13))
    # Created hours ago and not looked at since: the catch-up policy decides.
    plan = plan_ticks(schedule, next_due=None, now=NOW, since=utc(2025, 6, 1, 6, 30))
    assert plan == TickPlan((Tick(utc(2025, 6, 1, 12), 5),), utc(2025, 6, 1, 13))


def test_a_time_zone_this_worker_cannot_load_leaves_the_schedule_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataworkflows import schedules

    monkeypatch.setattr(schedules, "_known_zones", lambda: frozenset({"UTC"}))
    missing, host = uuid4(), uuid4()
    due = [
        DueSchedule(missing, {"cron": "@daily", "timezone": "Europe/Berlin"}, utc(2025, 6, 1, 7), EARLIER),
        DueSchedule(host, {"cron": "@daily", "timezone": "posix/Europe/Berlin"}, None, EARLIER),
    ]
    plans = plan_batch(due, NOW)
    assert not plans[0].disable and plans[0].ticks == []
    assert plans[0].error is not None and 'time zone "Europe/Berlin" cannot be loaded' in plans[0].error
    # Looked at again in a minute: no spinning, no disabling.
    assert (plans[0].next, plans[0].due, plans[0].updated_at) == (NOW + ZONE_RETRY, utc(2025, 6, 1, 7), EARLIER)
    assert plans[1].disable and plans[1].error is not None and "its config is not valid" in plans[1].error


async def test_a_worker_runs_no_scheduler_with_a_zero_interval() -> None:
    import asyncio

    from dataworkflows.config import Settings
    from dataworkflows.workers.app import start_scheduler

    assert start_scheduler(None, Settings(scheduler_interval_seconds=0), asyncio.Event()) == []  # type: ignore[arg-type]


async def test_a_scheduler_that_finds_due_schedules_held_by_another_backs_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside another scheduler's long batch, something is due and nothing can be taken: passes ran
    every 50 ms (about 50 transactions a second claiming nothing). They now wait twice as long each
    time, up to a second, and look again at once when a pass fires something."""
    from dataworkflows.config import Settings
    from dataworkflows.workers import scheduler

    outcomes = iter([[], [], [], [], [], [], ["a tick"], [], []])
    slept: list[float] = []
    stop = asyncio.Event()

    class Probe(scheduler.Scheduler):
        async def run_pass(self, stop: asyncio.Event | None = None) -> list[Any]:
            return list(next(outcomes))

        async def delay(self) -> float:
            return self.MIN_SLEEP

    async def stopped_within(event: asyncio.Event, seconds: float) -> bool:
        slept.append(seconds)
        return len(slept) == 9

    monkeypatch.setattr(scheduler, "stopped_within", stopped_within)
    await Probe(None, Settings()).run(stop)  # type: ignore[arg-type]
    assert slept == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 0.05, 0.05, 0.1]


def test_a_schedule_whose_workflow_cannot_run_warns_once_not_every_tick() -> None:
    """A schedule of a Draft workflow ticking every minute wrote a warning a minute; its reason is in
    the schedule's error. Warned again once a tick has run in between."""
    import uuid
    from datetime import UTC, datetime

    import structlog

    from dataworkflows.data.schedules import FiredTick
    from workers import scheduler

    trigger, other = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)

    def tick(trigger_id: uuid.UUID, outcome: str) -> FiredTick:
        return FiredTick(trigger_id=trigger_id, tick_at=now, fired_at=now, execution_id=None, outcome=outcome)

    with structlog.testing.capture_logs() as logs:
        scheduler._account([], [tick(trigger, "refused"), tick(other, "refused")])
        scheduler._account([], [tick(trigger, "refused")])
        scheduler._account([], [tick(trigger, "started")])
        scheduler._account([], [tick(trigger, "refused")])
    levels = [(entry["log_level"], entry["trigger_id"]) for entry in logs if "cannot run" in entry["event"]]
    assert levels == [
        ("warning", str(trigger)),
        ("warning", str(other)),
        ("info", str(trigger)),
        ("warning", str(trigger)),
    ]
