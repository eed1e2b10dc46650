"""Which shard owns which of the 16384 cluster hash slots (docs/rdb-format.md §7.1).

A :class:`SlotLayout` is what a split needs to route every key to a shard file and what a local
cluster needs to assign slots to its nodes. It comes from an even split (the assignment
``redis-cli --cluster create`` makes), a JSON file, a ``nodes.conf`` / ``CLUSTER NODES`` text, or
a live cluster (:func:`snaptool.engines.cluster.read_layout`). Every constructor validates:
a layout in hand always owns each slot exactly once and has names usable as file names.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import struct
from array import array
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

from ..errors import SnaptoolError

SLOTS = 16384

#: How many ranges / problems a one-line message lists before saying "and N more".
_LIST_LIMIT = 6
_NODE_ID = re.compile(r"^[0-9a-fA-F]{40}$")
_SLOT_FIELD = re.compile(r"^(\d+)(?:-(\d+))?$")
_BAD_NAME_CHARS = ("/", ",", "\0", "\\")


# --------------------------------------------------------------------------- range helpers

def compress(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted slot numbers as inclusive (start, end) runs: [1, 2, 3, 7] → [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for slot in sorted(set(slots)):
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out


def format_ranges(ranges: Sequence[tuple[int, int]], limit: int = _LIST_LIMIT) -> str:
    """"100-199, 300 and 5000" (at most ``limit`` items, then "and N more")."""
    items = [f"{s}" if s == e else f"{s}-{e}" for s, e in ranges]
    if len(items) > limit:
        return f"{', '.join(items[:limit])} and {len(items) - limit} more ranges"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _slots_phrase(ranges: Sequence[tuple[int, int]]) -> str:
    """"slot 5000 is" / "slots 100-199 and 5000 are" — the subject of a one-line complaint."""
    single = len(ranges) == 1 and ranges[0][0] == ranges[0][1]
    return f"slot {ranges[0][0]} is" if single else f"slots {format_ranges(ranges)} are"


def _normalise(ranges: Iterable[Sequence[int]], name: str) -> tuple[tuple[int, int], ...]:
    """Sorted, merged, bounds-checked inclusive ranges (adjacent runs merged so equal layouts compare equal)."""
    pairs: list[tuple[int, int]] = []
    for item in ranges:
        try:
            start, end = (int(x) for x in item)
        except (TypeError, ValueError):
            raise SnaptoolError(f"shard {name!r}: slot range {item!r} is not a (start, end) pair") from None
        if not 0 <= start <= end < SLOTS:
            raise SnaptoolError(f"shard {name!r}: slot range {start}-{end} is not within 0-{SLOTS - 1}")
        pairs.append((start, end))
    pairs.sort()
    merged: list[tuple[int, int]] = []
    for start, end in pairs:
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def _f32(x: float) -> float:
    """Round to IEEE single precision: redis-cli does the even split in C ``float``."""
    return struct.unpack("f", struct.pack("f", x))[0]


def short_names(node_ids: Sequence[str]) -> list[str]:
    """Shard names for node ids: the first 8 characters, the whole id where 8 would collide."""
    counts = Counter(i[:8] for i in node_ids)
    return [i[:8] if counts[i[:8]] == 1 else i for i in node_ids]


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class Shard:
    """One primary's share of the slots; ``name`` doubles as its file name, so keep it plain."""

    name: str
    ranges: tuple[tuple[int, int], ...]  # inclusive, sorted, non-overlapping

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise SnaptoolError(f"shard name {self.name!r} is not a string")
        object.__setattr__(self, "ranges", _normalise(self.ranges, self.name))
        object.__setattr__(self, "_starts", [s for s, _ in self.ranges])

    def slot_count(self) -> int:
        return sum(e - s + 1 for s, e in self.ranges)

    def owns(self, slot: int) -> bool:
        i = bisect.bisect_right(self._starts, slot) - 1  # type: ignore[attr-defined]
        return i >= 0 and self.ranges[i][0] <= slot <= self.ranges[i][1]

    def describe(self) -> str:
        """"shard-0001 0-5460 (5461 slots)"."""
        items = [f"{s}" if s == e else f"{s}-{e}" for s, e in self.ranges]
        where = ",".join(items[:4]) + (f",+{len(items) - 4} more ranges" if len(items) > 4 else "")
        count = self.slot_count()
        return f"{self.name} {where} ({count} slot{'' if count == 1 else 's'})"


