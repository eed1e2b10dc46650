"""Server-side copies between S3 buckets: the bytes stay inside S3, none pass through this process.

Up to ``threshold`` bytes an object is copied with one CopyObject that asks S3 for a SHA-256
checksum of the new object: S3 hashes the copy's bytes itself, and that digest is compared with the
manifest's. Above it (CopyObject stops at 5 GiB) the object is assembled with UploadPartCopy;
S3 then keeps only a digest of part digests, so the new object is read back and hashed here — the
one case where bytes come through (downloads only). A copy that fails its check is deleted.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .errors import RepositoryError
from .s3 import error_code, hex_to_b64, is_boto_error
from .s3upload import MAX_PARTS, head_object, read_sha256, s3_call

#: CopyObject's own limit; bigger objects must be copied in parts.
COPY_OBJECT_LIMIT = 5 << 30
DEFAULT_COPY_PART = 512 << 20


@dataclass
class CopyResult:
    method: str  # "copy-object" or "part-copy"
    verified_by: str  # "s3-sha256" (S3's digest of the copy) or "reread" (read back and hashed here)
    bytes_read: int = 0  # bytes read back through this process to verify


def can_read(client: Any, bucket: str, key: str, source_owner: str | None = None) -> bool:
    """Whether ``client``'s credentials may read the object (a HEAD, so no data moves)."""
    args = {"ExpectedBucketOwner": source_owner} if source_owner else {}
    try:
        client.head_object(Bucket=bucket, Key=key, **args)
        return True
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("403", "404", "AccessDenied", "NoSuchKey", "NoSuchBucket", "NotFound"):
            return False
        if is_boto_error(exc):
            return False
        raise


def server_copy(client: Any, source: tuple[str, str], dest: tuple[str, str], *, size: int, sha256: str,
                write_args: dict[str, Any], owner_args: dict[str, Any], where: str,
                source_owner: str | None = None, threshold: int = COPY_OBJECT_LIMIT,
                part_size: int | None = None, workers: int = 4) -> CopyResult:
    """Copy ``source`` (bucket, key) to ``dest`` inside S3 and check the result against ``sha256`` (hex)."""
    copy_source = {"Bucket": source[0], "Key": source[1]}
    source_args = {"ExpectedSourceBucketOwner": source_owner} if source_owner else {}
    if size <= min(threshold, COPY_OBJECT_LIMIT):
        s3_call(where, client.copy_object, Bucket=dest[0], Key=dest[1], CopySource=copy_source,
                ChecksumAlgorithm="SHA256", **write_args, **source_args)
        result = CopyResult("copy-object", "s3-sha256")
    else:
        _part_copy(client, copy_source, dest, size, write_args, owner_args, source_args, where,
                   part_size or DEFAULT_COPY_PART, workers)
        result = CopyResult("part-copy", "reread")
    info = head_object(client, dest[0], dest[1], owner_args, where)
    problem = None
    if info is None:
        problem = "the copy is missing"
    elif info.size != size:
        problem = f"{info.size:,} bytes copied, {size:,} expected"
    elif result.method == "copy-object" and info.whole_sha256_b64() is not None:
        if info.whole_sha256_b64() != hex_to_b64(sha256):
            problem = f"S3's SHA-256 of the copy {info.whole_sha256_b64()} is not the manifest's {hex_to_b64(sha256)}"
    else:  # no digest over the whole object: read it back
        result.verified_by = "reread"
        digest, result.bytes_read = read_sha256(client, dest[0], dest[1], owner_args, where)
        if digest != sha256:
            problem = f"reading the copy back gives sha256 {digest}, the manifest says {sha256}"
    if problem is not None:
        try:
            client.delete_object(Bucket=dest[0], Key=dest[1], **owner_args)
        except Exception:  # noqa: BLE001 - reported by the error below either way
            pass
        raise RepositoryError(f"{where}: copy not verified: {problem}")
    return result


def _part_copy(client: Any, copy_source: dict[str, str], dest: tuple[str, str], size: int,
               write_args: dict[str, Any], owner_args: dict[str, Any], source_args: dict[str, Any], where: str,
               part_size: int, workers: int) -> None:
    part_size = max(part_size, -(-size // MAX_PARTS))
    ranges = [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]
    upload_id = s3_call(where, client.create_multipart_upload, Bucket=dest[0], Key=dest[1],
                        ChecksumAlgorithm="SHA256", **write_args)["UploadId"]

    def one(number: int) -> dict[str, Any]:
        start, end = ranges[number - 1]
        answer = s3_call(f"{where} (part {number})", client.upload_part_copy, Bucket=dest[0], Key=dest[1],
                         UploadId=upload_id, PartNumber=number, CopySource=copy_source,
                         CopySourceRange=f"bytes={start}-{end}", **owner_args, **source_args)["CopyPartResult"]
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if answer.get("ChecksumSHA256"):
            part["ChecksumSHA256"] = answer["ChecksumSHA256"]
        return part

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ranges)))) as pool:
            parts = list(pool.map(one, range(1, len(ranges) + 1)))
        if not all("ChecksumSHA256" in p for p in parts):  # a store that keeps no part checksums
            parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
        try:
            s3_call(where, client.complete_multipart_upload, Bucket=dest[0], Key=dest[1], UploadId=upload_id,
                    MultipartUpload={"Parts": parts}, **owner_args)
        except RepositoryError as exc:
            if "NoSuchUpload" not in str(exc):  # a retried Complete that had succeeded: checked below
                raise
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=dest[0], Key=dest[1], UploadId=upload_id, **owner_args)
        except Exception:  # noqa: BLE001 - best effort
            pass
        raise
