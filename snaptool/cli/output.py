"""What every command shares: JSON on stdout for scripts, people's output and progress on stderr."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import click



def emit_json(data: Any) -> None:
    """One JSON document on stdout (``--json``)."""
    click.echo(json.dumps(data, indent=2, default=str))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def file_progress(path: str, label: str, enabled: bool | None = None) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A ``progress(offset, keys)`` callback drawing bytes, keys, rate and ETA on stderr, and a
    function to close it.

    Drawn only when stderr is a terminal (or ``enabled``); redrawn at most a few times a second.
    """
    total = os.path.getsize(path) if path != "-" and os.path.isfile(path) else None
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return (lambda offset, keys: None), (lambda: None)
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TextColumn("{task.fields[keys]:,} keys"),
                        TimeRemainingColumn(), transient=True, console=None)
    progress.start()
    task = progress.add_task(label, total=total, keys=0)
    next_draw = 0.0

    def on_progress(offset: int, keys: int) -> None:
        nonlocal next_draw
        now = time.monotonic()
        if now >= next_draw:
            next_draw = now + 0.2
            progress.update(task, completed=offset, keys=keys)

    return on_progress, progress.stop
