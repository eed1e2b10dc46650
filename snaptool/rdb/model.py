"""Logical values: what a key holds, independent of how an RDB file encodes it.

Decoders produce these, the encoder and digest consume them. Plain Python types are used where they
suffice so callers need nothing from snaptool to build a value:

* string: ``bytes``
* list: ``list[bytes]`` in order
* set: ``list[bytes]`` (any order, no duplicates)
* zset: ``list[tuple[bytes, float]]`` (member, score)
* hash: ``list[tuple[bytes, bytes, int | None]]`` (field, value, absolute field expiry in ms or None)
* stream: :class:`StreamValue`
* module: :class:`ModuleValue`
"""

from __future__ import annotations

from dataclasses import dataclass, field

StreamId = tuple[int, int]
"""A stream entry id as (milliseconds, sequence)."""

KINDS = ("string", "list", "set", "zset", "hash", "stream", "module")


@dataclass
class StreamEntry:
    id: StreamId
    fields: list[tuple[bytes, bytes]]


@dataclass
class PendingEntry:
    id: StreamId
    delivery_time: int
    delivery_count: int


@dataclass
class StreamConsumer:
    name: bytes
    seen_time: int
    active_time: int | None  # RDB 11+ (stream v3); None when the file predates it
    pending: list[StreamId] = field(default_factory=list)


@dataclass
class StreamGroup:
    name: bytes
    last_id: StreamId
    entries_read: int | None  # RDB 10+; None when unknown (-1 on disk) or absent
    pending: list[PendingEntry] = field(default_factory=list)
    consumers: list[StreamConsumer] = field(default_factory=list)


@dataclass
class StreamValue:
    """A stream's live entries (deleted ones are not kept) and its metadata."""

    entries: list[StreamEntry]
    length: int
    last_id: StreamId
    first_id: StreamId | None = None  # RDB 10+
    max_deleted_id: StreamId | None = None  # RDB 10+
    entries_added: int | None = None  # RDB 10+
    groups: list[StreamGroup] = field(default_factory=list)


@dataclass
class ModuleValue:
    """A module type's value: snaptool cannot interpret it, only carry it.

    ``raw`` is the RDB payload after the type byte (module id, opcodes, EOF), enough to copy it.
    """

    name: str
    encver: int
    raw: bytes


def format_id(stream_id: StreamId) -> str:
    """'ms-seq', the way Redis prints stream ids."""
    return f"{stream_id[0]}-{stream_id[1]}"
