"""Upload one S3 object as a write-only file: it appears complete and verified, or not at all.

Bytes are buffered up to one part; the first full part starts a multipart upload, a smaller total
goes up in one PutObject; parts grow near S3's 10,000-part limit (:func:`part_size_at`). Every
request carries the part's SHA-256 (an S3 additional checksum), so S3 refuses a part damaged on
the way. After completion the object is checked: its size, and the SHA-256 checksum S3 keeps for
it (the whole-object digest for a single PUT, the digest of the part digests for a multipart
upload) against the same digest computed here from the bytes sent. A store that keeps no checksum
is re-read and hashed instead; ``verify="reread"`` always re-reads. A failed upload is aborted; an
object that fails the check is deleted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import RepositoryError
from .s3 import b64, describe_error, error_code, hex_to_b64, is_boto_error

_READ_CHUNK = 8 << 20
#: S3's limits: parts in one upload, bytes in one part.
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 << 30
#: Parts keep their first size up to this one; then the part size doubles every _GROW_EVERY parts.
STEADY_PARTS, _GROW_EVERY = 8_000, 200


def part_size_at(number: int, base: int) -> int:
    """The size of part ``number`` (from 1) of an upload that starts with ``base``-byte parts.

    The part size comes from the expected size, which can be low (a stream of unknown length, a
    server that grew while it was read). Rather than fail at part 10,001, the last 2,000 parts
    double in size every 200 parts (at most 5 GiB each): with 8 MiB parts an upload still ends
    within 10,000 parts up to 2.5 TiB, and parts stay at 8 MiB up to 62.5 GiB.
    """
    if number <= STEADY_PARTS:
        return min(base, MAX_PART_SIZE)
    return min(base << (1 + (number - STEADY_PARTS - 1) // _GROW_EVERY), MAX_PART_SIZE)


@dataclass
class ObjectInfo:
    """What a HEAD tells about one stored object."""

    size: int
    sha256_b64: str | None = None  # S3's SHA-256 checksum, without a "-N" part-count suffix
    composite: bool = False  # the checksum is over part checksums (multipart), not over the bytes
    metadata: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    version_id: str | None = None

    def whole_sha256_b64(self) -> str | None:
        """The object's SHA-256 as base64 when S3 knows it over the whole bytes."""
        return None if self.composite else self.sha256_b64


def s3_call(where: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """One boto3 call; failures become a one-line RepositoryError naming the object."""
    try:
        return fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - botocore raises many unrelated types
        if is_boto_error(exc):
            raise RepositoryError(f"{where}: {describe_error(exc)}") from None
        raise


def head_object(client: Any, bucket: str, key: str, owner_args: dict[str, Any], where: str) -> ObjectInfo | None:
    """The object's size, checksum and metadata; None when there is no such object."""
    try:
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **owner_args)
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        if is_boto_error(exc):
            raise RepositoryError(f"{where}: {describe_error(exc)}") from None
        raise
    checksum = head.get("ChecksumSHA256")
    composite = head.get("ChecksumType") == "COMPOSITE" or (checksum is not None and "-" in checksum) \
        or "-" in str(head.get("ETag", ""))
    if checksum is not None:
        checksum = checksum.split("-", 1)[0]
    return ObjectInfo(size=int(head["ContentLength"]), sha256_b64=checksum, composite=composite,
                      metadata=dict(head.get("Metadata") or {}), etag=head.get("ETag"),
                      version_id=head.get("VersionId"))


