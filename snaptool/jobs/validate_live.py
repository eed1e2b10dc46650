"""Prove that a live node or cluster holds exactly what a snapshot holds.

Every key the snapshot holds (minus those expired by the time the check starts, and empty
collections, which loaders skip) is looked up on the node that owns it: a standalone node in the
key's database, or in a cluster (database 0 only, whatever database a key came from) the primary
that owns the key's slot, found with CLUSTER NODES and reached with the same credentials and TLS
settings. Keys are compared in one of two ways:

* ``digest``: ``DEBUG DIGEST-VALUE`` on the node against the digest computed offline from the
  record with the engine's own rules (:mod:`snaptool.rdb.digest`); cheap for the node and exact;
* ``reads``: type-aware reads compared with the decoded record (:mod:`snaptool.engines.reads`),
  for nodes that refuse DEBUG, as managed services do.

In both modes a key the node serializes exactly as the file holds it (its ``DUMP`` payload, the
common case when the node runs the release that wrote the file) is proven equal by that alone,
without decoding or hashing its value; every other key, and every key that differs, is compared
the mode's way, which also says what differs. ``auto`` probes DEBUG once per primary and picks
digest when every one answers. Expiry times are compared in both modes (PEXPIRETIME where the
engine has it, else PTTL within a tolerance). Counts are always complete, also when only a
sample of keys is compared: expected keys per database against INFO keyspace, and in a cluster
expected keys per slot against CLUSTER COUNTKEYSINSLOT on the slot's owner, plus keys a node
holds in slots it does not own.

Keys travel in pipelined batches over raw connections (:mod:`snaptool.engines.resp`): a batch
whose replies are exactly those the snapshot predicts is confirmed with one comparison of bytes.
"""

from __future__ import annotations

import random
import time
from array import array
from binascii import hexlify
from typing import Any, Callable, Iterable

import redis

from ..engines.address import NodeAddress
from ..engines.reads import (Command, DumpCheck, Reader, ServerTraits, compare_stream_meta, compare_value,
                             info_fields, pipelined, raw_client, require, resume, resume_pipelined, run_pipelined)
from ..engines.resp import ConnectionLost, RespConnection, bulk, encode, encode_all
from ..engines.topology import is_cluster, read_topology
from ..errors import EngineError, SnaptoolError
from ..rdb.checksum import key_slot
from ..rdb.digest import DatasetDigest, string_digest, value_digest
from ..rdb.dump import dump_version
from ..rdb.items import Record
from ..rdb.slots import SLOTS
from ..rdb.targets import ENGINES, Target
from ..rdb.values import is_empty
from .digest import digest_value_input, string_value
from .validate_report import ValidationReport

MODES = ("auto", "digest", "reads")
_BATCH_KEYS = 500
_BATCH_BYTES = 4 << 20  # serialized record bytes per pipelined batch: bounds the replies in flight
_PROGRESS_EVERY = 1024  # records between progress reports
_SAMPLE_SEED = 20240611
_ZERO = b"0" * 40
_PROBE_KEY = b"snaptool:probe"
_KINDS = (b"string", b"list", b"set", b"zset", b"hash", b"stream")
_SLOTS_LISTED = 8

# what one key's comparison found
EQUAL, MISSING, DIFFERENT, NOT_COMPARED, EXPIRED = "equal", "missing", "different", "not compared", "expired"


def validate_live(address: NodeAddress, records: Iterable[Record], *, mode: str = "auto",
                  sample: int | None = None, ttl_tolerance_ms: int = 2000,
                  progress: Callable[[int, int], None] | None = None,
                  dataset: DatasetDigest | None = None) -> ValidationReport:
    """Compare the live node or cluster at ``address`` with the snapshot ``records``.

    ``mode``: "digest", "reads" or "auto" (digest when every primary answers DEBUG). ``sample=N``
    compares N keys chosen uniformly at random (seeded, reproducible) instead of every key; counts
    stay complete. ``ttl_tolerance_ms`` applies where only PTTL (a relative TTL) is available.
    ``progress(offset, checked)`` is told how far it got. ``dataset``, when given, gets every key
    the target should hold folded in (the expected ``DEBUG DIGEST``), sharing the pass over each
    value with the comparison. EngineError when a node cannot be reached or refuses a command the
    comparison needs.
    """
    if mode not in MODES:
        raise SnaptoolError(f"unknown validation mode {mode!r} (auto, digest or reads)")
    if sample is not None and sample < 1:
        raise SnaptoolError(f"a sample needs at least one key, not {sample}")
    started = time.monotonic()
    deployment = _Deployment(address)
    try:
        report = _run(deployment, records, mode, sample, ttl_tolerance_ms, progress, dataset)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise EngineError(f"lost the connection to {address}: {exc}") from None
    except redis.RedisError as exc:  # INFO or a probe refused (ACLs, renamed commands)
        raise EngineError(f"{address} refused a command validation needs: {exc}") from None
    finally:
        deployment.close()
    report.seconds = time.monotonic() - started
    return report


