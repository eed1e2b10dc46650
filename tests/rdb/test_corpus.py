"""The shared RDB corpora (``../shared/corpora`` beside the project root), read end to end.

* Every ``.rdb`` file parses fully, every record decoded with ``.value()``, except the documented
  deliberately bad or unsupported files in :data:`BAD_FILES`, each of which must raise
  :class:`~snaptool.errors.RdbError` (or the listed subclass) carrying a byte offset, never any
  other exception.
* Wherever the corpus ships expected output, the decoded values are compared with it:
  badboy/rdb-rs ``tests/dumps/json``, redis/librdb ``test/dumps/*.json`` (data, struct and raw
  levels; see :data:`LIBRDB_EXPECTED` for which JSON belongs to which RDB), the engine
  fixtures' ``*.jsonl`` (through :func:`snaptool.jobs.export.write_jsonl_record`) and
  redis-rdb-cli's ``rct/all.rdb.resp`` / ``.count`` (its JSON forms replace invalid UTF-8 with
  U+FFFD, so the byte-exact RESP form is used instead).
* The facts ``docs/rdb-format.md`` §10 lists for the Redis/Valkey test assets (``encodings.rdb``,
  ``hash-zipmap.rdb``, ``corrupt_empty_keys.rdb``, ``scriptbackup.rdb`` and the rest).

The whole module is skipped when the corpora folder is absent (a user's clone has no ``../shared``).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from snaptool.errors import ChecksumError, RdbError, UnsupportedError
from snaptool.jobs.export import write_jsonl_record
from snaptool.rdb.items import (Aux, End, Function, Header, Record, ResizeDb, SelectDb,
                                SlotInfo)
from snaptool.rdb.model import ModuleValue, StreamValue, format_id
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.source import Source

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CORPORA = PROJECT_ROOT / ".." / "shared" / "corpora"

if not CORPORA.is_dir():
    pytest.skip(f"RDB corpora not found at {CORPORA} (they live beside the project, in ../shared)",
                allow_module_level=True)

CORPORA = CORPORA.resolve()
ALL_RDB = sorted(CORPORA.rglob("*.rdb"))


def rel(path: Path) -> str:
    return path.relative_to(CORPORA).as_posix()


# -- deliberately bad or unsupported files ------------------------------------------------------

_CORRUPT_ZIPLIST = (
    RdbError, "key:000000000091",
    "redis/valkey test asset (corrupt-dump.tcl 'load corrupted rdb with no CRC'): key "
    "key:000000000091 is labelled type 13 (hash ziplist) but its payload is the 5-byte string "
    "'xxxxx', not a ziplist; the server must refuse it")

#: file id -> (exception class it must raise, text the message or key must contain, why)
BAD_FILES: dict[str, tuple[type[RdbError], str, str]] = {
    "redis__redis/tests/assets/corrupt_ziplist.rdb": _CORRUPT_ZIPLIST,
    "valkey-io__valkey/tests/assets/corrupt_ziplist.rdb": _CORRUPT_ZIPLIST,
    "redis__librdb/test/dumps/invalid_chksum_v8.rdb": (
        ChecksumError, "CRC-64 mismatch",
        "librdb's bad-checksum dump: the stored CRC-64 does not match (it reads with "
        "verify_checksum=False, see test_invalid_checksum_reads_without_verification)"),
    "redis__librdb/test/dumps/future_v19.rdb": (
        UnsupportedError, "99",
        "header REDIS0099: a future RDB version no engine writes"),
    "redis__librdb/test/dumps/redis_ent_opcode_ram_lru.rdb": (
        UnsupportedError, "107",
        "Redis Enterprise dump with the unknown type byte 107 (an Enterprise-only opcode)"),
    "leonchen83__redis-replicator/src/test/resources/module.rdb": (
        UnsupportedError, "type 6",
        "RDB 8 file with a pre-GA module value (type 6), unreadable without the module"),
}


def read_everything(path: Path, **kwargs) -> list:
    """Every item of the file, each record decoded (value() is run and kept alongside)."""
    out = []
    with RdbReader.open(path, **kwargs) as reader:
        for item in reader.items():
            if type(item) is Record:
                out.append((item, item.value()))
            else:
                out.append(item)
    return out


def records_of(path: Path, **kwargs) -> list[tuple[Record, Any]]:
    return [x for x in read_everything(path, **kwargs) if type(x) is tuple]


@pytest.mark.parametrize("path", ALL_RDB, ids=[rel(p) for p in ALL_RDB])
def test_corpus_file_reads_fully_or_fails_cleanly(path: Path) -> None:
    file_id = rel(path)
    if file_id in BAD_FILES:
        expected, needle, _why = BAD_FILES[file_id]
        with pytest.raises(RdbError) as info:
            read_everything(path)
        exc = info.value
        assert isinstance(exc, expected), f"{file_id}: {type(exc).__name__} is not a {expected.__name__}: {exc}"
        assert isinstance(exc.offset, int), f"{file_id}: error without offset: {exc}"
        assert 0 <= exc.offset <= path.stat().st_size
        assert needle in exc.message or (exc.key is not None and needle.encode() in exc.key), str(exc)
        return
    items = read_everything(path)
    assert type(items[0]) is Header
    assert type(items[-1]) is End, f"{file_id}: the reader stopped before EOF"
    assert items[-1].status in ("ok", "absent", "disabled")
    for record, _value in (x for x in items if type(x) is tuple):
        assert record.kind != "unknown", f"{file_id}: {record!r}"


def test_bad_file_list_is_current() -> None:
    missing = sorted(set(BAD_FILES) - {rel(p) for p in ALL_RDB})
    assert not missing, f"BAD_FILES lists files that are not in the corpus: {missing}"


def test_corrupt_ziplist_fails_on_the_mislabelled_key() -> None:
    for folder in ("redis__redis", "valkey-io__valkey"):
        path = CORPORA / folder / "tests/assets/corrupt_ziplist.rdb"
        good = []
        with pytest.raises(RdbError) as info:
            with RdbReader.open(path) as reader:
                for record in reader.records():
                    record.value()
                    good.append(record.key)
        assert info.value.key == b"key:000000000091"
        assert b"mylist" in good and len(good) >= 10


def test_invalid_checksum_reads_without_verification() -> None:
    path = CORPORA / "redis__librdb/test/dumps/invalid_chksum_v8.rdb"
    with pytest.raises(ChecksumError) as info:
        read_everything(path)
    assert info.value.offset == path.stat().st_size - 8  # where the stored CRC starts
    items = read_everything(path, verify_checksum=False)
    end = items[-1]
    assert type(end) is End and end.status == "mismatch" and end.stored != end.computed
    assert len([x for x in items if type(x) is tuple]) == 3


def test_future_version_fails_at_the_header() -> None:
    path = CORPORA / "redis__librdb/test/dumps/future_v19.rdb"
    assert path.read_bytes()[:9] == b"REDIS0099"
    with pytest.raises(UnsupportedError) as info:
        read_everything(path)
    assert info.value.offset == 0


# -- helpers for expected output ------------------------------------------------------------------

def latin1(text: str) -> bytes:
    """librdb's plain JSON writes every byte as one character (printable or \\u00XX)."""
    return text.encode("latin-1")


