"""Schedules: a schedule trigger's config, its cron grammar, the ticks it makes in its time zone and
what fires after a scheduler was away. Pure module (workers/scheduler.py reads and writes the rows).

Config (dw.triggers.config of a schedule trigger):
    {"cron": "0 2 * * *", "timezone": "Europe/Berlin" (default "UTC"),
     "catchUp": "none" | "latest" (default) | "all", "maxCatchUp": 1..1000 (default 100),
     "overlap": "allow" (default) | "skip" | "bufferOne" | "bufferAll" | "cancelOther",
     "payload": object (default {}), merged into the run's trigger beside "firedBy"}

Cron: five fields, minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or jan-dec) day-of-week
(0-7 or sun-sat; 0 and 7 are Sunday), or six with a seconds field (0-59) LAST (croniter's convention:
"* * * * * */5" is every five seconds). A field is a comma-separated list of `*`, `n`, `a-b`, each
optionally with a step `/s` (`n/s` means `n-max/s`); ranges do not wrap (`sat-sun` is written 6-7).
Names are case-insensitive. Also @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly.
When day-of-month and day-of-week are both restricted, a day matching either fires (cron's rule).
dw.cron_problem_v1 (sql/procedures/schedules.sql) implements the same grammar with the same messages.

Time zones: a cron names wall-clock times in its zone. The ticks are the local times the cron
matches, each mapped to an instant with fold=0 (PEP 495), duplicates removed:
    * a time skipped by a spring-forward transition maps to the instant one gap later (02:30 in
      Europe/Berlin on the last Sunday of March fires at 03:30 CEST, once); when that instant is also
      a tick of its own (03:30 itself), it fires once;
    * a time repeated by a fall-back transition fires at its first occurrence only, so a daily 02:30
      fires once and an hourly schedule fires 24 times on that 25-hour day (none during the second
      pass of 02:00-03:00); a per-minute schedule is silent for that second hour. Use "UTC" for
      schedules that must keep an even pace through transitions.

Catch-up: the ticks due when a scheduler looks (from the schedule's next tick up to now) are fired
per the policy. Ticks are usually due one at a time; several are due after downtime (or a
scheduler that fell behind):
    * none: only the most recent due tick fires, and only if it came due at most ON_TIME_GRACE
      ago; every other due tick is skipped;
    * latest: the most recent due tick fires once, recording how many older due ticks it stands for
      (missedTicks, exact up to MISSED_LIMIT; MISSED_LIMIT means at least that many);
    * all: every due tick fires, oldest first; at most maxCatchUp of them (the most recent), the
      older ones are skipped.
A schedule without a next tick (new, enabled again, its cron or time zone changed) starts from the
moment of that change (the row's updated_at, see plan_ticks' `since`): its ticks from then on are
due, so a tick that came due between the change and the scheduler's next look is not lost. Ticks
from before the change are not caught up; in particular a disabled schedule's missed ticks are not
fired when it is enabled again. A change of only its payload, catchUp or name keeps its next tick
(ticks missed while the workers were away are still caught up), and so does running the same
dw.schedule_v1 call again.

Overlap: what a tick does while a run the schedule started earlier has not ended (Temporal's
ScheduleOverlapPolicy, of which these are ALLOW_ALL, SKIP, BUFFER_ONE, BUFFER_ALL and CANCEL_OTHER;
dw.fire_schedule_v1 applies it as the tick fires):
    * allow: the tick starts its run whatever is still going;
    * skip: the tick is recorded without a run (outcome overlapped; schedule_ticks.overlapped_by names
      the newest run still going), and the schedule goes on ticking;
    * bufferOne: the tick waits (outcome buffered; schedule_ticks.buffered, overlapped_by the newest
      run still going) and its run starts once none of the schedule's runs is going (a later
      scheduler pass: dw.start_buffered_ticks_v1); while one tick waits, a newer one is recorded as
      skip records it. A disabled schedule's waiting tick is dropped;
    * bufferAll: as bufferOne, but every such tick waits, and so does a tick while others wait: their
      runs start in their order, each once the run before it has ended; at most 1,000 ticks of a
      schedule wait (dw.fire_schedule_v1), a tick past them is recorded as skip records it. A
      disabled schedule's waiting ticks are all dropped;
    * cancelOther: the runs still going are cancelled (as POST /executions/{id}/cancel does, by
      "scheduler", with a reason naming the schedule and the tick; overlapped_by names the newest of
      them) and the tick's run starts once they have ended, as under bufferOne (at once when each
      ended in its cancel); a newer tick takes the place of one still waiting. The tick's
      transaction holds the scheduler's batch and never waits for a run's row, nor more than 50 ms
      for a cancel's other locks: a run it cannot cancel so is cancelled by a job
      (dw.cancel_overlapped) once it commits.
A catch-up that fires several ticks at once: under skip only the oldest of them runs (the others
find it going), under bufferOne the oldest runs and the next one waits, under bufferAll the oldest
runs and the others wait in their order; under cancelOther only the newest (each would cancel the
one before), and the older ones name its run (or the run it waits for) in overlapped_by.

Time zone names: the IANA names (zoneinfo.available_timezones(); the tzdata package provides them
where the system has none), not those whose meaning depends on the host (localtime, posix/...,
right/...), which dw.check_schedule_v1 refuses too.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, croniter

from dataworkflows.validation import unknown_fields

Problem = tuple[str, str, str]

NONE, LATEST, ALL = "none", "latest", "all"
CATCH_UP_POLICIES = (NONE, LATEST, ALL)
DEFAULT_TIMEZONE = "UTC"
DEFAULT_CATCH_UP = LATEST
DEFAULT_MAX_CATCH_UP = 100
MAX_CATCH_UP_LIMIT = 1000
ALLOW, SKIP, BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER = "allow", "skip", "bufferOne", "bufferAll", "cancelOther"
OVERLAP_POLICIES = (ALLOW, SKIP, BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER)
DEFAULT_OVERLAP = ALLOW
CONFIG_KEYS = ("cron", "timezone", "catchUp", "maxCatchUp", "overlap", "payload")
MAX_CRON_CHARS = 200
# catchUp none: the most recent due tick still fires if a scheduler sees it within this time (a
# busy scheduler, a worker restart); later than that it counts as missed and is skipped.
ON_TIME_GRACE = timedelta(seconds=60)
# Due ticks are counted up to this many (missedTicks, skipped); a larger number is reported as it.
MISSED_LIMIT = 10_000

NAMED_CRONS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# The longest each month can be (February: 29, for leap years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SPACE = " \t\n\r\f\v"
_SPLIT = re.compile(r"[ \t\n\r\f\v]+")
_ITEM = re.compile(r"\A(?:\*|([0-9]+|[A-Za-z]+)(?:-([0-9]+|[A-Za-z]+))?)(?:/([0-9]+))?\Z")
_AT_NAME = re.compile(r"\A@[A-Za-z]+\Z")
_MICROSECOND = timedelta(microseconds=1)
# Longer than any time-zone transition's gap (Samoa skipped 24 hours in 2011).
_TRANSITION_WINDOW = timedelta(hours=26)


class CronError(ValueError):
    """A cron expression this module does not accept; the message says why."""


class ScheduleConfigError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{pointer or '/'}: {message}" for pointer, _, message in problems))
        self.problems = problems


# -- cron ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    # The first name's value (day-of-week names start at 0, month names at 1).
    names_from: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, 1),
    _Field("day-of-week", 0, 7, DAY_NAMES, 0),
    _Field("second", 0, 59),
)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the values each field allows (None: every value)."""

    expression: str
    minutes: frozenset[int] | None
    hours: frozenset[int] | None
    days: frozenset[int] | None
    months: frozenset[int] | None
    weekdays: frozenset[int] | None
    seconds: frozenset[int] | None
    has_seconds: bool

    @property
    def canonical(self) -> str:
        """The expression croniter iterates: explicit value lists, `*` for a full field."""
        sets = [self.minutes, self.hours, self.days, self.months, self.weekdays]
        if self.has_seconds:
            sets.append(self.seconds)
        return " ".join("*" if s is None else ",".join(str(v) for v in sorted(s)) for s in sets)


