"""`snaptool restore`: a snapshot into RDB files or into a live node or cluster, then proven.

Files are fetched and checked against the manifest first (:mod:`snaptool.jobs.fetch`). Into a
directory they are copied, re-split or re-encoded as asked and loaded into local engine nodes for
the comparison; into a live target they go through pipelined RESTORE
(:mod:`snaptool.engines.loader`) and the target itself is compared with the snapshot
(:mod:`snaptool.jobs.validate_live`). Validation is not optional: a difference is an error.
Encrypted snapshots are decrypted by the fetch (``RestoreOptions.keys``; KMS needs none), every
file verified before the first key is written.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import redis

from ..engines.address import NodeAddress, TlsOptions
from ..engines.discovery import Engine, engine_for_rdb, find_engine
from ..engines.loader import RestoreLoader
from ..errors import EngineError, SnaptoolError, ValidationError
from ..rdb.items import Function, Record
from ..rdb.reader import RdbReader
from ..rdb.rewriter import Libraries, Losses
from ..rdb.slots import SlotLayout
from ..rdb.targets import Target
from ..storage.catalog import Catalog
from ..storage.manifest import Manifest
from ..storage.repository import Repository
from .convert import convert
from .fetch import Fetched, copy_out, fetch, records_of
from .dedupe import selected_records
from .split import split
from .validate import ValidationReport, validate_cluster, validate_node
from .validate_live import validate_live

if TYPE_CHECKING:  # cryptography is imported only for encrypted snapshots
    from ..crypto.schemes import DecryptionKeys


@dataclass
class RestoreOptions:
    to: str | None = None  # redis:// or rediss:// of a node or cluster
    to_dir: str | None = None
    layout: SlotLayout | None = None  # re-split (--shards / --slots) for --to-dir
    db_map: dict[int, int] = field(default_factory=dict)  # where other databases go when re-split
    on_duplicate: str = "error"  # a key met twice when databases are mapped together: error|first|last
    target: Target | None = None  # re-encode for an older engine
    replace: bool = False
    flush: bool = False
    sample: int | None = None  # validate a sample of N keys instead of every key (live targets)
    engine: str | None = None  # engine for validating --to-dir output
    allow_lossy: bool = False
    tls: TlsOptions | None = None
    username: str | None = None
    password: str | None = None
    keys: DecryptionKeys | None = None  # identities / passphrase for encrypted snapshots (KMS: none needed)


@dataclass
class RestoreReport:
    snapshot: str
    destination: str
    keys: int = 0
    restored: int = 0
    expired_skipped: int = 0
    files: list[str] = field(default_factory=list)
    functions: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    validation: ValidationReport | None = None
    decrypted_with: str | None = None  # the key that opened an encrypted snapshot

    @property
    def keys_per_second(self) -> float:
        return self.restored / self.load_seconds if self.load_seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["keys_per_second"] = round(self.keys_per_second)
        if self.validation is not None:
            data["validation"]["ok"] = self.validation.ok
        return data


Progress = Callable[[int, int], None]
FUNCTIONS_SINCE = 10  # the first RDB version (Redis 7.0) with function libraries


def restore(spec: str, repo: Repository, options: RestoreOptions, *,
            progress: Progress | None = None) -> RestoreReport:
    """Restore snapshot ``spec`` (id, unique prefix or ``latest``) as ``options`` say; raises
    ValidationError (exit 4) when the result differs from the snapshot."""
    if (options.to is None) == (options.to_dir is None):
        raise SnaptoolError("say where to restore: --to redis://… or --to-dir DIR (one of them)")
    started = time.monotonic()
    manifest = Catalog(repo).resolve(spec)
    with tempfile.TemporaryDirectory(prefix="snaptool-restore-") as work:
        fetched = fetch(repo, manifest, work, keys=options.keys)
        if options.to is not None:
            report = _to_live(manifest, fetched, options, progress)
        else:
            report = _to_dir(manifest, fetched, options, progress)
    report.decrypted_with = fetched[0].decrypted_with if fetched else None
    report.seconds = round(time.monotonic() - started, 3)
    if report.validation is not None and not report.validation.ok:
        raise ValidationError(report.validation.summary(), report.validation)
    return report


# --------------------------------------------------------------------------- into files

def _to_dir(manifest: Manifest, fetched: list[Fetched], options: RestoreOptions,
            progress: Progress | None) -> RestoreReport:
    out_dir = options.to_dir
    assert out_dir is not None
    os.makedirs(out_dir, exist_ok=True)
    paths = [f.path for f in fetched]
    report = RestoreReport(manifest.id, os.path.abspath(out_dir), keys=manifest.keys)
    layout = options.layout or manifest.layout()
    loaded = time.monotonic()
    if options.layout is not None:
        result = split(paths, out_dir, options.layout, target=options.target, db_map=options.db_map,
                       on_duplicate=options.on_duplicate, allow_lossy=options.allow_lossy, progress=progress)
        files = [os.path.join(out_dir, s.file) for s in result.shards]
        rdb_version = result.rdb_version
    else:
        names = [f"{f.entry.shard}.rdb" if f.entry.shard else "dump.rdb" for f in fetched]
        files = [os.path.join(out_dir, n) for n in names]
        for item, dest in zip(fetched, files):
            if options.target is not None:
                convert(item.path, dest, options.target, allow_lossy=options.allow_lossy)
            else:
                copy_out(item, dest)
        if layout is not None:
            _write_layout(out_dir, layout)
        rdb_version = options.target.rdb_version if options.target else max(f.entry.rdb_version for f in fetched)
    report.load_seconds = round(time.monotonic() - loaded, 3)
    report.files = files
    report.restored = result.keys_out if options.layout is not None else manifest.keys
    engine = _engine_for(options, rdb_version, fetched)
    if layout is not None:
        mapping = options.db_map
        kept = selected_records(paths, options.on_duplicate, map_db=lambda db, path: mapping.get(db, db))
        report.validation = validate_cluster(engine, layout, files, kept)
    else:
        databases = max((db for f in fetched for db in f.entry.databases), default=0) + 1
        report.validation = validate_node(engine, files[0], records_of(paths), databases=databases)
    return report


def _write_layout(out_dir: str, layout: SlotLayout) -> None:
    tmp = os.path.join(out_dir, "layout.json.part")
    with open(tmp, "w") as f:
        json.dump({"shards": layout.to_json()}, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "layout.json"))


def _engine_for(options: RestoreOptions, rdb_version: int, fetched: list[Fetched]) -> Engine:
    if options.engine:
        return find_engine(options.engine)
    flavour = "valkey" if any(f.entry.magic.startswith("VALKEY") for f in fetched) else "redis"
    try:
        return engine_for_rdb(rdb_version, flavour)
    except SnaptoolError as exc:
        raise SnaptoolError(f"cannot validate the restored files: {exc} (use --engine, or --target for an "
                            "engine found here)") from None


# --------------------------------------------------------------------------- into a live target

def _to_live(manifest: Manifest, fetched: list[Fetched], options: RestoreOptions,
             progress: Progress | None) -> RestoreReport:
    assert options.to is not None
    address = NodeAddress.parse(options.to, tls=options.tls, username=options.username, password=options.password)
    report = RestoreReport(manifest.id, address.redacted(), keys=manifest.keys)
    paths = [f.path for f in fetched]
    with RestoreLoader(address, replace=options.replace, target=options.target,
                       allow_lossy=options.allow_lossy) as loader:
        other_dbs = sorted({db for f in manifest.files for db in f.databases if db != 0})
        if loader.cluster and other_dbs:
            raise SnaptoolError(f"{address} is a cluster, which holds only database 0, but the snapshot has keys in "
                                f"database(s) {', '.join(map(str, other_dbs))}; nothing was changed. Restore into a "
                                "standalone node, or use --to-dir with --shards/--slots and --db-map")
        busy = loader.nonempty()
        if busy and options.flush:
            loader.flush_all()
        elif busy and not options.replace:
            where = ", ".join(f"{k}: {v:,} keys" for k, v in sorted(busy.items()))
            raise SnaptoolError(f"{address} is not empty ({where}); nothing was changed. Use --replace to "
                                "overwrite keys the snapshot holds, or --flush to empty it first")
        libraries = _libraries(paths, loader.target, options.allow_lossy)
        loaded = time.monotonic()
        done = 0
        for path in paths:
            with RdbReader.open(path) as reader:
                for record in reader.records():
                    loader.add(record)
                    record.release()
                    done += 1
                    if progress is not None and done % 4096 == 0:
                        progress(record.offset, done)
        counts = loader.finish()
        report.load_seconds = round(time.monotonic() - loaded, 3)
        report.restored, report.expired_skipped = counts.restored, counts.expired_skipped
        report.functions = _load_functions(address, libraries, loader.cluster, options.replace or options.flush)
    report.validation = validate_live(address, records_of(paths), sample=options.sample)
    return report


def _libraries(paths: list[str], target: Target, allow_lossy: bool) -> list[bytes]:
    """The snapshot's function libraries (each once; they come before the keys in a file), checked
    against the target before any key is written: an engine without functions cannot take them."""
    libraries = Libraries()
    for path in paths:
        with RdbReader.open(path) as reader:
            for item in reader.items():
                if type(item) is Function:
                    libraries.add(item.code, path)
                elif type(item) is Record:
                    break
    if libraries.codes and target.rdb_version < FUNCTIONS_SINCE:
        losses = Losses()
        for code in libraries.codes:
            losses.add("function libraries", Function(code).name)
        losses.check(target, allow_lossy)
        return []
    return libraries.codes


def _load_functions(address: NodeAddress, libraries: list[bytes], cluster: bool, replace: bool) -> int:
    """FUNCTION LOAD each distinct library on the target (every primary of a cluster)."""
    if not libraries:
        return 0
    nodes = [address]
    if cluster:
        from ..engines.topology import read_topology
        nodes = [address.with_endpoint(s.primary.host, s.primary.port) for s in read_topology(address)]
    for node in nodes:
        client = node.client()
        try:
            for code in libraries:
                args = ("FUNCTION", "LOAD", "REPLACE", code) if replace else ("FUNCTION", "LOAD", code)
                client.execute_command(*args)
        except redis.ResponseError as exc:
            raise EngineError(f"{node} refused a function library: {exc}") from None
        finally:
            client.close()
    return len(libraries)

