"""Decode a record's raw bytes into logical values (see :mod:`snaptool.rdb.model`).

Collections are produced element by element (:func:`iter_value`) so a huge list, set, zset or hash
never has to sit whole in memory; :func:`decode_value` collects them for callers that want a value.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from ..errors import RdbError
from . import constants as C
from .encodings.intset import decode_intset
from .encodings.listpack import decode_listpack, iter_listpack
from .encodings.ziplist import iter_ziplist
from .encodings.zipmap import iter_zipmap
from .items import Record
from .model import (ModuleValue, PendingEntry, StreamConsumer, StreamEntry, StreamGroup, StreamId,
                    StreamValue)
from .encoder import FIELD_EXPIRE_MAX
from .fastscan import NODE_COUNT_AT, node_state
from .reader import module_name
from .source import Source, Spill

_U64 = 1 << 64


def value_source(record: Record) -> Source:
    """A Source positioned at the record's value (after type byte and key)."""
    raw = record.raw
    if isinstance(raw, Spill):
        src = Source(raw.open(), path=record.path, base=record.offset, track_crc=False)
        src.skip(record.value_start)
        return src
    src = Source.from_bytes(raw, base=record.offset, path=record.path)
    src.skip(record.value_start)
    return src


_COUNTED = frozenset([C.T_LIST, C.T_SET, C.T_ZSET, C.T_HASH, C.T_ZSET_2, C.T_VALKEY_HASH_2])
#: where an encoded blob keeps its element count: (offset, width); a zero count means empty
_BLOB_COUNT = {C.T_HASH_ZIPMAP: (0, 1), C.T_LIST_ZIPLIST: (8, 2), C.T_ZSET_ZIPLIST: (8, 2),
               C.T_HASH_ZIPLIST: (8, 2), C.T_SET_INTSET: (4, 4), C.T_HASH_LISTPACK: (4, 2),
               C.T_ZSET_LISTPACK: (4, 2), C.T_SET_LISTPACK: (4, 2), C.T_HASH_LISTPACK_EX_PRE_GA: (4, 2),
               C.T_HASH_LISTPACK_EX: (4, 2)}


def is_empty(record: Record) -> bool:
    """Whether a collection holds no element (loaders skip such keys; writers must not emit them).

    Reads only a count: the leading length of a plain collection, or the count in an encoded
    blob's header. Small quicklists are decoded, since every one of their nodes may be empty.
    """
    t = record.type
    if record.kind in ("string", "stream", "module"):
        return False
    src = value_source(record)
    if t == C.T_HASH_METADATA or t == C.T_HASH_LISTPACK_EX:
        src.skip(8)  # minExpire
    if t in _COUNTED or (t == C.T_HASH_METADATA_PRE_GA and record.flavour == "redis") or t == C.T_HASH_METADATA:
        return src.length() == 0
    if t in NODE_COUNT_AT:  # a quicklist is empty when every node is
        for _ in range(src.length()):
            if t == C.T_LIST_QUICKLIST_2 and src.length() == 1:
                return False  # a plain node is one element
            head = src.read(1)
            if head[0] >= 0x40:
                return False
            node = head + src.read(head[0])
            state = node_state(node, 0, NODE_COUNT_AT[t])
            if state < 0:
                return next(iter_value(record), None) is None  # too short for a header: let decoding judge
            if state:
                return False
        return True
    first = src.u8()
    if first >= 0x40:  # a long or compressed String: an empty blob is a handful of bytes
        return False
    at, width = _BLOB_COUNT[t]
    if first < at + width:
        return next(iter_value(record), None) is None  # too short for a header: let decoding judge
    header = src.read(at + width)
    return int.from_bytes(header[at:], "little") == 0


def module_name_of(record: Record) -> str:
    """The type name of a module value, from its id alone (the payload is not read)."""
    return module_name(value_source(record).length())


def decode_value(record: Record) -> Any:
    """The whole value: bytes, list, list of pairs/triples, StreamValue or ModuleValue."""
    kind = record.kind
    if kind in ("string", "stream", "module"):
        return next(iter_value(record))
    return list(iter_value(record))


