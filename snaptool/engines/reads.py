"""Type-aware reads of live keys, compared page by page with the value a snapshot holds.

A validation that cannot use ``DEBUG DIGEST-VALUE`` (managed services refuse DEBUG) reads every
key back instead. Each comparison is a generator (a :data:`Reader`) that yields the commands of its
next page and receives their replies, so :func:`run_pipelined` drives hundreds of keys through one
pipeline per round while a huge key is read in pages of :data:`PAGE` elements, never as one giant
reply. Lists and stream entries are read in order (LRANGE, XRANGE); sets, sorted sets and hashes
are checked by their size plus lookups of the expected elements (SMISMEMBER, ZMSCORE, HMGET),
which is exact (a set of N members that holds N given members holds exactly those) and needs
neither side held whole. Scores are compared as doubles, bit for bit.

Readers run over a redis-py client or, for bulk work, a raw :class:`~snaptool.engines.resp.
RespConnection`. :class:`DumpCheck` compares whole keys by their ``DUMP`` payload, which
proves most keys equal without decoding them when the node writes values as the file does.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Generator, Iterable, Iterator, Sequence

import redis

from ..errors import EngineError
from ..rdb import constants as C
from ..rdb.checksum import crc64
from ..rdb.items import Record
from ..rdb.model import StreamEntry, StreamGroup, StreamValue, format_id
from .address import NodeAddress
from .resp import RespConnection

#: elements per page of one key (LRANGE / lookups / XRANGE)
PAGE = 512

Command = tuple[Any, ...]
#: yields the commands of its next round, receives their replies, returns a problem (None: equal)
Reader = Generator[list[Command], list[Any], Any]
#: where commands go: a raw connection (bulk work) or a redis-py client (a few commands)
Client = RespConnection | redis.Redis


@dataclass(frozen=True)
class ServerTraits:
    """What a live engine answers, from ``INFO server``: which commands a comparison may use."""

    flavour: str  # "redis" or "valkey"
    version: tuple[int, ...]

    @classmethod
    def read(cls, client: redis.Redis) -> ServerTraits:
        info = info_fields(client, "server")
        if info.get("server_name") == "valkey" or "valkey_version" in info:
            flavour, text = "valkey", info.get("valkey_version", "0")
        else:
            flavour, text = "redis", info.get("redis_version", "0")
        return cls(flavour, tuple(int(x) for x in text.split(".") if x.isdigit()))

    @property
    def name(self) -> str:
        return f"{self.flavour}-{'.'.join(map(str, self.version))}"

    def _since(self, redis_version: tuple[int, ...], valkey_version: tuple[int, ...] = (0,)) -> bool:
        return self.version >= (valkey_version if self.flavour == "valkey" else redis_version)

    @property
    def pexpiretime(self) -> bool:
        """PEXPIRETIME (absolute expiry): Redis 7.0+, every Valkey."""
        return self._since((7, 0))

    @property
    def multi_lookup(self) -> bool:
        """SMISMEMBER and ZMSCORE: Redis 6.2+, every Valkey."""
        return self._since((6, 2))

    @property
    def stream_full(self) -> bool:
        """XINFO STREAM … FULL (groups, consumers and pending entries at once): Redis 6.0+."""
        return self._since((6, 0))

    @property
    def field_ttl(self) -> bool:
        """Hash field expiry (HPEXPIRETIME): Redis 7.4+, Valkey 9.0+."""
        return self._since((7, 4), (9, 0))


def raw_client(address: NodeAddress, db: int | None = None) -> redis.Redis:
    """A client whose replies are what the server sent (no redis-py reshaping: stream fields keep
    their order and repeats, scores stay text)."""
    client = address.client(db)
    client.response_callbacks.clear()
    return client


def info_fields(client: redis.Redis, section: str) -> dict[str, str]:
    """One INFO section as ``{name: value}`` (keyspace lines keep their ``keys=…,expires=…`` text)."""
    reply = client.execute_command("INFO", section)
    if isinstance(reply, dict):  # a client with redis-py's reply parsing
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


# --------------------------------------------------------------------------- driving readers

def run_pipelined(client: Client, readers: Sequence[Reader]) -> list[Any]:
    """Run ``readers`` side by side, one pipeline round trip per round; their results in order."""
    results: list[Any] = [None] * len(readers)
    active: list[tuple[int, Reader, list[Command]]] = []
    for index, reader in enumerate(readers):
        _advance(index, reader, None, active, results)
    _rounds(client, active, results)
    return results


def resume_pipelined(client: Client, started: Sequence[tuple[Reader, list[Command]]],
                     replies: list[Any]) -> list[Any]:
    """Like :func:`run_pipelined`, for readers whose first commands went out with other traffic:
    ``started`` pairs each reader with the commands it yielded first, ``replies`` holds their
    replies in the same order."""
    results: list[Any] = [None] * len(started)
    active: list[tuple[int, Reader, list[Command]]] = []
    at = 0
    for index, (reader, commands) in enumerate(started):
        _advance(index, reader, replies[at:at + len(commands)], active, results)
        at += len(commands)
    _rounds(client, active, results)
    return results


def _rounds(client: Client, active: list[tuple[int, Reader, list[Command]]], results: list[Any]) -> None:
    while active:
        replies = pipelined(client, [command for _, _, commands in active for command in commands])
        current, active, at = active, [], 0
        for index, reader, commands in current:
            _advance(index, reader, replies[at:at + len(commands)], active, results)
            at += len(commands)


def pipelined(client: Client, commands: Iterable[Command]) -> list[Any]:
    """The replies to ``commands`` sent in one round trip; a refused command's reply is its error."""
    if isinstance(client, RespConnection):
        return client.execute(list(commands))
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)


