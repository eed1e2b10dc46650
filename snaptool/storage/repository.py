"""A repository is a place that holds snapshots: a local directory or an ``s3://bucket/prefix``.

Both go through one fsspec filesystem interface for reading and listing, so every job reads a
repository the same way. The difference is how a file becomes visible: a local file is written
under a temporary name and renamed; an S3 object is uploaded by :class:`~.s3upload.S3Upload`,
exists only once its (multipart) upload completes and is checked against S3's SHA-256 checksum
before the writer returns, and an interrupted upload is aborted, never published half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import secrets
import threading
from typing import Any, BinaryIO, Iterator

import fsspec

from .errors import RepositoryError
from .s3 import S3Settings, is_boto_error
from .s3upload import MAX_PARTS, STEADY_PARTS, ObjectInfo, S3Upload, head_object

__all__ = ["DEFAULT_LOCAL", "DEFAULT_PART_SIZE", "MAX_PARTS", "REPO_ENV", "ObjectInfo", "Repository",
           "RepositoryError", "S3Settings", "part_size_for"]

DEFAULT_LOCAL = "./snaptool-repo"
REPO_ENV = "SNAPTOOL_REPO"
#: Large enough that 10,000 parts cover 80 GiB; bigger files raise the part size (see part_size_for).
DEFAULT_PART_SIZE = 8 << 20
TEMP_MARK = ".part-"


def part_size_for(expected_size: int | None, minimum: int = DEFAULT_PART_SIZE) -> int:
    """A part size whose steady parts (the first 8,000, before they grow) hold ``expected_size``:
    an upload that is as large as expected keeps one part size, and the 2,000 growing parts after
    them are room for a size estimate that was low, under S3's 10,000-part limit."""
    if not expected_size:
        return minimum
    need = -(-expected_size // STEADY_PARTS)
    return max(minimum, -(-need // (1 << 20)) * (1 << 20))


class Repository:
    """Files under one root, addressed by '/'-separated paths relative to it."""

    def __init__(self, url: str, fs: Any, root: str, s3: S3Settings | None = None) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.is_local = url.startswith("/") or "://" not in url
        self.s3 = None if self.is_local else (s3 or S3Settings())
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str | None = None, *, s3: S3Settings | None = None) -> Repository:
        """The repository at ``url`` (default ``$SNAPTOOL_REPO`` or ./snaptool-repo)."""
        url = url or os.environ.get(REPO_ENV) or DEFAULT_LOCAL
        if url.startswith("s3://"):
            bucket_and_prefix = url[len("s3://"):].strip("/")
            if not bucket_and_prefix:
                raise RepositoryError(f"repository {url!r}: no bucket named")
            settings = s3 or S3Settings()
            return cls(url.rstrip("/"), settings.filesystem(), bucket_and_prefix, settings)
        if url.startswith("file://"):
            url = url[len("file://"):]
        elif "://" in url:
            raise RepositoryError(f"repository {url!r}: only local directories and s3:// are supported")
        root = os.path.abspath(url)
        return cls(root, fsspec.filesystem("file", auto_mkdir=True), root)

    def __repr__(self) -> str:
        return f"Repository({self.url!r})"

    # ------------------------------------------------------------------ paths
    def path(self, relpath: str) -> str:
        return posixpath.join(self.root, relpath) if relpath else self.root

    def where(self, relpath: str) -> str:
        """How a file is named in messages."""
        return f"{self.url}/{relpath}"

    def local_path(self, relpath: str) -> str | None:
        """The file's path on this machine for local repositories (read in place), else None."""
        return self.path(relpath) if self.is_local else None

    def bucket_key(self, relpath: str) -> tuple[str, str]:
        """(bucket, key) of a file in an S3 repository."""
        bucket, _, prefix = self.root.partition("/")
        return bucket, posixpath.join(prefix, relpath) if prefix else relpath

    @property
    def client(self) -> Any:
        """The boto3 S3 client of an S3 repository (made once, shared by threads)."""
        if self.s3 is None:
            raise RepositoryError(f"{self.url} is not an S3 repository")
        with self._lock:
            if self._client is None:
                self._client = self.s3.client("s3")
            return self._client

    # ------------------------------------------------------------------ reading
    def exists(self, relpath: str) -> bool:
        return self._call(relpath, self.fs.exists, self.path(relpath))

    def reader(self, relpath: str) -> BinaryIO:
        return self._call(relpath, self.fs.open, self.path(relpath), "rb", block_size=DEFAULT_PART_SIZE)

    def read_bytes(self, relpath: str) -> bytes:
        return self._call(relpath, self.fs.cat_file, self.path(relpath))

    def listdir(self, relpath: str) -> list[tuple[str, str, int]]:
        """(name, "file"|"directory", size) of the entries directly under ``relpath``."""
        if not self.exists(relpath):
            return []
        entries = self._call(relpath, self.fs.ls, self.path(relpath), detail=True)
        out = []
        for entry in entries:
            name = posixpath.basename(entry["name"].rstrip("/"))
            out.append((name, entry.get("type", "file"), int(entry.get("size") or 0)))
        return sorted(out)

    def head(self, relpath: str) -> ObjectInfo | None:
        """Size (and on S3 the stored checksum and metadata) of a file; None when it is absent."""
        if self.s3 is None:
            try:
                return ObjectInfo(size=os.stat(self.path(relpath)).st_size)
            except FileNotFoundError:
                return None
        bucket, key = self.bucket_key(relpath)
        return head_object(self.client, bucket, key, self.s3.owner_args(), self.where(relpath))

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def writer(self, relpath: str, expected_size: int | None = None, *,
               sha256: str | None = None) -> Iterator[BinaryIO]:
        """A binary file that appears under ``relpath`` complete, or not at all.

        With ``sha256`` (hex) the bytes written must have that digest or nothing is stored; on S3 it
        is also kept as the object's ``sha256`` metadata, so a later run can trust the object.
        """
        final = self.path(relpath)
        if self.is_local:
            tmp = f"{final}{TEMP_MARK}{secrets.token_hex(4)}"
            f = self._call(relpath, self.fs.open, tmp, "wb")
            try:
                out = f if sha256 is None else _Hashing(f)
                yield out  # type: ignore[misc]
                if sha256 is not None and out.sha.hexdigest() != sha256:  # type: ignore[union-attr]
                    raise RepositoryError(f"{self.where(relpath)}: the bytes written have sha256 "
                                          f"{out.sha.hexdigest()}, expected {sha256}; nothing was stored")  # type: ignore[union-attr]
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(tmp, final)
                _fsync_dir(os.path.dirname(final))
            except BaseException:
                f.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return
        assert self.s3 is not None
        bucket, key = self.bucket_key(relpath)
        upload = S3Upload(self.client, bucket, key, part_size=self.s3.part_size or part_size_for(expected_size),
                          write_args=self.s3.write_args(), owner_args=self.s3.owner_args(),
                          where=self.where(relpath), expected_sha256=sha256, verify=self.s3.verify)
        try:
            yield upload  # type: ignore[misc]
        except BaseException:
            upload.abort()  # nothing becomes visible
            raise
        upload.finish()

    def write_bytes(self, relpath: str, data: bytes) -> None:
        with self.writer(relpath, len(data)) as f:
            f.write(data)

    def remove(self, relpath: str, recursive: bool = False) -> None:
        if self.exists(relpath):
            self._call(relpath, self.fs.rm, self.path(relpath), recursive=recursive)

    # ------------------------------------------------------------------ errors
    def _call(self, relpath: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a filesystem call, turning storage failures into one-line errors naming the file."""
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise RepositoryError(f"{self.where(relpath)}: not found") from None
        except PermissionError as exc:
            raise RepositoryError(f"{self.where(relpath)}: permission denied ({exc})") from None
        except OSError as exc:
            if exc.errno is None:  # botocore/s3fs errors arrive as OSError without errno
                raise RepositoryError(f"{self.where(relpath)}: {exc}") from None
            raise
        except Exception as exc:  # noqa: BLE001 - credential and endpoint errors from botocore
            if is_boto_error(exc):
                raise RepositoryError(f"{self.where(relpath)}: {type(exc).__name__}: {exc}") from None
            raise


class _Hashing:
    """A file wrapper that hashes what is written through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