def kind_value(record: Record, value: Any) -> Any:
    """A comparable form of a decoded value: multisets for sets and hashes, sorted zsets."""
    kind = record.kind
    if kind == "set":
        return Counter(value)
    if kind == "hash":
        return Counter((f, v) for f, v, _ttl in value)
    if kind == "zset":
        return sorted(value)
    return value


# -- badboy/rdb-rs tests/dumps/json ---------------------------------------------------------------

BADBOY = CORPORA / "badboy__rdb-rs" / "tests" / "dumps"
BADBOY_JSON = sorted((BADBOY / "json").glob("*.json"))


def badboy_text(data: bytes) -> str:
    """rdb-rs's ``encode_to_ascii``: valid UTF-8 as text, anything else byte by byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def badboy_shape(record: Record, value: Any) -> Any:
    kind, t = record.kind, badboy_text
    if kind == "string":
        return t(value)
    if kind == "list":
        return [t(x) for x in value]
    if kind == "set":
        return Counter(t(x) for x in value)
    if kind == "hash":
        return {t(f): t(v) for f, v, _ in value}
    if kind == "zset":
        return {t(m): s for m, s in value}
    raise AssertionError(f"rdb-rs JSON has no shape for {kind}")


@pytest.mark.parametrize("json_path", BADBOY_JSON, ids=[p.stem for p in BADBOY_JSON])
def test_badboy_json(json_path: Path) -> None:
    rdb = BADBOY / f"{json_path.stem}.rdb"
    expected = json.loads(json_path.read_text(encoding="utf-8"))
    # One JSON object per SELECTDB, keys in file order; no expiries in this format.
    got: list[dict] = []
    for item in read_everything(rdb):
        if type(item) is SelectDb:
            got.append({})
        elif type(item) is tuple:
            record, value = item
            got[-1][badboy_text(record.key)] = badboy_shape(record, value)
    assert len(got) == len(expected), "number of databases"
    for db_got, db_exp in zip(got, expected):
        assert list(db_got) == list(db_exp), "keys (in file order)"
        for key, exp in db_exp.items():
            actual = db_got[key]
            if isinstance(actual, Counter):
                exp = Counter(exp)
            elif isinstance(exp, dict) and actual and isinstance(next(iter(actual.values())), float):
                exp = {m: float(s) for m, s in exp.items()}  # Rust f64 to_string: round-trips
            assert actual == exp, f"key {key!r}"


def test_badboy_every_dump_has_json() -> None:
    assert {p.stem for p in BADBOY.glob("*.rdb")} == {p.stem for p in BADBOY_JSON}


# -- redis/librdb test/dumps/*.json ---------------------------------------------------------------

LIBRDB = CORPORA / "redis__librdb" / "test" / "dumps"

# (json, rdb, how to read it). Taken from librdb's test/*.c (test_rdb_to_json.c, test_main.c,
# test_rdb_cli.c, test_rdb_to_redis.c) at the corpus commit. Levels:
#   data    - logical values (librdb RDB_LEVEL_DATA); top-level __aux__/__func__/__dbsize__/__slotinfo__
#   struct  - RDB_LEVEL_STRUCT: plain encodings as data, blob encodings as the list of inner blobs
#   raw     - RDB_LEVEL_RAW: the value's serialized bytes, type byte first
#   dbs     - data, one object per database (flatten = 0)
#   loaded  - what a Redis returned after loading the file (test_rdb_to_redis.c): expired keys gone
# A suffix ":list" / ":string" keeps only keys of that kind (librdb handled the others elsewhere).
LIBRDB_EXPECTED: list[tuple[str, str, str]] = [
    ("single_key_data.json", "single_key.rdb", "data"),
    ("single_key_struct.json", "single_key.rdb", "struct"),
    ("single_key_raw.json", "single_key.rdb", "raw"),
    ("single_list_data.json", "quicklist2_v11.rdb", "data"),
    ("single_list_struct.json", "quicklist2_v11.rdb", "struct"),
    ("single_list_raw.json", "quicklist2_v11.rdb", "raw"),
    ("quicklist_data.json", "quicklist.rdb", "data"),
    ("quicklist_struct.json", "quicklist.rdb", "struct"),
    ("quicklist_raw.json", "quicklist.rdb", "raw"),
    ("ziplist_data.json", "ziplist_v3.rdb", "data"),
    ("ziplist_struct.json", "ziplist_v3.rdb", "struct"),
    ("ziplist_raw.json", "ziplist_v3.rdb", "raw"),
    ("plain_list_v6_data.json", "plain_list_v6.rdb", "data"),
    ("plain_list_v6_raw.json", "plain_list_v6.rdb", "raw"),
    ("hash_data.json", "hash_v3.rdb", "data"),
    ("hash_struct.json", "hash_v3.rdb", "struct"),
    ("hash_raw.json", "hash_v3.rdb", "raw"),
    # Left over from when hash_v3.rdb was called plain_hash_v3.rdb; no longer used upstream.
    ("plain_hash_data.json", "hash_v3.rdb", "data"),
    ("plain_hash_struct.json", "hash_v3.rdb", "struct"),
    ("hash_ex_v12_data.json", "hash_with_expire_v12.rdb", "data"),
    ("hash_zl_v6_data.json", "hash_zl_v6.rdb", "data"),
    ("hash_zl_v6_struct.json", "hash_zl_v6.rdb", "struct"),
    ("hash_zl_v6_raw.json", "hash_zl_v6.rdb", "raw"),
    ("hash_lp_v11_data.json", "hash_lp_v11.rdb", "data"),
    ("hash_lp_v11_struct.json", "hash_lp_v11.rdb", "struct"),
    ("hash_lp_v11_raw.json", "hash_lp_v11.rdb", "raw"),
    ("hash_lp_ex_v12_data.json", "hash_lp_with_hexpire_v12.rdb", "data"),
    ("hash_zm_v2_data.json", "hash_zm_v2.rdb", "data"),
    ("hash_zm_v2_struct.json", "hash_zm_v2.rdb", "struct"),
    ("hash_zm_v2_raw.json", "hash_zm_v2.rdb", "raw"),
    ("plain_set_v6_data.json", "plain_set_v6.rdb", "data"),
    ("plain_set_v6_struct.json", "plain_set_v6.rdb", "struct"),
    ("plain_set_v6_raw.json", "plain_set_v6.rdb", "raw"),
    ("set_is_v11_data.json", "set_is_v11.rdb", "data"),
    ("set_is_v11_struct.json", "set_is_v11.rdb", "struct"),
    ("set_is_v11_raw.json", "set_is_v11.rdb", "struct"),  # upstream runs the "raw" test at STRUCT level
    ("set_lp_v11_data.json", "set_lp_v11.rdb", "data"),
    ("set_lp_v11_struct.json", "set_lp_v11.rdb", "struct"),
    ("set_lp_v11_raw.json", "set_lp_v11.rdb", "struct"),  # likewise
    ("plain_zset_v6_data.json", "plain_zset_v6.rdb", "data"),
    ("plain_zset_v6_struct.json", "plain_zset_v6.rdb", "struct"),
    ("plain_zset_v6_raw.json", "plain_zset_v6.rdb", "raw"),
    ("plain_zset_2_v11_data.json", "plain_zset_2_v11.rdb", "data"),
    ("plain_zset_2_v11_struct.json", "plain_zset_2_v11.rdb", "struct"),
    ("plain_zset_2_v11_raw.json", "plain_zset_2_v11.rdb", "raw"),
    ("zset_lp_v11_data.json", "zset_lp_v11.rdb", "data"),
    ("zset_lp_v11_struct.json", "zset_lp_v11.rdb", "struct"),
    ("zset_lp_v11_raw.json", "zset_lp_v11.rdb", "raw"),
    ("zset_zl_v6_data.json", "zset_zl_v6.rdb", "data"),
    ("zset_zl_v6_struct.json", "zset_zl_v6.rdb", "struct"),
    ("zset_zl_v6_raw.json", "zset_zl_v6.rdb", "raw"),
    ("multiple_lists_strings_data.json", "multiple_lists_strings.rdb", "data"),
    ("multiple_lists_strings_struct.json", "multiple_lists_strings.rdb", "struct"),
    ("multiple_lists_strings_raw.json", "multiple_lists_strings.rdb", "raw"),
    ("multiple_lists_strings_no_aux.json", "multiple_lists_strings.rdb", "data"),  # rdb-cli json
    ("multiple_lists_strings_subset_list.json", "multiple_lists_strings.rdb", "data:list"),
    ("multiple_lists_strings_subset_str.json", "multiple_lists_strings.rdb", "raw:string"),
    ("multiple_lists_strings_2filters.json", "multiple_lists_strings.rdb", "data:list"),  # unused upstream
    ("multiple_dbs_data.json", "multiple_dbs.rdb", "dbs"),
    ("function2.json", "function2.rdb", "data"),
    ("module_data.json", "module.rdb", "data"),
    ("module_raw.json", "module.rdb", "raw"),
    ("module_aux_data.json", "module_aux.rdb", "data"),
    ("string_int_encoded.json", "string_int_encoded.rdb", "data"),
    ("stream_data.json", "stream_v11.rdb", "data"),
    ("stream_data_with_meta.json", "stream_v11.rdb", "data"),
    ("cluster_slot_info.json", "cluster_slot_info.rdb", "data"),
    ("set_expired.json", "set_expired_v11.rdb", "loaded"),
    ("set_not_expired.json", "set_not_expired_v11.rdb", "loaded"),
    ("mem_policy_lfu.json", "mem_policy_lfu.rdb", "loaded"),
    ("mem_policy_lru.json", "mem_policy_lru.rdb", "loaded"),
]

_SPECIAL = ("__aux__", "__func__", "__dbsize__", "__slotinfo__")
_BLOB_TYPES = {9, 10, 11, 12, 13, 16, 17, 20}  # one encoded string: zipmap/ziplist/intset/listpack
_MODULE_TEXT = re.compile(r"<Content of Module '(.+)'\. Occupies a serialized size of (\d+) bytes>")


def load_librdb_json(path: Path) -> Any:
    """librdb's expected files are JSON object *members*: wrap them in {} (multiple_dbs is a list)."""
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        return json.loads(text)
    return json.loads("{" + text + "}")


