"""Build RDB values from Python data in the encodings the target engine would choose itself.

Thresholds are the engines' defaults (hash 512 entries / 64 bytes, zset 128 / 64, set listpack
128 / 64, intset 512, list nodes of 8 KB), so a file written here loads into the same in-memory
encodings as one the engine saved. Large bodies are assembled in a spooled temporary file, so a
count-prefixed value is written once its count is known; lists stream element by element, while
sets, zsets and hashes are held as Python lists (they must be checked for duplicates and sorted).

Values an engine would refuse raise ValueError: duplicate members or fields, field TTLs outside
1 … 2^48-1 ms. An empty collection encodes to None (engines never store one).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator

from ..errors import SnaptoolError
from . import constants as C
from .encodings.intset import encode_intset
from .encodings.listpack import encode_listpack, listpack_entry_size
from .encodings.ziplist import encode_ziplist, ziplist_entry_size
from .encodings.zipmap import encode_zipmap
from .model import StreamValue
from .primitives import (canonical_int, encode_double_binary, encode_double_legacy, encode_length,
                         encode_ms_time, encode_raw_string, encode_string)
from .targets import Target

HASH_MAX_ENTRIES, HASH_MAX_VALUE = 512, 64
ZSET_MAX_ENTRIES, ZSET_MAX_VALUE = 128, 64
SET_MAX_LISTPACK_ENTRIES, SET_MAX_LISTPACK_VALUE = 128, 64
SET_MAX_INTSET_ENTRIES = 512
LIST_NODE_BYTES = 8192
LIST_ZIPLIST_ENTRIES, LIST_ZIPLIST_VALUE = 512, 64  # list-max-ziplist-* before quicklists (RDB < 7)
STREAM_NODE_ENTRIES = 100
FIELD_EXPIRE_MAX = (1 << 48) - 1  # EB_EXPIRE_TIME_MAX: loaders refuse later field expiries
_INT64_MAX = (1 << 63) - 1
_SPOOL_MEMORY = 8 << 20


class Body:
    """Bytes of one value being built: in memory while small, on disk beyond a few MB."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        self._file.seek(0)
        while True:
            data = self._file.read(size)
            if not data:
                self._file.close()
                return
            yield data


@dataclass
class Encoded:
    """A value ready to write after its key: type byte and the value's bytes in order."""

    type: int
    parts: list[bytes | Body]

    def chunks(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, Body):
                yield from part.chunks()
            else:
                yield part


def _small(items: list[bytes], max_entries: int, max_value: int) -> bool:
    return len(items) <= max_entries and all(len(x) <= max_value for x in items)


def encode_value(kind: str, value: Any, target: Target) -> Encoded | None:
    """Encode a logical value (see :mod:`snaptool.rdb.model`) for the target's RDB version;
    None for an empty collection."""
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        raise SnaptoolError(f"cannot encode a {kind} value")
    return encoder(value, target)


def _unique(names: list[bytes], what: str) -> None:
    if len(set(names)) != len(names):
        seen: set[bytes] = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        raise ValueError(f"duplicate {what} {dup[:60]!r}")


def _string(value: bytes, target: Target) -> Encoded:
    return Encoded(C.T_STRING, [encode_string(value)])


def _list(value: Iterable[bytes], target: Target) -> Encoded | None:
    v = target.rdb_version
    if v >= 10:
        # Redis 7.4+ stores any element over the node size as a plain node; older engines and
        # Valkey only do so at 1 GB, so a big element gets a packed node of its own there.
        plain = target.flavour == "redis" and v >= 12
        return _quicklist(value, packed=True, plain_over=LIST_NODE_BYTES if plain else None)
    if v >= 7:
        return _quicklist(value, packed=False, plain_over=None)
    items = list(value)
    if not items:
        return None
    if v >= 2 and _small(items, LIST_ZIPLIST_ENTRIES, LIST_ZIPLIST_VALUE):
        return Encoded(C.T_LIST_ZIPLIST, [encode_string(encode_ziplist(items, legacy=v < 6))])
    return _plain(C.T_LIST, items)


def _quicklist(value: Iterable[bytes], *, packed: bool, plain_over: int | None) -> Encoded | None:
    """Quicklist nodes of about 8 KB: listpacks (RDB 10+) or ziplists (RDB 7-9)."""
    entry_size = listpack_entry_size if packed else ziplist_entry_size
    body = Body()
    nodes = 0
    node: list[bytes] = []
    node_bytes = 0

    def flush() -> None:
        nonlocal nodes, node, node_bytes
        if node:
            if packed:
                body.write(b"\x02" + encode_string(encode_listpack(node)))
            else:
                body.write(encode_string(encode_ziplist(node)))
            nodes += 1
            node, node_bytes = [], 0

    for item in value:
        if plain_over is not None and len(item) > plain_over:
            flush()
            body.write(b"\x01" + encode_string(item))
            nodes += 1
            continue
        size = entry_size(item)
        if node and node_bytes + size > LIST_NODE_BYTES:
            flush()
        node.append(item)
        node_bytes += size
    flush()
    if not nodes:
        return None
    return Encoded(C.T_LIST_QUICKLIST_2 if packed else C.T_LIST_QUICKLIST, [encode_length(nodes), body])


