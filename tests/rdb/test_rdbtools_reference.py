"""rdbtools (redis-rdb-tools 0.1.15, a Python parser for RDB <= 9) as a second opinion.

Every RDB file of version <= 9 in the shared corpora (``../shared/corpora``, skipped when absent)
and in the project's ``fixtures/`` is parsed by rdbtools with a collecting callback and by
snaptool; the two must agree record by record, in file order: database, key, logical type,
expiry (ms), LRU idle / LFU freq, and the value (strings and lists exactly, sets and hashes as
multisets, zset scores as floats). AUX fields and RESIZEDB hints are compared as well.

What rdbtools cannot represent, and how the comparison deals with it:

* stream entries: rdbtools hands out each node's raw listpack without decoding it. The stream
  metadata it does decode (length, last id, consumer groups, PELs, consumers) is compared, and the
  entries are compared after decoding rdbtools' raw node listpacks with the small independent
  listpack/stream-node reader in this module (:func:`listpack_items`, :func:`stream_node_entries`).
* module values (type 7): rdbtools only walks the opcodes; only the module name is compared,
  not the value; MODULE_AUX payloads (reported with key None) are ignored.

Quirks of rdbtools that the comparison allows for:

* zipmap (type 9) values go through ``int()`` when they parse as integers, so "007" becomes 7;
  for zipmaps both sides are compared after the same normalisation.
* integers (int-encoded strings, intset and ziplist entries) come back as ``int``: compared as
  their decimal text, which is what Redis returns for them.
* legacy (type 3) zset scores come back as the stored text; compared via ``float()``.
* expiries come back as naive UTC datetimes (clamped at year 9000); converted back to ms.

Files rdbtools itself fails on (see :data:`RDBTOOLS_FAILS`) are not compared; instead a test
checks that rdbtools still raises on them and that snaptool refuses them with an RdbError.
"""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

rdbtools = pytest.importorskip("rdbtools")
from rdbtools import RdbCallback, RdbParser  # noqa: E402

from snaptool.errors import RdbError  # noqa: E402
from snaptool.rdb.items import Aux, Record, ResizeDb  # noqa: E402
from snaptool.rdb.model import ModuleValue, StreamValue, format_id  # noqa: E402
from snaptool.rdb.reader import RdbReader  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CORPORA = (PROJECT_ROOT / ".." / "shared" / "corpora").resolve()
FIXTURES = PROJECT_ROOT / "fixtures"

#: Files of version <= 9 that rdbtools raises on (id relative to the corpora or project root).
#: Each is still checked: rdbtools must raise, snaptool must raise RdbError.
RDBTOOLS_FAILS = {
    # "Unable to read Redis Modules RDB objects": a pre-GA module value (type 6).
    "leonchen83__redis-replicator/src/test/resources/module.rdb",
    # struct.error "unpack requires a buffer of 4 bytes": key:000000000091 is labelled a hash
    # ziplist (type 13) but holds the 5-byte string "xxxxx" (deliberately corrupt asset).
    "redis__redis/tests/assets/corrupt_ziplist.rdb",
    "valkey-io__valkey/tests/assets/corrupt_ziplist.rdb",
}

#: rdbtools never checks the CRC; snaptool is asked not to either for this one.
NO_CRC_CHECK = {"redis__librdb/test/dumps/invalid_chksum_v8.rdb"}

#: With the corpora present, at least this many files must be compared key by key.
MIN_COMPARED = 120


def rdb_version(path: Path) -> int | None:
    with open(path, "rb") as f:
        magic = f.read(9)
    if magic[:5] == b"REDIS" and magic[5:9].isdigit():
        return int(magic[5:9])
    return None


def _candidates() -> list[tuple[str, Path]]:
    out = []
    if CORPORA.is_dir():
        out += [(p.relative_to(CORPORA).as_posix(), p) for p in sorted(CORPORA.rglob("*.rdb"))]
    out += [(f"fixtures/{p.name}", p) for p in sorted(FIXTURES.glob("*.rdb"))]
    return [(i, p) for i, p in out if (rdb_version(p) or 99) <= 9]