def _advance(index: int, reader: Reader, replies: list[Any] | None,
             active: list[tuple[int, Reader, list[Command]]], results: list[Any]) -> None:
    try:
        commands = next(reader) if replies is None else reader.send(replies)
    except StopIteration as done:
        results[index] = done.value
    else:
        active.append((index, reader, commands))


def resume(reader: Reader, replies: list[Any]) -> Reader:
    """Continue a reader that already yielded its first commands, starting from their replies."""
    while True:
        try:
            commands = reader.send(replies)
        except StopIteration as done:
            return done.value
        replies = yield commands


def require(replies: list[Any], commands: list[Command]) -> list[Any]:
    """The replies, or EngineError naming the command the node refused (ACLs, disabled commands);
    callers put the node's name in front."""
    for reply, command in zip(replies, commands):
        if isinstance(reply, redis.RedisError):
            raise EngineError(f"refused {_name(command)}: {reply}")
    return replies


def _name(command: Command) -> str:
    head = command[0].decode() if isinstance(command[0], bytes) else str(command[0])
    if head.upper() in ("XINFO", "DEBUG", "CLUSTER") and len(command) > 1:
        return f"{head} {command[1]}"
    return head


# --------------------------------------------------------------------------- DUMP payloads

#: records larger than this are not compared by DUMP (the reply would carry the value whole)
DUMP_MAX = 1 << 19
#: a type whose payloads differed this often, mostly, is no longer compared by DUMP
_DUMP_GIVE_UP = 100
#: modules (only counted), and hash tables: a node writes their elements in its own order
_DUMP_NEVER = (C.T_MODULE_PRE_GA, C.T_MODULE_2, C.T_SET, C.T_HASH, C.T_HASH_METADATA_PRE_GA, C.T_HASH_METADATA)
_DUMP_AND_TTL = b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%b\r\n*2\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"