def iter_value(record: Record) -> Iterator[Any]:
    """Elements of a collection one by one; a string, stream or module value as a single item."""
    try:
        decoder = _DECODERS[(record.type, record.flavour == "valkey" and record.type == C.T_VALKEY_HASH_2)]
    except KeyError:
        raise RdbError(f"type {record.type} cannot be decoded", offset=record.offset, path=record.path,
                       key=record.key) from None
    src = value_source(record)
    try:
        yield from decoder(src, record)
    except RdbError as exc:
        if exc.key is None:
            exc.key = record.key
        if exc.path is None:
            exc.path = record.path
        raise


def _text(item: bytes | int) -> bytes:
    return item if type(item) is bytes else b"%d" % item


def _score(item: bytes | int, src: Source, start: int) -> float:
    if type(item) is int:
        return float(item)
    try:
        if b"_" in item or item != item.strip():
            raise ValueError  # Python accepts these; the engines' strtod does not
        value = float(item)
    except ValueError:
        raise src.error(f"zset score {item[:40]!r} is not a number", start) from None
    if value != value:
        raise src.error("zset score is NaN", start)
    return value


def _blob(src: Source, decode: Callable[[bytes], Any]) -> tuple[int, Any]:
    """Read one String holding an encoded blob and run the blob decoder over it."""
    start = src.offset
    data = src.string()
    try:
        return start, decode(data)
    except RdbError as exc:
        raise _inner_error(src, exc, start) from None


def _elements(src: Source, iterate: Callable[[bytes], Iterator]) -> tuple[int, Iterator]:
    """Read one String holding a ziplist or listpack; its elements come lazily, one at a time,
    so a blob that expands into millions of elements is never turned into a list at once."""
    start = src.offset
    data = src.string()

    def elements() -> Iterator:
        try:
            yield from iterate(data)
        except RdbError as exc:
            raise _inner_error(src, exc, start) from None

    return start, elements()


def _inner_error(src: Source, exc: RdbError, start: int) -> RdbError:
    return src.error(f"{exc.message} (encoded value starting here, inner offset {exc.offset})", start)


_MISSING = object()


def _pairs(items: Iterator, src: Source, start: int, what: str) -> Iterator[tuple]:
    items = iter(items)
    for first in items:
        second = next(items, _MISSING)
        if second is _MISSING:
            raise src.error(f"{what} holds an odd number of entries", start)
        yield first, second


# -- per type ----------------------------------------------------------------------------------

def _string(src: Source, record: Record) -> Iterator[bytes]:
    yield src.string()


def _plain_strings(src: Source, record: Record) -> Iterator[bytes]:
    string = src.string
    for _ in range(src.length()):
        yield string()


def _plain_hash(src: Source, record: Record) -> Iterator[tuple]:
    string = src.string
    for _ in range(src.length()):
        yield string(), string(), None


def _zset_table(src: Source, record: Record) -> Iterator[tuple]:
    """ZSET (text scores, before RDB 8) and ZSET_2 (binary doubles)."""
    read_score = src.legacy_double if record.type == C.T_ZSET else src.double
    for _ in range(src.length()):
        member = src.string()
        start = src.offset
        score = read_score()
        if score != score:
            raise src.error("zset score is NaN", start)
        yield member, score


def _zipmap(src: Source, record: Record) -> Iterator[tuple]:
    _, pairs = _blob(src, lambda b: list(iter_zipmap(b)))
    for field, value in pairs:
        yield field, value, None


def _ziplist_list(src: Source, record: Record) -> Iterator[bytes]:
    _, items = _elements(src, iter_ziplist)
    for item in items:
        yield _text(item)


def _intset(src: Source, record: Record) -> Iterator[bytes]:
    _, values = _blob(src, decode_intset)
    for value in values:
        yield b"%d" % value


def _ziplist_zset(src: Source, record: Record) -> Iterator[tuple]:
    start, items = _elements(src, iter_ziplist)
    for member, score in _pairs(items, src, start, "zset ziplist"):
        yield _text(member), _score(score, src, start)


def _ziplist_hash(src: Source, record: Record) -> Iterator[tuple]:
    start, items = _elements(src, iter_ziplist)
    for field, value in _pairs(items, src, start, "hash ziplist"):
        yield _text(field), _text(value), None


def _quicklist(src: Source, record: Record) -> Iterator[bytes]:
    for _ in range(src.length()):
        _, items = _elements(src, iter_ziplist)
        for item in items:
            yield _text(item)


