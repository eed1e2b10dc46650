"""`snaptool export`: every key as JSON lines, or as RESP commands for `redis-cli --pipe`.

Both formats stream element by element, so a huge list or hash is written without being held
whole. Strings are JSON strings when they are valid UTF-8, else ``{"base64": ...}``.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TextIO

from ..engines.resp import encode
from ..errors import SnaptoolError
from ..rdb import constants as C
from ..rdb.items import Function, Record
from ..rdb.model import ModuleValue, StreamValue, format_id
from ..rdb.reader import RdbReader

_BATCH = 128
#: zset encodings that do not keep members in score order (ziplists and listpacks do)
_UNORDERED_ZSETS = (C.T_ZSET, C.T_ZSET_2)
_KEY_BUFFER = 1 << 20


@dataclass
class ExportReport:
    keys: int = 0
    skipped_filtered: int = 0
    #: keys a format cannot carry (RESP: module values), by reason
    not_exported: dict[str, int] = field(default_factory=dict)
    functions: int = 0


def text(data: bytes) -> Any:
    """A JSON string for UTF-8 bytes, ``{"base64": …}`` otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def score_json(score: float) -> Any:
    if score != score:
        return "nan"
    if score in (float("inf"), float("-inf")):
        return "inf" if score > 0 else "-inf"
    return score


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def glob_matcher(pattern: str | None) -> Callable[[bytes], bool]:
    """A glob (``*``, ``?``, ``[...]``) over raw key bytes; the pattern is taken as UTF-8."""
    if pattern is None:
        return lambda key: True
    regex = re.compile(fnmatch.translate(pattern.encode("utf-8").decode("latin-1")))
    return lambda key: regex.match(key.decode("latin-1")) is not None


def stream_json(value: StreamValue) -> dict:
    """The stream shape of the export format (ids as "ms-seq")."""
    groups = []
    for g in value.groups:
        owner = {pid: c.name for c in g.consumers for pid in c.pending}
        groups.append({
            "name": text(g.name), "last_delivered_id": format_id(g.last_id), "entries_read": g.entries_read,
            "pending": [[format_id(p.id), text(owner.get(p.id, b"")), p.delivery_time, p.delivery_count]
                        for p in g.pending],
            "consumers": [{"name": text(c.name), "seen_time_ms": c.seen_time, "active_time_ms": c.active_time}
                          for c in g.consumers],
        })
    return {
        "entries": [[format_id(e.id), [[text(f), text(v)] for f, v in e.fields]] for e in value.entries],
        "last_id": format_id(value.last_id),
        "entries_added": value.entries_added,
        "max_deleted_entry_id": format_id(value.max_deleted_id) if value.max_deleted_id else None,
        "groups": groups,
    }


def _json_elements(kind: str, items: Iterable) -> Iterator[Any]:
    if kind in ("list", "set"):
        for item in items:
            yield text(item)
    elif kind == "zset":
        for member, score in items:
            yield [text(member), score_json(score)]
    elif kind == "hash":
        for f, v, expire in items:
            yield [text(f), text(v)] if expire is None else [text(f), text(v), expire]


def write_jsonl_record(record: Record, out: TextIO) -> None:
    """One JSON object for one key, streamed element by element for collections.

    A key is assembled in memory up to ``_KEY_BUFFER`` characters before anything is written, so
    a corrupt value met while decoding leaves no half line behind (except for keys larger than
    that, which are streamed).
    """
    line = _KeyBuffer(out, "")
    _jsonl_record(record, line)
    line.flush()


class _KeyBuffer:
    """Collects what one key produces (text or bytes); writes through only once it grows large."""

    def __init__(self, out, empty: str | bytes) -> None:
        self.out = out
        self.empty = empty
        self.parts: list = []
        self.size = 0

    def write(self, data) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size > _KEY_BUFFER:
            self.flush()

    def flush(self) -> None:
        self.out.write(self.empty.join(self.parts))
        self.parts, self.size = [], 0


def _jsonl_record(record: Record, out: _KeyBuffer) -> None:
    kind = record.kind
    head = {"db": record.db, "key": text(record.key), "type": kind, "expire_ms": record.expire_ms}
    prefix = _dumps(head)[:-1] + ',"value":'
    if kind == "string":
        out.write(prefix + _dumps(text(record.value())) + "}\n")
    elif kind == "stream":
        out.write(prefix + _dumps(stream_json(record.value())) + "}\n")
    elif kind == "module":
        mod: ModuleValue = record.value()
        out.write(prefix + _dumps({"module": mod.name, "raw": base64.b64encode(mod.raw).decode()}) + "}\n")
    else:
        out.write(prefix + "[")
        first = True
        items = record.iter_value()
        if record.type in _UNORDERED_ZSETS:  # skiplists are stored highest first: sort like ZRANGE
            items = sorted(items, key=lambda pair: (pair[1], pair[0]))
        for element in _json_elements(kind, items):
            out.write(_dumps(element) if first else "," + _dumps(element))
            first = False
        out.write("]}\n")


