"""`snaptool migrate memcached`: every key, value, TTL and flag of memcached servers into Redis, proven.

The run, for every server and then once for the target:

1. **probe** each server (:mod:`snaptool.engines.memcached_conn`) and refuse, with the reason and the
   dual-write advice, one whose keys cannot be listed;
2. **read**: ``lru_crawler metadump`` drained on its own thread (:mod:`~snaptool.engines.memcached_dump`),
   values, flags, remaining TTL and cas fetched with pipelined ``mg``
   (:mod:`~snaptool.engines.memcached_fetch`), several servers at once (:mod:`.migrate_fanin`),
   everything recorded in the ledger on local disk (:mod:`.migrate_ledger`) and the flags
   inventoried (:mod:`.migrate_flags`);
3. **decide**: non-zero flags without ``--flags``, or keys on two servers that neither ``--ring``
   (:mod:`~snaptool.engines.memcached_ring`) nor ``--on-duplicate`` settles, stop the run here,
   before anything is written;
4. **write** the ledger into the target (:mod:`.migrate_targets`): a live node or cluster with a
   relative TTL per key, or an RDB file — while a second ``metadump`` drains in the background;
5. **delta**: that second listing names what was written during the run: new keys and keys whose
   cas changed are read again and written after their first copy (a file is rewritten without
   the replaced copies);
6. **check** every key written against the target (:mod:`.migrate_check`) — for a file, after
   loading it into a local engine node — and only then commit the file or the snapshot.

Any key that was listed but is neither in the target nor explained (expired, deleted during the
run) makes the run fail with exit code 4.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

from ..engines.address import TlsOptions
from ..engines.discovery import engine_for_rdb, find_engine
from ..engines.memcached_conn import MemcachedAddress, MemcachedInputError, ServerInfo, probe, read_auth_file
from ..engines.memcached_dump import DUMP_SILENCE, Listing, choose_mode, describe_mode
from ..engines.memcached_ring import Ring
from ..engines.server import EngineServer
from ..errors import EngineError, SnaptoolError, ValidationError
from ..rdb.targets import Target, parse_target
from ..storage.catalog import Catalog, shard_file_name, snapshot_dir
from ..storage.manifest import Manifest, new_snapshot_id
from ..storage.repository import Repository
from ..engines.slot_map import show_key
from .ingest import ingest
from .migrate_check import Item, TargetCheck, check_target
from .migrate_flags import FlagsInventory, FlagsPolicy, FlagsRefused
from .migrate_read import Progress, Reader, SourceReport
from .migrate_resp import RedisTarget
from .migrate_targets import RdbFileSink, RedisSink, open_redis

DEFAULT_RDB_TARGET = "redis-6.2"  # RDB 9: loads on Redis 5.0 and later and on every Valkey
DUPLICATE_POLICIES = ("error", "first", "last")
_EXAMPLES = 10

class DuplicateKeys(SnaptoolError):
    """The same key on several servers, and neither --ring nor --on-duplicate chooses: nothing was written."""

    def __init__(self, count: int, examples: list[str], ring: str | None = None) -> None:
        why = f" and --ring {ring} maps them to a server holding no copy" if ring else ""
        super().__init__(f"{count:,} key(s) are on more than one memcached server{why}, e.g. "
                         f"{', '.join(examples[:5])}; nothing was written. Choose the copy to keep: --ring (the "
                         "clients' hash ring), or --on-duplicate first (the earlier --from) or last")


@dataclass
class MigrateOptions:
    sources: tuple[str, ...]
    to: str | None = None  # redis:// or rediss:// of a node or cluster
    to_dir: str | None = None
    repo: Repository | None = None
    key_prefix: bytes = b""
    flags: FlagsPolicy = field(default_factory=FlagsPolicy)
    auth_file: str | None = None
    workers: int = 2  # mg connections per server
    dry_run: bool = False
    replace: bool = False  # --to: write into a target that already holds keys
    on_duplicate: str = "error"
    ring: Ring | None = None  # the clients' hash ring: picks the copy of a key found on several servers
    target: Target | None = None  # RDB version of --to-dir / --repo files (default DEFAULT_RDB_TARGET)
    engine: str | None = None  # engine that loads the file for the check
    delta: bool = True
    enumerate: str = "auto"  # metadump "hash" (1.6.9+) or "all", or "mgdump" (1.6.19+, keys only)
    fetch: str = "auto"  # "meta" (1.6.10+) or "gets"
    timeout: float = 60.0  # seconds of silence from a server before giving up
    dump_silence: float = DUMP_SILENCE  # seconds of silence that end a dump without END (before 1.5.4)
    tags: tuple[str, ...] = ()
    kind: str = "manual"
    tls: TlsOptions | None = None
    username: str | None = None
    password: str | None = None
    work_dir: str | None = None  # where the dump spools and the ledger go (default: the temp dir)


@dataclass
class MigrationReport:
    sources: list[SourceReport]
    destination: str
    flags_policy: str
    inventory: FlagsInventory = field(default_factory=FlagsInventory)
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    on_duplicate: str = "error"
    ring: str | None = None
    ring_chosen: int = 0  # duplicated keys whose copy the ring chose
    written: int = 0  # keys written (a key written again by the delta pass counts once)
    expired_before_write: int = 0  # read, but their TTL ran out before the write (the check counts them too)
    flag_fields: int = 0
    check: TargetCheck | None = None
    file: str | None = None
    snapshot: str | None = None
    dry_run: bool = False
    would_refuse: str | None = None  # dry run: why the real run would stop
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def listed(self) -> int:
        return sum(s.listed for s in self.sources)

    @property
    def unexplained(self) -> int:
        """Keys lost without a reason: unreadable at the source, or missing or different in the target."""
        return sum(s.failed for s in self.sources) + (self.check.lost if self.check is not None else 0)

    @property
    def ok(self) -> bool:
        return self.unexplained == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["inventory"] = self.inventory.to_json()
        data["check"] = self.check.to_json() if self.check is not None else None
        data["listed"] = self.listed
        data["unexplained"] = self.unexplained
        data["ok"] = self.ok
        return data


# --------------------------------------------------------------------------- the job

def migrate_memcached(options: MigrateOptions, progress: Progress | None = None) -> MigrationReport:
    """Migrate as ``options`` say; raises ValidationError (exit 4) when keys were lost without a reason."""
    started = time.monotonic()
    destinations = [d for d in (options.to, options.to_dir, options.repo) if d is not None]
    if len(destinations) != 1 and not (options.dry_run and not destinations):
        raise MemcachedInputError("say where the keys go: --to redis://…, --to-dir DIR or --repo R (one of them)")
    if not options.sources:
        raise MemcachedInputError("name at least one memcached server with --from HOST:PORT")
    if options.on_duplicate not in DUPLICATE_POLICIES:
        raise MemcachedInputError(f"--on-duplicate must be one of {', '.join(DUPLICATE_POLICIES)}")
    if options.workers < 1:
        raise MemcachedInputError("--workers must be at least 1")
    if not options.timeout > 0 or not options.dump_silence > 0:
        raise MemcachedInputError("--timeout and --dump-silence must be positive numbers of seconds")
    if options.enumerate == "mgdump" and options.fetch == "gets":
        raise MemcachedInputError("--enumerate mgdump lists no expiry times, which --fetch gets needs: "
                                  "use --fetch meta")
    credentials = read_auth_file(options.auth_file) if options.auth_file else None
    addresses = [MemcachedAddress.parse(s, credentials) for s in options.sources]
    if len({a.endpoint for a in addresses}) != len(addresses):
        raise MemcachedInputError("the same memcached server is named twice with --from")
    ring = options.ring.bind(addresses) if options.ring is not None else None
    rdb_target = options.target or parse_target(DEFAULT_RDB_TARGET)

    infos = [probe(a, options.timeout) for a in addresses]
    reports = []
    for address, info in zip(addresses, infos):
        info.require_enumerable(str(address))
        listing, why = describe_mode(info, choose_mode(info, options.enumerate), options.enumerate)
        fetch = options.fetch if options.fetch != "auto" else ("meta" if info.meta else "gets")
        reports.append(SourceReport(str(address), info.version_text, listing, "mg" if fetch == "meta" else "gets",
                                    why))

    redis_target: RedisTarget | None = None
    engine = None
    if options.to is not None and not options.dry_run:
        redis_target = open_redis(options.to, tls=options.tls, username=options.username, password=options.password,
                                  timeout=options.timeout)
    try:
        if redis_target is not None and not options.replace:
            held = redis_target.key_count()
            if held:
                raise SnaptoolError(f"{redis_target.describe()} already holds {held:,} keys; nothing was written "
                                    "(use --replace to write into it anyway: keys of the same name are overwritten)")
        if (options.to_dir is not None or options.repo is not None) and not options.dry_run:
            engine = find_engine(options.engine) if options.engine else engine_for_rdb(rdb_target.rdb_version,
                                                                                       rdb_target.flavour)
        destination = (redis_target.describe() if redis_target is not None else
                       options.to or (os.path.abspath(options.to_dir) if options.to_dir else None) or
                       (options.repo.url if options.repo is not None else "(dry run)"))
        report = MigrationReport(reports, destination, str(options.flags), on_duplicate=options.on_duplicate,
                                 ring=str(options.ring) if options.ring is not None else None,
                                 dry_run=options.dry_run)
        work_parent = options.work_dir or None
        with tempfile.TemporaryDirectory(prefix="snaptool-migrate-", dir=work_parent) as work:
            reader = Reader(options, work, progress, ring)
            try:
                _run(options, addresses, infos, reader, report, redis_target, engine, rdb_target, work, progress)
            finally:
                reader.remove()
    finally:
        if redis_target is not None:
            redis_target.close()
    report.seconds = round(time.monotonic() - started, 3)
    if not report.ok:
        raise ValidationError(summary(report), report)
    return report


def _run(options: MigrateOptions, addresses: list[MemcachedAddress], infos: list[ServerInfo], reader: Reader,
         report: MigrationReport, redis_target: RedisTarget | None, engine: Any, rdb_target: Target, work: str,
         progress: Progress | None) -> None:
    servers = list(enumerate(zip(addresses, infos)))
    clock = time.monotonic()
    reader.read_servers([(address, info, report.sources[index]) for index, (address, info) in servers])
    report.stages["read"] = round(time.monotonic() - clock, 3)
    if options.dry_run:
        if options.delta:
            for index, (address, info) in servers:
                listing = reader.start_delta(index, address, info)
                reader.finish_delta(index, address, info, listing, report.sources[index])
        _summarize(reader, report)
        refusal = _refusal(options, reader, report)
        report.would_refuse = str(refusal) if refusal is not None else None
        return
    _summarize(reader, report)
    refusal = _refusal(options, reader, report)
    if refusal is not None:
        raise refusal
    # the second listing drains into its spool while the first pass is written
    job = _Copy(options, reader, report, servers, progress)
    try:
        if options.delta:
            job.listings = [reader.start_delta(index, address, info) for index, (address, info) in servers]
        if redis_target is not None:
            job.into_live(redis_target)
        else:
            job.into_file(engine, rdb_target, work)
            if report.ok and job.file is not None:
                if options.to_dir is not None:
                    report.file = job.file.commit()
                else:
                    assert options.repo is not None
                    report.snapshot = _store(options.repo, job.file, addresses, infos, options)
    finally:
        job.close()


class _Copy:
    """The write side of a run: the first pass into the target, the delta, the check."""

    def __init__(self, options: MigrateOptions, reader: Reader, report: MigrationReport,
                 servers: list[tuple[int, tuple[MemcachedAddress, ServerInfo]]], progress: Progress | None) -> None:
        self.options, self.reader, self.report, self.servers, self.progress = options, reader, report, servers, progress
        self.winners = reader.winners(options.on_duplicate) if reader.duplicates else {}
        self.hash_name = options.key_prefix + options.flags.hash_name if options.flags.mode == "hash" else None
        self.listings: list[Listing] = []
        self.file: RdbFileSink | None = None
        self.loading: _Loading | None = None

    def _delta(self, target: RedisTarget | None) -> None:
        """Read what the second listings name (the target, if live, already holds the first pass)."""
        reader = self.reader
        try:
            for (index, (address, info)), listing in zip(self.servers, self.listings):
                reader.finish_delta(index, address, info, listing, self.report.sources[index])
        except EngineError as exc:
            raise _rerun_advice(exc, target) from None
        self.listings = []
        _summarize(reader, self.report)
        self.winners = reader.winners(self.options.on_duplicate) if reader.duplicates else {}

    def _write_first(self, sink: RedisSink | RdbFileSink, target: RedisTarget | None) -> None:
        clock = time.monotonic()
        _write(sink, self.reader.plan(self.options, self.winners, second=False), self.hash_name, target,
               self.progress, self.reader.first.items)
        self.report.stages["write"] = round(time.monotonic() - clock, 3)

    def _checked(self, target: RedisTarget, sink: RedisSink | RdbFileSink) -> TargetCheck:
        report, progress = self.report, self.progress
        report.expired_before_write, report.flag_fields = sink.expired, sink.flag_fields
        clock = time.monotonic()
        batches_to_check = (items for items, _ in self.reader.plan(self.options, self.winners))
        check_progress = (lambda done: progress("check", done, report.written)) if progress is not None else None
        check = check_target(target, batches_to_check, hash_name=self.hash_name, progress=check_progress)
        report.stages["check"] = round(time.monotonic() - clock, 3)
        if self.hash_name:
            report.flag_fields = check.hash_fields
        return check

    def into_live(self, target: RedisTarget) -> None:
        """First pass, then the delta's keys on top (SET overwrites the first copies), then the check."""
        reader, options = self.reader, self.options
        sink = RedisSink(target)
        self._write_first(sink, target)
        if self.listings:
            clock = time.monotonic()
            self._delta(target)
            if self.hash_name and reader.superseded:
                sink.forget_flags(self.hash_name, [options.key_prefix + key for key in reader.superseded])
            _write(sink, reader.plan(options, self.winners, first=False), self.hash_name, target, None, 0)
            self.report.stages["delta"] = round(time.monotonic() - clock, 3)
        try:
            sink.finish()
        except EngineError as exc:
            raise _rerun_advice(exc, target) from None
        # the node took the first copy of a key the delta pass replaced as well: count keys, not writes
        self.report.written = sink.written - len(reader.superseded) - reader.late_duplicates
        self.report.check = self._checked(target, sink)

    def into_file(self, engine: Any, rdb_target: Target, work: str) -> None:
        """First pass into the file, which a local engine loads while the delta is read; when the
        delta found anything, the file is written again (a key may appear once) and loaded again."""
        reader, options = self.reader, self.options
        directory = options.to_dir if options.to_dir is not None else work
        self.file = RdbFileSink(directory, rdb_target)
        self._write_first(self.file, None)
        if self.listings:
            self.file.finish()
            self.loading = _Loading(EngineServer(engine, rdb=self.file.tmp))
            clock = time.monotonic()
            self._delta(None)
            if reader.second.items or reader.superseded or reader.late_duplicates:
                self.loading.stop()
                self.loading = None
                self.file.abort()
                self.file = RdbFileSink(directory, rdb_target)
                _write(self.file, reader.plan(options, self.winners), self.hash_name, None, None, 0)
            self.report.stages["delta"] = round(time.monotonic() - clock, 3)
        if self.loading is None:
            self.file.finish()
            self.loading = _Loading(EngineServer(engine, rdb=self.file.tmp))
        self.report.written = self.file.written
        server = self.loading.wait()
        loaded = RedisTarget(server.address)
        try:
            self.report.check = self._checked(loaded, self.file)
        finally:
            loaded.close()
        self.report.check.target = f"{engine.name} loading {self.file.path if options.to_dir else 'the snapshot file'}"

    def close(self) -> None:
        for listing in self.listings:
            listing.close()
        if self.loading is not None:
            self.loading.stop()
        if self.file is not None:
            self.file.abort()