def librdb_data(record: Record, value: Any, expected: Any) -> None:
    kind, key = record.kind, record.key
    if kind == "string":
        assert latin1(expected) == value, key
    elif kind == "list":
        assert [latin1(x) for x in expected] == value, key
    elif kind == "set":
        assert Counter(latin1(x) for x in expected) == Counter(value), key
    elif kind == "zset":
        assert sorted((latin1(m), float(s)) for m, s in expected.items()) == sorted(value), key
    elif kind == "hash":
        assert Counter((latin1(f), latin1(v)) for f, v in expected.items()) == \
            Counter((f, v) for f, v, _ttl in value), key
    elif kind == "module":
        m = _MODULE_TEXT.fullmatch(expected)
        assert m, expected
        assert isinstance(value, ModuleValue)
        assert (value.name, int(m.group(2))) == (m.group(1), len(record.value_bytes()))
    elif kind == "stream":
        librdb_stream(value, expected)
    else:
        raise AssertionError(f"no librdb shape for {kind}")


def librdb_stream(value: StreamValue, expected: dict) -> None:
    assert [{"id": format_id(e.id), "items": {f.decode(): v.decode() for f, v in e.fields}}
            for e in value.entries] == expected["entries"]
    if "length" not in expected:
        return
    assert value.length == expected["length"]
    assert value.entries_added == expected["entriesAdded"]
    assert format_id(value.first_id) == expected["firstID"]
    assert format_id(value.last_id) == expected["lastID"]
    assert format_id(value.max_deleted_id) == expected["maxDelEntryID"]
    groups = []
    for g in value.groups:
        consumers = []
        for c in g.consumers:
            entry = {"name": c.name.decode(), "activeTime": c.active_time, "seenTime": c.seen_time}
            if c.pending:
                entry["pending"] = [{"id": format_id(p)} for p in c.pending]
            consumers.append(entry)
        groups.append({"name": g.name.decode(), "lastid": format_id(g.last_id),
                       "entriesRead": g.entries_read,
                       "pending": [{"sent": p.delivery_time, "id": format_id(p.id), "count": p.delivery_count}
                                   for p in g.pending],
                       "consumers": consumers})
    assert groups == expected["groups"]


