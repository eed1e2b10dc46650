"""What every command shares: JSON on stdout for scripts, people's output and progress on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any, Callable, Iterator

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


@contextlib.contextmanager
def file_progress(path: str | list[str], label: str, enabled: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """``with file_progress(path, "inspect") as progress:`` gives a ``progress(offset, keys)``
    callback that draws bytes, keys, rate and ETA on stderr, and clears it at the end. For several
    inputs pass the list: offsets then count across all of them.

    Drawn only when stderr is a terminal (or ``enabled``); redrawn at most five times a second.
    """
    paths = [path] if isinstance(path, str) else path
    total = sum(os.path.getsize(p) for p in paths) if all(os.path.isfile(p) for p in paths) else None
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda offset, keys: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TextColumn("{task.fields[keys]:,} keys"), TimeRemainingColumn(), transient=True,
                   console=Console(stderr=True))  # stdout stays for --json and exports
    task = bar.add_task(label, total=total, keys=0)
    next_draw = 0.0

    def progress(offset: int, keys: int) -> None:
        nonlocal next_draw
        now = time.monotonic()
        if now >= next_draw:
            next_draw = now + 0.2
            bar.update(task, completed=offset, keys=keys)

    with bar:
        yield progress


@contextlib.contextmanager
def transfer_progress(enabled: bool | None = None) -> Iterator[Callable[[str, int | None], Callable[[int, int], None]]]:
    """One bar per transfer (e.g. per shard of a cluster backup): ``bar_for(label, total)`` gives
    that transfer's ``progress(bytes, keys)`` callback. Drawn only when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda label, total: (lambda done, keys: None)
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TextColumn("{task.fields[keys]:,} keys"), TimeRemainingColumn(), transient=True,
                   console=Console(stderr=True))  # stdout stays for --json and exports

    def bar_for(label: str, total: int | None) -> Callable[[int, int], None]:
        task = bar.add_task(label, total=total, keys=0)
        return lambda done, keys: bar.update(task, completed=done, keys=keys)

    with bar:
        yield bar_for