class _Loading:
    """A local engine node starting on a file in the background (loading a big file takes a while)."""

    def __init__(self, server: EngineServer) -> None:
        self.server = server
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="engine load", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            self.server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to wait()
            self.error = exc

    def wait(self) -> EngineServer:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.server

    def stop(self) -> None:
        self.thread.join()
        self.server.stop()


def _summarize(reader: Reader, report: MigrationReport) -> None:
    report.inventory = reader.inventory
    report.problems = reader.problems
    report.duplicates = len(reader.duplicates)
    report.duplicate_examples = [show_key(k) for k in list(reader.duplicates)[:_EXAMPLES]]
    if reader.ring is not None:
        report.ring_chosen = report.duplicates - len(reader.unresolved())


def _refusal(options: MigrateOptions, reader: Reader, report: MigrationReport) -> SnaptoolError | None:
    """Why the run must stop before writing anything (None: it may go on)."""
    if reader.inventory.nonzero and options.flags.mode is None:
        return FlagsRefused(reader.inventory)
    if reader.duplicates and options.on_duplicate == "error":
        unresolved = reader.unresolved()
        if unresolved:
            return DuplicateKeys(len(unresolved), [show_key(k) for k in unresolved[:_EXAMPLES]], report.ring)
    return None


def _write(sink: RedisSink | RdbFileSink, plan: Iterator[tuple[list[Item], list[tuple[bytes, int]]]],
           hash_name: bytes | None, redis_target: RedisTarget | None, progress: Progress | None, total: int) -> None:
    try:
        for items, fields in plan:
            sink.write(items)
            for name, item_flags in fields:
                assert hash_name is not None
                sink.flag(hash_name, name, item_flags)
            sink.push()
            if progress is not None:
                progress("write", sink.written + sink.expired, total)
    except EngineError as exc:
        raise _rerun_advice(exc, redis_target) from None