def librdb_struct(record: Record, value: Any, expected: Any) -> None:
    if record.type not in _BLOB_TYPES | {14, 18}:
        librdb_data(record, value, expected)  # plain encodings look the same at both levels
        return
    src = Source.from_bytes(record.value_bytes())
    if record.type in _BLOB_TYPES:
        blobs = [src.string()]
    elif record.type == 14:  # quicklist: ziplist nodes
        blobs = [src.string() for _ in range(src.length())]
    else:  # quicklist 2: container, node
        blobs = [(src.length(), src.string())[1] for _ in range(src.length())]
    assert [latin1(x) for x in expected] == blobs, record.key


def librdb_raw(record: Record, expected: str) -> None:
    assert latin1(expected) == bytes([record.type]) + record.value_bytes(), record.key


@pytest.mark.parametrize("json_name,rdb_name,how", LIBRDB_EXPECTED,
                         ids=[f"{j}-{r}" for j, r, _ in LIBRDB_EXPECTED])
def test_librdb_json(json_name: str, rdb_name: str, how: str) -> None:
    level, _, only = how.partition(":")
    expected = load_librdb_json(LIBRDB / json_name)
    items = read_everything(LIBRDB / rdb_name)
    records = [x for x in items if type(x) is tuple]
    if only:
        records = [(r, v) for r, v in records if r.kind == only]
    if level == "loaded":  # a server drops keys whose expiry has passed when it loads the file
        now = int(time.time() * 1000)
        records = [(r, v) for r, v in records if r.expire_ms is None or r.expire_ms > now]
        level = "data"

    if level == "dbs":
        by_db: dict[int, dict] = {}
        for record, value in records:
            by_db.setdefault(record.db, {})[record.key] = (record, value)
        assert len(by_db) == len(expected)
        for (_db, got), exp in zip(sorted(by_db.items()), expected):
            assert sorted(got) == sorted(latin1(k) for k in exp)
            for k, exp_value in exp.items():
                librdb_data(*got[latin1(k)], exp_value)
        return

    if "__aux__" in expected:
        assert {a.key: a.value for a in items if type(a) is Aux} == \
            {latin1(k): latin1(v) for k, v in expected["__aux__"].items()}
    if "__func__" in expected:
        assert [f.code for f in items if type(f) is Function] == \
            [latin1(code) for code in expected["__func__"].values()]
    if "__dbsize__" in expected:
        sizes = [(r.db_size, r.expires_size) for r in items if type(r) is ResizeDb]
        assert sizes == [(expected["__dbsize__"]["size"], expected["__dbsize__"]["expires"])]
    if "__slotinfo__" in expected:
        slots = [(s.slot, s.size, s.expires_size) for s in items if type(s) is SlotInfo]
        e = expected["__slotinfo__"]
        assert slots == [(e["slotId"], e["slotSize"], e["slotSExpiresSize"])]

    exp_keys = {latin1(k): v for k, v in expected.items() if k not in _SPECIAL}
    got = {record.key: (record, value) for record, value in records}
    assert len(got) == len(records), "duplicate keys"
    assert sorted(got) == sorted(exp_keys)
    for key, exp_value in exp_keys.items():
        record, value = got[key]
        if level == "data":
            librdb_data(record, value, exp_value)
        elif level == "struct":
            librdb_struct(record, value, exp_value)
        elif level == "raw":
            librdb_raw(record, exp_value)
        else:
            raise AssertionError(how)