@dataclass(frozen=True)
class SlotLayout:
    """Shards in order (shard i is index i in :meth:`owner_table`); valid by construction."""

    shards: tuple[Shard, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shards", tuple(self.shards))
        self.validate()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def even(cls, n: int, names: Sequence[str] | None = None) -> SlotLayout:
        """The split ``redis-cli --cluster create`` makes for n primaries, so layouts match real clusters.

        redis-cli computes it in single-precision floats with lround(); this reproduces that bit
        for bit (n=3 → 0-5460, 5461-10922, 10923-16383).
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= SLOTS:
            raise SnaptoolError(f"a cluster has between 1 and {SLOTS} shards, not {n!r}")
        if names is None:
            names = [f"shard-{i + 1:04d}" for i in range(n)]
        elif len(names) != n:
            raise SnaptoolError(f"{n} shards need {n} names, got {len(names)}")
        per_node = _f32(SLOTS / _f32(n))
        cursor, first = 0.0, 0
        shards = []
        for i in range(n):
            last = _lround(_f32(_f32(cursor + per_node) - 1.0))
            if last > SLOTS or i == n - 1:
                last = SLOTS - 1
            # redis-cli stops here; for some n above ~7500 its float error then runs past slot
            # 16383 (it would assign nonexistent slots), so leave one slot for each node to come
            last = min(max(last, first), SLOTS - (n - i))
            shards.append(Shard(names[i], ((first, last),)))
            first = last + 1
            cursor = _f32(cursor + per_node)
        return cls(tuple(shards))

    @classmethod
    def from_json(cls, data: list[dict]) -> SlotLayout:
        """``[{"name": "a", "slots": [[0, 8191], 9000]}, ...]``; a bare int is a single slot."""
        if isinstance(data, dict) and isinstance(data.get("shards"), list):
            data = data["shards"]  # {"shards": [...]} is accepted too
        if not isinstance(data, list):
            raise SnaptoolError("a slot layout is a JSON list of {\"name\": ..., \"slots\": [...]} objects")
        shards = []
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "name" not in entry or "slots" not in entry:
                raise SnaptoolError(f"shard #{i + 1}: expected an object with \"name\" and \"slots\", "
                                    f"got {entry!r:.80}")
            name, slots = entry["name"], entry["slots"]
            if not isinstance(name, str):
                raise SnaptoolError(f"shard #{i + 1}: name {name!r} is not a string")
            if not isinstance(slots, list):
                raise SnaptoolError(f"shard {name!r}: \"slots\" must be a list of [start, end] pairs or slot numbers")
            ranges = []
            for item in slots:
                if isinstance(item, int) and not isinstance(item, bool):
                    ranges.append((item, item))
                elif (isinstance(item, list) and len(item) == 2
                      and all(isinstance(x, int) and not isinstance(x, bool) for x in item)):
                    ranges.append((item[0], item[1]))
                else:
                    raise SnaptoolError(f"shard {name!r}: {item!r} is neither a slot number nor a [start, end] pair")
            shards.append(Shard(name, tuple(ranges)))
        return cls(tuple(shards))

    @classmethod
    def from_nodes_text(cls, text: str) -> SlotLayout:
        """A ``nodes.conf`` or ``CLUSTER NODES`` text: one shard per primary that owns slots.

        Replicas, the ``vars`` line and ``[slot->-id]`` / ``[slot-<-id]`` migration markers are
        skipped; primaries owning no slot hold no keys and are left out (as CLUSTER SLOTS does).
        """
        ids: list[str] = []
        slot_lists: list[list[tuple[int, int]]] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0] == "vars":
                continue
            if len(fields) < 8 or not _NODE_ID.match(fields[0]):
                raise SnaptoolError(f"line {lineno} is not a cluster node line: {line.strip()[:80]!r}")
            if "master" not in fields[2].split(","):
                continue
            ranges = []
            for field in fields[8:]:
                if field.startswith("["):
                    continue  # a migrating/importing marker, not ownership
                match = _SLOT_FIELD.match(field)
                if not match:
                    raise SnaptoolError(f"line {lineno}: {field!r} is not a slot or slot range")
                start = int(match.group(1))
                ranges.append((start, int(match.group(2) or start)))
            if ranges:
                ids.append(fields[0])
                slot_lists.append(ranges)
        if not ids:
            raise SnaptoolError("no primary owning slots found in the cluster nodes text")
        shards = [Shard(name, tuple(r)) for name, r in zip(short_names(ids), slot_lists)]
        return cls(tuple(sorted(shards, key=lambda s: s.ranges[0])))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SlotLayout:
        """A layout file: JSON (``[`` or ``{`` first) or nodes.conf / CLUSTER NODES text."""
        where = os.fspath(path)
        try:
            with open(where, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise SnaptoolError(f"cannot read slot layout {where}: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SnaptoolError(f"slot layout {where} is not a text file (JSON or nodes.conf)") from None
        try:
            if text.lstrip()[:1] in ("[", "{"):
                try:
                    data: Any = json.loads(text)
                except ValueError as exc:
                    raise SnaptoolError(f"invalid JSON: {exc}") from None
                return cls.from_json(data)
            if not text.strip():
                raise SnaptoolError("the file is empty")
            return cls.from_nodes_text(text)
        except SnaptoolError as exc:
            raise SnaptoolError(f"slot layout {where}: {exc}") from None

    # ------------------------------------------------------------------ checks and lookups
    def validate(self) -> None:
        """Raise a one-line SnaptoolError unless every slot has exactly one owner and names are file-safe."""
        problems: list[str] = []
        if not self.shards:
            raise SnaptoolError("the slot layout has no shards")
        for shard in self.shards:
            if not isinstance(shard, Shard):
                raise SnaptoolError(f"{shard!r} is not a Shard")
        names = [s.name for s in self.shards]
        bad = [n for n in names if not n or n in (".", "..") or n != n.strip()
               or any(c in n for c in _BAD_NAME_CHARS) or not n.isprintable()]
        if bad:
            what = "file names" if len(bad) > 1 else "a file name"
            problems.append(f"shard name{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad[:_LIST_LIMIT]))} "
                            f"cannot be used as {what} (empty, '.', '..', surrounding spaces, "
                            "'/', ',', '\\' or control characters)")
        dupes = [n for n, c in Counter(names).items() if c > 1]
        if dupes:
            problems.append(f"shard name{'s' if len(dupes) > 1 else ''} {', '.join(map(repr, dupes[:_LIST_LIMIT]))} "
                            f"{'are' if len(dupes) > 1 else 'is'} used more than once")
        problems += self._coverage_problems()
        if problems:
            raise SnaptoolError("; ".join(problems))

    def _coverage_problems(self) -> list[str]:
        # fast path: count owners per slot with a difference array
        delta = [0] * (SLOTS + 1)
        for shard in self.shards:
            for start, end in shard.ranges:
                delta[start] += 1
                delta[end + 1] -= 1
        level, clean = 0, True
        for slot in range(SLOTS):
            level += delta[slot]
            if level != 1:
                clean = False
                break
        if clean:
            return []
        problems = []
        owners: list[list[int]] = [[] for _ in range(SLOTS)]
        for index, shard in enumerate(self.shards):
            for start, end in shard.ranges:
                for slot in range(start, end + 1):
                    owners[slot].append(index)
        unowned = compress(slot for slot in range(SLOTS) if not owners[slot])
        if unowned:
            problems.append(f"{_slots_phrase(unowned)} owned by no shard")
        # group doubly-owned slots by the set of shards claiming them, in slot order
        shared: dict[tuple[int, ...], list[int]] = {}
        for slot in range(SLOTS):
            if len(owners[slot]) > 1:
                shared.setdefault(tuple(owners[slot]), []).append(slot)
        for i, (claimants, slots) in enumerate(shared.items()):
            if i == 3:
                problems.append(f"and {len(shared) - 3} more sets of shards share slots")
                break
            who = [self.shards[c].name for c in claimants]
            problems.append(f"{_slots_phrase(compress(slots))} owned by "
                            f"{', '.join(who[:-1])} and {who[-1]}")
        return problems

    @cached_property
    def _owners(self) -> array:
        table = array("H", bytes(2 * SLOTS))
        for index, shard in enumerate(self.shards):
            for start, end in shard.ranges:
                table[start:end + 1] = array("H", [index]) * (end - start + 1)
        return table

    def owner_table(self) -> bytes:
        """16384 bytes, byte i = index of the shard owning slot i: the split's per-key lookup."""
        if len(self.shards) > 255:
            raise SnaptoolError(f"a layout of {len(self.shards)} shards does not fit a byte table (at most 255)")
        return bytes(self._owners.tolist())

    def shard_of(self, slot: int) -> int:
        """Index of the shard owning ``slot``."""
        if not 0 <= slot < SLOTS:
            raise SnaptoolError(f"slot {slot} is not within 0-{SLOTS - 1}")
        return self._owners[slot]

    def to_json(self) -> list[dict]:
        """The :meth:`from_json` shape, ranges as [start, end] pairs."""
        return [{"name": s.name, "slots": [[a, b] for a, b in s.ranges]} for s in self.shards]

    def describe(self) -> str:
        """"shard-0001 0-5460 (5461 slots), shard-0002 ..." for messages (long layouts are cut short)."""
        parts = [s.describe() for s in self.shards[:16]]
        if len(self.shards) > 16:
            parts.append(f"and {len(self.shards) - 16} more shards")
        return ", ".join(parts)


def _lround(x: float) -> int:
    """C lround for the non-negative values used here: halves go away from zero (not to even)."""
    return math.floor(x + 0.5)


__all__ = ["SLOTS", "Shard", "SlotLayout", "compress", "format_ranges", "short_names"]