def parse_cron(expression: str) -> Cron:
    """The cron, or CronError with the first problem (the same message dw.cron_problem_v1 gives)."""
    text = expression.strip(_SPACE)
    if not text:
        raise CronError("the cron expression is empty")
    if text.startswith("@"):
        named = NAMED_CRONS.get(text.lower()) if _AT_NAME.match(text) else None
        if named is None:
            raise CronError(f'unknown cron name "{text}"; use one of {", ".join(NAMED_CRONS)}')
        text = named
    parts = _SPLIT.split(text)
    if len(parts) not in (5, 6):
        raise CronError(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with "
            f"seconds last; this one has {len(parts)}"
        )
    sets = [_field_set(part, spec) for part, spec in zip(parts, _FIELDS, strict=False)]
    seconds = sets[5] if len(sets) == 6 else frozenset({0})
    minutes, hours, days, months, weekdays = sets[:5]
    cron = Cron(expression, minutes, hours, days, months, weekdays, seconds, has_seconds=len(sets) == 6)
    _check_fires(cron)
    return cron


def _full_size(spec: _Field) -> int:
    # Day-of-week 7 is Sunday again: seven distinct days.
    return 7 if spec.label == "day-of-week" else spec.high - spec.low + 1


def _field_set(part: str, spec: _Field) -> frozenset[int] | None:
    """A field's values; None when it allows every value."""
    values = _field_values(part, spec)
    return None if len(values) == _full_size(spec) else frozenset(values)


