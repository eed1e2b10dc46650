"""memcached client flags: what the keys carry (the inventory) and what a migration does with them (the policy).

Flags are opaque to memcached; each client library gives them its own meaning (pickle, zlib, Java
serialization, PHP serialize, …), and Redis has nowhere to put them. So they are never dropped in
silence: the inventory counts flags per key prefix and samples the first bytes of values, and a
migration of keys with non-zero flags stops with that inventory unless a policy says what to do:

* ``ignore`` — copy the value bytes, drop the flags (readers must not need them);
* ``hash:NAME`` — copy the value bytes and keep every non-zero flag in the hash NAME (field: the
  key as written, value: the flags in decimal); keys with flags 0 get no field;
* ``envelope`` — prefix every value with its flags: :data:`ENVELOPE_V1` then 4 bytes, or
  :data:`ENVELOPE_V2` then 8 bytes for flags ≥ 2³² (servers built with large client flags), all
  big-endian, then the value. :func:`open_envelope` undoes it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import SnaptoolError
from ..engines.memcached_conn import MemcachedInputError

POLICIES = ("ignore", "hash:NAME", "envelope")
ENVELOPE_V1 = b"\x01"  # then flags as 4 bytes, big-endian
ENVELOPE_V2 = b"\x02"  # then flags as 8 bytes, big-endian
MAX_PREFIXES = 200  # distinct prefixes tracked; the rest are counted under "(other)"
SAMPLES_PER_BUCKET = 64  # values classified per (prefix, flags)
_PREFIX = re.compile(rb"^[^:/|#]*[:/|#]")
_PREFIXES = re.compile(rb"^(?:[^:/|#\n]*[:/|#])?", re.M)  # one match per line of joined keys
_PHP = re.compile(rb"^(?:[aOC]:\d+:|s:\d+:\"|i:-?\d+;|d:[-0-9.EINAF]+;|b:[01];|N;)")


class FlagsRefused(SnaptoolError):
    """Non-zero flags and no policy: nothing was written (exit 3, like a lossy conversion)."""

    exit_code = 3

    def __init__(self, inventory: FlagsInventory) -> None:
        keys = inventory.nonzero
        super().__init__(f"{keys:,} key(s) carry non-zero memcached flags and Redis cannot hold them; nothing was "
                         "written. Choose what to do with them: --flags ignore (copy the bytes, drop the flags), "
                         "--flags hash:NAME (keep them in a side hash), --flags envelope (prefix every value "
                         "with its flags)")
        self.inventory = inventory


@dataclass(frozen=True)
class FlagsPolicy:
    """``None`` (refuse non-zero flags), ``ignore``, ``hash`` with a hash name, or ``envelope``."""

    mode: str | None = None
    hash_name: bytes = b""

    @classmethod
    def parse(cls, text: str | None) -> FlagsPolicy:
        if text is None or text == "":
            return cls()
        if text in ("ignore", "envelope"):
            return cls(text)
        if text.startswith("hash:") and len(text) > 5:
            return cls("hash", text[5:].encode())
        raise MemcachedInputError(f"--flags {text!r}: expected one of {', '.join(POLICIES)}")

    def __str__(self) -> str:
        if self.mode is None:
            return "none (all flags must be 0)"
        return f"hash:{self.hash_name.decode('utf-8', 'replace')}" if self.mode == "hash" else self.mode

    def value(self, value: bytes, flags: int) -> bytes:
        """The value as written to Redis."""
        if self.mode == "envelope":
            return envelope(value, flags)
        return value


def envelope(value: bytes, flags: int) -> bytes:
    if flags < 1 << 32:
        return ENVELOPE_V1 + flags.to_bytes(4, "big") + value
    return ENVELOPE_V2 + flags.to_bytes(8, "big") + value


def open_envelope(data: bytes) -> tuple[bytes, int]:
    """``(value, flags)`` of an enveloped value; ValueError for bytes that are not one."""
    if data[:1] == ENVELOPE_V1 and len(data) >= 5:
        return data[5:], int.from_bytes(data[1:5], "big")
    if data[:1] == ENVELOPE_V2 and len(data) >= 9:
        return data[9:], int.from_bytes(data[1:9], "big")
    raise ValueError("not a snaptool flags envelope")


def classify(value: bytes) -> str:
    """What the first bytes of a value suggest it holds (the encodings memcached clients use)."""
    head = value[:16]
    if not head:
        return "empty"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"\xac\xed"):
        return "java-serialized"
    if head.startswith(b"\x04\x08"):
        return "ruby-marshal"
    if head[:2] in (b"\x78\x9c", b"\x78\x01", b"\x78\xda", b"\x78\x5e"):
        return "zlib"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if _PHP.match(value[:40]):
        return "php-serialize"
    if head[:1] in (b"{", b"["):
        return "json?"
    try:
        text = value[:256].decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "text" if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text) else "binary"


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "backslashreplace")
    return text if text.isprintable() else repr(text)[1:-1]


def prefix_of(key: bytes) -> bytes:
    """The namespace of a key: up to and including its first ``:``, ``/``, ``|`` or ``#``."""
    match = _PREFIX.match(key)
    return match.group(0) if match else b""


