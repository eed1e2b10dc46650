"""Prove that live engine nodes hold exactly what the source snapshots held.

The engine computes one side of every comparison: ``DEBUG DIGEST-VALUE`` per key on the node that
owns it, ``DEBUG DIGEST`` for a whole node, ``CLUSTER COUNTKEYSINSLOT`` for placement. The other
side is computed offline from the source records with the engine's own digest rules. Keys already
expired when the check starts are left out (a loading primary drops them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import redis

from ..engines.cluster import LocalCluster
from ..engines.discovery import Engine
from ..engines.server import EngineServer
from ..rdb.checksum import key_slot
from ..rdb.digest import DatasetDigest, value_digest
from ..rdb.items import Record
from ..rdb.slots import SlotLayout
from ..rdb.targets import Target, parse_target
from .digest import digest_value_input

_BATCH = 500
_PROBLEMS_LISTED = 20
_ZERO = b"0" * 40


@dataclass
class ValidationReport:
    engine: str
    checked: int = 0
    equal: int = 0
    missing: int = 0
    different: int = 0
    extra: int = 0
    expired_skipped: int = 0
    live_keys: int = 0
    misplaced: int = 0
    unreachable: int = 0
    digest_expected: str | None = None
    digest_live: str | None = None
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.different or self.extra or self.misplaced or self.unreachable) and \
            self.digest_expected == self.digest_live

    def note(self, problem: str) -> None:
        if len(self.problems) < _PROBLEMS_LISTED:
            self.problems.append(problem)

    def summary(self) -> str:
        verdict = "validated" if self.ok else "VALIDATION FAILED"
        return (f"{verdict} on {self.engine}: {self.checked:,} checked, {self.equal:,} equal, "
                f"{self.missing:,} missing, {self.different:,} different, {self.extra:,} extra"
                + (f", {self.misplaced:,} misplaced" if self.misplaced else "")
                + (f", {self.unreachable:,} unreachable" if self.unreachable else ""))

    def table(self) -> str:
        rows = [("checked", self.checked), ("equal", self.equal), ("missing", self.missing),
                ("different", self.different), ("extra", self.extra), ("misplaced", self.misplaced),
                ("unreachable", self.unreachable), ("expired, skipped", self.expired_skipped)]
        lines = [f"  {name:<18}{value:>14,}" for name, value in rows]
        if self.digest_expected is not None:
            lines.append(f"  digest expected   {self.digest_expected}")
            lines.append(f"  digest live       {self.digest_live}")
        lines += [f"  ! {p}" for p in self.problems]
        return "\n".join(lines)


def _expected_values(records: Iterable[Record], target: Target, report: ValidationReport, now_ms: int,
                     dataset: DatasetDigest | None = None) -> Iterable[tuple[Record, bytes]]:
    """(record, expected DIGEST-VALUE hex) for every key a loading engine keeps; also folds each
    key into ``dataset`` (the expected DEBUG DIGEST) when given."""
    for record in records:
        if record.expire_ms is not None and record.expire_ms < now_ms:
            report.expired_skipped += 1
            continue
        value = digest_value_input(record)
        if value is None:
            continue  # an empty collection: engines skip it on load
        digest = value_digest(record.kind, value, has_expire=record.expire_ms is not None,
                              score_format=target.score_format, hexpire_marker=target.hexpire_marker)
        if dataset is not None:  # the key's digest mixes the name first: decode the value again
            dataset.add(record.db, record.key, record.kind, digest_value_input(record),
                        has_expire=record.expire_ms is not None)
        yield record, digest.hex().encode()


_TTL_TOLERANCE_MS = 2000  # engines without PEXPIRETIME report a relative TTL


def _compare_batch(client: redis.Redis, batch: list[tuple[bytes, bytes, int | None]], report: ValidationReport,
                   absolute_ttl: bool) -> None:
    """DIGEST-VALUE (which only says *whether* a key expires) and the expiry time of every key."""
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("DEBUG", "DIGEST-VALUE", *(key for key, _, _ in batch))
    for key, _, _ in batch:
        pipe.execute_command("PEXPIRETIME" if absolute_ttl else "PTTL", key)
    replies = pipe.execute()
    now_ms = int(time.time() * 1000)
    for (key, expected, expire_ms), got, ttl in zip(batch, replies[0], replies[1:]):
        got = got if isinstance(got, bytes) else str(got).encode()
        report.checked += 1
        if got == _ZERO:
            report.missing += 1
            report.note(f"missing: {key!r}")
        elif got != expected:
            report.different += 1
            report.note(f"different: {key!r}")
        elif expire_ms is not None and not _ttl_matches(int(ttl), expire_ms, absolute_ttl, now_ms):
            report.different += 1
            report.note(f"different expiry: {key!r} expires at {expire_ms}, the engine says {ttl}")
        else:
            report.equal += 1


def _ttl_matches(reply: int, expire_ms: int, absolute: bool, now_ms: int) -> bool:
    if absolute:
        return reply == expire_ms
    return reply >= 0 and abs(now_ms + reply - expire_ms) <= _TTL_TOLERANCE_MS


def validate_cluster(engine: Engine, layout: SlotLayout, files: list[str], records: Iterable[Record], *,
                     progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Start a local cluster on ``files`` and compare it with the source ``records`` (db 0 keys)."""
    started = time.monotonic()
    target = parse_target(engine.target_name)
    report = ValidationReport(engine.name)
    absolute = engine.supports_pexpiretime
    with LocalCluster(engine, layout, files) as cluster:
        now_ms = int(time.time() * 1000)  # after loading: keys that expired meanwhile are gone
        clients = [node.client() for node in cluster.nodes]
        owner = layout.owner_table()
        batches: list[list[tuple[bytes, bytes]]] = [[] for _ in clients]
        reach = cluster.client()
        reach_pipe = reach.pipeline(transaction=False)
        pending_keys: list[bytes] = []
        for record, expected in _expected_values(records, target, report, now_ms):
            shard = owner[key_slot(record.key)]
            batches[shard].append((record.key, expected, record.expire_ms))
            pending_keys.append(record.key)
            if len(batches[shard]) >= _BATCH:
                _compare_batch(clients[shard], batches[shard], report, absolute)
                batches[shard] = []
            if len(pending_keys) >= _BATCH:
                _check_reachable(reach_pipe, pending_keys, report)
                pending_keys = []
            if progress is not None:
                progress(record.offset + record.size, report.checked)
            record.release()
        for shard, batch in enumerate(batches):
            if batch:
                _compare_batch(clients[shard], batch, report, absolute)
        if pending_keys:
            _check_reachable(reach_pipe, pending_keys, report)
        for shard, (client, node_shard) in enumerate(zip(clients, layout.shards)):
            size = client.dbsize()
            report.live_keys += size
            pipe = client.pipeline(transaction=False)
            for start, end in node_shard.ranges:
                for slot in range(start, end + 1):
                    pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
            owned = sum(pipe.execute())
            if owned != size:
                report.misplaced += size - owned
                report.note(f"{node_shard.name} holds {size - owned} keys of slots it does not own")
        reach.close()
    report.extra = max(0, report.live_keys - report.equal - report.different)
    report.seconds = time.monotonic() - started
    return report