def _run(deployment: _Deployment, records: Iterable[Record], mode: str, sample: int | None, tolerance: int,
         progress: Callable[[int, int], None] | None, dataset: DatasetDigest | None) -> ValidationReport:
    traits = ServerTraits.read(deployment.client(0, 0))
    report = ValidationReport(traits.name, target=str(deployment.address), mode=_choose_mode(mode, deployment),
                              sample=sample)
    # keys compared by digest fold into the dataset digest as they are compared; any other key here
    shared = dataset if report.mode == "digest" and sample is None else None
    fold = dataset if shared is None else None
    checker = _Checker(deployment, traits, report, tolerance, shared)
    reservoir = _Reservoir(sample) if sample is not None else None
    now_ms = int(time.time() * 1000)
    counts, slots, cluster = report.expected_per_db, checker.expected_slots, deployment.cluster
    seen, record = 0, None
    for record in records:
        if record.expire_ms is not None and record.expire_ms < now_ms:
            report.expired_skipped += 1
            record.release()
        elif record.type and is_empty(record):  # loaders skip empty collections (type 0 is a string)
            record.release()
        else:
            if cluster:
                slot = key_slot(record.key)
                slots[slot] += 1
                where = (deployment.owner[slot], 0)
            else:
                where = (0, record.db)
            counts[where[1]] = counts.get(where[1], 0) + 1
            if fold is not None:
                fold.add(record.db, record.key, record.kind, digest_value_input(record),
                         has_expire=record.expire_ms is not None)
            if reservoir is None:
                checker.add(where, record)  # released once compared
            elif (dropped := reservoir.offer((where, record))) is not None:
                dropped[1].release()
        seen += 1
        if progress is not None and not seen % _PROGRESS_EVERY:
            progress(record.offset + record.size, report.checked)
    for where, kept in reservoir.items if reservoir is not None else ():
        checker.add(where, kept)
    checker.flush()
    if progress is not None and record is not None:
        progress(record.offset + record.size, report.checked)
    _count_live(deployment, checker)
    return report


def _choose_mode(mode: str, deployment: _Deployment) -> str:
    """Digest when every primary answers DEBUG DIGEST-VALUE (remote and managed nodes usually refuse it)."""
    if mode == "reads":
        return mode
    for index, node in enumerate(deployment.nodes):
        try:
            deployment.client(index, 0).execute_command("DEBUG", "DIGEST-VALUE", _PROBE_KEY)
        except redis.ResponseError as exc:
            if mode == "digest":
                raise EngineError(f"{node} refuses DEBUG DIGEST-VALUE ({exc}); validate with reads") from None
            return "reads"
    return "digest"


class _Deployment:
    """The primaries that hold the data: one standalone node (every database) or each primary of a
    cluster (database 0, keys routed by slot). Control commands go through redis-py, the key by
    key comparison through raw connections."""

    def __init__(self, address: NodeAddress) -> None:
        self.address = address
        self.cluster = is_cluster(address)
        self.nodes = [address]
        self.ranges: list[list[tuple[int, int]]] = []
        self.owner = array("H")
        if self.cluster:
            shards = read_topology(address)
            self.nodes = [address.with_endpoint(s.primary.host, s.primary.port) for s in shards]
            self.ranges = [s.ranges for s in shards]
            self.owner = array("H", [0]) * SLOTS
            for index, ranges in enumerate(self.ranges):
                for start, end in ranges:
                    self.owner[start:end + 1] = array("H", [index]) * (end - start + 1)
        self._clients: dict[tuple[int, int], redis.Redis] = {}
        self._conns: dict[tuple[int, int, int], RespConnection] = {}

    def client(self, node: int, db: int) -> redis.Redis:
        if (node, db) not in self._clients:
            self._clients[node, db] = raw_client(self.nodes[node], db)
        return self._clients[node, db]

    def conn(self, node: int, db: int, lane: int = 0) -> RespConnection:
        """A raw connection to ``node`` with ``db`` selected; ``lane`` tells several apart."""
        if (node, db, lane) not in self._conns:
            self._conns[node, db, lane] = RespConnection(self.nodes[node], db)
        return self._conns[node, db, lane]

    def db_of(self, record: Record) -> int:
        """Where the key lives: its database, or db 0 in a cluster (the only one it has: keys of
        other databases got there mapped to 0)."""
        return 0 if self.cluster else record.db

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        for conn in self._conns.values():
            conn.close()
        self._clients.clear()
        self._conns.clear()


