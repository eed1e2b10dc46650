"""The snapshots of a repository: ``snapshots/<id>/`` with its RDB files and ``manifest.json``.

A snapshot exists when its manifest does. Files are written first, the manifest last; forgetting
deletes the manifest first. So a crash at any point leaves either a complete snapshot or a
directory without a manifest, which is listed as incomplete, never restored, and removed by
``gc``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .manifest import MANIFEST, Manifest, ManifestError, is_snapshot_id
from .repository import Repository, RepositoryError

SNAPSHOTS = "snapshots"


class SnapshotNotFound(RepositoryError):
    """No such snapshot, or it is incomplete."""


@dataclass
class Listing:
    """One directory under snapshots/: complete (manifest read) or not."""

    id: str
    manifest: Manifest | None
    files: list[tuple[str, int]]  # (name, size) as stored
    problem: str | None = None  # why it is not complete

    @property
    def complete(self) -> bool:
        return self.manifest is not None


def snapshot_dir(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}/{snapshot_id}"


def file_path(snapshot_id: str, name: str) -> str:
    return f"{SNAPSHOTS}/{snapshot_id}/{name}"


def shard_file_name(snapshot_id: str, index: int) -> str:
    """Every data file carries the snapshot id, so files of two snapshots can never be mixed."""
    return f"{snapshot_id}.shard-{index:04d}.rdb"


class Catalog:
    """Snapshot-level operations on a repository."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def require(self, purpose: str) -> None:
        """Refuse to ``purpose`` (prune, gc) where no backup was ever written: a mistyped --repo
        in a cron line must fail loudly, not report "nothing to remove" and leave a lock behind."""
        if not self.repo.exists(SNAPSHOTS):
            raise RepositoryError(f"no snaptool repository at {self.repo.url} (no snapshots/ there); "
                                  f"nothing to {purpose}: check --repo")

    def list(self) -> list[Listing]:
        """Every snapshot directory, oldest first (ids sort by time)."""
        out = []
        for name, kind, _ in self.repo.listdir(SNAPSHOTS):
            if kind != "directory":
                continue
            out.append(self._listing(name))
        return out

    def _listing(self, snapshot_id: str) -> Listing:
        files = [(n, size) for n, kind, size in self.repo.listdir(snapshot_dir(snapshot_id)) if kind == "file"]
        if not is_snapshot_id(snapshot_id):
            return Listing(snapshot_id, None, files, "not a snapshot id")
        if MANIFEST not in {n for n, _ in files}:
            return Listing(snapshot_id, None, files, "no manifest (interrupted or being written)")
        try:
            return Listing(snapshot_id, self.manifest(snapshot_id), files)
        except ManifestError as exc:
            return Listing(snapshot_id, None, files, str(exc))

    def complete(self) -> list[Manifest]:
        return [entry.manifest for entry in self.list() if entry.manifest is not None]

    def manifest(self, snapshot_id: str) -> Manifest:
        where = self.repo.where(file_path(snapshot_id, MANIFEST))
        try:
            data = self.repo.read_bytes(file_path(snapshot_id, MANIFEST))
        except RepositoryError as exc:
            if "not found" in str(exc):
                raise SnapshotNotFound(f"snapshot {snapshot_id} not found in {self.repo.url}"
                                       + (" (incomplete: no manifest)" if self.repo.exists(snapshot_dir(snapshot_id))
                                          else "")) from None
            raise
        manifest = Manifest.loads(data, where)
        if manifest.id != snapshot_id:
            raise ManifestError(f"{where}: the manifest describes snapshot {manifest.id}, not {snapshot_id}")
        return manifest

    def resolve(self, spec: str) -> Manifest:
        """A snapshot by id, unique id prefix, or ``latest``; only complete snapshots qualify."""
        complete = self.complete()
        if spec == "latest":
            if not complete:
                raise SnapshotNotFound(f"no complete snapshot in {self.repo.url}")
            return complete[-1]
        if is_snapshot_id(spec):
            return self.manifest(spec)
        matches = [m for m in complete if m.id.startswith(spec)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SnapshotNotFound(f"no complete snapshot {spec!r} in {self.repo.url}")
        raise SnapshotNotFound(f"{spec!r} matches {len(matches)} snapshots: "
                               + ", ".join(m.id for m in matches[:5]))

    def commit(self, manifest: Manifest) -> None:
        """Write the manifest: from now on the snapshot exists."""
        self.repo.write_bytes(file_path(manifest.id, MANIFEST), manifest.dumps())

    def forget(self, snapshot_id: str) -> None:
        """Remove a snapshot: manifest first, so a crash leaves an incomplete leftover, not a
        complete-looking snapshot with missing files."""
        self.repo.remove(file_path(snapshot_id, MANIFEST))
        self.repo.remove(snapshot_dir(snapshot_id), recursive=True)

    def leftovers(self) -> list[Listing]:
        return [entry for entry in self.list() if not entry.complete]
