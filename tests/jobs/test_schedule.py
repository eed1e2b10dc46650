"""The scheduler: cron expressions and windows, the config checks, and the scheduler itself driven by
an injected clock and sleep — real backups of fixture files (and of a live node) into local
repositories, a FIFO as a source whose backup lasts as long as the test wants, real signals.

No assertion depends on how long anything takes: the fake sleep advances the fake clock, and it
waits (with a generous bound that only guards against hangs) for every run that can finish to
finish before time moves on, so every event has a fixed place and time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from snaptool.cli.schedule import schedule_group
from snaptool.schedule import (ConfigError, Cron, EventLog, Scheduler, ScheduleError, Window, crontab,
                               due_between, job_line, load_config, parse_schedule, upcoming)
from snaptool.schedule.state import State
from snaptool.storage.catalog import Catalog
from snaptool.storage.lock import shared_lock
from snaptool.storage.repository import Repository

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "redis-7.0.rdb"
UTC = timezone.utc
T0 = datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC)


def at(hhmmss: str, day: int = 26) -> datetime:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return datetime(2026, 11, day, h, m, s, tzinfo=UTC)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a condition of the run (not for a duration): the bound only stops a hang."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.002)


def write_config(tmp_path: Path, text: str, name: str = "schedule.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class FakeTime:
    """The scheduler's clock and sleep. Before time moves, runs that can finish have finished; at
    given times, hooks run (feed a FIFO, send a signal, stop)."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.hooks: list[tuple[datetime, Callable[[], None]]] = []
        self.scheduler: Scheduler | None = None
        self.blocked: set[str] = set()  # sources whose runs wait for the test (FIFOs)
        self.extra_sleep: dict[datetime, timedelta] = {}  # oversleep after this time: a suspended host

    def clock(self) -> datetime:
        return self.now

    def at(self, when: datetime, hook: Callable[[], None]) -> None:
        self.hooks.append((when, hook))
        self.hooks.sort(key=lambda h: h[0])

    def settle(self) -> None:
        assert self.scheduler is not None
        wait_until(lambda: set(self.scheduler.running()) <= self.blocked, "quick runs to finish")

    def sleep(self, seconds: float) -> None:
        self.settle()
        target = self.now + timedelta(seconds=seconds)
        while self.hooks and self.hooks[0][0] <= target:  # hooks happen at their own time
            when, hook = self.hooks.pop(0)
            self.now = max(self.now, when)
            hook()
            self.settle()
        self.now = target
        for when in [w for w in self.extra_sleep if w <= self.now]:
            self.now += self.extra_sleep.pop(when)


def scheduler_for(config_path: Path, fake: FakeTime, *, fmt: str = "text",
                  out: io.StringIO | None = None) -> tuple[Scheduler, EventLog]:
    log = EventLog(out or io.StringIO(), fmt, keep=True)
    scheduler = Scheduler(load_config(str(config_path)), log=log, clock=fake.clock, sleep=fake.sleep,
                          max_nap=None, poll=0.01)
    fake.scheduler = scheduler
    return scheduler, log


def blocked_scheduler(tmp_path: Path, config_text: str, **kwargs: Any) -> tuple[Fifo, FakeTime, Scheduler, EventLog]:
    """A scheduler on ``config_text`` whose ``slow.rdb`` source is a FIFO that blocks until fed."""
    fifo = Fifo(tmp_path / "slow.rdb")
    fake = FakeTime(T0)
    fake.blocked = {fifo.key}
    scheduler, log = scheduler_for(write_config(tmp_path, config_text), fake, **kwargs)
    return fifo, fake, scheduler, log


def events(log: EventLog, event: str, job: str | None = None) -> list[dict[str, Any]]:
    return [e for e in log.events if e["event"] == event and (job is None or e.get("job") == job)]


def snapshot_ids(repo: Path) -> list[str]:
    return sorted(e.id for e in Catalog(Repository.open(str(repo))).list() if e.complete)


class Fifo:
    """A named pipe as a backup source: the backup opens it and waits until the test feeds it."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.key = os.path.realpath(path)

    def feed(self, scheduler: Scheduler, data: bytes | None = None) -> None:
        """Write one RDB into the pipe and wait until the run reading it has ended."""
        payload = FIXTURE.read_bytes() if data is None else data

        def write() -> None:
            with open(self.path, "wb") as f:
                f.write(payload)

        threading.Thread(target=write, daemon=True).start()
        wait_until(lambda: self.key not in scheduler.running(), "the FIFO run to end")

    def release(self) -> None:
        """Unblock a reader left waiting (test cleanup): open and close the write end."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        os.close(fd)


# --------------------------------------------------------------------------- cron expressions

@pytest.mark.parametrize("expr, start, expected", [
    ("30 2 * * *", at("02:30:00"), [at("02:30:00", 27), at("02:30:00", 28)]),  # strictly after
    ("30 2 * * *", at("02:29:59"), [at("02:30:00"), at("02:30:00", 27)]),
    ("*/15 * * * *", at("10:07:00"), [at("10:15:00"), at("10:30:00"), at("10:45:00")]),
    ("0 0 1 * *", at("12:00:00"), [datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)]),
    ("0 6 * * mon-fri", at("12:00:00"), [at("06:00:00", 27), at("06:00:00", 30)]),  # 26 Nov 2026 is a Thursday
    ("@daily", at("12:00:00"), [at("00:00:00", 27)]),
    ("@hourly", at("12:00:01"), [at("13:00:00")]),
])
def test_cron_expressions_give_their_utc_run_times(expr: str, start: datetime, expected: list[datetime]) -> None:
    schedule = parse_schedule(expr, "job")
    assert isinstance(schedule, Cron)
    assert upcoming(schedule, start, len(expected)) == expected
    assert schedule.cron_fields() == " ".join(expr.split())