CANDIDATES = _candidates()
COMPARED = [(i, p) for i, p in CANDIDATES if i not in RDBTOOLS_FAILS]
FAILING = [(i, p) for i, p in CANDIDATES if i in RDBTOOLS_FAILS]


# -- rdbtools side --------------------------------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1)


def _ms(expiry: datetime.datetime | None) -> int | None:
    if expiry is None:
        return None
    delta = expiry - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _text(value: bytes | int) -> bytes:
    return b"%d" % value if isinstance(value, int) else value


class Collector(RdbCallback):
    """Collects every record as a dict, in file order."""

    def __init__(self) -> None:
        super().__init__(None)
        self.records: list[dict] = []
        self.aux: list[tuple[bytes, bytes]] = []
        self.resizes: list[tuple[int, int]] = []
        self.db = 0
        self._current: dict | None = None

    def _start(self, key, kind, expiry, info, value) -> dict:
        info = info or {}
        rec = {"db": self.db, "key": _text(key), "kind": kind, "expire_ms": _ms(expiry),
               "idle": info.get("idle"), "freq": info.get("freq"), "encoding": info.get("encoding"),
               "value": value}
        self.records.append(rec)
        self._current = rec
        return rec

    def _add(self, item) -> None:
        self._current["value"].append(item)

    def _ignore(self, *args, **kwargs) -> None:
        """The callbacks with nothing to collect."""

    start_rdb = end_rdb = end_database = _ignore
    end_hash = end_set = end_list = end_sorted_set = _ignore
    handle_module_data = end_module = _ignore

    # file-level
    def aux_field(self, key, value):
        self.aux.append((_text(key), _text(value)))

    def start_database(self, db_number):
        self.db = db_number

    def db_size(self, db_size, expires_size):
        self.resizes.append((db_size, expires_size))

    # values
    def set(self, key, value, expiry, info=None):
        self._start(key, "string", expiry, info, _text(value))

    def start_hash(self, key, length, expiry, info=None):
        self._start(key, "hash", expiry, info, [])

    def hset(self, key, field, value):
        self._add((_text(field), _text(value)))

    def start_set(self, key, cardinality, expiry, info=None):
        self._start(key, "set", expiry, info, [])

    def sadd(self, key, member):
        self._add(_text(member))

    def start_list(self, key, expiry, info=None):
        self._start(key, "list", expiry, info, [])

    def rpush(self, key, value):
        self._add(_text(value))

    def start_sorted_set(self, key, length, expiry, info=None):
        self._start(key, "zset", expiry, info, [])

    def zadd(self, key, score, member):
        self._add((_text(member), float(score)))

    def start_stream(self, key, listpacks_count, expiry, info=None):
        self._start(key, "stream", expiry, info, None)

    def stream_listpack(self, key, entry_id, data):
        # rdbtools does not decode stream entries: decode its raw node listpack here
        self._current.setdefault("entries", []).extend(stream_node_entries(entry_id, data))

    def end_stream(self, key, items, last_entry_id, cgroups):
        self._current["value"] = {"length": items, "last_id": last_entry_id, "groups": cgroups,
                                  "entries": self._current.pop("entries", [])}

    def start_module(self, key, module_name, expiry, info=None):
        if key is not None:  # key None: a MODULE_AUX opcode, not a key
            self._start(key, "module", expiry, info, module_name)
        return False  # do not record the module's bytes