class DumpCheck:
    """Compare keys by ``DUMP`` payload and expiry: exact, and nothing to decode or hash.

    A payload is the record's type byte and value bytes as the file holds them, the RDB version
    and a CRC-64 (:mod:`snaptool.rdb.dump`): a node that serializes its value into exactly those
    bytes holds exactly that value, whatever its type, so nothing needs decoding or hashing. A
    node serializes a value the way the file's writer did when it is the same release, which is
    the common case (restores, drills); other nodes write some types differently (an older
    file's ziplists as listpacks, strings compressed or not), so a payload that differs proves
    nothing: the caller compares that key the usual way, and a type whose payloads keep
    differing is not asked for again. Hash tables are never asked for (a node writes their
    elements in its own order); module values are left to the caller (they are only counted),
    as are expiring keys where only a relative TTL can be read.
    """

    def __init__(self, traits: ServerTraits, rdb_version: int) -> None:
        self.ttl = b"PEXPIRETIME" if traits.pexpiretime else b"PTTL"
        self.absolute = traits.pexpiretime
        self.footer = rdb_version.to_bytes(2, "little")
        self.enabled = True
        self.skipped = bytearray(256)  # type bytes not compared by DUMP
        for t in _DUMP_NEVER:
            self.skipped[t] = 1
        self.matched = [0] * 256
        self.differed = [0] * 256

    def eligible(self, record: Record) -> bool:
        raw = record.raw
        return self.enabled and type(raw) is bytes and len(raw) <= DUMP_MAX and not self.skipped[record.type] \
            and (self.absolute or record.expire_ms is None)

    def send(self, conn: RespConnection, records: list[Record]) -> Callable[[], list[bool | None] | None]:
        """Ask for the records' payloads and expiries; returns what reads the replies: None when
        every key is as the snapshot has it, otherwise per key True (equal), False (no such key)
        or None (not proven: compare it another way)."""
        ttl, size = self.ttl, len(self.ttl)
        conn.send(b"".join([_DUMP_AND_TTL % (len(r.key), r.key, size, ttl, len(r.key), r.key) for r in records]))
        payloads = [self._payload(r) for r in records]
        predicted = b"".join([b"$%d\r\n%b\r\n:%d\r\n" % (len(p), p, -1 if r.expire_ms is None else r.expire_ms)
                              for r, p in zip(records, payloads)])

        def verdicts() -> list[bool | None] | None:
            if conn.matches(predicted):
                return None
            replies = conn.replies(2 * len(records))
            return [self._verdict(r, p, dump, expiry)
                    for r, p, dump, expiry in zip(records, payloads, replies[0::2], replies[1::2])]
        return verdicts

    def _payload(self, record: Record) -> bytes:
        """What DUMP returns for the record on a node that writes it as the file does."""
        raw = record.raw
        body = raw[:1] + raw[record.value_start:] + self.footer
        return body + crc64(body).to_bytes(8, "little")

    def _verdict(self, record: Record, payload: bytes, dump: Any, expiry: Any) -> bool | None:
        """One key's replies; counts payloads that differ, to stop asking for types that do."""
        if isinstance(dump, redis.ResponseError):  # DUMP refused (ACLs): the caller's way only
            self.enabled = False
            return None
        if dump is None:
            return False if expiry == -2 else None
        t = record.type
        if dump != payload:
            self.differed[t] += 1
            if self.differed[t] >= _DUMP_GIVE_UP and self.differed[t] > 4 * self.matched[t]:
                self.skipped[t] = 1
            return None
        self.matched[t] += 1
        return expiry == (-1 if record.expire_ms is None else record.expire_ms) or None


# --------------------------------------------------------------------------- comparisons

def compare_value(traits: ServerTraits, key: bytes, kind: str, value: Any) -> Reader:
    """Compare live ``key`` with a decoded snapshot value (shapes of :mod:`snaptool.rdb.model`;
    collections may be one-pass iterators). Returns None when equal, else what differs."""
    if kind == "string":
        return _compare_string(key, value)
    if kind == "list":
        return _paged(("LLEN", key), value, lambda at, chunk: [("LRANGE", key, at, at + len(chunk) - 1)],
                      _same_list)
    if kind == "set":
        return _lookups(traits, ("SCARD", key), "SMISMEMBER", "SISMEMBER", key, value, _members_present)
    if kind == "zset":
        return _lookups(traits, ("ZCARD", key), "ZMSCORE", "ZSCORE", key, value, _same_scores)
    if kind == "hash":
        return _paged(("HLEN", key), value, _hash_probe(traits, key), _same_hash)
    if kind == "stream":
        return _compare_stream(traits, key, value)
    raise ValueError(f"no live comparison for {kind!r} values")


def _compare_string(key: bytes, value: bytes) -> Reader:
    (got,) = yield [("GET", key)]
    return None if got == value else f"value differs ({_size(got)} bytes live, {len(value)} in the snapshot)"


def _size(reply: Any) -> int:
    return len(reply) if isinstance(reply, bytes) else 0


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


Probe = Callable[[int, list[Any]], list[Command]]
Judge = Callable[[int, list[Any], list[Any]], "str | None"]


def _paged(length: Command, items: Iterable[Any], probe: Probe, judge: Judge) -> Reader:
    """Page through the expected ``items``: ``probe`` asks the node about one page, ``judge`` says
    what differs; the length command rides along with the first page, and is compared at the end."""
    head, count, live_length = [length], 0, None
    for chunk in _chunks(items, PAGE):
        commands = head + probe(count, chunk)
        replies = require((yield commands), commands)
        if head:
            live_length, replies, head = replies[0], replies[1:], []
        problem = judge(count, chunk, replies)
        if problem:
            return problem
        count += len(chunk)
    if head:
        (live_length,) = require((yield head), head)
    if int(live_length) != count:
        return f"{live_length} elements live, {count} in the snapshot"
    return None


