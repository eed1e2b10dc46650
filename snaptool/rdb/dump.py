"""DUMP/RESTORE payloads built from RDB records, without a live engine to DUMP them.

A payload is what ``DUMP key`` returns and ``RESTORE`` takes: the record's type byte and value
bytes (exactly as in an RDB file), a 2-byte little-endian RDB version and a CRC-64 (little-endian)
over everything before it. ``RESTORE`` checks the version against what the engine loads
(``verifyDumpPayload``): Redis refuses a version above its own ``RDB_VERSION``; Valkey up to 8.1
does the same (its version is 11); Valkey 9 accepts 1-11 and its own 80 but refuses the range
12-79 it reserves for foreign (Redis 7.4+) files. A payload therefore declares the target's own
RDB version, the one its ``DUMP`` writes, which every engine of that target accepts.

Whether a record is copied or re-encoded for an older target is decided by the same
:class:`~snaptool.rdb.rewriter.Rewriter` that ``convert`` uses, so a payload and a converted file
always agree. A large record (spilled to a temporary file by the reader, or re-encoded into a
spooled body) is streamed: :meth:`DumpPayload.chunks` computes the CRC on the way, so a value of
any size is never held whole in memory.
"""

from __future__ import annotations

from typing import Iterator

from ..errors import RdbError, SnaptoolError
from .rewriter import Rewriter
from .checksum import crc64
from .encoder import Body, Encoded
from .items import Record
from .source import Spill
from .targets import Target

FOOTER_SIZE = 10  # 2-byte RDB version + 8-byte CRC-64
CHUNK = 1 << 20


def dump_version(target: Target) -> int:
    """The RDB version a payload for ``target`` declares (what the target's own DUMP writes)."""
    return target.rdb_version


class SpillSlice:
    """The bytes of a spilled record from ``start`` on: a value read back from its temporary file."""

    __slots__ = ("spill", "start")

    def __init__(self, spill: Spill, start: int) -> None:
        self.spill = spill
        self.start = start

    def __len__(self) -> int:
        return len(self.spill) - self.start

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        f = self.spill.open()
        f.seek(self.start)
        while True:
            data = f.read(size)
            if not data:
                return
            yield data


Part = bytes | memoryview | Body | SpillSlice


class DumpPayload:
    """A payload whose size is known before its bytes are produced (a RESP bulk header needs it).

    Bodies built by the encoder can be read once only: build the payload again to send it twice.
    """

    __slots__ = ("type", "parts", "version", "size")

    def __init__(self, type_: int, parts: list[Part], version: int) -> None:
        self.type = type_
        self.parts = parts
        self.version = version
        self.size = 1 + sum(p.size if isinstance(p, Body) else len(p) for p in parts) + FOOTER_SIZE

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The payload in order, at most ``size`` bytes of value per chunk; the footer comes last."""
        head = bytes((self.type,))
        crc = crc64(head)
        yield head
        for part in self.parts:
            if isinstance(part, (Body, SpillSlice)):
                for data in part.chunks(size):
                    crc = crc64(data, crc)
                    yield data
            elif part:
                for i in range(0, len(part), size):
                    data = part[i:i + size]
                    crc = crc64(data, crc)
                    yield bytes(data)
        version = self.version.to_bytes(2, "little")
        crc = crc64(version, crc)
        yield version + crc.to_bytes(8, "little")

    def to_bytes(self) -> bytes:
        if any(isinstance(p, (Body, SpillSlice)) for p in self.parts):
            return b"".join(self.chunks())
        body = b"".join((bytes((self.type,)), *self.parts, self.version.to_bytes(2, "little")))
        return body + crc64(body).to_bytes(8, "little")


class _Capture:
    """Takes the place of an RdbWriter for a Rewriter: keeps what would have been written."""

    __slots__ = ("copied", "encoded")

    def __init__(self) -> None:
        self.copied: Record | None = None
        self.encoded: Encoded | None = None

    def record(self, record: Record) -> None:
        self.copied = record

    def value(self, key: bytes, encoded: Encoded, **prefix: object) -> None:
        self.encoded = encoded


def open_payload(record: Record, target: Target, rewriter: Rewriter | None = None) -> DumpPayload | None:
    """The payload restoring ``record`` on ``target``, copied when the target loads its type and
    re-encoded otherwise; None when there is nothing to restore (an empty collection, or a value
    the target cannot hold: ``rewriter.losses`` then names it)."""
    rewriter = rewriter or Rewriter(target)
    sink = _Capture()
    if not rewriter.write(record, sink):  # type: ignore[arg-type]
        return None
    version = dump_version(target)
    if sink.encoded is not None:
        return DumpPayload(sink.encoded.type, list(sink.encoded.parts), version)
    raw = record.raw
    if isinstance(raw, Spill):
        return DumpPayload(record.type, [SpillSlice(raw, record.value_start)], version)
    return DumpPayload(record.type, [memoryview(raw)[record.value_start:]], version)


def _checked(record: Record, target: Target, allow_lossy: bool) -> DumpPayload:
    rewriter = Rewriter(target)
    payload = open_payload(record, target, rewriter)
    rewriter.losses.check(target, allow_lossy)
    if payload is None:
        what = "an empty collection" if rewriter.empty_skipped else f"a value {target.name} cannot hold"
        raise SnaptoolError(f"key {repr(record.key)[1:]}: {what}, nothing to restore")
    return payload


def payload_for(record: Record, target: Target, *, allow_lossy: bool = False) -> bytes:
    """The whole payload as bytes (for records that fit in memory).

    Raises LossyConversionError when the target would lose part of the value (hash field TTLs)
    unless ``allow_lossy``, and SnaptoolError when nothing of it can be restored.
    """
    return _checked(record, target, allow_lossy).to_bytes()


def payload_chunks(record: Record, target: Target, *, allow_lossy: bool = False,
                   size: int = CHUNK) -> Iterator[bytes]:
    """The payload in chunks, CRC computed on the way: for records of any size."""
    return _checked(record, target, allow_lossy).chunks(size)


def split_payload(payload: bytes) -> tuple[int, bytes, int]:
    """(type byte, value bytes, RDB version) of a payload whose CRC-64 is right; RdbError if not."""
    if len(payload) < 1 + FOOTER_SIZE:
        raise RdbError(f"DUMP payload of {len(payload)} bytes is too short")
    stored = int.from_bytes(payload[-8:], "little")
    if crc64(payload[:-8]) != stored:
        raise RdbError("DUMP payload CRC-64 does not match its bytes")
    return payload[0], payload[1:-FOOTER_SIZE], int.from_bytes(payload[-FOOTER_SIZE:-8], "little")
