"""Merge several snapshots into one RDB file for a standalone node, duplicates handled.

Keys found more than once (:mod:`snaptool.jobs.dedupe`) follow ``on_duplicate``: ``error``
(default) names the first duplicates and writes nothing, ``first`` keeps the earliest occurrence in
input order, ``last`` the latest. Databases stay apart; function libraries appear once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import SnaptoolError
from ..rdb.assembler import RdbAssembler
from ..rdb.fastscan import Route, Run
from ..rdb.items import Aux, Function, Header, ModuleAux, Record, SlotImport
from ..rdb.reader import RdbReader, open_input
from ..rdb.targets import Target
from ..rdb.writer import header_aux
from ..storage.atomic import atomic_output
from .dedupe import Keeper, find_duplicates
from ..rdb.rewriter import Libraries, Rewriter, passthrough_mask
from .rewrite import CombineReport, prepare_outputs
from .split import choose_target, refuse_overwrite

Progress = Callable[[int, int], None]


@dataclass
class MergeReport(CombineReport):
    output: str = ""
    bytes: int = 0
    sha256: str = ""
    databases: list[int] = field(default_factory=list)


def merge(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, on_duplicate: str = "error",
          target: Target | None = None, allow_lossy: bool = False, verify_checksum: bool = True,
          progress: Progress | None = None) -> MergeReport:
    """Merge ``inputs`` into the RDB file ``output`` (written atomically)."""
    paths = [str(p) for p in inputs]
    if not paths:
        raise SnaptoolError("no input files")
    refuse_overwrite(paths, [str(output)])
    headers: list[Header] = []
    for path in paths:
        with RdbReader(open_input(path), path=path) as reader:
            headers.append(reader.read_header())
    target = choose_target(headers, target)
    report = MergeReport(paths, target.name, target.rdb_version, output=str(output))
    keeper = Keeper(find_duplicates(paths, verify_checksum=verify_checksum), on_duplicate)
    report.duplicates = len(keeper.duplicates)
    assembler = RdbAssembler(target)
    try:
        rewriter = Rewriter(target)
        libraries = Libraries()
        module_aux: dict[bytes, int] = {}
        aux: list[Aux] = []
        # Without duplicates every run of simple records is copied whole (one shard: owner all 0).
        mask = passthrough_mask(target) if not keeper.duplicates else None
        done_bytes = 0
        for index, path in enumerate(paths):
            route = Route.for_shards(bytes(16384), 1) if mask is not None else None
            with RdbReader(open_input(path), path=path, verify_checksum=verify_checksum) as reader:
                for item in reader.items(fast=mask, route=route):
                    kind = type(item)
                    if kind is Run:
                        assembler.add_raw(item.db, route.outs[0], route.keys[0], route.expires[0])
                        route.outs[0].clear()
                        route.keys[0] = route.expires[0] = 0
                        report.keys_in += item.keys
                        rewriter.passthrough += item.keys
                    elif kind is Record:
                        record: Record = item
                        report.keys_in += 1
                        if not keeper.keep(record.db, record.key):
                            record.release()
                            continue
                        if rewriter.write(record, assembler.writer(record.db)):
                            assembler.counted(record.db, 1, int(record.expire_ms is not None))
                        record.release()
                    elif kind is Aux and index == 0:
                        aux.append(item)
                    elif kind is Function:
                        libraries.add(item.code, path)
                    elif kind is ModuleAux:
                        module_aux.setdefault(item.raw, item.when)
                    elif kind is SlotImport:
                        rewriter.losses.add("Valkey slot-import states")
                    if progress is not None and kind in (Run, Record):
                        progress(done_bytes + reader.source.offset, report.keys_in)
                done_bytes += reader.source.offset
        prepare_outputs([assembler], rewriter, libraries, module_aux, header_aux(aux, headers[0], target),
                        allow_lossy)
        with atomic_output(output) as out:
            written = assembler.write(out)
    finally:
        assembler.close()
        keeper.close()
    report.keys_out = sum(c.keys for c in written.databases.values())
    report.duplicates_dropped = keeper.dropped
    report.take(rewriter, len(libraries.codes))
    report.bytes, report.sha256 = written.bytes, written.sha256
    report.databases = sorted(written.databases)
    return report