def read_sha256(client: Any, bucket: str, key: str, owner_args: dict[str, Any], where: str,
                counter: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Download the object and return (hex sha256, size)."""
    body = s3_call(where, client.get_object, Bucket=bucket, Key=key, **owner_args)["Body"]
    sha = hashlib.sha256()
    size = 0
    try:
        while chunk := body.read(_READ_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            if counter is not None:
                counter(len(chunk))
    except Exception as exc:  # noqa: BLE001
        if is_boto_error(exc):
            raise RepositoryError(f"{where}: reading it back failed: {describe_error(exc)}") from None
        raise
    finally:
        body.close()
    return sha.hexdigest(), size


class S3Upload:
    """A write-only binary file that becomes ``s3://bucket/key`` on :meth:`finish`."""

    def __init__(self, client: Any, bucket: str, key: str, *, part_size: int, write_args: dict[str, Any],
                 owner_args: dict[str, Any], where: str, expected_sha256: str | None = None,
                 verify: str = "checksum") -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.write_args = dict(write_args)
        if expected_sha256:
            self.write_args["Metadata"] = {"sha256": expected_sha256}
        self.owner_args = owner_args
        self.where = where
        self.expected_sha256 = expected_sha256
        self.verify = verify
        self.closed = False
        self.size = 0
        self.info: ObjectInfo | None = None  # the stored object, once finished and verified
        self.verified_by: str | None = None  # "checksum" or "reread"
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._part_digests: list[bytes] = []

    # ------------------------------------------------------------------ file protocol
    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        """Parts go up as they fill; nothing to do."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a finished upload")
        n = len(data)
        if not n:
            return 0
        self._sha.update(data)
        self.size += n
        self._buf += data
        while len(self._buf) >= (size := part_size_at(len(self._parts) + 1, self.part_size)):
            part = bytes(self._buf[:size])
            del self._buf[:size]
            self._upload_part(part)
        return n

    def close(self) -> None:
        if not self.closed:
            self.finish()

    # ------------------------------------------------------------------ commit / abort
    def finish(self) -> ObjectInfo:
        """Complete the upload and verify the stored object."""
        if self.closed:
            raise ValueError("upload already finished")
        digest = self._sha.hexdigest()
        if self.expected_sha256 and digest != self.expected_sha256:
            self.abort()
            raise RepositoryError(f"{self.where}: the bytes written have sha256 {digest}, expected "
                                  f"{self.expected_sha256}; nothing was stored")
        try:
            if self._upload_id is None:
                body = bytes(self._buf)
                s3_call(self.where, self.client.put_object, Bucket=self.bucket, Key=self.key, Body=body,
                        ChecksumAlgorithm="SHA256", ChecksumSHA256=b64(hashlib.sha256(body).digest()),
                        **self.write_args)
                expected = hex_to_b64(digest)
            else:
                if self._buf or not self._parts:
                    self._upload_part(bytes(self._buf))
                self._complete()
                expected = b64(hashlib.sha256(b"".join(self._part_digests)).digest())
        except BaseException:
            self.abort()
            raise
        self._buf = bytearray()
        self.closed = True
        self.info = self._check(expected, digest)
        return self.info

    def abort(self) -> None:
        """Abort the multipart upload (if any): nothing becomes visible."""
        self.closed = True
        self._buf = bytearray()
        if self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                                   **self.owner_args)
            except Exception:  # noqa: BLE001 - best effort; a lifecycle rule cleans up the rest
                pass
            self._upload_id = None

    # ------------------------------------------------------------------ internals
    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = s3_call(self.where, self.client.create_multipart_upload, Bucket=self.bucket, Key=self.key,
                              ChecksumAlgorithm="SHA256", **self.write_args)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        digest = hashlib.sha256(data).digest()
        try:
            answer = s3_call(f"{self.where} (part {number})", self.client.upload_part, Bucket=self.bucket,
                             Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data,
                             ChecksumAlgorithm="SHA256", ChecksumSHA256=b64(digest), **self.owner_args)
        except BaseException:
            self.abort()
            raise
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": b64(digest)})
        self._part_digests.append(digest)

    def _complete(self) -> None:
        try:
            s3_call(self.where, self.client.complete_multipart_upload, Bucket=self.bucket, Key=self.key,
                    UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}, **self.owner_args)
        except RepositoryError as exc:
            # a retried Complete whose first attempt succeeded answers NoSuchUpload: the object is
            # there, and the check below decides whether it is the one just written
            if "NoSuchUpload" not in str(exc):
                raise
        self._upload_id = None

    def _check(self, expected_b64: str, digest_hex: str) -> ObjectInfo:
        info = head_object(self.client, self.bucket, self.key, self.owner_args, self.where)
        problem = None
        if info is None:
            problem = "the object is missing after its upload completed"
        elif info.size != self.size:
            problem = f"{info.size:,} bytes stored, {self.size:,} sent"
        elif self.verify == "checksum" and info.sha256_b64 is not None:
            self.verified_by = "checksum"
            if info.sha256_b64 != expected_b64:
                problem = f"S3's SHA-256 checksum {info.sha256_b64} differs from the bytes sent ({expected_b64})"
        else:
            self.verified_by = "reread"
            stored, _ = read_sha256(self.client, self.bucket, self.key, self.owner_args, self.where)
            if stored != digest_hex:
                problem = f"reading it back gives sha256 {stored}, the bytes sent have {digest_hex}"
        if problem is not None:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key, **self.owner_args)
                removed = "removed"
            except Exception as exc:  # noqa: BLE001 - e.g. object lock: say so
                removed = f"could not be removed ({describe_error(exc)})"
            raise RepositoryError(f"{self.where}: upload not verified: {problem}; the object {removed}")
        assert info is not None
        return info
