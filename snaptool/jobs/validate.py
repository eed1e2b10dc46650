"""Prove that files load into engine nodes holding exactly what the source snapshots held.

:func:`validate_node` and :func:`validate_cluster` start throwaway local engines on the files and
run :func:`~snaptool.jobs.validate_live.validate_live` against them in digest mode (each key on
the node that owns it, expiry times, key counts per database and per slot); a single node is also
compared as a whole with ``DEBUG DIGEST``, whose expected value comes from the same pass over each
value as the key's own ``DEBUG DIGEST-VALUE``. Keys already expired when the check starts are
left out (a loading primary drops them).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from ..engines.cluster import LocalCluster
from ..engines.discovery import Engine
from ..engines.server import EngineServer
from ..rdb.digest import DatasetDigest
from ..rdb.items import Record
from ..rdb.slots import SlotLayout
from ..rdb.targets import parse_target
from .validate_live import validate_live
from .validate_report import ValidationReport


def validate_cluster(engine: Engine, layout: SlotLayout, files: list[str], records: Iterable[Record], *,
                     progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Start a local cluster on ``files`` and compare it with the source ``records`` (db 0 keys)."""
    started = time.monotonic()
    with LocalCluster(engine, layout, files) as cluster:
        report = validate_live(cluster.nodes[0].address, records, mode="digest", progress=progress)
    report.target = ""
    report.seconds = time.monotonic() - started
    return report


def validate_node(engine: Engine, file: str, records: Iterable[Record], *, databases: int = 16,
                  progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Load ``file`` into one standalone node and compare every key, then the DEBUG DIGEST
    (computed from the same pass over each value as the key's own digest)."""
    started = time.monotonic()
    target = parse_target(engine.target_name)
    dataset = DatasetDigest(target.score_format, target.hexpire_marker)
    with EngineServer(engine, rdb=file, config={"databases": str(max(16, databases))}) as server:
        report = validate_live(server.address, records, mode="digest", progress=progress, dataset=dataset)
        report.digest_live = server.client().execute_command("DEBUG", "DIGEST").decode()
    report.digest_expected = dataset.hexdigest()
    report.target = ""
    report.seconds = time.monotonic() - started
    return report


__all__ = ["ValidationReport", "validate_cluster", "validate_node"]
