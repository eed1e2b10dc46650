"""Split one or more snapshots into one RDB file per shard of a slot layout (split and reshard).

Every record goes to the shard owning its key's hash slot. Runs of simple records are routed by
the run scanner without building a Record each; other records take the general path, copied
when the target loads them and re-encoded otherwise (:mod:`snaptool.rdb.rewriter`). Each output is
assembled at the end with its own header, AUX fields, exact RESIZEDB counts and CRC-64; all files
are written under temporary names and renamed together, ``layout.json`` last.

With several inputs, worker processes (one per input up to the number of cores) route the inputs
into per-shard body files, then the same workers write the outputs, one file each: the parent
copies and hashes no record itself, so the work spreads over the cores.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import SnaptoolError
from ..rdb.assembler import RdbAssembler, Written
from ..rdb.checksum import key_slot
from ..rdb.fastscan import Route, Run
from ..rdb.items import Aux, Function, Header, ModuleAux, Record, SlotImport
from ..rdb.reader import RdbReader, open_input
from ..rdb.slots import SlotLayout
from ..rdb.targets import Target, rdb_target
from ..rdb.writer import header_aux
from .dedupe import Keeper, find_duplicates
from ..rdb.rewriter import Libraries, Rewriter, passthrough_mask
from .rewrite import CombineReport, prepare_outputs
from .split_workers import WorkerError, allow_open_files, progress_of, totals, worker_pool

Progress = Callable[[int, int], None]


@dataclass
class ShardFile:
    name: str
    file: str
    slots: list[list[int]]
    keys: dict[str, int]
    expires: dict[str, int]
    bytes: int
    sha256: str
    rdb_version: int


@dataclass
class SplitReport(CombineReport):
    shards: list[ShardFile] = field(default_factory=list)
    layout_file: str = ""


def choose_target(headers: Sequence[Header], target: Target | None) -> Target:
    """The target for outputs built from several inputs: the one asked for, else the newest input
    version, unless inputs mix Redis RDB 12+ and Valkey 80+ formats that no engine loads together."""
    if target is not None:
        return target
    redis_new = [h for h in headers if h.flavour == "redis" and h.version >= 12]
    valkey_new = [h for h in headers if h.flavour == "valkey"]
    if redis_new and valkey_new:
        raise SnaptoolError(f"inputs mix {redis_new[0].magic.decode()} (Redis 7.4+) and "
                            f"{valkey_new[0].magic.decode()} (Valkey 9): no engine loads both; "
                            f"choose one with --target (e.g. --target valkey-9.0 or --target redis-7.4)")
    return rdb_target(max(h.version for h in headers))


def refuse_overwrite(inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """An output that is one of the inputs would be read after being replaced: refuse up front."""
    sources = {os.path.realpath(p) for p in inputs}
    for out in outputs:
        if os.path.realpath(out) in sources:
            raise SnaptoolError(f"{out} is also an input: write the result somewhere else")


def parse_db_map(text: str | None) -> dict[int, int]:
    """`--db-map 1:0,5:0`: where keys of each source database go."""
    mapping: dict[int, int] = {}
    for part in filter(None, (text or "").split(",")):
        src, sep, dst = part.partition(":")
        if not sep or not src.strip().isdigit() or not dst.strip().isdigit():
            raise SnaptoolError(f"--db-map: {part!r} is not SOURCE:TARGET (e.g. 1:0)")
        mapping[int(src)] = int(dst)
    return mapping


class _DbRule:
    """Maps source databases to output databases; cluster nodes hold only db 0 before Valkey 9."""

    def __init__(self, target: Target, db_map: dict[int, int]) -> None:
        self.map = db_map
        self.multi = target.rdb_version >= 80

    def __call__(self, db: int, path: str) -> int:
        out = self.map.get(db, db)
        if out != 0 and not self.multi:
            raise SnaptoolError(f"{path} holds keys in database {db}, but cluster nodes hold only "
                                f"database 0: say where they go with --db-map {db}:0")
        return out


class _Pass:
    """One pass over every input, routing records into one assembler per shard."""

    def __init__(self, paths: list[str], headers: list[Header], layout: SlotLayout, target: Target,
                 db_rule: _DbRule, verify_checksum: bool, *, spool_dir: str | None = None,
                 tag: str = "") -> None:
        self.paths, self.headers, self.layout, self.target = paths, headers, layout, target
        self.db_rule, self.verify_checksum = db_rule, verify_checksum
        self.assemblers = [RdbAssembler(target, spool_dir=spool_dir, prefix=f"{tag}-{shard}-")
                           for shard in range(len(layout.shards))]
        self.rewriter = Rewriter(target)
        self.libraries = Libraries()
        self.module_aux: dict[bytes, int] = {}
        self.aux: list[Aux] = []
        self.keys_in = 0
        #: (input index, source db) → 16384-byte map of the slots its keys fall in
        self.seen: dict[tuple[int, int], bytearray] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None

    def run(self, keeper: Keeper | None, progress: Progress | None,
            pool: ProcessPoolExecutor | None = None, counters: Any = None) -> None:
        """Route every input; with a ``pool`` (and no keeper) in its processes, each routing one
        file into temporary bodies the parent then takes over, reporting through ``counters``."""
        if pool is not None and keeper is None:
            self._run_parallel(pool, progress, counters)
            return
        done_bytes = 0
        for index, path in enumerate(self.paths):
            done_bytes += self.run_input(index, keeper, progress, done_bytes)

    def run_input(self, index: int, keeper: Keeper | None, progress: Progress | None, done_bytes: int = 0) -> int:
        """Route one input; returns its size in bytes."""
        path = self.paths[index]
        owner = self.layout.owner_table()
        mask = passthrough_mask(self.target) if keeper is None else None
        route = Route.for_shards(owner, len(self.assemblers)) if mask is not None else None
        with RdbReader(open_input(path), path=path, verify_checksum=self.verify_checksum) as reader:
            for item in reader.items(fast=mask, route=route):
                kind = type(item)
                if kind is Run:
                    self._run(item, route, index, path)
                    if progress is not None:
                        progress(done_bytes + item.offset + item.length, self.keys_in)
                elif kind is Record:
                    self._record(item, keeper, index, path)
                    if progress is not None:
                        progress(done_bytes + item.offset + item.size, self.keys_in)
                elif kind is Aux and index == 0:
                    self.aux.append(item)
                elif kind is Function:
                    self.libraries.add(item.code, path)
                elif kind is ModuleAux:
                    self.module_aux.setdefault(item.raw, item.when)
                elif kind is SlotImport:
                    self.rewriter.losses.add("Valkey slot-import states")
            size = reader.source.offset
        if route is not None:
            for db, seen in route.seen.items():
                mine = self._seen(index, db)
                mine[:] = bytes(a | b for a, b in zip(mine, seen))
        return size

    def _run_parallel(self, pool: ProcessPoolExecutor, progress: Progress | None, counters: Any) -> None:
        # the workers' bodies stay in this directory until the outputs are written (close())
        self._tmp = tempfile.TemporaryDirectory(prefix="snaptool-split-")
        plan = (self.paths, self.headers, self.layout, self.target, self.db_rule, self.verify_checksum)
        futures = [pool.submit(_route_one, plan, index, self._tmp.name) for index in range(len(self.paths))]
        pending = set(futures)
        while pending:  # progress as the workers report it, until all are done or one failed
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            if progress is not None and counters is not None:
                progress(*totals(counters))
            if any(f.exception() is not None for f in done):
                break
        failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None), None)
        if failed is not None:  # said at once, whatever the inputs before it: queued ones never start
            for queued in futures:
                queued.cancel()
            wait(futures)  # no worker still writing into the directory about to go
            error = failed.exception()
            raise error.rebuild() if isinstance(error, WorkerError) else error  # type: ignore[misc]
        done_bytes = 0
        for index, future in enumerate(futures):  # taken over in input order
            part, bodies, size = future.result()
            self._absorb(part, bodies, index)
            done_bytes += size
        if progress is not None:
            progress(done_bytes, self.keys_in)  # to the last byte (the EOF and CRC-64 included)

    def _absorb(self, part: "_Pass", bodies: list[tuple[int, int, str, int, int]], index: int) -> None:
        for shard, db, path, keys, expires in bodies:
            self.assemblers[shard].add_file(db, path, keys, expires)
        for code in part.libraries.codes:
            self.libraries.add(code, self.paths[index])
        for raw, when in part.module_aux.items():
            self.module_aux.setdefault(raw, when)
        if index == 0:
            self.aux = part.aux
        self.keys_in += part.keys_in
        self.seen.update(part.seen)
        self.rewriter.absorb(part.rewriter)

    def _seen(self, index: int, db: int) -> bytearray:
        return self.seen.setdefault((index, db), bytearray(16384))

    def _run(self, item: Run, route: Route, index: int, path: str) -> None:
        db = self.db_rule(item.db, path)
        for i, assembler in enumerate(self.assemblers):
            if route.keys[i]:
                assembler.add_raw(db, route.outs[i], route.keys[i], route.expires[i])
                route.outs[i].clear()
                route.keys[i] = route.expires[i] = 0
        self.keys_in += item.keys
        self.rewriter.passthrough += item.keys

    def _record(self, record: Record, keeper: Keeper | None, index: int, path: str) -> None:
        self.keys_in += 1
        db = self.db_rule(record.db, path)
        slot = key_slot(record.key)
        self._seen(index, record.db)[slot] = 1
        if keeper is not None and not keeper.keep(db, record.key):
            record.release()
            return
        assembler = self.assemblers[self.layout.shard_of(slot)]
        if self.rewriter.write(record, assembler.writer(db)):
            assembler.counted(db, 1, int(record.expire_ms is not None))
        record.release()

    def shared_slots(self) -> set[tuple[int, int]]:
        """(output db, slot) pairs that keys of two different sources fall in: the only places
        where a key can occur twice (one file holds a key once per database)."""
        by_db: dict[int, list[bytearray]] = {}
        for (index, db), seen in self.seen.items():
            by_db.setdefault(self.db_rule(db, self.paths[index]), []).append(seen)
        shared = set()
        for db, maps in by_db.items():
            if len(maps) > 1:
                counts = [sum(m[slot] for m in maps) for slot in range(16384)]
                shared.update((db, slot) for slot, n in enumerate(counts) if n > 1)
        return shared

    def close(self) -> None:
        for assembler in self.assemblers:
            assembler.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _route_one(plan: tuple, index: int, tmp: str) -> tuple[_Pass, list, int]:
    """In a worker process: route one input into a fresh pass whose bodies are files in ``tmp``,
    return them and the rest (the pass's counts, libraries, AUX fields and slot maps)."""
    try:
        part = _Pass(*plan, spool_dir=tmp, tag=str(index))
        size = part.run_input(index, None, progress_of(index))
        bodies = [(shard, *body) for shard, assembler in enumerate(part.assemblers)
                  for body in assembler.hand_over()]
        part.assemblers = []
        return part, bodies, size
    except SnaptoolError as exc:
        raise WorkerError.of(exc) from None
    except OSError as exc:
        raise WorkerError("SnaptoolError", _routing_failed(plan[0][index], tmp, exc), 1) from None


def _routing_failed(path: str, tmp: str, exc: OSError) -> str:
    """What a worker's OSError means for the user: a full temporary directory is the usual one."""
    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"routing {path} into the temporary directory {tmp}: {why} (TMPDIR chooses where it is)"
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return f"routing {path}: {why} (a file stays open per shard while routing: raise `ulimit -n`)"
    return f"routing {path}: {why}" + (f" ({exc.filename})" if exc.filename else "")


def split(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, layout: SlotLayout, *,
          target: Target | None = None, db_map: dict[int, int] | None = None, on_duplicate: str = "error",
          allow_lossy: bool = False, verify_checksum: bool = True, parallel: bool = True,
          progress: Progress | None = None) -> SplitReport:
    """Write ``out_dir/<shard>.rdb`` for every shard of ``layout`` and ``out_dir/layout.json``.

    Several inputs are read in parallel, one process each up to the number of cores, and the
    outputs written by the same processes.

    Several inputs, or databases mapped onto one, may hold the same key: such keys follow
    ``on_duplicate`` as in a merge (:mod:`snaptool.jobs.dedupe`). Keys can only meet in a slot
    that two sources share, so inputs with disjoint slots (a cluster's shards) cost no extra pass.
    """
    if not inputs:
        raise SnaptoolError("no input files")
    paths = [str(p) for p in inputs]
    refuse_overwrite(paths, [str(Path(out_dir) / f"{s.name}.rdb") for s in layout.shards])
    headers = []
    for path in paths:
        with RdbReader(open_input(path), path=path) as reader:
            headers.append(reader.read_header())
    target = choose_target(headers, target)
    report = SplitReport(paths, target.name, target.rdb_version)
    db_rule = _DbRule(target, db_map or {})
    keeper = Keeper(None, on_duplicate)
    current = _Pass(paths, headers, layout, target, db_rule, verify_checksum)
    allow_open_files(2 * len(layout.shards) + 64)  # a body file per shard (and database) while routing
    pool, counters = worker_pool(min(len(paths), os.cpu_count() or 1) if parallel else 1, len(paths))
    created = not Path(out_dir).exists()
    try:
        current.run(None, progress, pool, counters)
        shared = current.shared_slots()
        if shared:
            duplicates = find_duplicates(paths, map_db=db_rule, verify_checksum=verify_checksum,
                                         only=lambda db, key: (db, key_slot(key)) in shared)
            keeper.close()
            keeper = Keeper(duplicates, on_duplicate)
            if duplicates:  # route again, keeping one copy of each duplicate
                current.close()
                current = _Pass(paths, headers, layout, target, db_rule, verify_checksum)
                current.run(keeper, progress)
        rewriter, libraries = current.rewriter, current.libraries
        prepare_outputs(current.assemblers, rewriter, libraries, current.module_aux,
                        header_aux(current.aux, headers[0], target), allow_lossy)
        stale = _previous_files(Path(out_dir)) - {f"{s.name}.rdb" for s in layout.shards} \
            - {Path(p).name for p in paths if Path(p).resolve().parent == Path(out_dir).resolve()}
        written = _write_all(Path(out_dir), [s.name for s in layout.shards], current.assemblers, pool)
    except BaseException as exc:
        if created:  # nothing was written: leave no empty directory behind either
            with contextlib.suppress(OSError):
                Path(out_dir).rmdir()
        if isinstance(exc, BrokenProcessPool):
            raise SnaptoolError(f"a worker process of the split died (killed, or out of memory?); nothing was "
                                f"written to {out_dir}") from None
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        current.close()
        keeper.close()
    report.keys_in = current.keys_in
    report.take(rewriter, len(libraries.codes))
    report.duplicates, report.duplicates_dropped = len(keeper.duplicates), keeper.dropped
    for shard, result in zip(layout.shards, written):
        report.shards.append(ShardFile(
            shard.name, f"{shard.name}.rdb", [list(r) for r in shard.ranges],
            {str(db): c.keys for db, c in result.databases.items()},
            {str(db): c.expires for db, c in result.databases.items()},
            result.bytes, result.sha256, target.rdb_version))
    report.keys_out = sum(sum(s.keys.values()) for s in report.shards)
    report.layout_file = str(Path(out_dir) / "layout.json")
    _write_layout(Path(out_dir), report)
    for name in stale:  # shard files of an earlier layout in the same directory
        with contextlib.suppress(FileNotFoundError):
            (Path(out_dir) / name).unlink()
    return report


def _previous_files(out_dir: Path) -> set[str]:
    """The shard files an earlier layout.json in ``out_dir`` lists."""
    try:
        return {s["file"] for s in json.loads((out_dir / "layout.json").read_text())["shards"]
                if "/" not in s["file"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _write_all(out_dir: Path, names: list[str], assemblers: list[RdbAssembler],
               pool: ProcessPoolExecutor | None) -> list[Written]:
    """Every file under a temporary name first (each in its own worker when the records are all
    in files); renamed only when all are complete, after the old layout.json is gone (the caller
    writes the new one last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    temps = [out_dir / f".{name}.rdb.part" for name in names]
    try:
        if pool is not None and all(a.portable for a in assemblers):
            futures = [pool.submit(_write_one, a, temp) for a, temp in zip(assemblers, temps)]
            wait(futures)  # all done before any error is raised: no file still being written
            results = [future.result() for future in futures]
        else:
            results = [_write_one(a, temp) for a, temp in zip(assemblers, temps)]
        # An old layout.json would describe files about to change: without one, the set reads as
        # incomplete until the new layout.json (the commit point) is written.
        with contextlib.suppress(FileNotFoundError):
            (out_dir / "layout.json").unlink()
        for name, temp in zip(names, temps):
            os.replace(temp, out_dir / f"{name}.rdb")
        return results
    except BaseException as exc:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        if isinstance(exc, OSError) and not exc.filename:  # a full disk: say where
            raise SnaptoolError(f"writing the shard files in {out_dir}: {exc.strerror or exc}") from None
        raise


def _write_one(assembler: RdbAssembler, path: Path) -> Written:
    """One output file, complete and on disk."""
    with open(path, "wb", buffering=1 << 20) as f:
        written = assembler.write(f)
        f.flush()
        os.fsync(f.fileno())
    return written


def _write_layout(out_dir: Path, report: SplitReport) -> None:
    data = {"target": report.target, "rdb_version": report.rdb_version, "inputs": report.inputs,
            "keys": report.keys_out, "shards": [asdict(s) for s in report.shards]}
    temp = out_dir / ".layout.json.part"
    try:
        temp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(temp, out_dir / "layout.json")
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise SnaptoolError(f"writing {out_dir / 'layout.json'}: {exc.strerror or exc} (the shard files are "
                            "written; without layout.json the set reads as incomplete)") from None
