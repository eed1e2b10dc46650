"""When a job runs: a standard cron expression, or a daily UTC window with a fixed minute per job.

Both are evaluated in UTC, so a schedule means the same on every host. Only the cron syntax every
cron daemon understands is accepted (five fields, names, ranges, lists, steps and the @-macros),
so that ``snaptool schedule crontab`` can print a line that runs at exactly the same times.

A window ``05:00-06:00`` bounds the *start* of the run. The start is spread so that many jobs with
the same window do not hit their sources or the repository at once, yet it stays predictable: the
minute inside the window comes from a hash of the job name (SHA-256 of ``snaptool-window/<name>``),
so a job starts at the same minute every day, on every host, in ``schedule next`` and ``crontab``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from croniter import croniter

from ..errors import SnaptoolError

_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_TOKEN = re.compile(r"^(\*|[0-9a-z]+(-[0-9a-z]+)?)(/\d+)?$")
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
#: Counting missed runs stops here: a minutely job down for a year is reported as "at least" this.
MAX_COUNT = 10_000
_DAY_MINUTES = 24 * 60


class ScheduleError(SnaptoolError):
    """A schedule that is neither a standard cron expression nor a daily window."""


class Schedule(Protocol):
    text: str

    def next_after(self, when: datetime) -> datetime:
        """The first run time strictly after ``when`` (UTC)."""
        ...

    def cron_fields(self) -> str:
        """The same times as a crontab time specification (UTC)."""
        ...

    def describe(self) -> str:
        ...


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("schedule times must carry a time zone")
    return when.astimezone(timezone.utc)


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression (or an @-macro), evaluated in UTC."""

    text: str

    @classmethod
    def parse(cls, text: str) -> Cron:
        expr = " ".join(text.split())
        if expr.lower() in _MACROS:
            return cls(expr.lower())
        fields = expr.split(" ")
        if len(fields) != 5:
            raise ScheduleError(f"{text!r} has {len(fields)} field(s); a cron expression has 5 "
                                "(minute hour day-of-month month day-of-week), a window is HH:MM-HH:MM")
        for i, field in enumerate(fields):
            names = _MONTHS if i == 3 else _DAYS if i == 4 else ()
            for token in field.lower().split(","):
                words = re.findall(r"[a-z]+", token)
                if not _TOKEN.match(token) or any(w not in names for w in words):
                    raise ScheduleError(f"{text!r}: {_FIELDS[i]} {field!r} is not standard cron syntax "
                                        "(numbers, names, *, ranges a-b, lists a,b and steps /n)")
        try:
            croniter(expr, datetime(2000, 1, 1, tzinfo=timezone.utc))
        except (ValueError, KeyError) as exc:
            raise ScheduleError(f"{text!r}: {exc}") from None
        return cls(expr)

    def next_after(self, when: datetime) -> datetime:
        return croniter(self.text, _utc(when)).get_next(datetime).astimezone(timezone.utc)

    def cron_fields(self) -> str:
        return self.text

    def describe(self) -> str:
        return f"cron {self.text} (UTC)"


@dataclass(frozen=True)
class Window:
    """Every day, once, at a minute inside ``start``-``end`` (UTC) fixed for the job (see module)."""

    text: str
    start: int  # minutes after midnight
    length: int  # minutes; the run starts in [start, start + length)
    offset: int  # minutes after start, from the job name

    @classmethod
    def parse(cls, text: str, job: str) -> Window:
        m = _WINDOW.match(text.strip())
        if not m:
            raise ScheduleError(f"{text!r} is not a window HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ScheduleError(f"{text!r}: hours are 00..23 (24:00 ends a day), minutes 00..59")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        length = (end - start) % _DAY_MINUTES
        if length == 0:
            raise ScheduleError(f"{text!r}: the window is empty (a window that crosses midnight is "
                                "written 23:30-00:30)")
        return cls(text.strip(), start, length, spread_offset(job, length))

    @property
    def minute_of_day(self) -> int:
        return (self.start + self.offset) % _DAY_MINUTES

    def next_after(self, when: datetime) -> datetime:
        when = _utc(when)
        hour, minute = divmod(self.minute_of_day, 60)
        today = when.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return today if today > when else today + timedelta(days=1)

    def cron_fields(self) -> str:
        hour, minute = divmod(self.minute_of_day, 60)
        return f"{minute} {hour} * * *"

    def describe(self) -> str:
        hour, minute = divmod(self.minute_of_day, 60)
        return f"window {self.text} UTC, this job at {hour:02d}:{minute:02d}"


def spread_offset(job: str, length: int) -> int:
    """Minutes after a window's start for this job: stable for the name, spread across jobs."""
    digest = hashlib.sha256(f"snaptool-window/{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % length


def parse_schedule(text: str, job: str) -> Schedule:
    """A window when ``text`` looks like ``HH:MM-HH:MM``, otherwise a cron expression."""
    if _WINDOW.match(text.strip()):
        return Window.parse(text, job)
    return Cron.parse(text)


@dataclass(frozen=True)
class Dues:
    """The run times of one schedule that fell in a span: how many, the first, the last, and the one
    before the last (the last of those missed when the last one is run)."""

    count: int
    first: datetime
    last: datetime
    before_last: datetime | None = None
    capped: bool = False  # counting stopped at MAX_COUNT: there were at least ``count``


def due_between(schedule: Schedule, after: datetime, until: datetime, *,
                limit: int = MAX_COUNT) -> Dues | None:
    """The run times in (``after``, ``until``], or None when there was none."""
    first = schedule.next_after(after)
    if first > until:
        return None
    count, prev, last = 1, None, first
    while count < limit:
        t = schedule.next_after(last)
        if t > until:
            return Dues(count, first, last, prev)
        count, prev, last = count + 1, last, t
    if schedule.next_after(last) > until:
        return Dues(count, first, last, prev)
    final = _last_before(schedule, last, until)
    return Dues(count, first, final, _last_before(schedule, last, final - timedelta(seconds=1)), capped=True)


def _last_before(schedule: Schedule, known: datetime, until: datetime) -> datetime:
    """The latest run time ≤ ``until``, given one known run time before it (for capped spans)."""
    if isinstance(schedule, Cron):
        prev = croniter(schedule.text, _utc(until) + timedelta(seconds=1)).get_prev(datetime)
        return max(known, prev.astimezone(timezone.utc))
    if isinstance(schedule, Window):
        candidate = schedule.next_after(until - timedelta(days=1))
        return candidate if candidate <= until else known
    return known


def upcoming(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` run times after ``after``."""
    out: list[datetime] = []
    t = after
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(t)
    return out