def listpack_items(blob: bytes) -> list[bytes | int]:
    """A minimal listpack reader (redis listpack.c), written for this test only."""
    assert int.from_bytes(blob[:4], "little") == len(blob)
    items: list[bytes | int] = []
    i = 6
    while blob[i] != 0xFF:
        start, b = i, blob[i]
        if b < 0x80:  # 7-bit uint
            value: bytes | int = b
            i += 1
        elif b >> 6 == 0b10:  # 6-bit string length
            n = b & 0x3F
            value, i = blob[i + 1:i + 1 + n], i + 1 + n
        elif b >> 5 == 0b110:  # 13-bit int
            value = ((b & 0x1F) << 8) | blob[i + 1]
            value, i = (value - 8192 if value >= 4096 else value), i + 2
        elif b >> 4 == 0b1110:  # 12-bit string length
            n = ((b & 0x0F) << 8) | blob[i + 1]
            value, i = blob[i + 2:i + 2 + n], i + 2 + n
        elif b == 0xF0:  # 32-bit string length
            n = int.from_bytes(blob[i + 1:i + 5], "little")
            value, i = blob[i + 5:i + 5 + n], i + 5 + n
        elif b in (0xF1, 0xF2, 0xF3, 0xF4):  # 16/24/32/64-bit int
            width = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}[b]
            value = int.from_bytes(blob[i + 1:i + 1 + width], "little", signed=True)
            i += 1 + width
        else:
            raise AssertionError(f"listpack encoding byte {b:#x}")
        size = i - start
        i += 1 if size < 128 else 2 if size < 16384 else 3 if size < 2097152 else 4 if size < 268435456 else 5
        items.append(value)
    assert i == len(blob) - 1
    return items


def stream_node_entries(master_id: bytes, blob: bytes) -> list[tuple[str, list[tuple[bytes, bytes]]]]:
    """Live entries of one stream node (redis t_stream.c layout), ids as "ms-seq"."""
    items = iter(listpack_items(blob))

    def num() -> int:
        return int(next(items))

    master_ms, master_seq = int.from_bytes(master_id[:8], "big"), int.from_bytes(master_id[8:16], "big")
    count, deleted, nfields = num(), num(), num()
    master_fields = [_text(next(items)) for _ in range(nfields)]
    assert num() == 0  # master entry terminator
    entries = []
    for _ in range(count + deleted):
        flags, ms_delta, seq_delta = num(), num(), num()
        if flags & 2:  # same fields as the master entry
            fields = [(f, _text(next(items))) for f in master_fields]
        else:
            fields = [(_text(next(items)), _text(next(items))) for _ in range(num())]
        num()  # lp-count
        if not flags & 1:  # not deleted
            entries.append((f"{master_ms + ms_delta}-{master_seq + seq_delta}", fields))
    assert next(items, None) is None
    return entries


def parse_with_rdbtools(path: Path) -> Collector:
    collector = Collector()
    RdbParser(collector).parse(str(path))
    return collector


# -- comparison -----------------------------------------------------------------------------------

def _zipmap_norm(value: bytes) -> bytes:
    """rdbtools' read_zipmap runs int() over each value; do the same to snaptool's."""
    try:
        return b"%d" % int(value)
    except ValueError:
        return value


def _stream_id_be(raw: bytes) -> str:
    return f"{int.from_bytes(raw[:8], 'big')}-{int.from_bytes(raw[8:16], 'big')}"


def _stream_view(value: StreamValue) -> dict:
    return {
        "entries": [(format_id(e.id), e.fields) for e in value.entries],
        "length": value.length,
        "last_id": format_id(value.last_id),
        "groups": [{
            "name": g.name,
            "last_entry_id": format_id(g.last_id),
            "pending": [(format_id(p.id), p.delivery_time, p.delivery_count) for p in g.pending],
            "consumers": [(c.name, c.seen_time, [format_id(i) for i in c.pending]) for c in g.consumers],
        } for g in value.groups],
    }


def _rdbtools_stream_view(value: dict) -> dict:
    return {
        "entries": value["entries"],
        "length": value["length"],
        "last_id": value["last_id"],
        "groups": [{
            "name": g["name"],
            "last_entry_id": g["last_entry_id"],
            "pending": [(_stream_id_be(p["id"]), _ms(p["delivery_time"]), p["delivery_count"])
                        for p in g["pending"]],
            "consumers": [(c["name"], _ms(c["seen_time"]), [_stream_id_be(p["id"]) for p in c["pending"]])
                          for c in g["consumers"]],
        } for g in value["groups"]],
    }