def _field_values(part: str, spec: _Field) -> set[int]:
    values: set[int] = set()
    for item in part.split(","):
        values.update(_item_values(item, spec))
    if spec.label == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return values


def _item_values(item: str, spec: _Field) -> range:
    match = _ITEM.match(item)
    if match is None:
        raise CronError(f'{spec.label} field: "{item}" is not *, a value or a range a-b, each with an optional step /n')
    first, last, step_text = match.groups()
    if first is None:
        low, high = spec.low, spec.high
    else:
        low = _value(first, spec)
        high = _value(last, spec) if last is not None else (spec.high if step_text is not None else low)
        if high < low:
            raise CronError(f'{spec.label} field: the range "{first}-{last}" goes backwards')
    step = 1
    if step_text is not None:
        step = int(step_text)
        if not 1 <= step <= spec.high - spec.low + 1:
            raise CronError(f"{spec.label} field: step {step_text} is out of range 1-{spec.high - spec.low + 1}")
    return range(low, high + 1, step)


def _value(text: str, spec: _Field) -> int:
    if text.isdigit():
        value = int(text)
        if not spec.low <= value <= spec.high:
            raise CronError(f"{spec.label} field: {text} is out of range {spec.low}-{spec.high}")
        return value
    name = text.lower()
    if name not in spec.names:
        raise CronError(f'{spec.label} field: unknown name "{text}"')
    return spec.names.index(name) + spec.names_from


def _check_fires(cron: Cron) -> None:
    """Refuses a day-of-month that none of the months has (30 2 *: February 30th)."""
    if cron.days is None or cron.weekdays is not None:
        return
    months = range(1, 13) if cron.months is None else cron.months
    if min(cron.days) > max(_MONTH_DAYS[m - 1] for m in months):
        raise CronError(f"the schedule never fires: none of its months has a day {min(cron.days)}")


# -- config --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A schedule trigger's config with its defaults applied."""

    cron: Cron
    zone: ZoneInfo
    catch_up: str = DEFAULT_CATCH_UP
    max_catch_up: int = DEFAULT_MAX_CATCH_UP
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any) -> Schedule:
        """The schedule, or ScheduleConfigError with every problem."""
        problems = check_config(config)
        if problems:
            raise ScheduleConfigError(problems)
        return cls(
            cron=cached_cron(config["cron"]),
            zone=ZoneInfo(config.get("timezone", DEFAULT_TIMEZONE)),
            catch_up=config.get("catchUp", DEFAULT_CATCH_UP),
            max_catch_up=config.get("maxCatchUp", DEFAULT_MAX_CATCH_UP),
            payload=config.get("payload", {}),
        )


def check_config(config: Any) -> list[Problem]:
    """Every problem with a schedule trigger's config: (JSON pointer relative to the config, code,
    message)."""
    if not isinstance(config, dict):
        return [("", "type", "must be a JSON object")]
    problems: list[Problem] = unknown_fields(config, CONFIG_KEYS)
    problems.extend(_cron_problems(config))
    timezone = config.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(timezone, str):
        problems.append(("/timezone", "type", "must be a string: an IANA time zone such as Europe/Berlin"))
    elif zone_problem(timezone) is not None:
        problems.append(("/timezone", "invalid_timezone", str(zone_problem(timezone))))
    if config.get("catchUp", DEFAULT_CATCH_UP) not in CATCH_UP_POLICIES:
        problems.append(("/catchUp", "enum", f"must be one of {', '.join(CATCH_UP_POLICIES)}"))
    if config.get("overlap", DEFAULT_OVERLAP) not in OVERLAP_POLICIES:
        problems.append(("/overlap", "enum", f"must be one of {', '.join(OVERLAP_POLICIES)}"))
    bound = config.get("maxCatchUp", DEFAULT_MAX_CATCH_UP)
    if not isinstance(bound, int) or isinstance(bound, bool):
        problems.append(("/maxCatchUp", "type", "must be an integer"))
    elif not 1 <= bound <= MAX_CATCH_UP_LIMIT:
        problems.append(("/maxCatchUp", "range", f"must be between 1 and {MAX_CATCH_UP_LIMIT}"))
    if not isinstance(config.get("payload", {}), dict):
        problems.append(("/payload", "type", "must be a JSON object"))
    return problems