# -- RESP -----------------------------------------------------------------------------------------

def _score_arg(score: float) -> bytes:
    if score == float("inf"):
        return b"+inf"
    if score == float("-inf"):
        return b"-inf"
    return repr(score).encode()


def _batched(items: Iterable, size: int = _BATCH) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _sid(stream_id: tuple[int, int]) -> bytes:
    return format_id(stream_id).encode()


def resp_record(record: Record) -> Iterator[bytes]:
    """Commands that rebuild one key on a live node (absolute expiry kept with PEXPIREAT)."""
    key, kind = record.key, record.kind
    field_ttls: list[tuple[bytes, int]] = []
    if kind == "string":
        yield encode(b"SET", key, record.value())
    elif kind == "list":
        for batch in _batched(record.iter_value()):
            yield encode(b"RPUSH", key, *batch)
    elif kind == "set":
        for batch in _batched(record.iter_value()):
            yield encode(b"SADD", key, *batch)
    elif kind == "zset":
        for batch in _batched(record.iter_value()):
            yield encode(b"ZADD", key, *(x for m, s in batch for x in (_score_arg(s), m)))
    elif kind == "hash":
        for batch in _batched(record.iter_value()):
            yield encode(b"HSET", key, *(x for f, v, _ in batch for x in (f, v)))
            field_ttls += [(f, e) for f, _, e in batch if e is not None]
    elif kind == "stream":
        yield from _resp_stream(key, record.value())
    for f, expire in field_ttls:
        yield encode(b"HPEXPIREAT", key, b"%d" % expire, b"FIELDS", b"1", f)
    if record.expire_ms is not None:
        yield encode(b"PEXPIREAT", key, b"%d" % record.expire_ms)


def _resp_stream(key: bytes, value: StreamValue) -> Iterator[bytes]:
    for entry in value.entries:
        yield encode(b"XADD", key, _sid(entry.id), *(x for f, v in entry.fields for x in (f, v)))
    if not value.entries:  # an empty stream still exists: create it, then drop the placeholder
        yield encode(b"XADD", key, b"MAXLEN", b"0", b"*", b"_", b"_")
    setid = [b"XSETID", key, _sid(value.last_id)]
    if value.entries_added is not None:
        setid += [b"ENTRIESADDED", b"%d" % value.entries_added,
                  b"MAXDELETEDID", _sid(value.max_deleted_id or (0, 0))]
    yield encode(*setid)
    for g in value.groups:
        create = [b"XGROUP", b"CREATE", key, g.name, _sid(g.last_id)]
        if g.entries_read is not None:
            create += [b"ENTRIESREAD", b"%d" % g.entries_read]
        yield encode(*create)
        owner = {pid: c.name for c in g.consumers for pid in c.pending}
        for c in g.consumers:
            yield encode(b"XGROUP", b"CREATECONSUMER", key, g.name, c.name)
        for p in g.pending:
            yield encode(b"XCLAIM", key, g.name, owner.get(p.id, b"consumer"), b"0", _sid(p.id),
                               b"TIME", b"%d" % p.delivery_time, b"RETRYCOUNT", b"%d" % p.delivery_count,
                               b"FORCE", b"JUSTID")


# -- the job ------------------------------------------------------------------------------------

def export_file(path: str | os.PathLike, out, *, fmt: str = "jsonl", db: int | None = None,
                match: str | None = None, types: Iterable[str] | None = None,
                verify_checksum: bool = True,
                progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Export the keys of an RDB file to ``out`` (a text stream for jsonl, binary for resp);
    ``progress(offset, keys)`` is told how far it got."""
    if fmt not in ("jsonl", "resp"):
        raise SnaptoolError(f"unknown export format {fmt!r} (jsonl or resp)")
    wanted = set(types) if types else None
    matches = glob_matcher(match)
    report = ExportReport()
    current_db = None
    with RdbReader.open(path, verify_checksum=verify_checksum) as reader:
        for item in reader.items():
            kind = type(item)
            if kind is Function:
                report.functions += 1
                if fmt == "resp":
                    out.write(encode(b"FUNCTION", b"LOAD", b"REPLACE", item.code))
                continue
            if kind is not Record:
                continue
            record: Record = item
            if (db is not None and record.db != db) or (wanted and record.kind not in wanted) \
                    or not matches(record.key):
                report.skipped_filtered += 1
                record.release()
                continue
            if fmt == "jsonl":
                write_jsonl_record(record, out)
            elif record.kind == "module":
                report.not_exported["module values"] = report.not_exported.get("module values", 0) + 1
                record.release()
                continue
            else:
                if record.db != current_db:
                    out.write(encode(b"SELECT", b"%d" % record.db))
                    current_db = record.db
                commands = _KeyBuffer(out, b"")
                for command in resp_record(record):
                    commands.write(command)
                commands.flush()
            report.keys += 1
            record.release()
            if progress is not None:
                progress(record.offset + record.size, report.keys)
    return report