def _quicklist2(src: Source, record: Record) -> Iterator[bytes]:
    for _ in range(src.length()):
        start = src.offset
        container = src.length()
        if container == 1:
            yield src.string()
        elif container == 2:
            _, items = _elements(src, iter_listpack)
            for item in items:
                yield _text(item)
        else:
            raise src.error(f"quicklist node container {container} is neither plain (1) nor packed (2)",
                            start)


def _listpack_items(src: Source, record: Record) -> Iterator[bytes]:
    _, items = _elements(src, iter_listpack)
    for item in items:
        yield _text(item)


def _listpack_zset(src: Source, record: Record) -> Iterator[tuple]:
    start, items = _elements(src, iter_listpack)
    for member, score in _pairs(items, src, start, "zset listpack"):
        yield _text(member), _score(score, src, start)


def _listpack_hash(src: Source, record: Record) -> Iterator[tuple]:
    start, items = _elements(src, iter_listpack)
    for field, value in _pairs(items, src, start, "hash listpack"):
        yield _text(field), _text(value), None


def _field_expire(expire: int, src: Source, start: int) -> int:
    if not 0 < expire <= FIELD_EXPIRE_MAX:
        raise src.error(f"hash field expiry {expire} is outside 1 … 2^48-1 ms", start)
    return expire


def _hash_metadata(src: Source, record: Record) -> Iterator[tuple]:
    """Redis 7.4 hashes with field TTLs stored as a table (24; 22 is its pre-GA form)."""
    min_expire = src.ms_time() if record.type == C.T_HASH_METADATA else None
    for _ in range(src.length()):
        start = src.offset
        ttl = src.length()
        field = src.string()
        value = src.string()
        if not ttl:
            yield field, value, None
        else:
            yield field, value, _field_expire(ttl if min_expire is None else ttl + min_expire - 1, src, start)


def _listpack_ex(src: Source, record: Record) -> Iterator[tuple]:
    """Redis 7.4 listpack hashes with field TTLs: (field, value, expireAt) triples (25; 23 pre-GA)."""
    if record.type == C.T_HASH_LISTPACK_EX:
        src.ms_time()
    start, items = _blob(src, decode_listpack)
    if len(items) % 3:
        raise src.error(f"hash listpack-ex holds {len(items)} entries, not a multiple of 3", start)
    for i in range(0, len(items), 3):
        expire = items[i + 2]
        if type(expire) is not int:
            raise src.error("hash listpack-ex field expiry is not an integer", start)
        yield _text(items[i]), _text(items[i + 1]), _field_expire(expire, src, start) if expire else None


def _valkey_hash2(src: Source, record: Record) -> Iterator[tuple]:
    """Valkey 9 HASH_2: field, value, 8-byte expiry (-1 = none)."""
    for _ in range(src.length()):
        field = src.string()
        value = src.string()
        start = src.offset
        expire = src.ms_time()
        yield field, value, None if expire == -1 else _field_expire(expire, src, start)


def _module(src: Source, record: Record) -> Iterator[ModuleValue]:
    module_id = src.length()
    yield ModuleValue(module_name(module_id), module_id & 1023, record.value_bytes())


def _stream_id_be(raw: bytes) -> StreamId:
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:16], "big")


def _signed(value: int) -> int:
    return value - _U64 if value >= 1 << 63 else value


def _stream_node(master: StreamId, items: list, src: Source, start: int) -> Iterator[StreamEntry]:
    """Walk one node listpack (§6.2): master entry, then count+deleted records."""
    n = len(items)

    def num(i: int) -> int:
        if i >= n:
            raise src.error("stream node listpack ends inside an entry", start)
        v = items[i]
        if type(v) is not int:
            try:
                return int(v)
            except ValueError:
                raise src.error(f"stream node field {i} should be an integer", start) from None
        return v

    count, deleted, nfields = num(0), num(1), num(2)
    if nfields < 0 or 3 + nfields >= n:
        raise src.error("stream node master entry is truncated", start)
    master_fields = [_text(f) for f in items[3:3 + nfields]]
    i = 3 + nfields
    if num(i) != 0:
        raise src.error("stream node master entry lacks its terminator", start)
    i += 1
    for _ in range(count + deleted):
        flags, ms_delta, seq_delta = num(i), num(i + 1), num(i + 2)
        i += 3
        if flags & 2:  # SAMEFIELDS
            if i + nfields > n:
                raise src.error("stream node entry runs past the listpack", start)
            fields = list(zip(master_fields, (_text(v) for v in items[i:i + nfields])))
            i += nfields
        else:
            nf = num(i)
            i += 1
            if nf < 0 or i + 2 * nf > n:
                raise src.error("stream node entry runs past the listpack", start)
            fields = [(_text(items[j]), _text(items[j + 1])) for j in range(i, i + 2 * nf, 2)]
            i += 2 * nf
        num(i)  # lp-count, used only for walking backwards
        i += 1
        if not flags & 1:
            yield StreamEntry(((master[0] + ms_delta) % _U64, (master[1] + seq_delta) % _U64), fields)
    if i != n:
        raise src.error(f"stream node listpack has {n - i} unexpected trailing entries", start)