def test_librdb_every_json_is_mapped() -> None:
    mapped = {j for j, _, _ in LIBRDB_EXPECTED}
    present = {p.name for p in LIBRDB.glob("*.json")}
    assert present - mapped == set(), "librdb JSON files without a known RDB"
    assert mapped - present == set()


def test_librdb_field_expiries() -> None:
    """Hash field TTLs: the data-level JSON drops them, so check what the files hold here.

    hash_with_expire_v12 (type 22, 7.4 RC: absolute times) and hash_lp_with_hexpire_v12
    (type 23, RC listpack without the min-expiry prefix): field3 never expires, the others do.
    """
    for name, rdb_type in (("hash_with_expire_v12.rdb", 22), ("hash_lp_with_hexpire_v12.rdb", 23)):
        [(record, value)] = records_of(LIBRDB / name)
        assert record.type == rdb_type
        ttl = {f: e for f, _v, e in value}
        assert ttl[b"field3"] is None
        assert ttl[b"field1"] is not None and ttl[b"field2"] is not None


def test_librdb_memory_policy_hints() -> None:
    [(lfu, _)] = records_of(LIBRDB / "mem_policy_lfu.rdb")
    [(lru, _)] = records_of(LIBRDB / "mem_policy_lru.rdb")
    assert lfu.freq is not None and lfu.idle is None
    assert lru.idle is not None and lru.freq is None