def comparable(kind: str, rdb_type: int, value: Any, *, ours: bool) -> Any:
    if kind == "string" or kind == "list":
        return value
    if kind == "set":
        return Counter(value)
    if kind == "zset":
        return Counter(value)
    if kind == "hash":
        pairs = [(f, v) for f, v, _ttl in value] if ours else value
        if rdb_type == 9:
            pairs = [(f, _zipmap_norm(v)) for f, v in pairs]
        return Counter(pairs)
    if kind == "stream":
        return _stream_view(value) if ours else _rdbtools_stream_view(value)
    if kind == "module":
        assert isinstance(value, ModuleValue) if ours else isinstance(value, str)
        return value.name if ours else value
    raise AssertionError(kind)


def _clamp(ms: int | None) -> int | None:
    # rdbtools' to_datetime clamps at 221925052800 s (year 9000)
    return None if ms is None else min(ms, 221925052800 * 1000 + ms % 1000)


@pytest.mark.parametrize("file_id,path", COMPARED, ids=[i for i, _ in COMPARED])
def test_snaptool_agrees_with_rdbtools(file_id: str, path: Path) -> None:
    theirs = parse_with_rdbtools(path)
    ours_records: list[tuple[Record, Any]] = []
    ours_aux: list[tuple[bytes, bytes]] = []
    ours_resizes: list[tuple[int, int]] = []
    with RdbReader.open(path, verify_checksum=file_id not in NO_CRC_CHECK) as reader:
        for item in reader.items():
            if type(item) is Record:
                ours_records.append((item, item.value()))
            elif type(item) is Aux:
                ours_aux.append((item.key, item.value))
            elif type(item) is ResizeDb:
                ours_resizes.append((item.db_size, item.expires_size))

    assert ours_aux == theirs.aux
    assert ours_resizes == theirs.resizes
    assert [(r.db, r.key) for r, _ in ours_records] == [(t["db"], t["key"]) for t in theirs.records]
    for (record, value), their in zip(ours_records, theirs.records):
        where = f"db {record.db} key {record.key!r} (type {record.type})"
        assert record.kind == their["kind"], where
        assert _clamp(record.expire_ms) == their["expire_ms"], where
        assert (record.idle, record.freq) == (their["idle"], their["freq"]), where
        assert comparable(record.kind, record.type, value, ours=True) == \
            comparable(record.kind, record.type, their["value"], ours=False), where


def test_enough_files_compared() -> None:
    """Guard against the comparison quietly shrinking (renamed folders, a version filter gone wrong)."""
    assert any(i.startswith("fixtures/") for i, _ in COMPARED) or not list(FIXTURES.glob("redis-6.2*.rdb"))
    if not CORPORA.is_dir():
        pytest.skip("RDB corpora not found (../shared/corpora); only the project's fixtures were compared")
    assert len(COMPARED) >= MIN_COMPARED, f"only {len(COMPARED)} files compared"
    listed = {i for i, _ in CANDIDATES}
    assert RDBTOOLS_FAILS <= listed, f"stale RDBTOOLS_FAILS entries: {RDBTOOLS_FAILS - listed}"


@pytest.mark.parametrize("file_id,path", FAILING, ids=[i for i, _ in FAILING])
def test_files_rdbtools_fails_on_are_refused_by_snaptool(file_id: str, path: Path) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - rdbtools raises plain Exception/struct.error
        parse_with_rdbtools(path)
    assert not isinstance(info.value, RdbError)
    with pytest.raises(RdbError) as ours:
        with RdbReader.open(path) as reader:
            for record in reader.records():
                record.value()
    assert ours.value.offset is not None
