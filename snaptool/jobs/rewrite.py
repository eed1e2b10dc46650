"""The per-record decision every job that writes RDB files shares: copy, re-encode, or lose.

A record whose type the target loads is copied byte for byte; any other is decoded and rebuilt
by the encoder in the target's encodings. What the target cannot hold at all (hash field TTLs
before RDB 12, functions before 10, streams before 9, modules before 8) is recorded as a loss with
the keys affected: the job refuses at the end unless the user allowed lossy output.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from ..errors import LossyConversionError, RdbError, SnaptoolError
from ..rdb import constants as C
from ..rdb.encoder import encode_value
from ..rdb.fastscan import type_mask
from ..rdb.items import Function, Record
from ..rdb.targets import Target
from ..rdb.values import is_empty, module_name_of
from ..rdb.writer import RdbWriter, can_pass_through

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


@dataclass(kw_only=True)
class RewriteCounts:
    """What happened to the records a job wrote (shared by the convert, split and merge reports)."""

    passthrough: int = 0
    reencoded: int = 0
    #: empty collections left out (loaders skip them; old ones crash on them)
    empty_skipped: int = 0
    #: hash fields already expired, left out where a downgrade drops field TTLs
    expired_fields_dropped: int = 0
    functions: int = 0
    #: what the target could not hold: reason -> count (only non-empty with allow_lossy)
    dropped: dict[str, int] = field(default_factory=dict)
    reencoded_by_type: dict[str, int] = field(default_factory=dict)


@dataclass
class CombineReport(RewriteCounts):
    """What split, reshard and merge report in common: several inputs into new files."""

    inputs: list[str]
    target: str
    rdb_version: int
    keys_in: int = 0
    keys_out: int = 0
    duplicates: int = 0
    duplicates_dropped: int = 0


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

    def fill(self, counts: RewriteCounts, functions: int) -> None:
        """Copy this rewriter's counts into a job's report."""
        counts.passthrough, counts.reencoded = self.passthrough, self.reencoded
        counts.empty_skipped, counts.expired_fields_dropped = self.empty_skipped, self.expired_fields_dropped
        counts.functions = functions
        counts.dropped = dict(self.losses.counts)
        counts.reencoded_by_type = dict(self.reencoded_by_type)

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


def prepare_outputs(assemblers: list, rewriter: Rewriter, libraries: Libraries, module_aux: dict[bytes, int],
                    aux: list[tuple[bytes, bytes]], allow_lossy: bool) -> None:
    """Give every output file the shared parts (AUX, functions, module data) the target can hold;
    refuse first if anything would be lost and lossy output was not allowed."""
    target = rewriter.target
    if libraries.codes and target.rdb_version < 10:
        rewriter.losses.counts["functions"] += len(libraries.codes)
    if module_aux and target.rdb_version < 9:
        rewriter.losses.counts["module aux data"] += len(module_aux)
    rewriter.losses.check(target, allow_lossy)
    for assembler in assemblers:
        assembler.aux = aux
        if target.rdb_version >= 10:
            assembler.functions = list(libraries.codes)
        if target.rdb_version >= 9:
            assembler.module_aux = [(when, raw) for raw, when in module_aux.items()]