# -- engine fixtures (*.jsonl = what the engine returned, in export jsonl shape) -----------------

ENGINE = CORPORA / "engine-fixtures"
ENGINE_RDB = sorted(ENGINE.glob("*.rdb"))


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("rdb", ENGINE_RDB, ids=[p.stem for p in ENGINE_RDB])
def test_engine_fixture_jsonl(rdb: Path) -> None:
    expected = {}
    for line in rdb.with_suffix(".jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        key = (row["db"], _canon(row["key"]))
        assert key not in expected
        expected[key] = row
    got = {}
    with RdbReader.open(rdb) as reader:
        for record in reader.records():
            buf = io.StringIO()
            write_jsonl_record(record, buf)
            row = json.loads(buf.getvalue())
            key = (row["db"], _canon(row["key"]))
            assert key not in got, f"duplicate key {key}"
            got[key] = row
    assert sorted(got) == sorted(expected)
    for key, exp in expected.items():
        act = got[key]
        assert (act["type"], act["expire_ms"]) == (exp["type"], exp["expire_ms"]), key
        if exp["type"] in ("set", "hash"):  # the engine's order is not the file's: multisets
            assert Counter(map(_canon, act["value"])) == Counter(map(_canon, exp["value"])), key
        else:
            assert act["value"] == exp["value"], key


# -- leonchen83/redis-rdb-cli rct/all.rdb.{resp,count} --------------------------------------------

RDB_CLI = CORPORA / "leonchen83__redis-rdb-cli" / "src" / "test" / "resources" / "rct"


def parse_resp(data: bytes) -> list[list[bytes]]:
    """RESP arrays of bulk strings, as ``redis-cli --pipe`` takes them."""
    commands, pos = [], 0

    def line() -> bytes:
        nonlocal pos
        end = data.index(b"\r\n", pos)
        out, pos = data[pos:end], end + 2
        return out

    while pos < len(data):
        head = line()
        assert head[:1] == b"*", head
        args = []
        for _ in range(int(head[1:])):
            size = line()
            assert size[:1] == b"$", size
            n = int(size[1:])
            args.append(data[pos:pos + n])
            assert data[pos + n:pos + n + 2] == b"\r\n"
            pos += n + 2
        commands.append(args)
    return commands


_RESP_KINDS = {b"set": "string", b"hmset": "hash", b"rpush": "list", b"sadd": "set", b"zadd": "zset",
               b"restore": "restore"}


def _merge(rows: list[dict], row: dict) -> None:
    """Consecutive commands for one collection key are batches of one record."""
    last = rows[-1] if rows else None
    if (last and row["kind"] in ("hash", "list", "set", "zset") and "expire_ms" not in last
            and (last["db"], last["key"], last["kind"]) == (row["db"], row["key"], row["kind"])):
        last["value"] += row["value"]
    else:
        rows.append(row)


def test_rdb_cli_resp_and_count() -> None:
    """rdb-cli's ``rct -f resp`` output: every key as set/hmset/rpush/sadd/zadd (byte-exact values),
    streams and modules as RESTORE payloads, then PEXPIREAT; functions as FUNCTION LOAD."""
    expected: list[dict] = []
    functions: list[bytes] = []
    db = 0
    for args in parse_resp((RDB_CLI / "all.rdb.resp").read_bytes()):
        cmd = args[0].lower()
        if cmd == b"select":
            db = int(args[1])
        elif cmd == b"pexpireat":
            assert expected[-1]["key"] == args[1]
            expected[-1]["expire_ms"] = int(args[2])
        elif cmd == b"function":  # FUNCTION LOAD <engine> <name> [DESCRIPTION <d>] <code> (7.0-rc syntax)
            functions.append(b"#!" + args[2].lower() + b" name=" + args[3] + b"\n" + args[-1])
        else:
            kind = _RESP_KINDS[cmd]
            if kind == "string":
                value = args[2]
            elif kind == "restore":  # DUMP payload: type byte + value, 2-byte version, CRC-64
                value = args[3][:-10]
            elif kind == "hash":
                value = list(zip(args[2::2], args[3::2]))
            elif kind == "zset":
                value = [(m, float(s)) for s, m in zip(args[2::2], args[3::2])]
            else:
                value = list(args[2:])
            _merge(expected, {"db": db, "key": args[1], "kind": kind, "value": value})

    got: list[dict] = []
    got_functions: list[bytes] = []
    kinds: Counter = Counter()
    for item in read_everything(RDB_CLI / "all.rdb"):
        if type(item) is Function:
            got_functions.append(item.code)
        if type(item) is not tuple:
            continue
        record, value = item
        kinds[record.kind] += 1
        if record.kind in ("stream", "module"):
            row = {"kind": "restore", "value": bytes([record.type]) + record.value_bytes()}
        elif record.kind == "hash":
            row = {"kind": "hash", "value": [(f, v) for f, v, _ in value]}
        else:
            row = {"kind": record.kind, "value": value}
        row.update(db=record.db, key=record.key)
        _merge(got, row)
        if record.expire_ms is not None:
            got[-1]["expire_ms"] = record.expire_ms

    assert got_functions == functions
    assert [(r["db"], r["key"], r["kind"]) for r in got] == [(r["db"], r["key"], r["kind"]) for r in expected]
    for g, e in zip(got, expected):
        assert g.get("expire_ms") == e.get("expire_ms"), g["key"]
        if g["kind"] in ("set", "hash", "zset"):
            assert Counter(g["value"]) == Counter(e["value"]), g["key"]
        else:
            assert g["value"] == e["value"], g["key"]

    header, counts = (RDB_CLI / "all.rdb.count").read_text().split()
    count = dict(zip(header.split(","), map(int, counts.split(","))))
    names = {"sortedset": "zset"}
    assert count.pop("summary") == sum(kinds.values())
    assert {names.get(k, k): v for k, v in count.items()} == dict(kinds)


# -- docs/rdb-format.md §10: the Redis/Valkey test assets ----------------------------------------

ASSET_DIRS = [CORPORA / d / "tests" / "assets" for d in ("redis__redis", "valkey-io__valkey")]


def assets(name: str) -> list[Path]:
    return [d / name for d in ASSET_DIRS]


# csvdump in redis tests/integration/rdb.tcl "RDB encoding loading test" (type byte per §10).
ENCODINGS = {
    b"zset": (3, [(b"a", 1), (b"b", 2), (b"c", 3), (b"aa", 10), (b"bb", 20), (b"cc", 30), (b"aaa", 100),
                  (b"bbb", 200), (b"ccc", 300), (b"aaaa", 1000), (b"cccc", 123456789),
                  (b"bbbb", 5000000000)]),
    b"set_zipped_1": (11, [b"1", b"2", b"3", b"4"]),
    b"set_zipped_2": (11, [b"100000", b"200000", b"300000", b"400000"]),
    b"set_zipped_3": (11, [b"%d000000000" % i for i in range(1, 7)]),
    b"list_zipped": (10, [b"1", b"2", b"3", b"a", b"b", b"c", b"100000", b"6000000000"]),
    b"string": (0, b"Hello World"),
    b"compressible": (0, b"a" * 137),
    b"number": (0, b"10"),
    b"set": (2, [b"1", b"100000", b"2", b"3", b"6000000000", b"a", b"b", b"c"]),
    b"list": (1, [b"1", b"2", b"3", b"a", b"b", b"c", b"100000", b"6000000000"] * 3),
    b"hash_zipped": (13, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]),
    b"zset_zipped": (12, [(b"a", 1), (b"b", 2), (b"c", 3)]),
    b"hash": (4, [(b"a", b"1"), (b"aa", b"10"), (b"aaa", b"100"), (b"b", b"2"), (b"bb", b"20"),
                  (b"bbb", b"200"), (b"c", b"3"), (b"cc", b"30"), (b"ccc", b"300"), (b"ddd", b"400"),
                  (b"eee", b"5000000000")]),
}