def _plain(type_byte: int, items: list[bytes]) -> Encoded:
    body = Body()
    for item in items:
        body.write(encode_string(item))
    return Encoded(type_byte, [encode_length(len(items)), body])


def _set(value: Iterable[bytes], target: Target) -> Encoded | None:
    items = list(value)
    if not items:
        return None
    _unique(items, "set member")
    v = target.rdb_version
    if v >= 2 and len(items) <= SET_MAX_INTSET_ENTRIES:
        ints = [canonical_int(x) for x in items]
        if all(i is not None for i in ints):
            return Encoded(C.T_SET_INTSET, [encode_raw_string(encode_intset(ints))])
    if v >= 11 and _small(items, SET_MAX_LISTPACK_ENTRIES, SET_MAX_LISTPACK_VALUE):
        return Encoded(C.T_SET_LISTPACK, [encode_string(encode_listpack(items))])
    return _plain(C.T_SET, items)


def _score_item(score: float) -> bytes | int:
    """Listpack/ziplist score: an integer when exact, else text that parses back to the same
    double (the engines print "%.17g" or fpconv digits; loaders only need the value)."""
    if score == 0 and math.copysign(1.0, score) < 0:
        return b"-0"
    if abs(score) < (1 << 62) and score == int(score):
        return int(score)
    if score == float("inf"):
        return b"inf"
    if score == float("-inf"):
        return b"-inf"
    return repr(score).encode()


def _zset(value: Iterable[tuple[bytes, float]], target: Target) -> Encoded | None:
    pairs = sorted(value, key=lambda p: (p[1], p[0]))
    if not pairs:
        return None
    _unique([m for m, _ in pairs], "zset member")
    if any(s != s for _, s in pairs):
        raise ValueError("zset score is NaN")
    v = target.rdb_version
    small = len(pairs) <= ZSET_MAX_ENTRIES and all(len(m) <= ZSET_MAX_VALUE for m, _ in pairs)
    if small and v >= 2:
        flat: list[bytes | int] = []
        for member, score in pairs:
            flat.append(member)
            flat.append(_score_item(score))
        if v >= 10:
            return Encoded(C.T_ZSET_LISTPACK, [encode_string(encode_listpack(flat))])
        return Encoded(C.T_ZSET_ZIPLIST, [encode_string(encode_ziplist(flat, legacy=v < 6))])
    body = Body()
    if v >= 8:
        for member, score in reversed(pairs):  # highest first, as the engine writes skiplists
            body.write(encode_string(member) + encode_double_binary(score))
        return Encoded(C.T_ZSET_2, [encode_length(len(pairs)), body])
    for member, score in reversed(pairs):
        body.write(encode_string(member) + encode_double_legacy(score))
    return Encoded(C.T_ZSET, [encode_length(len(pairs)), body])


def _hash(value: Iterable[tuple], target: Target) -> Encoded | None:
    triples = [(t[0], t[1], t[2] if len(t) > 2 else None) for t in value]
    if not triples:
        return None
    _unique([f for f, _, _ in triples], "hash field")
    v = target.rdb_version
    has_ttl = any(e is not None for _, _, e in triples)
    bad = next((e for _, _, e in triples if e is not None and not 0 < e <= FIELD_EXPIRE_MAX), None)
    if bad is not None:
        raise ValueError(f"hash field expiry {bad} is outside 1 … 2^48-1 ms")
    small = len(triples) <= HASH_MAX_ENTRIES and all(
        len(f) <= HASH_MAX_VALUE and len(x) <= HASH_MAX_VALUE for f, x, _ in triples)
    if has_ttl and v >= 80:  # Valkey keeps listpack hashes free of TTLs: volatile fields mean HASH_2
        body = Body()
        for f, x, e in triples:
            body.write(encode_string(f) + encode_string(x) + encode_ms_time(-1 if e is None else e))
        return Encoded(C.T_VALKEY_HASH_2, [encode_length(len(triples)), body])
    if has_ttl and v >= 12:
        min_expire = min(e for _, _, e in triples if e is not None)
        if small:
            ordered = sorted((t for t in triples if t[2] is not None), key=lambda t: t[2])
            ordered += [t for t in triples if t[2] is None]
            flat: list[bytes | int] = []
            for f, x, e in ordered:
                flat += [f, x, e or 0]
            return Encoded(C.T_HASH_LISTPACK_EX, [encode_ms_time(min_expire),
                                                 encode_string(encode_listpack(flat))])
        body = Body()
        for f, x, e in triples:
            ttl = 0 if e is None else e - min_expire + 1
            body.write(encode_length(ttl) + encode_string(f) + encode_string(x))
        return Encoded(C.T_HASH_METADATA, [encode_ms_time(min_expire), encode_length(len(triples)), body])
    if has_ttl:
        raise SnaptoolError(f"RDB {v} cannot hold hash field TTLs")
    if small and v >= 2:
        if v >= 10:
            return Encoded(C.T_HASH_LISTPACK, [encode_string(encode_listpack(
                [x for f, val, _ in triples for x in (f, val)]))])
        if v >= 4:
            return Encoded(C.T_HASH_ZIPLIST, [encode_string(encode_ziplist(
                [x for f, val, _ in triples for x in (f, val)], legacy=v < 6))])
        return Encoded(C.T_HASH_ZIPMAP, [encode_string(encode_zipmap([(f, val) for f, val, _ in triples]))])
    body = Body()
    for f, x, _ in triples:
        body.write(encode_string(f) + encode_string(x))
    return Encoded(C.T_HASH, [encode_length(len(triples)), body])


