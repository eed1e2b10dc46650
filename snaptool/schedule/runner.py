"""The long-running scheduler, and ``--once``.

Rules, in the order they apply when a job's time comes (docs/scheduling.md says the same):

* **One run per source at a time.** When a run of the same source (any job) is still going, the
  due run is not started: it is logged as ``skipped`` (overlap) and counted. It is not made up for
  later, so a backup that takes longer than its interval never causes a burst.
* **Missed runs run once.** When several run times passed unhandled — the scheduler was down (known
  from the state file) or was not scheduled by the OS for a while — they are logged as one
  ``missed`` event with their number, and the job runs once, now.
* **Failures are counted, never fatal.** A failed backup or prune is logged as one line; the
  scheduler goes on with every job.
* **Stopping.** The first SIGTERM/SIGINT stops new runs and lets running ones finish, their prune
  included (a backup cut short leaves an incomplete snapshot for ``gc``; finishing is cheaper than
  redoing it). A second signal aborts: the scheduler returns at once, leaving the running backups
  incomplete — never restorable, removed by ``snaptool gc``.

Time comes only from ``clock`` and passes only through ``sleep``, so tests drive the scheduler
through days in milliseconds. Jobs run on their own threads; signal handlers only set flags.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from .config import Config, Job
from .execute import Outcome, error_line, run_job
from .repos import Repositories
from .state import State, StateError
from .timing import Dues, due_between

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]
Log = Callable[..., None]
Execute = Callable[..., Outcome]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Counts:
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    missed: int = 0
    prune_failures: int = 0
    aborted: bool = False


@dataclass
class _Running:
    job: Job
    scheduled: datetime
    since: datetime
    overran: int = 0  # due runs of this source skipped while this one ran


class Scheduler:
    """Runs the jobs of ``config`` on their schedules until stopped (or once, with run_once)."""

    def __init__(self, config: Config, *, log: Log, clock: Clock = utcnow, sleep: Sleep = time.sleep,
                 max_nap: float | None = 1.0, poll: float = 1.0, execute: Execute = run_job) -> None:
        self.config = config
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.max_nap = max_nap  # longest single sleep, so a stop request is seen quickly
        self.poll = poll  # real seconds between checks while waiting for running jobs to end
        self.execute = execute
        self.state = State(None)  # read when run_forever starts; --once neither reads nor writes it
        self.repositories = Repositories()
        self.counts = Counts()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()  # set by workers when they end
        self._stop: str | None = None
        self._abort: str | None = None

    # ------------------------------------------------------------------ control
    def request_stop(self, reason: str = "stop requested") -> None:
        """First call: no new runs, running ones finish. Second call: abort. Safe in a signal handler
        (it only sets attributes; the main loop does the logging)."""
        if self._stop is None:
            self._stop = reason
        else:
            self._abort = reason

    def running(self) -> dict[str, str]:
        """source → name of the job running on it."""
        with self._lock:
            return {key: run.job.name for key, run in self._running.items()}

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT call request_stop while inside; the previous handlers come back after."""
        def handler(signum: int, frame: Any) -> None:
            self.request_stop(signal.Signals(signum).name)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # ------------------------------------------------------------------ the loop
    def run_forever(self) -> Counts:
        """Schedule until stopped; the counts say what happened."""
        self.state = State(self.config.state)
        now = self.clock()
        self.log(now, "scheduler_start", jobs=len(self.config.jobs), config=self.config.path,
                 state=self.config.state, once=False)
        handled: dict[str, datetime] = {}
        for job in self.config.jobs:
            handled[job.name] = self._catch_up(job, now)
            self.log(now, "next", job.name, at=job.schedule.next_after(handled[job.name]),
                     schedule=job.schedule.describe())
        stopping_logged = False
        while True:
            if self._abort is not None:
                return self._aborted()
            if self._stop is not None:
                if not stopping_logged:
                    self.log(self.clock(), "stopping", signal=self._stop, running=sorted(self.running().values()))
                    stopping_logged = True
                if not self.running():
                    break
                self._changed.wait(self.poll)
                self._changed.clear()
                continue
            now = self.clock()
            for job in self.config.jobs:
                dues = due_between(job.schedule, handled[job.name], now)
                if dues is not None:
                    self._due(job, dues, now, reason="the scheduler was late: the host was suspended or overloaded")
                    handled[job.name] = dues.last
            wake = min(job.schedule.next_after(handled[job.name]) for job in self.config.jobs)
            nap = (wake - self.clock()).total_seconds()
            if self.max_nap is not None:
                nap = min(nap, self.max_nap)
            if nap > 0 and self._stop is None:
                self.sleep(nap)
        return self._stopped()

    def _catch_up(self, job: Job, now: datetime) -> datetime:
        """At start: the runs missed while the scheduler was down (from the state file)."""
        last = self.state.last(job.name)
        dues = due_between(job.schedule, last, now) if last is not None else None
        if dues is None:
            return now if last is None else max(last, now)
        reason = "the scheduler was not running"
        if self.config.catch_up:
            self._due(job, dues, now, reason=reason, all_missed=True)
        else:
            self._missed(job, dues, dues.count, reason, "not run: catch_up is off", now)
            self._record(job, dues.last, now)
        return dues.last

    def _due(self, job: Job, dues: Dues, now: datetime, *, reason: str, all_missed: bool = False) -> None:
        """Handle the run times ``dues`` of ``job`` at ``now``: skip (overlap) or start once."""
        with self._lock:
            busy = self._running.get(job.source_key)
            if busy is not None:
                busy.overran += dues.count
                self.counts.skipped += dues.count
        if busy is not None:
            self.log(now, "skipped", job.name, reason="overlap", scheduled=dues.last, count=dues.count,
                     running=busy.job.name, since=busy.since, source=job.source_shown)
        else:
            if all_missed:
                self._missed(job, dues, dues.count, reason, "running once now", now)
            elif dues.count > 1:
                self._missed(job, dues, dues.count - 1, reason, "running once now", now, last=dues.before_last)
            self._start(job, dues.last, now)
        self._record(job, dues.last, now)

    def _missed(self, job: Job, dues: Dues, count: int, reason: str, action: str, now: datetime, *,
                last: datetime | None = None) -> None:
        with self._lock:
            self.counts.missed += count
        self.log(now, "missed", job.name, count=count, first=dues.first, last=last or dues.last,
                 capped=dues.capped, reason=reason, action=action)

    def _record(self, job: Job, scheduled: datetime, now: datetime) -> None:
        try:
            self.state.record(job.name, scheduled)
        except StateError as exc:
            self.log(now, "state_failure", job.name, error=str(exc))

    def _start(self, job: Job, scheduled: datetime, now: datetime) -> threading.Thread:
        run = _Running(job, scheduled, now)
        with self._lock:
            self._running[job.source_key] = run
            self.counts.runs += 1
        self._log_start(job, scheduled, now)
        thread = threading.Thread(target=self._work, args=(run,), name=f"schedule-{job.name}", daemon=True)
        thread.start()
        return thread

    def _log_start(self, job: Job, scheduled: datetime | None, now: datetime) -> None:
        self.log(now, "start", job.name, source=job.source_shown, repository=job.repository, kind=job.kind,
                 tags=list(job.tags), scheduled=scheduled or now)

    def _work(self, run: _Running) -> None:
        try:
            self._execute(run.job, lambda: {"overran": run.overran} if run.overran else {})
        finally:
            with self._lock:
                self._running.pop(run.job.source_key, None)
            self._changed.set()

    def _execute(self, job: Job, extra: Callable[[], dict[str, Any]] | None = None) -> Outcome:
        try:
            outcome = self.execute(job, clock=self.clock, log=self.log, extra=extra, repositories=self.repositories)
        except Exception as exc:  # noqa: BLE001 - a bug in one run must not end the scheduler
            self.log(self.clock(), "failure", job.name, stage="scheduler", error=error_line(exc), seconds=0.0)
            outcome = Outcome(ok=False)
        with self._lock:
            if outcome.ok:
                self.counts.succeeded += 1
            else:
                self.counts.failed += 1
            if not outcome.prune_ok:
                self.counts.prune_failures += 1
        return outcome

    # ------------------------------------------------------------------ once
    def run_once(self) -> Counts:
        """Run every job once, now: jobs of different sources at the same time, jobs of one source one
        after the other (in config order). Returns when all are done, or at once on abort."""
        now = self.clock()
        self.log(now, "scheduler_start", jobs=len(self.config.jobs), config=self.config.path, state=None, once=True)
        by_source: dict[str, list[Job]] = {}
        for job in self.config.jobs:
            by_source.setdefault(job.source_key, []).append(job)
        threads = [threading.Thread(target=self._sequence, args=(jobs,), name=f"once-{jobs[0].name}", daemon=True)
                   for jobs in by_source.values()]
        for thread in threads:
            thread.start()
        stopping_logged = False
        while any(t.is_alive() for t in threads):
            if self._abort is not None:
                return self._aborted()
            if self._stop is not None and not stopping_logged:
                self.log(self.clock(), "stopping", signal=self._stop, running=sorted(self.running().values()))
                stopping_logged = True
            self._changed.wait(self.poll)
            self._changed.clear()
        return self._stopped()

    def _sequence(self, jobs: list[Job]) -> None:
        try:
            for number, job in enumerate(jobs):
                if self._stop is not None:
                    for left in jobs[number:]:
                        with self._lock:
                            self.counts.skipped += 1
                        self.log(self.clock(), "skipped", left.name, reason="stopping", count=1)
                    return
                with self._lock:
                    self._running[job.source_key] = _Running(job, self.clock(), self.clock())
                    self.counts.runs += 1
                self._log_start(job, None, self.clock())
                try:
                    self._execute(job)
                finally:
                    with self._lock:
                        self._running.pop(job.source_key, None)
        finally:
            self._changed.set()

    # ------------------------------------------------------------------ ending
    def _aborted(self) -> Counts:
        self.log(self.clock(), "aborting", signal=self._abort, running=sorted(self.running().values()))
        self.counts.aborted = True
        return self._stopped()

    def _stopped(self) -> Counts:
        with self._lock:
            counts = asdict(self.counts)
        self.log(self.clock(), "scheduler_stop", **counts)
        return self.counts