def _stream(src: Source, record: Record) -> Iterator[StreamValue]:
    t = record.type
    entries: list[StreamEntry] = []
    for _ in range(src.length()):
        start = src.offset
        key = src.string()
        if len(key) != 16:
            raise src.error(f"stream node key is {len(key)} bytes, not 16", start)
        start, items = _blob(src, decode_listpack)
        if not items:
            raise src.error("stream node listpack is empty", start)
        entries.extend(_stream_node(_stream_id_be(key), items, src, start))
    length = src.length()
    last_id = (src.length(), src.length())
    first_id = max_deleted = entries_added = None
    if t >= C.T_STREAM_LISTPACKS_2:
        first_id = (src.length(), src.length())
        max_deleted = (src.length(), src.length())
        entries_added = src.length()
    groups = []
    for _ in range(src.length()):
        name = src.string()
        group_last = (src.length(), src.length())
        entries_read = None
        if t >= C.T_STREAM_LISTPACKS_2:
            value = _signed(src.length())
            entries_read = None if value < 0 else value
        pending = []
        for _ in range(src.length()):
            pid = _stream_id_be(src.read(16))
            pending.append(PendingEntry(pid, src.ms_time(), src.length()))
        consumers = []
        for _ in range(src.length()):
            cname = src.string()
            seen = src.ms_time()
            active = src.ms_time() if t >= C.T_STREAM_LISTPACKS_3 else None
            cpel = [_stream_id_be(src.read(16)) for _ in range(src.length())]
            consumers.append(StreamConsumer(cname, seen, active, cpel))
        groups.append(StreamGroup(name, group_last, entries_read, pending, consumers))
    yield StreamValue(entries, length, last_id, first_id, max_deleted, entries_added, groups)


_DECODERS: dict[tuple[int, bool], Callable[[Source, Record], Iterator[Any]]] = {
    (C.T_STRING, False): _string, (C.T_LIST, False): _plain_strings, (C.T_SET, False): _plain_strings,
    (C.T_ZSET, False): _zset_table, (C.T_HASH, False): _plain_hash, (C.T_ZSET_2, False): _zset_table,
    (C.T_MODULE_2, False): _module, (C.T_HASH_ZIPMAP, False): _zipmap,
    (C.T_LIST_ZIPLIST, False): _ziplist_list, (C.T_SET_INTSET, False): _intset,
    (C.T_ZSET_ZIPLIST, False): _ziplist_zset, (C.T_HASH_ZIPLIST, False): _ziplist_hash,
    (C.T_LIST_QUICKLIST, False): _quicklist, (C.T_STREAM_LISTPACKS, False): _stream,
    (C.T_HASH_LISTPACK, False): _listpack_hash, (C.T_ZSET_LISTPACK, False): _listpack_zset,
    (C.T_LIST_QUICKLIST_2, False): _quicklist2, (C.T_STREAM_LISTPACKS_2, False): _stream,
    (C.T_SET_LISTPACK, False): _listpack_items, (C.T_STREAM_LISTPACKS_3, False): _stream,
    (C.T_HASH_METADATA_PRE_GA, False): _hash_metadata, (C.T_HASH_LISTPACK_EX_PRE_GA, False): _listpack_ex, (C.T_HASH_METADATA, False): _hash_metadata,
    (C.T_HASH_LISTPACK_EX, False): _listpack_ex, (C.T_VALKEY_HASH_2, True): _valkey_hash2,
}