def _cron_problems(config: dict[str, Any]) -> list[Problem]:
    if "cron" not in config:
        return [("/cron", "required", 'required: a cron expression such as "0 2 * * *"')]
    cron = config["cron"]
    if not isinstance(cron, str):
        return [("/cron", "type", "must be a string")]
    if len(cron) > MAX_CRON_CHARS:
        return [("/cron", "too_long", f"must be at most {MAX_CRON_CHARS} characters")]
    try:
        parse_cron(cron)
    except CronError as exc:
        return [("/cron", "invalid_cron", str(exc))]
    return []


# Names in a tz database whose meaning depends on the host (its local zone, the posix/ and right/
# variants some systems install): refused here and by dw.check_schedule_v1.
_HOST_ZONES = frozenset({"localtime", "posixrules"})
_HOST_ZONE_PREFIXES = ("posix/", "right/")


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(name for name in available_timezones() if not _host_dependent(name))


def _host_dependent(name: str) -> bool:
    return name in _HOST_ZONES or name.startswith(_HOST_ZONE_PREFIXES)


def _malformed_zone(name: str) -> bool:
    return not name or name.startswith("/") or ".." in name.split("/") or _host_dependent(name)


def zone_problem(name: str) -> str | None:
    """Why a time zone name is not usable, or None."""
    message = f'unknown time zone "{name}"; use an IANA name such as Europe/Berlin or UTC'
    if _malformed_zone(name) or name not in _known_zones():
        return message
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return message
    return None


def zone_unavailable(name: Any) -> bool:
    """Whether a well-formed time zone name is refused only because this host's tz database lacks
    it (the database and the API checked it when it was stored: another worker, or this one after
    an update, may load it)."""
    return isinstance(name, str) and not _malformed_zone(name) and zone_problem(name) is not None


# -- ticks ---------------------------------------------------------------------------------------


class _Iterators(threading.local):
    """croniter objects by expression, one set per thread: building one costs 150-350 us, moving
    one (set_current) a few; each use sets its own position, so interleaved uses are safe."""

    def __init__(self) -> None:
        self.by_expression: dict[str, croniter] = {}

    def get(self, expression: str) -> croniter:
        found = self.by_expression.get(expression)
        if found is None:
            if len(self.by_expression) >= 256:
                self.by_expression.clear()
            found = croniter(expression, datetime(2000, 1, 1), ret_type=datetime)
            self.by_expression[expression] = found
        return found


_iterators = _Iterators()