def _same_list(at: int, chunk: list[bytes], replies: list[Any]) -> str | None:
    got = replies[0]
    for offset, (want, have) in enumerate(zip(chunk, got)):
        if want != have:
            return f"element {at + offset} differs"
    return None if len(got) == len(chunk) else f"elements from {at + len(got)} on are missing"


def _lookups(traits: ServerTraits, length: Command, multi: str, single: str, key: bytes,
             items: Iterable[Any], judge: Callable[[list[Any], list[Any]], str | None]) -> Reader:
    """Size plus one lookup per expected element, one command per page where the engine can."""
    def member(item: Any) -> bytes:
        return item[0] if isinstance(item, tuple) else item

    def probe(_: int, chunk: list[Any]) -> list[Command]:
        if traits.multi_lookup:
            return [(multi, key, *(member(x) for x in chunk))]
        return [(single, key, member(x)) for x in chunk]

    def judge_page(_: int, chunk: list[Any], replies: list[Any]) -> str | None:
        return judge(chunk, replies[0] if traits.multi_lookup else replies)

    return _paged(length, items, probe, judge_page)


def _members_present(chunk: list[bytes], replies: list[Any]) -> str | None:
    for member, found in zip(chunk, replies):
        if not int(found):
            return f"member {member!r} is missing"
    return None


def _same_scores(chunk: list[tuple[bytes, float]], replies: list[Any]) -> str | None:
    for (member, score), got in zip(chunk, replies):
        if got is None:
            return f"member {member!r} is missing"
        if float(got) != score:
            return f"member {member!r} has score {float(got)!r}, the snapshot {score!r}"
    return None


def _hash_probe(traits: ServerTraits, key: bytes) -> Probe:
    def probe(_: int, chunk: list[tuple]) -> list[Command]:
        fields = [item[0] for item in chunk]
        commands: list[Command] = [("HMGET", key, *fields)]
        if traits.field_ttl:
            commands.append(("HPEXPIRETIME", key, "FIELDS", len(fields), *fields))
        return commands
    return probe


def _same_hash(_: int, chunk: list[tuple], replies: list[Any]) -> str | None:
    expiries = replies[1] if len(replies) > 1 else [None] * len(chunk)
    for item, got, expiry in zip(chunk, replies[0], expiries):
        if got is None:
            return f"field {item[0]!r} is missing"
        if got != item[1]:
            return f"field {item[0]!r} differs"
        want = item[2] if len(item) > 2 else None
        if expiry is not None and int(expiry) != (-1 if want is None else want):
            return f"field {item[0]!r} expires at {expiry}, in the snapshot at {want}"
    return None


# --------------------------------------------------------------------------- streams

def _sid(stream_id: tuple[int, int]) -> bytes:
    return format_id(stream_id).encode()


def _compare_stream(traits: ServerTraits, key: bytes, value: StreamValue) -> Reader:
    def probe(_: int, chunk: list[StreamEntry]) -> list[Command]:
        return [("XRANGE", key, _sid(chunk[0].id), _sid(chunk[-1].id), "COUNT", len(chunk) + 1)]

    problem = yield from _paged(("XLEN", key), value.entries, probe, _same_entries)
    return problem or (yield from compare_stream_meta(traits, key, value))


def compare_stream_meta(traits: ServerTraits, key: bytes, value: StreamValue) -> Reader:
    """What a stream holds besides its entries (ids, consumer groups, consumers, pending entries),
    which ``DEBUG DIGEST-VALUE`` does not cover. Engines without XINFO … FULL: the last id only."""
    if not traits.stream_full:
        command: Command = ("XINFO", "STREAM", key)
        (info,) = require((yield [command]), [command])
        return _id_problem("last id", _as_dict(info).get("last-generated-id"), value.last_id)
    pending = [len(g.pending) for g in value.groups] + [len(c.pending) for g in value.groups for c in g.consumers]
    command = ("XINFO", "STREAM", key, "FULL", "COUNT", max([1, *pending]))
    (info,) = require((yield [command]), [command])
    return _stream_meta_problem(_as_dict(info), value)