@pytest.mark.parametrize("path", assets("encodings.rdb"), ids=lambda p: rel(p))
def test_encodings_rdb(path: Path) -> None:
    items = read_everything(path)
    assert items[0].magic == b"REDIS0004"
    assert not [x for x in items if type(x) is Aux]
    assert items[-1].stored is None  # no CRC trailer before RDB 5
    records = {r.key: (r, v) for r, v in (x for x in items if type(x) is tuple)}
    assert len(records) == 13 and set(records) == set(ENCODINGS)
    for key, (rdb_type, expected) in ENCODINGS.items():
        record, value = records[key]
        assert (record.db, record.type, record.expire_ms) == (0, rdb_type, None), key
        if record.kind == "zset":
            assert sorted(value, key=lambda p: (p[1], p[0])) == [(m, float(s)) for m, s in expected]
        elif record.kind == "hash":
            assert sorted((f, v) for f, v, _ in value) == expected
            assert all(ttl is None for _, _, ttl in value)
        elif record.kind == "set":
            assert sorted(value) == sorted(expected) and len(value) == len(expected)
        else:
            assert value == expected, key
    raw = {r.key: r.value_bytes() for r, _ in records.values()}
    assert raw[b"compressible"][:4] == bytes.fromhex("C30940 89".replace(" ", ""))  # LZF-encoded
    assert raw[b"number"] == bytes.fromhex("C00A")  # int-encoded