@dataclass
class FlagsInventory:
    """Flags per key prefix, with the kinds of value seen in each (prefix, flags) bucket."""

    buckets: dict[tuple[bytes, int], int] = field(default_factory=dict)  # (prefix, flags) -> keys
    kinds: dict[tuple[bytes, int], Counter] = field(default_factory=dict)
    prefixes: set[bytes] = field(default_factory=set)
    keys: int = 0
    nonzero: int = 0

    def add(self, keys: list[bytes], flags: list[int], values: list[bytes], newline_free: bool = False) -> None:
        """Count a batch of keys; ``newline_free`` (no key holds a newline) lets the prefixes be found
        in one pass over the joined keys."""
        if not keys:
            return
        self.keys += len(keys)
        self.nonzero += len(flags) - flags.count(0)
        prefixes = _PREFIXES.findall(b"\n".join(keys)) if newline_free else []
        if len(prefixes) != len(keys):
            prefixes = [m.group(0) if (m := _PREFIX.match(k)) else b"" for k in keys]
        new = set(prefixes).difference(self.prefixes)
        if new:
            room = MAX_PREFIXES - len(self.prefixes)
            kept = set(sorted(new)[:max(room, 0)])
            self.prefixes.update(kept)
            if len(kept) < len(new):
                self.prefixes.add(b"(other)")
                prefixes = [p if p in self.prefixes else b"(other)" for p in prefixes]
        elif b"(other)" in self.prefixes:
            prefixes = [p if p in self.prefixes else b"(other)" for p in prefixes]
        pairs = list(zip(prefixes, flags))
        buckets, kinds = self.buckets, self.kinds
        hungry = {b for b in set(pairs) if buckets.get(b, 0) < SAMPLES_PER_BUCKET}
        if hungry:
            taken: Counter = Counter()
            for pair, value in zip(pairs, values):
                if pair in hungry and buckets.get(pair, 0) + taken[pair] < SAMPLES_PER_BUCKET:
                    taken[pair] += 1
                    kinds.setdefault(pair, Counter())[classify(value)] += 1
        counts = Counter(pairs)
        for pair, count in counts.items():
            buckets[pair] = buckets.get(pair, 0) + count

    @property
    def flag_values(self) -> set[int]:
        return {flags for _, flags in self.buckets}

    def rows(self) -> list[dict[str, Any]]:
        per_prefix: Counter = Counter()
        for (prefix, _), count in self.buckets.items():
            per_prefix[prefix] += count
        ordered = sorted(self.buckets.items(), key=lambda item: (-per_prefix[item[0][0]], item[0][0], item[0][1]))
        return [{"prefix": _printable(prefix) or "(none)", "flags": flags, "keys": count,
                 "values": dict(self.kinds.get((prefix, flags), Counter()).most_common())}
                for (prefix, flags), count in ordered]

    def table(self) -> str:
        """The inventory for people: one line per (prefix, flags)."""
        rows = self.rows()
        width = max([len(r["prefix"]) for r in rows] + [6])
        lines = [f"{'prefix':<{width}}  {'flags':>10}  {'keys':>12}  values (sampled)"]
        for r in rows:
            values = ", ".join(f"{kind} {n}" for kind, n in r["values"].items()) or "-"
            lines.append(f"{r['prefix']:<{width}}  {r['flags']:>10}  {r['keys']:>12,}  {values}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"keys": self.keys, "nonzero": self.nonzero, "rows": self.rows()}


__all__ = ["ENVELOPE_V1", "ENVELOPE_V2", "FlagsInventory", "FlagsPolicy", "FlagsRefused", "POLICIES", "classify",
           "envelope", "open_envelope", "prefix_of"]
