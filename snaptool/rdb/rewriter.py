"""The per-record decision every writer of RDB data shares: copy, re-encode, or lose.

A record whose type the target loads is copied byte for byte; any other is decoded and rebuilt
by the encoder in the target's encodings. What the target cannot hold at all (hash field TTLs
before RDB 12, functions before 10, streams before 9, modules before 8) is recorded as a loss with
the keys affected: the caller refuses at the end unless the user allowed lossy output. Files
(convert, split, merge) and RESTORE payloads go through the same rules.
"""

from __future__ import annotations

import time
from collections import Counter

from ..errors import LossyConversionError, RdbError, SnaptoolError
from . import constants as C
from .encoder import encode_value
from .fastscan import type_mask
from .items import Function, Record
from .targets import Target
from .values import is_empty, module_name_of
from .writer import RdbWriter, can_pass_through

_KEYS_LISTED = 1000
_SECONDS_RANGE = range(-(1 << 31), 1 << 31)  # RDB 1-2 store expiries as 32-bit seconds


class Losses:
    """What a job would lose, by reason, with the first keys affected."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.keys: list[bytes] = []

    def add(self, reason: str, key: bytes | None = None) -> None:
        self.counts[reason] += 1
        if key is not None and len(self.keys) < _KEYS_LISTED:
            self.keys.append(key)

    def check(self, target: Target, allow_lossy: bool) -> None:
        """Raise LossyConversionError naming what would be lost, unless lossy output is allowed."""
        if not self.counts or allow_lossy:
            return
        what = ", ".join(f"{n} {reason}" for reason, n in self.counts.items())
        shown = ", ".join(repr(k)[1:] for k in self.keys[:10])
        more = f" (first keys: {shown})" if shown else ""
        raise LossyConversionError(
            f"{target.name} (RDB {target.rdb_version}) cannot hold {what}{more}; "
            f"--allow-lossy drops only that part", self.keys)


def passthrough_mask(target: Target) -> bytes | None:
    """Types whose records may be copied in bulk runs (RDB 9+: every prefix opcode is kept)."""
    if target.rdb_version < 9:
        return None
    return type_mask({t for t in C.types_for_version(target.rdb_version, target.flavour)
                      if t not in (C.T_HASH_METADATA_PRE_GA, C.T_HASH_LISTPACK_EX_PRE_GA)})


class Libraries:
    """Function libraries gathered from several inputs: each kept once; a library defined
    differently in two inputs is an error (an engine loading both would refuse or pick one)."""

    def __init__(self) -> None:
        self._by_name: dict[bytes, bytes] = {}

    def add(self, code: bytes, path: str | None = None) -> None:
        name = Function(code).name
        known = self._by_name.setdefault(name, code)
        if known != code:
            raise SnaptoolError(f"{path or 'an input'}: function library {name.decode(errors='replace')!r} "
                                f"differs from the one in an earlier input")

    @property
    def codes(self) -> list[bytes]:
        return list(self._by_name.values())


class Rewriter:
    """Writes records for one target, counting what was copied, re-encoded, skipped and lost."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.losses = Losses()
        self.now_ms = int(time.time() * 1000)
        self.passthrough = 0
        self.reencoded = 0
        #: empty collections left out (loaders skip them; old ones crash on them)
        self.empty_skipped = 0
        #: hash fields already expired, left out where a downgrade drops field TTLs
        self.expired_fields_dropped = 0
        self.reencoded_by_type: Counter[str] = Counter()

    def absorb(self, other: "Rewriter") -> None:
        """Add the counts and losses of a rewriter that handled other records (another process)."""
        self.passthrough += other.passthrough
        self.reencoded += other.reencoded
        self.empty_skipped += other.empty_skipped
        self.expired_fields_dropped += other.expired_fields_dropped
        self.reencoded_by_type.update(other.reencoded_by_type)
        self.losses.counts.update(other.losses.counts)
        self.losses.keys += other.losses.keys[:_KEYS_LISTED - len(self.losses.keys)]

    def write(self, record: Record, writer: RdbWriter) -> bool:
        """Write one record; False when it was left out (empty, or lost to the target)."""
        target, losses = self.target, self.losses
        if is_empty(record):
            self.empty_skipped += 1
            return False
        if target.rdb_version < 3 and record.expire_ms is not None and record.expire_ms // 1000 not in _SECONDS_RANGE:
            losses.add("expiries outside 1901-2038 (RDB 1-2 store 32-bit seconds; key kept without TTL)",
                       record.key)
            record.expire_ms = None
        if can_pass_through(record, target):
            writer.record(record)
            self.passthrough += 1
            return True
        kind = record.kind
        if kind == "stream" and target.rdb_version < 9:
            losses.add("streams", record.key)
            return False
        if kind == "module":
            losses.add(f"module values ({module_name_of(record)})", record.key)
            return False
        if kind == "hash":
            value = record.value()
            if not target.supports_field_ttl and any(e is not None for _, _, e in value):
                losses.add("hashes with field TTLs (TTLs dropped, fields kept)", record.key)
                live = [(f, x, None) for f, x, e in value if e is None or e >= self.now_ms]
                self.expired_fields_dropped += len(value) - len(live)
                value = live
        elif kind == "list":
            value = record.iter_value()
        else:
            value = record.value()
        try:
            encoded = encode_value(kind, value, target)
        except ValueError as exc:  # duplicates or out-of-range values the engine would refuse
            raise RdbError(f"cannot re-encode for {target.name}: {exc}", offset=record.offset,
                           path=record.path, key=record.key) from None
        if encoded is None:
            self.empty_skipped += 1
            return False
        writer.value(record.key, encoded, expire_ms=record.expire_ms, idle=record.idle, freq=record.freq)
        self.reencoded += 1
        self.reencoded_by_type[record.encoding] += 1
        return True
