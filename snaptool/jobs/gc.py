"""`snaptool gc`: remove what interrupted backups left behind (snapshot directories without a manifest).

Dry-run unless told otherwise. Leftovers younger than ``min_age`` are kept: a directory without a
manifest may be a backup still being written by another process.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..storage.lock import exclusive_lock
from ..storage.catalog import Catalog, Listing, snapshot_dir
from ..storage.manifest import is_snapshot_id, snapshot_time
from ..storage.repository import Repository


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    would_remove: list[str] = field(default_factory=list)
    kept_young: list[str] = field(default_factory=list)
    bytes: int = 0


def gc(repo: Repository, *, dry_run: bool = True, min_age_seconds: float = 3600.0,
       now: datetime | None = None) -> GcReport:
    """Remove incomplete snapshot directories older than ``min_age_seconds`` (by their id's time)."""
    now = now or datetime.now(timezone.utc)
    report = GcReport()
    catalog = Catalog(repo)
    catalog.require("collect")
    with contextlib.nullcontext() if dry_run else exclusive_lock(repo, "gc"):
        _collect(catalog, report, dry_run, min_age_seconds, now)
    return report


def _collect(catalog: Catalog, report: GcReport, dry_run: bool, min_age_seconds: float, now: datetime) -> None:
    repo = catalog.repo
    for entry in catalog.leftovers():
        if _age(entry, now) < min_age_seconds:
            report.kept_young.append(entry.id)
            continue
        report.bytes += sum(size for _, size in entry.files)
        if dry_run:
            report.would_remove.append(entry.id)
        else:
            repo.remove(snapshot_dir(entry.id), recursive=True)
            report.removed.append(entry.id)


def _age(entry: Listing, now: datetime) -> float:
    if not is_snapshot_id(entry.id):
        return float("inf")  # not ours to date; still a leftover under snapshots/
    return (now - snapshot_time(entry.id)).total_seconds()