def _check_reachable(pipe, keys: list[bytes], report: ValidationReport) -> None:
    """Every key answers EXISTS through a cluster-aware client (routing by slot, following MOVED)."""
    for key in keys:
        pipe.exists(key)
    for key, found in zip(keys, pipe.execute()):
        if not found:
            report.unreachable += 1
            report.note(f"not reachable through the cluster client: {key!r}")


def validate_node(engine: Engine, file: str, records: Iterable[Record], *, databases: int = 16,
                  progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Load ``file`` into one standalone node and compare every key, then the DEBUG DIGEST."""
    started = time.monotonic()
    target = parse_target(engine.target_name)
    report = ValidationReport(engine.name)
    absolute = engine.supports_pexpiretime
    dataset = DatasetDigest(target.score_format, target.hexpire_marker)
    with EngineServer(engine, rdb=file, config={"databases": str(max(16, databases))}) as server:
        now_ms = int(time.time() * 1000)  # after loading: keys that expired meanwhile are gone
        clients: dict[int, redis.Redis] = {}
        batches: dict[int, list[tuple[bytes, bytes]]] = {}
        for record, expected in _expected_values(records, target, report, now_ms, dataset):
            db = record.db
            if db not in clients:
                clients[db], batches[db] = server.client(db), []
            batches[db].append((record.key, expected, record.expire_ms))
            if len(batches[db]) >= _BATCH:
                _compare_batch(clients[db], batches[db], report, absolute)
                batches[db] = []
            if progress is not None:
                progress(record.offset + record.size, report.checked)
            record.release()
        for db, batch in batches.items():
            if batch:
                _compare_batch(clients[db], batch, report, absolute)
        client = server.client()
        report.digest_live = client.execute_command("DEBUG", "DIGEST").decode()
        report.live_keys = sum(int(v["keys"]) for v in client.info("keyspace").values())
    report.digest_expected = dataset.hexdigest()
    report.extra = max(0, report.live_keys - report.equal - report.different)
    report.seconds = time.monotonic() - started
    return report