class _Reservoir:
    """A uniform sample of fixed size from a stream of unknown length (algorithm R), seeded."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[Any] = []
        self.seen = 0
        self.rng = random.Random(_SAMPLE_SEED)

    def offer(self, item: Any) -> Any | None:
        """Keep ``item`` or not; returns whichever item left the sample (None while filling up)."""
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return None
        index = self.rng.randrange(self.seen)
        if index >= self.size:
            return item
        dropped, self.items[index] = self.items[index], item
        return dropped


def _digest_rules(traits: ServerTraits) -> Target:
    """The digest rules of the newest known release not newer than the live engine."""
    same = [t for t in ENGINES.values() if t.flavour == traits.flavour]
    older = [t for t in same if t.version <= traits.version]
    return max(older, key=lambda t: t.version) if older else min(same, key=lambda t: t.version)


Outcome = tuple[str, str]  # (what the comparison found, why it differs)
Finish = Callable[[], "list[Outcome] | None"]  # reads a batch's replies: its outcomes, None when all equal


class _Checker:
    """Compares keys in batches per (node, database) and tallies what it finds.

    A batch goes out as one request, and while the node answers it the replies the snapshot
    predicts are built; a batch that comes back exactly as predicted is confirmed with one
    comparison of bytes. Keys are first compared by DUMP payload where that can prove them
    equal (:class:`~snaptool.engines.reads.DumpCheck`); the others, and any key whose reply
    differs, the mode's way: by digest or by reads, through per-key readers that say what
    differs. Each place has two connections used in turn, so one batch is settled while the
    node already works on the next.
    """

    def __init__(self, deployment: _Deployment, traits: ServerTraits, report: ValidationReport,
                 tolerance_ms: int, dataset: DatasetDigest | None) -> None:
        self.deployment = deployment
        self.traits = traits
        self.report = report
        self.tolerance_ms = tolerance_ms
        self.dataset = dataset
        self.rules = _digest_rules(traits)
        self.ttl_name = b"PEXPIRETIME" if traits.pexpiretime else b"PTTL"
        # keys compared by digest for the dataset digest are hashed anyway: DUMP would add work
        self.dumps = DumpCheck(traits, dump_version(self.rules)) if dataset is None else None
        self.expected_slots = array("L", [0]) * SLOTS
        self.missing_per_db: dict[int, int] = {}
        self.batches: dict[tuple[int, int], list[Record]] = {}
        self.weights: dict[tuple[int, int], int] = {}
        self.lanes: dict[tuple[int, int], int] = {}
        self.pending: dict[tuple[int, int], tuple[list[Record], Callable[[], None]]] = {}

    def add(self, where: tuple[int, int], record: Record) -> None:
        batch = self.batches.get(where)
        if batch is None:
            batch = self.batches[where] = []
            self.weights[where] = 0
        batch.append(record)
        weight = self.weights[where] + record.size
        if len(batch) >= _BATCH_KEYS or weight >= _BATCH_BYTES:
            del self.batches[where], self.weights[where]
            self._submit(where, batch)
        else:
            self.weights[where] = weight

    def flush(self) -> None:
        for where in list(self.batches):
            del self.weights[where]
            self._submit(where, self.batches.pop(where))
        for where in list(self.pending):
            self._settle(where, *self.pending.pop(where))

    def _submit(self, where: tuple[int, int], batch: list[Record]) -> None:
        """Send ``batch``, then settle the batch sent before it to the same place."""
        lane = self.lanes[where] = 1 - self.lanes.get(where, 1)
        conn = self.deployment.conn(*where, lane)
        finish = self._guarded(where, lambda: self._send(conn, batch))
        previous = self.pending.pop(where, None)
        self.pending[where] = (batch, finish)
        if previous is not None:
            self._settle(where, *previous)

    def _settle(self, where: tuple[int, int], batch: list[Record], finish: Callable[[], None]) -> None:
        self._guarded(where, finish)
        for record in batch:
            record.release()

    def _guarded(self, where: tuple[int, int], step: Callable[[], Any]) -> Any:
        """``step()``, a refusal named after the node it came from."""
        try:
            return step()
        except ConnectionLost:
            raise
        except EngineError as exc:
            raise EngineError(f"{self.deployment.nodes[where[0]]} {exc}") from None

    def _send(self, conn: RespConnection, batch: list[Record]) -> Callable[[], None]:
        """Send the first request for ``batch``: DUMP for the keys it may prove equal, the mode's
        own comparison for the others. Returns what reads the replies, compares the keys DUMP
        did not prove the mode's way, and tallies."""
        dumps = self.dumps
        eligible: list[Record] = []
        rest = batch if dumps is None else []
        if dumps is not None:
            for record in batch:
                (eligible if dumps.eligible(record) else rest).append(record)
        verdicts = dumps.send(conn, eligible) if dumps is not None and eligible else None
        others = self._tallied(rest, self._send_mode(conn, rest)) if rest else None

        def finish() -> None:
            unproven = self._tally_dumps(eligible, verdicts()) if verdicts is not None else []
            if others is not None:
                others()
            if unproven:
                self._tallied(unproven, self._send_mode(conn, unproven))()
        return finish

    def _send_mode(self, conn: RespConnection, records: list[Record]) -> Finish:
        if self.report.mode == "digest":
            return self._send_digests(conn, records)
        return self._send_reads(conn, records)

    def _tallied(self, records: list[Record], finish: Finish) -> Callable[[], None]:
        def tally() -> None:
            outcomes = finish()
            if outcomes is None:  # every key as the snapshot has it
                self.report.checked += len(records)
                self.report.equal += len(records)
            else:
                for record, (status, detail) in zip(records, outcomes):
                    self._tally(record, status, detail)
        return tally

    def _tally_dumps(self, records: list[Record], verdicts: list[bool | None] | None) -> list[Record]:
        """Tally the keys DUMP proved equal (or gone); the others, to compare the mode's way."""
        if verdicts is None:
            self.report.checked += len(records)
            self.report.equal += len(records)
            return []
        rest = []
        for record, verdict in zip(records, verdicts):
            if verdict is None:
                rest.append(record)
            else:
                self._tally(record, *((EQUAL, "") if verdict else self._gone(record)))
        return rest

    def _tally(self, record: Record, status: str, detail: str) -> None:
        report = self.report
        if status == EXPIRED:
            report.expired_skipped += 1
            db = self.deployment.db_of(record)
            report.expected_per_db[db] -= 1
            if self.deployment.cluster:
                self.expected_slots[key_slot(record.key)] -= 1
            return
        report.checked += 1
        if status == EQUAL:
            report.equal += 1
        elif status == NOT_COMPARED:
            report.not_compared += 1
        elif status == MISSING:
            report.missing += 1
            db = self.deployment.db_of(record)
            self.missing_per_db[db] = self.missing_per_db.get(db, 0) + 1
            report.note(f"missing: {record.key!r}" + (f" (db {record.db})" if record.db else ""))
        else:
            report.different += 1
            report.note(f"different: {record.key!r}: {detail}")

    # ------------------------------------------------------------------ digest mode

    def _send_digests(self, conn: RespConnection, batch: list[Record]) -> Finish:
        """One ``DEBUG DIGEST-VALUE`` for the whole batch, plus the expiry time of every key that
        has one (the digest covers type, value and whether the key expires)."""
        timed = [r for r in batch if r.expire_ms is not None]
        digest_command: Command = (b"DEBUG", b"DIGEST-VALUE", *(r.key for r in batch))
        ttl_commands: list[Command] = [(self.ttl_name, r.key) for r in timed]
        conn.send(encode(*digest_command) + encode_all(ttl_commands))
        kinds = [r.kind for r in batch]
        values = [digest_value_input(r) for r in batch]
        wants = [self._want(r, kind, value) for r, kind, value in zip(batch, kinds, values)]
        predicted = b"*%d\r\n%b" % (len(wants), b"".join([b"+%b\r\n" % w for w in wants])) \
            if None not in wants else None  # a module value's digest cannot be predicted

        def finish() -> list[Outcome] | None:
            if predicted is not None and conn.matches(predicted):
                digests = None
            else:
                digests = require(conn.replies(1), [digest_command])[0]
            if self.traits.pexpiretime and conn.matches(b"".join([b":%d\r\n" % r.expire_ms for r in timed])):
                expiries = None
            else:
                expiries = require(conn.replies(len(timed)), ttl_commands)
            if digests is None and expiries is None and "stream" not in kinds:
                return None
            found = iter(digests if digests is not None else wants)
            expiry = iter(expiries if expiries is not None else [r.expire_ms for r in timed])
            readers = [self._by_digest(r, kind, value, next(found), want,
                                       next(expiry) if r.expire_ms is not None else None)
                       for r, kind, value, want in zip(batch, kinds, values, wants)]
            return run_pipelined(conn, readers)
        return finish

    def _want(self, record: Record, kind: str, value: Any) -> bytes | None:
        """The DIGEST-VALUE reply the snapshot predicts (None for a module value: its digest
        callback cannot run here)."""
        has_expire = record.expire_ms is not None
        if self.dataset is not None:  # every key folds in, a module value by its type alone
            digest = self.dataset.add(record.db, record.key, kind, value, has_expire=has_expire)
        elif kind == "module":
            return None
        elif kind == "string":
            digest = string_digest(value, has_expire)
        else:
            digest = value_digest(kind, value, has_expire=has_expire, score_format=self.rules.score_format,
                                  hexpire_marker=self.rules.hexpire_marker)
        return None if kind == "module" else hexlify(digest)

    def _by_digest(self, record: Record, kind: str, value: Any, found: bytes, want: bytes | None,
                   expiry: int | None) -> Reader:
        """What ``found`` (the key's DIGEST-VALUE) and ``expiry`` (its expiry reply, for a key
        that has one in the snapshot) say; a digest that differs on a key without expiry asks
        whether the node gave it one, to say why. Stream metadata is not digested: read."""
        if found == _ZERO:
            return self._gone(record)
        problem = self._expiry_problem(record.expire_ms, int(expiry)) if expiry is not None else None
        if problem:
            return DIFFERENT, problem
        if kind == "module":
            return NOT_COMPARED, ""
        if found != want:
            if expiry is None:
                command = self._ttl(record.key)
                (expiry,) = require((yield [command]), [command])
                problem = self._expiry_problem(None, int(expiry))
            return DIFFERENT, problem or "value digest differs"
        if kind == "stream":
            problem = yield from compare_stream_meta(self.traits, record.key, value)
            if problem:
                return DIFFERENT, problem
        return EQUAL, ""

    # ------------------------------------------------------------------ reads mode

    def _send_reads(self, conn: RespConnection, batch: list[Record]) -> Finish:
        """Strings whose replies are exact (expiry and value) are read back in one block and
        confirmed at once; every other key by its reader, in the same round trip."""
        quick: list[int] = []
        started: list[tuple[int, Reader, list[Command]]] = []
        request: list[bytes] = []
        for index, record in enumerate(batch):
            kind = record.kind
            if kind == "string" and (self.traits.pexpiretime or record.expire_ms is None):
                quick.append(index)
                request.append(b"*2\r\n%b%b*2\r\n$3\r\nGET\r\n%b" % (
                    bulk(self.ttl_name), bulk(record.key), bulk(record.key)))
            else:
                value = digest_value_input(record) if kind != "module" else None
                reader = self._by_reads(record, kind, value)
                started.append((index, reader, next(reader)))
        conn.send(b"".join(request) + encode_all(c for _, _, first in started for c in first))
        values = [string_value(batch[i]) for i in quick]
        predicted = b"".join([b":%d\r\n$%d\r\n%b\r\n" % (-1 if batch[i].expire_ms is None else batch[i].expire_ms,
                                                          len(v), v) for i, v in zip(quick, values)])

        def finish() -> list[Outcome] | None:
            replies: list[Any] = []
            if quick and not conn.matches(predicted):
                replies = conn.replies(2 * len(quick))
                readers = [self._by_reads(batch[i], "string", v) for i, v in zip(quick, values)]
                replies += conn.replies(sum(len(first) for _, _, first in started))
                started[:0] = [(i, reader, next(reader)) for i, reader in zip(quick, readers)]
            elif started:
                replies = conn.replies(sum(len(first) for _, _, first in started))
            else:
                return None
            outcomes: list[Outcome] = [(EQUAL, "")] * len(batch)
            finished = resume_pipelined(conn, [(reader, first) for _, reader, first in started], replies)
            for (index, _, _), outcome in zip(started, finished):
                outcomes[index] = outcome
            return outcomes
        return finish

    def _by_reads(self, record: Record, kind: str, value: Any) -> Reader:
        """The expiry reply says whether the key exists, a WRONGTYPE reply that its type changed."""
        key = record.key
        head: list[Command] = [self._ttl(key)]
        body = None
        if kind == "module":
            head.append(("TYPE", key))
        else:
            body = compare_value(self.traits, key, kind, value)
        replies = yield head + (next(body) if body is not None else [])
        expiry, *found = require(replies[:len(head)], head)
        if int(expiry) == -2:
            return self._gone(record)
        if any(isinstance(r, redis.ResponseError) and str(r).startswith("WRONGTYPE") for r in replies[len(head):]):
            found = require((yield [("TYPE", key)]), [("TYPE", key)])
        problem = (_type_problem(found[0], kind) if found else None) or \
            self._expiry_problem(record.expire_ms, int(expiry))
        if problem:
            return DIFFERENT, problem
        if kind == "module":
            return NOT_COMPARED, ""
        problem = (yield from resume(body, replies[len(head):])) if body is not None else None
        return (DIFFERENT, problem) if problem else (EQUAL, "")

    # ------------------------------------------------------------------ both

    def _ttl(self, key: bytes) -> Command:
        return (self.ttl_name, key)

    @staticmethod
    def _gone(record: Record) -> Outcome:
        """Missing, unless the key's own expiry passed while the check ran."""
        expired = record.expire_ms is not None and record.expire_ms <= time.time() * 1000
        return (EXPIRED if expired else MISSING), ""

    def _expiry_problem(self, expire_ms: int | None, reply: int) -> str | None:
        if expire_ms is None:
            return None if reply == -1 else f"expiry: the node says {reply}, the snapshot has no expiry"
        if reply < 0:
            return f"expiry: the snapshot expires at {expire_ms}, the node has no expiry"
        if self.traits.pexpiretime:
            same = reply == expire_ms
        else:
            same = abs(time.time() * 1000 + reply - expire_ms) <= self.tolerance_ms
        return None if same else f"different expiry: expires at {expire_ms}, the engine says {reply}"