@pytest.mark.parametrize("expr, message", [
    ("* * * * * *", "has 6 field(s)"),
    ("30 2 * *", "has 4 field(s)"),
    ("61 2 * * *", "out of range"),
    ("H 2 * * *", "minute 'H' is not standard cron syntax"),
    ("0 0 L * *", "day of month 'L'"),
    ("0 0 ? * *", "day of month '?'"),
    ("0 0 * * 5#3", "day of week '5#3'"),
    ("0 0 * mon * *", "has 6 field(s)"),
    ("0 0 * mon *", "month 'mon'"),
    ("@reboot", "has 1 field(s)"),
])
def test_only_standard_cron_syntax_is_accepted(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(expr, "job")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_due_between_counts_run_times_and_caps_huge_gaps() -> None:
    hourly = Cron.parse("0 * * * *")
    dues = due_between(hourly, at("07:00:00"), at("12:00:30"))
    assert dues is not None and (dues.count, dues.first, dues.last, dues.capped) == (5, at("08:00:00"),
                                                                                      at("12:00:00"), False)
    assert due_between(hourly, at("07:00:00"), at("07:59:59")) is None
    minutely = Cron.parse("* * * * *")
    big = due_between(minutely, at("00:00:00"), at("00:00:00") + timedelta(days=30), limit=1000)
    assert big is not None and big.capped and big.count == 1000
    assert big.last == at("00:00:00") + timedelta(days=30)  # the latest run time, not the 1000th


# --------------------------------------------------------------------------- windows

NAMES = [f"cache-{i}" for i in range(200)]


def test_window_starts_inside_the_window_every_day_at_a_minute_stable_per_job() -> None:
    minutes = set()
    for name in NAMES:
        window = Window.parse("05:00-06:00", name)
        runs = upcoming(window, at("12:00:00"), 5)
        assert at("05:00:00", 27) <= runs[0] < at("06:00:00", 27)
        assert {(r.hour, r.minute, r.second) for r in runs} == {(runs[0].hour, runs[0].minute, 0)}
        assert [r - runs[0] for r in runs] == [timedelta(days=d) for d in range(5)]
        again = parse_schedule("05:00-06:00", name)  # another process, another day: the same minute
        assert again.next_after(at("00:00:00", 28)) == runs[0] + timedelta(days=1)
        minutes.add(runs[0].minute)
    assert len(minutes) >= 45  # 200 jobs spread over most of the 60 minutes


def test_window_spread_across_midnight_and_its_edges() -> None:
    for name in NAMES[:50]:
        run = Window.parse("23:30-00:30", name).next_after(at("12:00:00"))
        assert at("23:30:00") <= run < at("00:30:00", 27)
    assert Window.parse("05:00-05:01", "x").next_after(at("12:00:00")) == at("05:00:00", 27)
    assert Window.parse("23:00-24:00", "x").next_after(at("12:00:00")).hour == 23
    window = Window.parse("05:00-06:00", "nightly")
    assert window.cron_fields() == f"{window.minute_of_day % 60} 5 * * *"
    for bad, message in [("06:00-06:00", "empty"), ("25:00-26:00", "hours are 00..23"),
                         ("05:60-06:00", "minutes 00..59")]:
        with pytest.raises(ScheduleError, match=message):
            parse_schedule(bad, "x")


# --------------------------------------------------------------------------- the config

GOOD = """
[scheduler]
state = "state/schedule.json"

[defaults]
repository = "repo"
retention = {{ last = 1 }}

[[job]]
name = "nightly"
source = "{fixture}"
schedule = "05:00-06:00"
tags = ["nightly"]
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(str(write_config(tmp_path, text)))
    assert all("\n" not in p for p in info.value.problems)
    return info.value.problems


def test_a_good_config_loads_with_defaults_and_paths_relative_to_it(tmp_path: Path) -> None:
    config = load_config(str(write_config(tmp_path, GOOD.format(fixture=FIXTURE))))
    (job,) = config.jobs
    assert config.state == str(tmp_path / "state" / "schedule.json") and config.catch_up
    assert job.repository == str(tmp_path / "repo") and job.kind == "automatic" and job.tags == ("nightly",)
    assert job.retention is not None and job.retention.policy.last == 1 and job.retention.group_by == ("source",)
    assert isinstance(job.schedule, Window)


@pytest.mark.parametrize("job_toml, message", [
    ('source = "a.rdb"\nrepository = "r"', "job 'a': schedule: missing"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "61 2 * * *"', "job 'a': schedule: '61 2 * * *'"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "25:00-26:00"', "job 'a': schedule: '25:00-26:00': hours"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nsched = 1', "job 'a': unknown field 'sched'"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nkind = "weekly"', "job 'a': kind: must be manual or"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\ntags = [1]', "job 'a': tags: must be a list"),
    ('source = "a.rdb"\nrepository = "ftp://x"\nschedule = "@daily"', "job 'a': repository: 'ftp://x'"),
    ('source = "redis://h:99999"\nrepository = "r"\nschedule = "@daily"', "job 'a': source: invalid node URL"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nretention = { keep_last = 1 }',
     "job 'a': retention: unknown field 'keep_last'"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nretention = { last = -1 }',
     "job 'a': retention: last: give a whole number"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nretention = { within = "7x" }',
     "job 'a': retention: duration '7x'"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nretention = { retention_days = 40 }',
     "job 'a': retention: retention_days: give 0 to 35"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nretention = { include_manual = true }',
     "job 'a': retention: no rule"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nencryption = { scheme = "passphrase", '
     'passphrase = "x" }', "job 'a': encryption: passphrase: a config file holds no secret"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nencryption = { scheme = "rot13" }',
     "job 'a': encryption: unknown encryption scheme 'rot13'"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nencryption = { scheme = "age" }',
     "job 'a': encryption: scheme age needs recipients or recipients_files"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nencryption = { scheme = "age", key = "k" }',
     "job 'a': encryption: unknown field 'key'"),
    ('source = "a.rdb"\nrepository = "s3://b/p"\nschedule = "@daily"\ns3 = { secret_access_key = "k" }',
     "job 'a': s3: secret_access_key: a config file holds no secret"),
    ('source = "a.rdb"\nrepository = "s3://b/p"\nschedule = "@daily"\ns3 = { sse = "rot13" }',
     "job 'a': s3: S3 settings: SSE must be"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\ns3 = { region = "eu-west-1" }',
     "job 'a': s3: S3 settings given, but neither the repository nor the source is on AWS"),
    ('source = "elasticache://cache-prod"\nrepository = "r"\nschedule = "@daily"', "job 'a': elasticache: missing"),
    ('source = "elasticache://Cache_Prod"\nrepository = "r"\nschedule = "@daily"\n'
     'elasticache = { export_bucket = "b" }',
     "job 'a': source: 'elasticache://Cache_Prod': 'cache_prod' is not a replication group or cluster id"),
    ('source = "elasticache://c?zone=x"\nrepository = "r"\nschedule = "@daily"\nelasticache = { export_bucket = "b" }',
     "job 'a': source: 'elasticache://c?zone=x': unknown parameter 'zone'"),
    ('source = "elasticache://c"\nrepository = "r"\nschedule = "@daily"\nelasticache = { keep_source = true }',
     "job 'a': elasticache: export_bucket: missing"),
    ('source = "elasticache://c"\nrepository = "r"\nschedule = "@daily"\nelasticache = { bucket = "b" }',
     "job 'a': elasticache: unknown field 'bucket' (fields: export_bucket, keep_source, keep_export, "
     "grant_elasticache, poll_seconds)"),
    ('source = "elasticache://c"\nrepository = "r"\nschedule = "@daily"\n'
     'elasticache = { export_bucket = "b", keep_source = "yes" }', "job 'a': elasticache: keep_source: must be true"),
    ('source = "elasticache://c"\nrepository = "r"\nschedule = "@daily"\n'
     'elasticache = { export_bucket = "b", poll_seconds = 0 }',
     "job 'a': elasticache: poll_seconds: must be a positive"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nelasticache = { export_bucket = "b" }',
     "job 'a': elasticache: given, but the source is not elasticache://"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\npin = "yes"', "job 'a': pin: must be true or false"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nlock_wait = "5x"',
     "job 'a': lock_wait: duration '5x': give seconds or a duration such as 90s, 10m, 1h30m"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\nlock_wait = -1',
     "job 'a': lock_wait: give seconds ≥ 0"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\npassword_file = "nope"', "job 'a': password_file:"),
    ('source = "a.rdb"\nrepository = "r"\nschedule = "@daily"\ntimeout = 0', "job 'a': timeout: must be a positive"),
])
def test_each_problem_is_one_line_naming_job_and_field(tmp_path: Path, job_toml: str, message: str) -> None:
    problems = problems_of(tmp_path, f'[[job]]\nname = "a"\n{job_toml}\n')
    assert any(message in p for p in problems), problems
    assert all(p.startswith(str(tmp_path / "schedule.toml") + ": ") for p in problems)


def test_every_problem_of_the_file_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, """
[scheduler]
catch_up = "yes"
[[job]]
name = "a"
source = "a.rdb"
repository = "r"
schedule = "* * *"
[[job]]
name = "a"
source = "b.rdb"
repository = "r"
schedule = "@daily"
[[job]]
name = "b c"
""")
    joined = "\n".join(problems)
    assert "scheduler: catch_up: must be true or false" in joined
    assert "job 'a': schedule: '* * *' has 3 field(s)" in joined
    assert "job #3: name:" in joined
    assert len(problems) == 3
    assert "no jobs" in problems_of(tmp_path, "[scheduler]\n")[0]
    assert "not valid TOML" in problems_of(tmp_path, "[[job]\n")[0]


def test_jobs_sharing_a_repository_must_share_retention(tmp_path: Path) -> None:
    text = """
[[job]]
name = "a"
source = "a.rdb"
repository = "r"
schedule = "@daily"
retention = { last = 3 }
[[job]]
name = "b"
source = "b.rdb"
repository = "./r/"
schedule = "@daily"
retention = { daily = 7 }
"""
    (problem,) = problems_of(tmp_path, text)
    assert "job 'b': retention: differs from job 'a', which uses the same repository" in problem
    load_config(str(write_config(tmp_path, text.replace('"./r/"', '"other"'))))


def test_every_source_backup_takes_and_its_options_load_and_reach_backup(tmp_path: Path) -> None:
    from snaptool.cli.repo import backup_command
    from snaptool.schedule.execute import backup_options

    config = load_config(str(write_config(tmp_path, f"""
[defaults]
repository = "repo"
schedule = "@daily"
[[job]]
name = "file"
source = "{FIXTURE}"
pin = true
lock_wait = "2m"
[[job]]
name = "node"
source = "redis://10.0.0.5:6379/2"
lock_wait = 0
[[job]]
name = "tls"
source = "rediss://10.0.0.6:6380"
[[job]]
name = "object"
source = "s3://dumps/redis/dump.rdb"
s3 = {{ region = "eu-west-1" }}
[[job]]
name = "web"
source = "https://example.com/dump.rdb"
[[job]]
name = "managed"
source = "elasticache://cache-prod?region=eu-west-1"
s3 = {{ profile = "backups" }}
elasticache = {{ export_bucket = "cache-exports", keep_source = true, poll_seconds = 5 }}
tags = ["managed"]
""")))
    jobs = {job.name: job for job in config.jobs}
    assert jobs["file"].pin and not jobs["node"].pin
    assert (jobs["file"].lock_wait, jobs["node"].lock_wait, jobs["tls"].lock_wait) == (120, 0, 600)
    managed = backup_options(jobs["managed"])
    assert (managed.export_bucket, managed.keep_source, managed.keep_export, managed.poll_seconds) == \
        ("cache-exports", True, False, 5.0)
    assert managed.source_s3 is not None and managed.source_s3.profile == "backups"
    assert backup_options(jobs["file"]).pinned and backup_options(jobs["file"]).lock_wait == 120
    assert backup_options(jobs["object"]).source_s3.region == "eu-west-1"
    line, _ = job_line(jobs["managed"])
    assert "--export-bucket cache-exports --keep-source --poll-seconds 5" in line and "--lock-wait 10m" in line
    assert "--pin" in job_line(jobs["file"])[0] and "--lock-wait 2m" in job_line(jobs["file"])[0]
    assert "--lock-wait" not in job_line(jobs["node"])[0]
    for job in config.jobs:  # every crontab line is one that `snaptool backup` accepts
        args = shlex.split(job_line(job)[0])
        context = backup_command.make_context("backup", args[args.index("backup") + 1:])
        assert context.params["source"] == job.source


def test_the_documented_example_is_a_valid_config(tmp_path: Path) -> None:
    """docs/scheduling.md's full example loads (its key and password files made here)."""
    text = (ROOT / "docs" / "scheduling.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    data = tomllib.loads(example)
    from snaptool.crypto import X25519Identity
    from snaptool.schedule import parse_config

    (tmp_path / "secret").write_text("secret\n")
    for table in [data["defaults"], *data["job"]]:  # the files it names exist on a real host only
        if "password_file" in table:
            table["password_file"] = str(tmp_path / "secret")
        for key in table.get("tls", {}):
            table["tls"][key] = str(tmp_path / "secret")
        encryption = table.get("encryption", {})
        if "recipients" in encryption:  # a fresh key, so the test does not depend on the example's
            encryption["recipients"] = [str(X25519Identity.generate().recipient)]
        if "passphrase_file" in encryption:
            encryption["passphrase_file"] = str(tmp_path / "secret")
    config = parse_config(data, str(tmp_path / "schedule.toml"))
    assert len(config.jobs) == len(data["job"]) >= 3
    sessions = next(j for j in config.jobs if j.name == "sessions")
    assert isinstance(sessions.schedule, Window)  # the minute the page shows is the one the job gets
    minute = sessions.schedule.minute_of_day
    assert f"this job at {minute // 60:02d}:{minute % 60:02d}" in text
    assert f'schedule: "{sessions.schedule.cron_fields()}"' in text


# --------------------------------------------------------------------------- the scheduler

def test_overlapping_runs_of_one_source_are_skipped_while_another_source_runs(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "quick.rdb")
    fifo, fake, scheduler, log = blocked_scheduler(tmp_path, """
[defaults]
repository = "repo"
schedule = "* * * * *"
[[job]]
name = "slow"
source = "slow.rdb"
[[job]]
name = "slow-again"
source = "./slow.rdb"
[[job]]
name = "quick"
source = "quick.rdb"
""")
    fake.at(at("00:02:30"), lambda: fifo.feed(scheduler))
    fake.at(at("00:03:30"), lambda: (scheduler.request_stop("test over"), fifo.feed(scheduler)))
    try:
        counts = scheduler.run_forever()
    finally:
        fifo.release()
    starts = [(e["job"], e["time"]) for e in events(log, "start")]
    assert starts == [("slow", "2026-11-26T00:01:00Z"), ("quick", "2026-11-26T00:01:00Z"),
                      ("quick", "2026-11-26T00:02:00Z"),
                      ("slow", "2026-11-26T00:03:00Z"), ("quick", "2026-11-26T00:03:00Z")]
    skipped = [(e["job"], e["scheduled"], e["running"]) for e in events(log, "skipped")]
    assert skipped == [("slow-again", "2026-11-26T00:01:00Z", "slow"), ("slow", "2026-11-26T00:02:00Z", "slow"),
                       ("slow-again", "2026-11-26T00:02:00Z", "slow"), ("slow-again", "2026-11-26T00:03:00Z", "slow")]
    finishes = [(e["job"], e["time"], e.get("overran")) for e in events(log, "finish", "slow")]
    assert finishes == [("slow", "2026-11-26T00:02:30Z", 3), ("slow", "2026-11-26T00:03:30Z", 1)]
    assert len(events(log, "finish", "quick")) == 3
    assert (counts.runs, counts.succeeded, counts.failed, counts.skipped, counts.missed) == (5, 5, 0, 4, 0)
    assert len(snapshot_ids(tmp_path / "repo")) == 5  # no retention: every snapshot stays
    assert log.events[-1]["event"] == "scheduler_stop"


def test_runs_missed_while_the_scheduler_was_down_are_reported_and_run_once(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "a.rdb")
    shutil.copy(FIXTURE, tmp_path / "b.rdb")
    config = write_config(tmp_path, """
[scheduler]
state = "state.json"
[defaults]
repository = "repo"
[[job]]
name = "daily"
source = "a.rdb"
schedule = "05:00-06:00"
[[job]]
name = "hourly"
source = "b.rdb"
schedule = "0 * * * *"
[[job]]
name = "new"
source = "c.rdb"
schedule = "0 * * * *"
""")
    daily = Window.parse("05:00-06:00", "daily")
    last_daily = daily.next_after(at("00:00:00", 23))  # ran on the 23rd; the 24th, 25th and 26th missed
    state = State(str(tmp_path / "state.json"))
    state.record("daily", last_daily)
    state.record("hourly", at("07:00:00"))
    fake = FakeTime(at("12:00:30"))
    scheduler, log = scheduler_for(config, fake)
    fake.at(at("12:10:00"), lambda: scheduler.request_stop("test over"))
    counts = scheduler.run_forever()
    missed = {e["job"]: (e["count"], e["first"], e["last"], e["action"]) for e in events(log, "missed")}
    assert missed == {
        "daily": (3, (last_daily + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  (last_daily + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), "running once now"),
        "hourly": (5, "2026-11-26T08:00:00Z", "2026-11-26T12:00:00Z", "running once now"),
    }  # "new" has no state yet: nothing is known about it, nothing is missed
    assert [(e["job"], e["time"]) for e in events(log, "start")] == [("daily", "2026-11-26T12:00:30Z"),
                                                                    ("hourly", "2026-11-26T12:00:30Z")]
    assert (counts.runs, counts.missed, counts.succeeded) == (2, 8, 2)
    assert len(snapshot_ids(tmp_path / "repo")) == 2  # one run each, not a burst
    again = State(str(tmp_path / "state.json"))
    assert again.last("hourly") == at("12:00:00") and again.last("daily") == last_daily + timedelta(days=3)


def test_without_catch_up_missed_runs_are_only_reported(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "b.rdb")
    config = write_config(tmp_path, """
[scheduler]
state = "state.json"
catch_up = false
[[job]]
name = "hourly"
source = "b.rdb"
repository = "repo"
schedule = "0 * * * *"
""")
    State(str(tmp_path / "state.json")).record("hourly", at("07:00:00"))
    fake = FakeTime(at("12:00:30"))
    scheduler, log = scheduler_for(config, fake)
    fake.at(at("12:30:00"), lambda: scheduler.request_stop("test over"))
    counts = scheduler.run_forever()
    (missed,) = events(log, "missed")
    assert missed["count"] == 5 and missed["action"] == "not run: catch_up is off"
    assert events(log, "start") == [] and counts.runs == 0 and counts.missed == 5


def test_a_suspended_host_misses_runs_and_runs_once_on_waking(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "b.rdb")
    config = write_config(tmp_path, """
[[job]]
name = "hourly"
source = "b.rdb"
repository = "repo"
schedule = "0 * * * *"
""")
    fake = FakeTime(at("00:30:00"))
    fake.extra_sleep[at("01:00:00")] = timedelta(hours=3, minutes=20)  # the sleep before 01:00 overslept
    scheduler, log = scheduler_for(config, fake)
    fake.at(at("05:30:00"), lambda: scheduler.request_stop("test over"))
    counts = scheduler.run_forever()
    (missed,) = events(log, "missed")
    assert (missed["count"], missed["first"], missed["last"]) == (3, "2026-11-26T01:00:00Z", "2026-11-26T03:00:00Z")
    assert [e["time"] for e in events(log, "start")] == ["2026-11-26T04:20:00Z", "2026-11-26T05:00:00Z"]
    assert [e["scheduled"] for e in events(log, "start")] == ["2026-11-26T04:00:00Z", "2026-11-26T05:00:00Z"]
    assert (counts.runs, counts.missed) == (2, 3)


def test_failures_are_logged_in_one_line_counted_and_scheduling_goes_on(tmp_path: Path) -> None:
    (tmp_path / "garbage.rdb").write_bytes(b"REDIS0011" + b"\xfe" * 20)
    shutil.copy(FIXTURE, tmp_path / "good.rdb")
    config = write_config(tmp_path, """
[defaults]
repository = "repo"
schedule = "*/10 * * * *"
[[job]]
name = "corrupt"
source = "garbage.rdb"
[[job]]
name = "missing"
source = "nowhere.rdb"
[[job]]
name = "good"
source = "good.rdb"
""")
    fake = FakeTime(T0)
    out = io.StringIO()
    scheduler, log = scheduler_for(config, fake, out=out)
    fake.at(at("00:25:00"), lambda: scheduler.request_stop("test over"))
    counts = scheduler.run_forever()
    failures = events(log, "failure")
    assert sorted((e["job"], e["time"]) for e in failures) == [
        ("corrupt", "2026-11-26T00:10:00Z"), ("corrupt", "2026-11-26T00:20:00Z"),
        ("missing", "2026-11-26T00:10:00Z"), ("missing", "2026-11-26T00:20:00Z")]
    missing = next(e for e in failures if e["job"] == "missing")["error"]
    assert missing == f"{tmp_path / 'nowhere.rdb'}: No such file or directory"
    corrupt = next(e for e in failures if e["job"] == "corrupt")["error"]
    assert str(tmp_path / "garbage.rdb") in corrupt and "offset" in corrupt
    assert all(e["level"] == "error" and e["stage"] == "backup" for e in failures)
    assert len(events(log, "finish", "good")) == 2
    assert (counts.runs, counts.succeeded, counts.failed) == (6, 2, 4)
    text = out.getvalue().splitlines()
    assert len(text) == len(log.events)  # one line per event
    assert any(line.startswith("2026-11-26T00:10:00Z missing: FAILED after") for line in text)
    assert snapshot_ids(tmp_path / "repo") and len(snapshot_ids(tmp_path / "repo")) == 2


def test_a_prune_that_cannot_lock_the_repository_is_a_counted_failure(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "a.rdb")
    config = write_config(tmp_path, """
[[job]]
name = "a"
source = "a.rdb"
repository = "repo"
schedule = "*/10 * * * *"
retention = { last = 1, retry_lock = 0 }
""")
    fake = FakeTime(T0)
    scheduler, log = scheduler_for(config, fake)
    fake.at(at("00:15:00"), lambda: scheduler.request_stop("test over"))
    repo = Repository.open(str(tmp_path / "repo"))
    with shared_lock(repo, "restore", renew=False):  # another process restoring: prune must wait or fail
        counts = scheduler.run_forever()
    (failure,) = events(log, "prune_failure")
    assert "is locked" in failure["error"] and failure["level"] == "error"
    assert (counts.succeeded, counts.failed, counts.prune_failures) == (1, 0, 1)
    assert events(log, "finish", "a") and not events(log, "prune")


def test_a_prune_waits_for_the_other_backups_into_its_repository(tmp_path: Path) -> None:
    """Backups hold a shared repository lease; the prune a finished job asks for runs when the last
    backup into that repository ends, instead of failing on the lock."""
    shutil.copy(FIXTURE, tmp_path / "quick.rdb")
    fifo, fake, scheduler, log = blocked_scheduler(tmp_path, """
[defaults]
repository = "repo"
schedule = "* * * * *"
retention = { last = 1, retry_lock = 0 }
[[job]]
name = "slow"
source = "slow.rdb"
[[job]]
name = "quick"
source = "quick.rdb"
""")
    fake.at(at("00:02:30"), lambda: (scheduler.request_stop("test over"), fifo.feed(scheduler)))
    try:
        counts = scheduler.run_forever()
    finally:
        fifo.release()
    deferred = [(e["job"], e["time"], e["backups"]) for e in events(log, "prune_deferred")]
    assert deferred == [("quick", "2026-11-26T00:01:00Z", 1), ("quick", "2026-11-26T00:02:00Z", 1)]
    (pruned,) = events(log, "prune")
    assert (pruned["job"], pruned["time"], pruned["removed"]) == ("slow", "2026-11-26T00:02:30Z", 1)
    assert not events(log, "prune_failure") and counts.prune_failures == 0 and counts.succeeded == 3
    assert len(snapshot_ids(tmp_path / "repo")) == 2  # the newest of each source


def test_a_pinned_scheduled_snapshot_is_kept_by_the_prune_after_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"""
[defaults]
source = "{FIXTURE}"
repository = "repo"
schedule = "@daily"
retention = {{ last = 1 }}
[[job]]
name = "keep"
pin = true
[[job]]
name = "plain"
""")
    for job in ("keep", "plain", "plain"):
        time.sleep(1 - time.time() % 1)  # snapshot times have whole seconds: no two in the same one
        result = run_cli("run", "--config", str(config), "--once", "--log-format", "json", "--job", job)
        assert result.exit_code == 0, result.output
    repo = Repository.open(str(tmp_path / "repo"))
    manifests = Catalog(repo).complete()
    pinned = [m for m in manifests if m.pinned]
    assert len(manifests) == 2 and len(pinned) == 1  # the pinned one, and the newest plain one
    from snaptool.jobs.prune import Policy, prune

    decisions = {d.id: d for d in prune(repo, Policy(last=1), dry_run=True).decisions}
    assert "pinned" in decisions[pinned[0].id].reasons and decisions[pinned[0].id].outcome == "kept"


def lock_wait_config(tmp_path: Path, wait: str) -> Path:
    return write_config(tmp_path, f"""
[[job]]
name = "nightly"
source = "{FIXTURE}"
repository = "repo"
schedule = "@daily"
lock_wait = "{wait}"
""")


def test_a_scheduled_backup_waits_for_a_prune_lock_held_elsewhere_and_says_so(tmp_path: Path) -> None:
    from snaptool.storage.lock import acquire

    repo = Repository.open(str(tmp_path / "repo"))
    holder = acquire(repo, "exclusive", "prune")  # another process's prune, as far as the scheduler knows
    out = io.StringIO()
    log = EventLog(out, "text", keep=True)

    def hooked(when: datetime, event: str, job: str | None = None, **fields: Any) -> None:
        log(when, event, job, **fields)
        if event == "lock_wait":
            holder.release()  # the prune ends while the backup waits

    scheduler = Scheduler(load_config(str(lock_wait_config(tmp_path, "5m"))), log=hooked, poll=0.01)
    counts = scheduler.run_once()
    (waited,) = events(log, "lock_wait", "nightly")
    assert waited["level"] == "warning" and waited["seconds"] == 300 and waited["repository"] == repo.url
    assert waited["blocker"].startswith(f"exclusive lock locks/{holder.info.name}: prune (pid {os.getpid()} on ")
    assert f"nightly: waiting up to 5m for the lock of {repo.url}: exclusive lock" in out.getvalue()
    (finish,) = events(log, "finish", "nightly")
    assert counts.succeeded == 1 and snapshot_ids(tmp_path / "repo") == [finish["snapshot"]]


def test_a_scheduled_backup_gives_up_after_its_lock_wait(tmp_path: Path) -> None:
    from snaptool.storage.lock import acquire, list_locks

    repo = Repository.open(str(tmp_path / "repo"))
    holder = acquire(repo, "exclusive", "gc")  # never released while the backup waits
    log = EventLog(io.StringIO(), "json", keep=True)
    try:
        counts = Scheduler(load_config(str(lock_wait_config(tmp_path, "1s"))), log=log, poll=0.01).run_once()
        assert len(events(log, "lock_wait", "nightly")) == 1
        (failure,) = events(log, "failure", "nightly")
        assert failure["error"].startswith(f"repository {repo.url} is locked: "
                                           f"exclusive lock locks/{holder.info.name}: gc")
        assert failure["error"].endswith("(still locked after waiting 1s)")
        assert counts.failed == 1 and snapshot_ids(tmp_path / "repo") == []
        assert [x.name for x in list_locks(repo)] == [holder.info.name]
    finally:
        holder.release()


def test_json_log_lines_parse_and_carry_what_each_event_needs(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "quick.rdb")
    (tmp_path / "bad.rdb").write_bytes(b"nonsense")
    out = io.StringIO()
    fifo, fake, scheduler, log = blocked_scheduler(tmp_path, """
[defaults]
repository = "repo"
schedule = "* * * * *"
retention = { last = 2 }
[[job]]
name = "slow"
source = "slow.rdb"
[[job]]
name = "quick"
source = "quick.rdb"
[[job]]
name = "bad"
source = "bad.rdb"
""", fmt="json", out=out)
    fake.at(at("00:02:30"), lambda: (scheduler.request_stop("test over"), fifo.feed(scheduler)))
    try:
        scheduler.run_forever()
    finally:
        fifo.release()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == log.events and all(datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in lines)
    need = {"scheduler_start": {"jobs", "config", "state"}, "next": {"job", "at", "schedule"},
            "start": {"job", "source", "repository", "scheduled", "kind", "tags"},
            "finish": {"job", "snapshot", "keys", "bytes", "seconds"}, "failure": {"job", "error", "seconds"},
            "prune": {"job", "repository", "removed", "kept", "bytes", "failed"},
            "prune_deferred": {"job", "repository", "backups"},
            "skipped": {"job", "scheduled", "running", "since", "count"}, "stopping": {"signal", "running"},
            "scheduler_stop": {"runs", "succeeded", "failed", "skipped", "missed", "prune_failures"}}
    seen = {e["event"] for e in lines}
    assert seen == set(need)
    for e in lines:
        assert need[e["event"]] <= set(e), e
        assert e["level"] in ("info", "warning", "error")
    finish = next(e for e in lines if e["event"] == "finish" and e["job"] == "quick")
    assert finish["keys"] == 237 and finish["bytes"] == FIXTURE.stat().st_size
    assert isinstance(finish["seconds"], float) and finish["snapshot"] in snapshot_ids(tmp_path / "repo")
    assert next(e for e in lines if e["event"] == "failure")["job"] == "bad"
    assert next(e for e in lines if e["event"] == "stopping")["signal"] == "test over"


def slow_job_signalled(tmp_path: Path, signum: int) -> tuple[Fifo, Scheduler, EventLog]:
    """A job whose source (a FIFO) blocks until fed, and ``signum`` sent to this process at 00:01:30."""
    fifo, fake, scheduler, log = blocked_scheduler(tmp_path, """
[[job]]
name = "slow"
source = "slow.rdb"
repository = "repo"
schedule = "* * * * *"
""")
    fake.at(at("00:01:30"), lambda: os.kill(os.getpid(), signum))
    return fifo, scheduler, log


def test_sigterm_lets_the_running_job_finish_and_starts_nothing_new(tmp_path: Path) -> None:
    fifo, scheduler, log = slow_job_signalled(tmp_path, signal.SIGTERM)
    before = signal.getsignal(signal.SIGTERM)

    def feed_once_stopping() -> None:
        wait_until(lambda: events(log, "stopping"), "the stopping event")
        fifo.feed(scheduler)

    feeder = threading.Thread(target=feed_once_stopping, daemon=True)
    feeder.start()
    try:
        with scheduler.signals():
            counts = scheduler.run_forever()
    finally:
        fifo.release()
    feeder.join(30)
    names = [e["event"] for e in log.events if e["event"] not in ("next",)]
    assert names == ["scheduler_start", "start", "stopping", "finish", "scheduler_stop"]
    assert events(log, "stopping")[0]["signal"] == "SIGTERM" and not counts.aborted
    assert (counts.runs, counts.succeeded) == (1, 1) and len(snapshot_ids(tmp_path / "repo")) == 1
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


def test_a_second_signal_aborts_leaving_the_snapshot_incomplete(tmp_path: Path) -> None:
    fifo, scheduler, log = slow_job_signalled(tmp_path, signal.SIGINT)
    half, done = FIXTURE.read_bytes()[:40_000], threading.Event()
    repo = Repository.open(str(tmp_path / "repo"))

    def write_half() -> None:  # the backup gets half the file, then the source stalls
        with open(fifo.path, "wb") as f:
            f.write(half)
            f.flush()
            done.wait(60)

    def interrupt_again() -> None:
        wait_until(lambda: events(log, "stopping"), "the stopping event")
        wait_until(lambda: Catalog(repo).list(), "the backup to be writing")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=write_half, daemon=True).start()
    threading.Thread(target=interrupt_again, daemon=True).start()
    try:
        with scheduler.signals():
            counts = scheduler.run_forever()
        assert counts.aborted
        assert [e["event"] for e in log.events][-3:] == ["stopping", "aborting", "scheduler_stop"]
        assert events(log, "aborting")[0]["running"] == ["slow"]
        (entry,) = Catalog(repo).list()
        assert not entry.complete  # never restored; gc removes it
    finally:
        done.set()
        fifo.release()


# --------------------------------------------------------------------------- end to end, CLI

def run_cli(*args: str) -> Any:
    return CliRunner().invoke(schedule_group, list(args), catch_exceptions=False)


def test_run_once_backs_up_the_fixture_and_prunes_to_the_last_snapshot(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"""
[[job]]
name = "r70"
source = "{FIXTURE}"
repository = "repo"
schedule = "05:00-06:00"
tags = ["nightly"]
retention = {{ last = 1 }}
""")
    first = run_cli("run", "--config", str(config), "--once", "--log-format", "json")
    assert first.exit_code == 0, first.output
    (only,) = snapshot_ids(tmp_path / "repo")
    second_started = only.split("-", 1)[0]
    wait_until(lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") > second_started,
               "the next second, so the second snapshot is the newer one")
    second = run_cli("run", "--config", str(config), "--once", "--log-format", "json")
    assert second.exit_code == 0, second.output
    lines = [json.loads(line) for line in second.output.splitlines()]
    (finish,) = [e for e in lines if e["event"] == "finish"]
    (prune,) = [e for e in lines if e["event"] == "prune"]
    assert snapshot_ids(tmp_path / "repo") == [finish["snapshot"]]  # exactly one: the newest
    assert (prune["removed"], prune["kept"], prune["failed"]) == (1, 1, 0)
    manifest = Catalog(Repository.open(str(tmp_path / "repo"))).resolve("latest")
    assert manifest.kind == "automatic" and manifest.tags == ["nightly"]
    assert manifest.files[0].sha256 == hashlib.sha256(FIXTURE.read_bytes()).hexdigest()


def test_run_once_exit_status_and_encryption_passed_through(tmp_path: Path) -> None:
    from snaptool.crypto import X25519Identity

    identity = X25519Identity.generate()
    (tmp_path / "passphrase").write_text("correct horse\n")
    config = write_config(tmp_path, f"""
[defaults]
repository = "repo"
schedule = "@daily"
[[job]]
name = "age"
source = "{FIXTURE}"
encryption = {{ scheme = "age", recipients = ["{identity.recipient}"] }}
[[job]]
name = "passphrase"
source = "{ROOT / 'fixtures' / 'valkey-8.1.rdb'}"
encryption = {{ scheme = "passphrase", passphrase_file = "passphrase", work_factor = 10 }}
[[job]]
name = "broken"
source = "missing.rdb"
""")
    result = run_cli("run", "--config", str(config), "--once")
    assert result.exit_code == 0  # a failed job alone never fails the scheduler
    assert "broken: FAILED" in result.output and "1 failed" in result.output
    by_scheme = {m.encryption["scheme"]: m for m in (e.manifest for e in Catalog(Repository.open(
        str(tmp_path / "repo"))).list()) if m is not None}
    assert set(by_scheme) == {"age", "passphrase"}
    assert by_scheme["age"].encryption["recipients"] == [str(identity.recipient)]
    assert by_scheme["passphrase"].encryption["work_factor"] == 10
    assert all(f.name.endswith(".rdb.age") for m in by_scheme.values() for f in m.files)
    strict = CliRunner().invoke(schedule_group, ["run", "--config", str(config), "--once", "--job", "broken",
                                                 "--fail-on-error"])
    assert strict.exit_code == 1 and "1 of 1 run(s) failed" in str(strict.exception)


def test_run_once_backs_up_a_live_node(tmp_path: Path, engine_server: Callable[..., Any]) -> None:
    server = engine_server("redis-7.0", config={"requirepass": "s3cret", "repl-diskless-sync": "no"})
    client = server.client()
    for i in range(500):
        client.set(f"key:{i}", "v" * i)
    (tmp_path / "pw").write_text("s3cret\n")
    config = write_config(tmp_path, f"""
[[job]]
name = "node"
source = "{server.url}"
password_file = "pw"
repository = "repo"
schedule = "*/5 * * * *"
retention = {{ last = 1 }}
""")
    result = run_cli("run", "--config", str(config), "--once", "--log-format", "json")
    lines = [json.loads(line) for line in result.output.splitlines()]
    (finish,) = [e for e in lines if e["event"] == "finish"]
    assert finish["keys"] == client.dbsize() == 500
    assert "s3cret" not in result.output


def test_next_lists_upcoming_runs_soonest_first(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"""
[defaults]
repository = "repo"
[[job]]
name = "nightly"
source = "{FIXTURE}"
schedule = "05:00-06:00"
[[job]]
name = "quarterly"
source = "redis://u:pw@10.0.0.5:6379"
schedule = "*/15 * * * *"
""")
    result = run_cli("next", "--config", str(config), "--count", "2", "--from", "2026-11-26T05:00:00Z", "--json")
    runs = json.loads(result.output)
    minute = Window.parse("05:00-06:00", "nightly").minute_of_day % 60
    expected = sorted([(f"2026-11-26T05:{minute:02d}:00Z", "nightly"), (f"2026-11-27T05:{minute:02d}:00Z", "nightly"),
                       ("2026-11-26T05:15:00Z", "quarterly"), ("2026-11-26T05:30:00Z", "quarterly")])
    assert [(r["time"], r["job"]) for r in runs] == expected
    assert all("pw@" not in r["source"] for r in runs)
    text = run_cli("next", "--config", str(config), "--from", "2026-11-26T05:00:00Z").output.splitlines()
    assert len(text) == 6 and text[0].startswith("2026-11-26T05:")


def test_crontab_lines_run_the_same_backup_and_prune(tmp_path: Path) -> None:
    program = Path(sys.executable).parent / "snaptool"
    if not program.exists():
        pytest.skip("the snaptool command is not installed next to this Python")
    config = write_config(tmp_path, f"""
[[job]]
name = "nightly"
source = "{FIXTURE}"
repository = "repo 100%"
schedule = "05:00-06:00"
tags = ["nightly"]
retention = {{ last = 1, retry_lock = 0 }}
""")
    result = run_cli("crontab", "--config", str(config), "--snaptool", str(program))
    lines = [line for line in result.output.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "CRON_TZ=UTC"
    fields = lines[1].split(" ", 5)
    minute = Window.parse("05:00-06:00", "nightly").minute_of_day % 60
    assert fields[:5] == [str(minute), "5", "*", "*", "*"]
    command = fields[5].replace("\\%", "%")  # what cron hands to sh
    assert " && " in command and "--keep-last 1" in command and "--kind automatic --tag nightly" in command
    for _ in range(2):
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    (only,) = snapshot_ids(tmp_path / "repo 100%")
    assert Catalog(Repository.open(str(tmp_path / "repo 100%"))).resolve(only).tags == ["nightly"]


def test_crontab_names_what_cron_cannot_express(tmp_path: Path) -> None:
    config = write_config(tmp_path, """
[[job]]
name = "cache"
source = "redis://backup:pw@10.0.0.5:6379"
repository = "s3://bucket/redis"
s3 = { region = "eu-west-1", storage_class = "STANDARD_IA" }
schedule = "30 2 * * *"
encryption = { scheme = "kms", kms_key_ids = ["alias/a", "alias/b"] }
retention = { daily = 7, weekly = 4, within = "36h", group_by = "none" }
""")
    (job,) = load_config(str(config)).jobs
    line, notes = job_line(job)
    assert line.startswith("30 2 * * * snaptool backup redis://backup@10.0.0.5:6379 --repo s3://bucket/redis "
                           "--s3-region eu-west-1 --kind automatic --lock-wait 10m --encrypt kms --kms-key-id alias/a "
                           "--kms-key-id alias/b && snaptool prune --repo s3://bucket/redis --s3-region eu-west-1 "
                           "--keep-daily 7 --keep-weekly 4 --keep-within 36h --group-by none --retry-lock 600")
    assert "pw" not in line
    assert any("password is left out" in n for n in notes) and any("storage_class" in n for n in notes)
    assert "#   s3 storage_class" in crontab(load_config(str(config)))


def test_check_prints_each_job_or_every_problem(tmp_path: Path) -> None:
    good = write_config(tmp_path, GOOD.format(fixture=FIXTURE))
    result = run_cli("check", "--config", str(good))
    assert result.exit_code == 0 and "1 job(s) OK" in result.output and "window 05:00-06:00" in result.output
    bad = write_config(tmp_path, '[[job]]\nname = "a"\n[[job]]\nname = "b"\nschedule = "x"\n', "bad.toml")
    failed = CliRunner().invoke(schedule_group, ["check", "--config", str(bad)])
    assert failed.exit_code == 1
    lines = [line for line in failed.stderr.splitlines() if line.startswith("snaptool: error: ")]
    assert len(lines) >= 4 and any("job 'b': schedule: 'x'" in line for line in lines)


# --------------------------------------------------------------------------- signals to a real process

RUN_SNAPTOOL = "import sys; from snaptool.cli.main import main; sys.exit(main(sys.argv[1:]))"


class Process:
    """`snaptool schedule run` in its own process; its JSON log lines collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RUN_SNAPTOOL, "schedule", "run", *args,
                                      "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        self.events: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def wait_for(self, event: str) -> None:
        wait_until(lambda: any(e["event"] == event for e in self.events) or self.proc.poll() is not None,
                   f"the {event} event")
        assert any(e["event"] == event for e in self.events), (self.events, self.proc.stderr.read())

    def finish(self) -> tuple[int, str]:
        try:
            code = self.proc.wait(60)
        finally:
            self.proc.kill()
        self.reader.join(10)
        return code, self.proc.stderr.read() if self.proc.stderr else ""


def test_a_real_process_finishes_its_run_on_sigterm_and_exits_0(tmp_path: Path) -> None:
    fifo = Fifo(tmp_path / "slow.rdb")
    config = write_config(tmp_path, '[[job]]\nname = "slow"\nsource = "slow.rdb"\nrepository = "repo"\n'
                                    'schedule = "@daily"\nretention = { last = 1 }\n')
    proc = Process("--config", str(config), "--once")
    try:
        proc.wait_for("start")
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_for("stopping")
        with open(fifo.path, "wb") as f:  # now the backup gets its data and completes
            f.write(FIXTURE.read_bytes())
        code, stderr = proc.finish()
    finally:
        fifo.release()
    assert code == 0, stderr
    assert [e["event"] for e in proc.events] == ["scheduler_start", "start", "stopping", "finish", "prune",
                                                 "scheduler_stop"]
    assert proc.events[-1]["succeeded"] == 1 and len(snapshot_ids(tmp_path / "repo")) == 1


def test_a_real_process_aborts_on_a_second_signal_and_exits_130(tmp_path: Path) -> None:
    fifo = Fifo(tmp_path / "slow.rdb")
    config = write_config(tmp_path, '[[job]]\nname = "slow"\nsource = "slow.rdb"\nrepository = "repo"\n'
                                    'schedule = "@daily"\n')
    proc = Process("--config", str(config), "--once")
    repo = Repository.open(str(tmp_path / "repo"))
    done = threading.Event()

    def write_half() -> None:
        with open(fifo.path, "wb") as f:
            f.write(FIXTURE.read_bytes()[:40_000])
            f.flush()
            done.wait(60)

    threading.Thread(target=write_half, daemon=True).start()
    try:
        proc.wait_for("start")
        wait_until(lambda: Catalog(repo).list(), "the backup to be writing")
        proc.proc.send_signal(signal.SIGINT)
        proc.wait_for("stopping")
        proc.proc.send_signal(signal.SIGINT)
        code, stderr = proc.finish()
    finally:
        done.set()
        fifo.release()
    assert code == 130 and stderr.strip() == "snaptool: interrupted"
    assert [e["event"] for e in proc.events][-2:] == ["aborting", "scheduler_stop"]
    (entry,) = Catalog(repo).list()
    assert not entry.complete  # what gc --apply removes; never restored