@pytest.mark.parametrize("path", assets("hash-zipmap.rdb"), ids=lambda p: rel(p))
def test_hash_zipmap_rdb(path: Path) -> None:
    items = read_everything(path)
    assert items[0].magic == b"REDIS0003" and items[-1].stored is None
    [(record, value)] = [x for x in items if type(x) is tuple]
    assert (record.key, record.type) == (b"hash", 9)
    assert value == [(b"f1", b"v1", None), (b"f2", b"v2", None)]


@pytest.mark.parametrize("path", assets("corrupt_empty_keys.rdb"), ids=lambda p: rel(p))
def test_corrupt_empty_keys_rdb(path: Path) -> None:
    items = read_everything(path)
    assert items[0].magic == b"REDIS0010"
    got = {r.key: (r.type, v) for r, v in (x for x in items if type(x) is tuple)}
    assert got == {
        b"set": (2, []), b"hash": (4, []), b"list_ziplist": (10, []), b"zset": (5, []),
        b"zset_listpack": (17, []), b"hash_ziplist": (16, []), b"list_quicklist": (14, []),
        b"zset_ziplist": (12, []), b"list_quicklist_empty_ziplist": (14, []),
    }


@pytest.mark.parametrize("path", assets("scriptbackup.rdb"), ids=lambda p: rel(p))
def test_scriptbackup_rdb(path: Path) -> None:
    items = read_everything(path)
    assert items[0].magic == b"REDIS0010"
    aux = {a.key: a.value for a in items if type(a) is Aux}
    assert aux[b"lua"] == b"return redis.call('set', 'foo', 'bar')"
    assert {b"repl-id", b"repl-offset", b"aof-preamble"} <= set(aux)
    assert not [x for x in items if type(x) is tuple]
    assert items[-1].status == "ok"


@pytest.mark.parametrize("name,magic,expected", [
    ("hash-ziplist.rdb", b"REDIS0009", {b"hash": (13, [(b"f1", b"v1", None), (b"f2", b"v2", None)])}),
    ("zset-ziplist.rdb", b"REDIS0010", {b"zset": (12, [(b"one", 1.0), (b"two", 2.0)])}),
    ("list-quicklist.rdb", b"REDIS0008", {b"list": (14, [b"7"]), b"x": (0, b"7")}),
])
def test_small_assets(name: str, magic: bytes, expected: dict) -> None:
    for path in assets(name):
        items = read_everything(path)
        assert items[0].magic == magic
        assert {r.key: (r.type, v) for r, v in (x for x in items if type(x) is tuple)} == expected
        assert items[-1].status == "ok"


def test_redis_and_valkey_assets_are_identical() -> None:
    for path in ASSET_DIRS[0].glob("*.rdb"):
        assert (ASSET_DIRS[1] / path.name).read_bytes() == path.read_bytes(), path.name