def _same_entries(_: int, chunk: list[StreamEntry], replies: list[Any]) -> str | None:
    got = replies[0]
    for want, have in zip(chunk, got):
        if have[0] != _sid(want.id):
            return f"entry {format_id(want.id)} is missing (found {have[0].decode()})"
        if list(have[1]) != [x for pair in want.fields for x in pair]:
            return f"entry {format_id(want.id)} differs"
    if len(got) != len(chunk):
        return f"entries between {format_id(chunk[0].id)} and {format_id(chunk[-1].id)} differ"
    return None


def _as_dict(reply: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 [name, value, …] list as a dict with str keys."""
    items = list(reply.items()) if isinstance(reply, dict) else \
        [(reply[i], reply[i + 1]) for i in range(0, len(reply) - 1, 2)]
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in items}


def _id_problem(what: str, got: Any, want: tuple[int, int] | None) -> str | None:
    """Compare one reported id; nothing to compare when either side does not know it."""
    if got is None or want is None or got == _sid(want):
        return None
    return f"{what} is {got.decode() if isinstance(got, bytes) else got}, in the snapshot {format_id(want)}"


def _number_problem(what: str, got: Any, want: int | None) -> str | None:
    if got is None or want is None or int(got) == want:
        return None
    return f"{what} is {int(got)}, in the snapshot {want}"


def _stream_meta_problem(info: dict[str, Any], value: StreamValue) -> str | None:
    checks = [
        _id_problem("last id", info.get("last-generated-id"), value.last_id),
        _id_problem("max deleted id", info.get("max-deleted-entry-id"), value.max_deleted_id),
        _id_problem("first id", info.get("recorded-first-entry-id"), value.first_id),
        _number_problem("entries added", info.get("entries-added"), value.entries_added),
    ]
    live = {g["name"]: g for g in map(_as_dict, info.get("groups") or [])}
    want = {g.name: g for g in value.groups}
    if set(live) != set(want):
        checks.append(f"consumer groups {sorted(live)} live, {sorted(want)} in the snapshot")
    else:
        checks += [_group_problem(live[name], group) for name, group in want.items()]
    return _first(*checks)


def _group_problem(live: dict[str, Any], group: StreamGroup) -> str | None:
    where = f"group {group.name!r}"
    owner = {pid: c.name for c in group.consumers for pid in c.pending}
    pel = [[_sid(p.id), owner.get(p.id, b""), p.delivery_time, p.delivery_count] for p in group.pending]
    problem = _first(
        _id_problem(f"{where} last delivered id", live.get("last-delivered-id"), group.last_id),
        _number_problem(f"{where} entries read", live.get("entries-read"), group.entries_read),
        _number_problem(f"{where} pending count", live.get("pel-count"), len(group.pending)),
        None if _rows(live.get("pending")) == pel else f"{where} pending entries differ")
    if problem:
        return problem
    consumers = {c["name"]: c for c in map(_as_dict, live.get("consumers") or [])}
    if set(consumers) != {c.name for c in group.consumers}:
        return f"{where} consumers {sorted(consumers)} live, {sorted(c.name for c in group.consumers)} in the snapshot"
    delivered = {p.id: [p.delivery_time, p.delivery_count] for p in group.pending}
    for consumer in group.consumers:
        got, name = consumers[consumer.name], f"{where} consumer {consumer.name!r}"
        mine = [[_sid(i), *delivered.get(i, [])] for i in consumer.pending]
        problem = _first(
            _number_problem(f"{name} seen time", got.get("seen-time"), consumer.seen_time),
            _number_problem(f"{name} active time", got.get("active-time"), consumer.active_time),
            _number_problem(f"{name} pending count", got.get("pel-count"), len(consumer.pending)),
            None if _rows(got.get("pending")) == mine else f"{name} pending entries differ")
        if problem:
            return problem
    return None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p), None)


def _rows(reply: Any) -> list[list[Any]]:
    """The pending entries a FULL reply lists (COUNT is at least the longest expected list)."""
    return [list(row) for row in reply or []]


__all__ = ["DUMP_MAX", "PAGE", "Client", "Command", "DumpCheck", "Reader", "ServerTraits", "compare_stream_meta",
           "compare_value", "info_fields", "pipelined", "raw_client", "require", "resume", "resume_pipelined",
           "run_pipelined"]
