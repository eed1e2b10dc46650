"""The scheduler's log: one line per event, as plain text for people or JSON for log collectors.

Every line carries the time (from the scheduler's clock), the event and the job; JSON lines are
flat objects, so ``jq 'select(.event == "failure")'`` finds every failure. Lines are written
whole, under a lock, because jobs of different sources finish on their own threads.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

from ..storage.lock import format_wait

FORMATS = ("text", "json")
#: event → level, for collectors that filter by severity
LEVELS = {"failure": "error", "prune_failure": "error", "state_failure": "error", "skipped": "warning",
          "missed": "warning", "aborting": "warning", "lock_wait": "warning", "warning": "warning"}


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


#: how each event reads as text, from its fields
_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "scheduler_start": lambda e: f"scheduler started: {e['jobs']} job(s) from {e['config']}"
                                 + (f", state in {e['state']}" if e.get("state") else ", no state file"),
    "next": lambda e: f"next run {e['at']} ({e['schedule']})",
    "state_failure": lambda e: f"STATE NOT SAVED: {e['error']}",
    "start": lambda e: f"start: {e['source']} -> {e['repository']} (scheduled {e['scheduled']})",
    "step": lambda e: e["message"],
    "warning": lambda e: f"WARNING: {e['message']}",
    "lock_wait": lambda e: f"waiting up to {format_wait(e['seconds'])} for the lock of {e['repository']}: "
                           f"{e['blocker']}",
    "finish": lambda e: f"finish: snapshot {e['snapshot']}, {e['keys']:,} keys, {_bytes(e['bytes'])}, "
                        f"{e['seconds']:.1f}s" + (f"; {e['overran']} run(s) skipped while it ran" if e.get("overran")
                                                 else ""),
    "failure": lambda e: f"FAILED after {e['seconds']:.1f}s: {e['error']}",
    "prune": lambda e: f"prune {e['repository']}: removed {e['removed']}, kept {e['kept']}, freed "
                       f"{_bytes(e['bytes'])}" + (f", {e['failed']} could not be removed" if e["failed"] else ""),
    "prune_failure": lambda e: f"PRUNE FAILED: {e['error']}",
    "prune_deferred": lambda e: f"prune of {e['repository']} deferred until {e['backups']} running backup(s) "
                                "into it end",
    "skipped": lambda e: (f"skipped the run scheduled {e['scheduled']}"
                          + (f" (and {e['count'] - 1} earlier)" if e["count"] > 1 else "")
                          + f": {e['running']} is still running on this source since {e['since']}")
    if e["reason"] == "overlap" else f"not started: {e['reason']}",
    "missed": lambda e: f"missed {'at least ' if e.get('capped') else ''}{e['count']} run(s) from {e['first']} "
                        f"to {e['last']} ({e['reason']}); {e['action']}",
    "stopping": lambda e: f"{e['signal']}: no new runs; waiting for {len(e['running'])} running job(s)"
                          + (f" ({', '.join(e['running'])}) to finish; send it again to abort" if e["running"] else ""),
    "aborting": lambda e: f"{e['signal']} again: aborting {', '.join(e['running'])}; their snapshots stay incomplete "
                          "(never restored; `snaptool gc` removes them)",
    "scheduler_stop": lambda e: f"scheduler stopped: {e['runs']} run(s), {e['succeeded']} succeeded, {e['failed']} "
                                f"failed, {e['skipped']} skipped, {e['missed']} missed, "
                                f"{e['prune_failures']} prune failure(s)",
}


class EventLog:
    """Writes events to ``out``; ``events`` keeps them too when ``keep`` (for --once summaries, tests)."""

    def __init__(self, out: TextIO, fmt: str = "text", *, keep: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log format must be {' or '.join(FORMATS)}")
        self.out = out
        self.fmt = fmt
        self.keep = keep
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Write nothing more: after an abort, runs left behind must not write while the process exits."""
        with self._lock:
            self._closed = True

    def __call__(self, when: datetime, event: str, job: str | None = None, **fields: Any) -> None:
        record: dict[str, Any] = {"time": iso(when), "level": LEVELS.get(event, "info"), "event": event}
        if job is not None:
            record["job"] = job
        record.update({k: _value(v) for k, v in fields.items()})
        line = json.dumps(record, ensure_ascii=False) if self.fmt == "json" else self._text(record)
        with self._lock:
            if self._closed:
                return
            if self.keep:
                self.events.append(record)
            self.out.write(line + "\n")
            self.out.flush()

    @staticmethod
    def _text(record: dict[str, Any]) -> str:
        who = f" {record['job']}" if "job" in record else ""
        render = _TEXT.get(record["event"])
        body = render(record) if render else " ".join(f"{k}={v}" for k, v in record.items()
                                                      if k not in ("time", "level", "event", "job"))
        return f"{record['time']}{who}: {body}"
