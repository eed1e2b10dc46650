"""A repository is a place that holds snapshots: a local directory or an ``s3://bucket/prefix``.

Both go through one fsspec filesystem interface, so every job reads and writes a repository the
same way. The one difference is how a file becomes visible: a local file is written under a
temporary name and renamed; an S3 object only exists once its (multipart) upload completes, so it
is written under its own name and an interrupted upload is aborted, never published half-written.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import fsspec

from ..errors import SnaptoolError

DEFAULT_LOCAL = "./snaptool-repo"
REPO_ENV = "SNAPTOOL_REPO"
#: Large enough that 10,000 parts cover 80 GiB; bigger files raise the part size (see part_size_for).
DEFAULT_PART_SIZE = 8 << 20
MAX_PARTS = 10_000
TEMP_MARK = ".part-"


class RepositoryError(SnaptoolError):
    """The repository cannot be reached, read or written."""


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3; unset fields fall back to the standard AWS environment (AWS_PROFILE,
    AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, credentials files)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def filesystem(self) -> Any:
        import s3fs  # imported here: local repositories never pay for botocore

        client_kwargs: dict[str, Any] = {}
        region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            client_kwargs["region_name"] = region
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        return s3fs.S3FileSystem(
            profile=self.profile, key=self.access_key_id, secret=self.secret_access_key, token=self.session_token,
            client_kwargs=client_kwargs, skip_instance_cache=True, use_listings_cache=False)


def part_size_for(expected_size: int | None) -> int:
    """A multipart part size that keeps any upload under S3's 10,000-part limit."""
    if not expected_size:
        return DEFAULT_PART_SIZE
    need = -(-expected_size // (MAX_PARTS - 100))  # leave room for a size estimate that was low
    return max(DEFAULT_PART_SIZE, -(-need // (1 << 20)) * (1 << 20))


class Repository:
    """Files under one root, addressed by '/'-separated paths relative to it."""

    def __init__(self, url: str, fs: Any, root: str) -> None:
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.is_local = url.startswith("/") or "://" not in url

    @classmethod
    def open(cls, url: str | None = None, *, s3: S3Settings | None = None) -> Repository:
        """The repository at ``url`` (default ``$SNAPTOOL_REPO`` or ./snaptool-repo)."""
        url = url or os.environ.get(REPO_ENV) or DEFAULT_LOCAL
        if url.startswith("s3://"):
            bucket_and_prefix = url[len("s3://"):].strip("/")
            if not bucket_and_prefix:
                raise RepositoryError(f"repository {url!r}: no bucket named")
            return cls(url.rstrip("/"), (s3 or S3Settings()).filesystem(), bucket_and_prefix)
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

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def writer(self, relpath: str, expected_size: int | None = None) -> Iterator[BinaryIO]:
        """A binary file that appears under ``relpath`` complete, or not at all."""
        final = self.path(relpath)
        if self.is_local:
            tmp = f"{final}{TEMP_MARK}{secrets.token_hex(4)}"
            f = self._call(relpath, self.fs.open, tmp, "wb")
            try:
                yield f
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
        f = self._call(relpath, self.fs.open, final, "wb", block_size=part_size_for(expected_size))
        try:
            yield f
        except BaseException:
            with contextlib.suppress(Exception):
                f.discard()  # abort the multipart upload: nothing becomes visible
            f.closed = True  # so that garbage collection does not try to complete it
            raise
        self._call(relpath, f.close)

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
            if type(exc).__module__.startswith(("botocore", "aiobotocore", "s3fs", "aiohttp")):
                raise RepositoryError(f"{self.where(relpath)}: {type(exc).__name__}: {exc}") from None
            raise


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