def _type_problem(found: bytes, kind: str) -> str | None:
    """TYPE names the module's type for a module value, the kind for any other."""
    same = found not in _KINDS if kind == "module" else found == kind.encode()
    return None if same else f"is a {found.decode('utf-8', 'replace')}, in the snapshot a {kind}"


def _count_live(deployment: _Deployment, checker: _Checker) -> None:
    """Live keys per database (and per slot in a cluster) against the expected counts."""
    report = checker.report
    if deployment.cluster:
        _count_slots(deployment, checker)
    else:
        keyspace = info_fields(deployment.client(0, 0), "keyspace")
        report.live_per_db = {int(name[2:]): int(text.split(",")[0].split("=")[1])
                              for name, text in keyspace.items() if name.startswith("db")}
    report.live_keys = sum(report.live_per_db.values())
    for db, live in report.live_per_db.items():
        kept = report.expected_per_db.get(db, 0) - checker.missing_per_db.get(db, 0)
        report.extra += max(0, live - kept)
    report.expected_per_db = {db: n for db, n in report.expected_per_db.items() if n}


def _count_slots(deployment: _Deployment, checker: _Checker) -> None:
    """DBSIZE and CLUSTER COUNTKEYSINSLOT of every owned slot on each primary."""
    report = checker.report
    live = array("L", [0]) * SLOTS
    total = 0
    for index, node in enumerate(deployment.nodes):
        slots = [s for start, end in deployment.ranges[index] for s in range(start, end + 1)]
        commands: list[Command] = [("DBSIZE",), *(("CLUSTER", "COUNTKEYSINSLOT", s) for s in slots)]
        try:
            size, *counts = require(pipelined(deployment.client(index, 0), commands), commands)
        except EngineError as exc:
            raise EngineError(f"{node} {exc}") from None
        for slot, count in zip(slots, counts):
            live[slot] = count
        if size != sum(counts):
            report.misplaced += size - sum(counts)
            report.note(f"{node} holds {size - sum(counts)} keys of slots it does not own")
        total += size
    report.live_per_db = {0: total} if total else {}
    mismatched = [(s, checker.expected_slots[s], live[s]) for s in range(SLOTS) if checker.expected_slots[s] != live[s]]
    report.slots_mismatched = len(mismatched)
    report.slot_mismatches = mismatched[:_SLOTS_LISTED]


__all__ = ["MODES", "ValidationReport", "validate_live"]