def _stream_id(stream_id: tuple[int, int]) -> bytes:
    return encode_length(stream_id[0]) + encode_length(stream_id[1])


def _stream_id_be(stream_id: tuple[int, int]) -> bytes:
    return stream_id[0].to_bytes(8, "big") + stream_id[1].to_bytes(8, "big")


def _node_chunks(entries: list) -> Iterator[list]:
    """Up to 100 entries per node; a new node also where an id delta would not fit 64 bits."""
    chunk: list = []
    for entry in entries:
        if chunk and (len(chunk) == STREAM_NODE_ENTRIES
                      or entry.id[0] - chunk[0].id[0] > _INT64_MAX
                      or not -_INT64_MAX <= entry.id[1] - chunk[0].id[1] <= _INT64_MAX):
            yield chunk
            chunk = []
        chunk.append(entry)
    if chunk:
        yield chunk


def _stream_nodes(value: StreamValue) -> list[bytes]:
    """Node listpacks as the engine builds them: up to 100 entries, fields of the first as master."""
    out = []
    for chunk in _node_chunks(value.entries):
        master = chunk[0].id
        master_fields = [f for f, _ in chunk[0].fields]
        items: list[bytes | int] = [len(chunk), 0, len(master_fields), *master_fields, 0]
        for entry in chunk:
            fields = [f for f, _ in entry.fields]
            ms_delta = entry.id[0] - master[0]
            seq_delta = entry.id[1] - master[1]
            if fields == master_fields:
                items += [2, ms_delta, seq_delta, *(v for _, v in entry.fields), 3 + len(fields)]
            else:
                items += [0, ms_delta, seq_delta, len(fields)]
                for f, v in entry.fields:
                    items += [f, v]
                items.append(3 + 1 + 2 * len(fields))
        out.append(encode_string(_stream_id_be(master)) + encode_string(encode_listpack(items)))
    return out


def _stream(value: StreamValue, target: Target) -> Encoded:
    v = target.rdb_version
    if v < 9:
        raise SnaptoolError(f"RDB {v} cannot hold streams")
    type_byte = C.T_STREAM_LISTPACKS_3 if v >= 11 else C.T_STREAM_LISTPACKS_2 if v >= 10 else \
        C.T_STREAM_LISTPACKS
    nodes = _stream_nodes(value)
    parts = [encode_length(len(nodes)), *nodes, encode_length(len(value.entries)), _stream_id(value.last_id)]
    if type_byte >= C.T_STREAM_LISTPACKS_2:
        first = value.entries[0].id if value.entries else (0, 0)
        added = value.entries_added if value.entries_added is not None else len(value.entries)
        parts += [_stream_id(first), _stream_id(value.max_deleted_id or (0, 0)), encode_length(added)]
    parts.append(encode_length(len(value.groups)))
    for group in value.groups:
        parts += [encode_string(group.name), _stream_id(group.last_id)]
        if type_byte >= C.T_STREAM_LISTPACKS_2:
            read = group.entries_read
            parts.append(encode_length((1 << 64) - 1 if read is None else read))
        parts.append(encode_length(len(group.pending)))
        for p in group.pending:
            parts.append(_stream_id_be(p.id) + encode_ms_time(p.delivery_time) + encode_length(p.delivery_count))
        parts.append(encode_length(len(group.consumers)))
        for consumer in group.consumers:
            parts += [encode_string(consumer.name), encode_ms_time(consumer.seen_time)]
            if type_byte >= C.T_STREAM_LISTPACKS_3:
                active = consumer.active_time if consumer.active_time is not None else consumer.seen_time
                parts.append(encode_ms_time(active))
            parts.append(encode_length(len(consumer.pending)))
            parts += [_stream_id_be(pid) for pid in consumer.pending]
    return Encoded(type_byte, parts)


_ENCODERS = {"string": _string, "list": _list, "set": _set, "zset": _zset, "hash": _hash,
             "stream": _stream}
