"""The manifest: what a snapshot holds and how to check it, written last as its commit point.

It records enough to verify every byte (size, sha256, the RDB's own CRC-64) and every key count
without reading the data, and to rebuild a cluster (slot ranges per file, which node each file
came from). It never holds credentials: source URLs are stored redacted.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from ..errors import SnaptoolError
from ..rdb.slots import Shard, SlotLayout

FORMAT = 1
MANIFEST = "manifest.json"
KINDS = ("manual", "automatic")
_ID = re.compile(r"^(\d{8}T\d{6}Z)-([a-z0-9][a-z0-9.-]{0,62})-([0-9a-f]{6})$")


class ManifestError(SnaptoolError):
    """A manifest that cannot be read or does not describe a valid snapshot."""

    exit_code = 2


def tool_version() -> str:
    try:
        return metadata.version("snaptool")
    except metadata.PackageNotFoundError:
        return "unknown"


def new_snapshot_id(source_name: str, when: datetime | None = None) -> str:
    """``20261126T071502Z-<source>-<6 hex>``: sorts by time, says where it came from, is unique."""
    when = when or datetime.now(timezone.utc)
    name = re.sub(r"[^a-z0-9.-]+", "-", source_name.lower()).strip("-.")[:40] or "snapshot"
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{name}-{secrets.token_hex(3)}"


def is_snapshot_id(text: str) -> bool:
    return bool(_ID.match(text))


def snapshot_time(snapshot_id: str) -> datetime:
    match = _ID.match(snapshot_id)
    if not match:
        raise ManifestError(f"{snapshot_id!r} is not a snapshot id")
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


@dataclass
class DbStats:
    keys: int = 0
    expires: int = 0


@dataclass
class FileEntry:
    """One RDB file of a snapshot (one shard of a cluster, or the whole of a standalone node)."""

    name: str
    size: int
    sha256: str
    rdb_version: int
    magic: str
    crc64: str | None  # the RDB's own trailing checksum (hex); None for files older than RDB 5 or without one
    databases: dict[int, DbStats]
    digest: str | None = None  # DEBUG DIGEST this file gives once loaded (when computed at backup)
    digest_engine: str | None = None
    written_by: str | None = None  # the engine named in the file's AUX fields (redis-ver / valkey-ver)
    # the object as stored, when it differs from the RDB bytes above (encrypted at rest)
    stored_size: int | None = None
    stored_sha256: str | None = None
    shard: str | None = None
    slots: list[list[int]] | None = None  # [[start, end], ...] for a cluster shard
    node: str | None = None  # redacted endpoint the file was taken from
    node_id: str | None = None
    role: str | None = None  # "primary", "replica" or "file"

    @property
    def keys(self) -> int:
        return sum(s.keys for s in self.databases.values())

    @property
    def expires(self) -> int:
        return sum(s.expires for s in self.databases.values())


@dataclass
class Manifest:
    id: str
    created: str  # ISO 8601 UTC
    kind: str
    source: dict[str, Any]  # url (redacted), type (file|node|cluster), engine, version
    files: list[FileEntry]
    tags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pinned: bool = False  # never removed by retention
    #: how the files are encrypted at rest (scheme, recipient fingerprints, KMS key ARNs and wrapped
    #: data keys) — never a secret; None when they are stored as plain RDB
    encryption: dict[str, Any] | None = None
    tool: dict[str, str] = field(default_factory=lambda: {"name": "snaptool", "version": tool_version()})
    format: int = FORMAT

    @property
    def keys(self) -> int:
        return sum(f.keys for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sharded(self) -> bool:
        return any(f.slots for f in self.files)

    def layout(self) -> SlotLayout | None:
        """The cluster layout a sharded snapshot was taken with (None for a standalone one)."""
        if not self.sharded:
            return None
        return SlotLayout(tuple(Shard(f.shard or f"shard-{i + 1:04d}", tuple(tuple(r) for r in f.slots or ()))
                                for i, f in enumerate(self.files)))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for entry in data["files"]:
            entry["databases"] = {str(db): stats for db, stats in sorted(entry["databases"].items())}
        return data

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes, where: str) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise ManifestError(f"{where}: manifest format {raw.get('format')!r} is not supported "
                                    f"(this snaptool reads format {FORMAT})")
            files = []
            for entry in raw["files"]:
                entry = dict(entry)
                entry["databases"] = {int(db): DbStats(**stats) for db, stats in entry["databases"].items()}
                files.append(FileEntry(**entry))
            raw["files"] = files
            return cls(**raw)
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"{where}: not a valid manifest ({type(exc).__name__}: {exc})") from None