def ticks_after(cron: Cron, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The schedule's ticks strictly after `after` (an aware datetime), in order, as UTC datetimes,
    each once (see the module's doc for the daylight-saving rule). Ends if the cron has no more
    ticks within croniter's horizon (50 years)."""
    expression = cron.canonical
    cursor = _first_local(zone, after)
    # Ticks from local times that a spring-forward transition skipped: their instants come after
    # those of the next real local times, so they wait here until a later instant passes them.
    shifted: list[datetime] = []
    last = after
    while True:
        it = _iterators.get(expression)
        it.set_current(cursor, force=True)
        try:
            cursor = it.get_next(datetime)
        except (CroniterBadDateError, ValueError, OverflowError):
            break  # no tick within croniter's horizon, or past year 9999
        instant, real = _instant(cursor, zone)
        if not real:
            if instant > last and instant not in shifted:
                bisect.insort(shifted, instant)
            continue
        while shifted and shifted[0] <= instant:
            earlier = shifted.pop(0)
            if earlier > last:
                last = earlier
                yield earlier
        if instant > last:
            last = instant
            yield instant
    yield from (t for t in shifted if t > last)


def _instant(local: datetime, zone: ZoneInfo) -> tuple[datetime, bool]:
    """A local wall-clock time's instant (fold=0: a repeated time's first occurrence, a skipped
    time one gap later), and whether that local time exists."""
    instant = local.replace(tzinfo=zone).astimezone(UTC)
    return instant, instant.astimezone(zone).replace(tzinfo=None) == local


def _first_local(zone: ZoneInfo, after: datetime) -> datetime:
    """The local time to start iterating from so that no tick after `after` is left out: the local
    time of `after`, or one gap earlier when `after` falls within a gap's length after a
    spring-forward transition (the skipped local times map to instants after it)."""
    local = after.astimezone(zone)
    offset = local.utcoffset()
    before = (after - _TRANSITION_WINDOW).astimezone(zone).utcoffset()
    naive = local.replace(tzinfo=None)
    if offset is None or before is None or offset <= before:
        return naive
    gap = offset - before
    if (after - gap).astimezone(zone).utcoffset() == before:
        return naive - gap
    return naive


def next_tick(cron: Cron, zone: ZoneInfo, after: datetime) -> datetime | None:
    return next(ticks_after(cron, zone, after), None)


def ticks_between(cron: Cron, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """The ticks in (after, until]."""
    return list(takewhile(lambda tick: tick <= until, ticks_after(cron, zone, after)))


# -- catch-up ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    at: datetime
    # How many older due ticks this one stands for (catchUp latest), at most MISSED_LIMIT.
    missed: int = 0


@dataclass(frozen=True)
class TickPlan:
    """What a scheduler does with a schedule now: the ticks to fire (oldest first), the tick to
    look again at, and how many due ticks no run stands for (at most MISSED_LIMIT)."""

    fire: tuple[Tick, ...]
    next_tick: datetime | None
    skipped: int = 0


@dataclass(frozen=True)
class _Due:
    # Exact up to MISSED_LIMIT + 1; `overflow` when there are more.
    count: int
    recent: list[datetime]
    following: datetime | None
    overflow: bool = False

    def beyond(self, fired: int) -> int:
        """How many due ticks are not among `fired` ones, at most MISSED_LIMIT."""
        return MISSED_LIMIT if self.overflow else min(self.count - fired, MISSED_LIMIT)


def plan_ticks(
    schedule: Schedule, *, next_due: datetime | None, now: datetime, since: datetime | None = None
) -> TickPlan:
    """The catch-up decision (see the module's doc). `next_due` is the schedule's next tick as last
    computed (None: not yet, so it starts with the first tick after `since`, the moment it was
    created or changed, or after now without one); the ticks due are those in [next_due, now]."""
    cron, zone = schedule.cron, schedule.zone
    if next_due is None:
        next_due = next_tick(cron, zone, now if since is None else min(since, now))
    if next_due is None or next_due > now:
        return TickPlan((), next_due)
    keep = schedule.max_catch_up if schedule.catch_up == ALL else 1
    due = _due_ticks(cron, zone, next_due - _MICROSECOND, now, keep)
    if not due.recent:
        return TickPlan((), due.following)
    latest = due.recent[-1]
    if schedule.catch_up == LATEST:
        return TickPlan((Tick(latest, due.beyond(1)),), due.following)
    if schedule.catch_up == ALL:
        fire = tuple(Tick(at) for at in due.recent)
        return TickPlan(fire, due.following, due.beyond(len(fire)))
    if now - latest <= ON_TIME_GRACE:
        return TickPlan((Tick(latest),), due.following, due.beyond(1))
    return TickPlan((), due.following, due.beyond(0))


def _due_ticks(cron: Cron, zone: ZoneInfo, after: datetime, now: datetime, keep: int) -> _Due:
    """The ticks in (after, now]: how many, the `keep` most recent, and the first one after now."""
    recent: deque[datetime] = deque(maxlen=keep)
    count = 0
    for tick in ticks_after(cron, zone, after):
        if tick > now:
            return _Due(count, list(recent), tick)
        count += 1
        recent.append(tick)
        if count > MISSED_LIMIT:
            # Too many to walk through: the most recent ones from a window that ends now.
            recent_ticks = _recent_ticks(cron, zone, after, now, keep)
            return _Due(count, recent_ticks, next_tick(cron, zone, now), overflow=True)
    return _Due(count, list(recent), None)


def _recent_ticks(cron: Cron, zone: ZoneInfo, after: datetime, now: datetime, keep: int) -> list[datetime]:
    """The `keep` most recent ticks in (after, now], from windows ending now that grow fourfold."""
    span = timedelta(minutes=1)
    while True:
        start = max(after, now - span)
        ticks = ticks_between(cron, zone, start, now)
        if len(ticks) >= keep or start == after:
            return ticks[-keep:]
        span *= 4


@functools.lru_cache(maxsize=1024)
def cached_cron(expression: str) -> Cron:
    """parse_cron, remembered (a scheduler sees the same few expressions over and over)."""
    return parse_cron(expression)
