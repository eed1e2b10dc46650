"""What the scheduler remembers between restarts: the last run time each job was due.

Without it, a scheduler that was down at 02:30 cannot know it missed the 02:30 backup. The file is
small JSON, rewritten atomically (a temporary file renamed over it) after every decision, so a
crash leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from datetime import datetime

from ..errors import SnaptoolError

FORMAT = 1


class StateError(SnaptoolError):
    """The state file cannot be read or written."""


class State:
    """Per job: the last scheduled time that was handled (run or skipped)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._last: dict[str, datetime] = {}
        self._lock = threading.Lock()
        if path is not None and os.path.exists(path):
            self._load(path)

    def _load(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            self._last = {name: datetime.fromisoformat(entry["last_scheduled"])
                          for name, entry in data["jobs"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"state file {path}: cannot be read ({exc}); remove it to start afresh") from None

    def last(self, job: str) -> datetime | None:
        with self._lock:
            return self._last.get(job)

    def record(self, job: str, scheduled: datetime) -> None:
        with self._lock:
            self._last[job] = scheduled
            if self.path is not None:
                self._save(self.path)

    def _save(self, path: str) -> None:
        data = {"format": FORMAT, "jobs": {name: {"last_scheduled": when.isoformat()}
                                           for name, when in sorted(self._last.items())}}
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".schedule-state-", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise StateError(f"state file {path}: cannot be written: {exc.strerror or exc}") from None