def _rerun_advice(exc: EngineError, redis_target: RedisTarget | None) -> EngineError:
    if redis_target is None:
        return exc
    return EngineError(f"{exc}; memcached was only read, so nothing is lost: run the migration again "
                       "with --replace (the target holds part of the keys now)")


def _store(repo: Repository, sink: RdbFileSink, addresses: list[MemcachedAddress], infos: list[ServerInfo],
           options: MigrateOptions) -> str:
    """The proven file as a snapshot; the manifest is written last, as for every backup."""
    created = datetime.now(timezone.utc)
    first = addresses[0]
    snapshot_id = new_snapshot_id(f"memcached-{first.host}-{first.port}", created)
    try:
        with open(sink.tmp, "rb") as fh:
            entry = ingest(fh, repo, snapshot_id, shard_file_name(snapshot_id, 1), where=sink.tmp,
                           expected_size=os.path.getsize(sink.tmp))
        entry.role = "file"
        engines = sorted({info.name for info in infos})
        manifest = Manifest(id=snapshot_id, created=created.isoformat(timespec="seconds").replace("+00:00", "Z"),
                            kind=options.kind, files=[entry], tags=list(options.tags),
                            source={"url": ",".join(f"memcached://{a.endpoint}" for a in addresses),
                                    "type": "memcached", "engine": ",".join(engines),
                                    "flags": str(options.flags)})
        Catalog(repo).commit(manifest)
    except BaseException:
        with contextlib.suppress(Exception):
            repo.remove(snapshot_dir(snapshot_id), recursive=True)
        raise
    return snapshot_id


def summary(report: MigrationReport) -> str:
    """One line: what arrived, and what was lost."""
    check = report.check
    parts = [f"{report.listed:,} keys listed"]
    if check is not None:
        parts.append(f"{check.equal:,} verified in the target")
        if check.lost:
            parts.append(f"{check.missing:,} missing, {check.different:,} different, {check.ttl_off:,} with another "
                         f"TTL, {check.flags_off:,} with other flags")
    failed = sum(s.failed for s in report.sources)
    if failed:
        parts.append(f"{failed:,} could not be read")
    lead = "migration lost keys: " if not report.ok else ""
    return lead + "; ".join(parts)


__all__ = ["DEFAULT_RDB_TARGET", "DUPLICATE_POLICIES", "DuplicateKeys", "MigrateOptions", "MigrationReport",
           "SourceReport", "migrate_memcached", "summary"]
