"""Relabel a snapshot for retention: promote an automatic snapshot to manual, pin or unpin one.

Only the manifest changes (rewritten whole by ``Catalog.commit``: atomically on local disk, one PUT
on S3); the data files are untouched. A shared lock keeps a relabelling from interleaving with a
prune that is deciding about the same snapshot.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..storage.catalog import Catalog
from ..storage.lock import Clock, shared_lock
from ..storage.manifest import Manifest
from ..storage.repository import Repository


def _relabel(repo: Repository, spec: str, purpose: str, change: Callable[[Manifest], Manifest],
             clock: Clock | None) -> tuple[Manifest, bool]:
    with shared_lock(repo, purpose, clock=clock, renew=False):
        catalog = Catalog(repo)
        current = catalog.resolve(spec)
        updated = change(current)
        if updated == current:
            return current, False
        catalog.commit(updated)
        return updated, True


def promote(repo: Repository, spec: str, *, clock: Clock | None = None) -> tuple[Manifest, bool]:
    """Make a snapshot manual, so --retention-days and (without --include-manual) the keep rules
    no longer remove it; returns the manifest and whether it changed."""
    return _relabel(repo, spec, "promote", lambda m: dataclasses.replace(m, kind="manual"), clock)


def set_pinned(repo: Repository, spec: str, pinned: bool, *, clock: Clock | None = None) -> tuple[Manifest, bool]:
    """Pin (never pruned, whatever the policy) or unpin a snapshot; returns the manifest and
    whether it changed."""
    return _relabel(repo, spec, "pin" if pinned else "unpin", lambda m: dataclasses.replace(m, pinned=pinned), clock)
