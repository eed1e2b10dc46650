"""S3 settings and clients: user settings plus the standard AWS environment turned into boto3 and
s3fs clients, and into the arguments every object write carries (encryption, storage class,
object lock, canned ACL, expected owner).

Retries: botocore's ``standard`` mode, which retries throttling (``SlowDown``, 503), 5xx answers
and broken connections with exponential backoff and jitter, up to ``max_attempts`` tries.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import RepositoryError

SSE_MODES = ("AES256", "aws:kms")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
VERIFY_MODES = ("checksum", "reread")
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                   "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "EXPRESS_ONEZONE")
CANNED_ACLS = ("private", "bucket-owner-read", "bucket-owner-full-control", "authenticated-read",
               "public-read", "aws-exec-read")
#: S3's smallest part (every part but the last); S3-compatible test servers may allow less.
MIN_PART_SIZE = 5 << 20


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3 and how objects are written; unset fields fall back to the standard AWS
    environment (AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, credentials files)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    #: server-side encryption: "AES256" (SSE-S3) or "aws:kms" (SSE-KMS, with sse_kms_key_id or the AWS key)
    sse: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    #: object lock for every object written (the bucket must have object lock enabled)
    object_lock_mode: str | None = None
    object_lock_retain_until: datetime | None = None
    acl: str | None = None  # canned ACL, e.g. bucket-owner-full-control for a bucket of another account
    expected_bucket_owner: str | None = None  # account id; S3 refuses the call if the bucket is not theirs
    max_attempts: int | None = None  # tries per request (default: AWS_MAX_ATTEMPTS, else 8)
    part_size: int | None = None  # fixed multipart part size (default: chosen from the expected size)
    #: after each upload: "checksum" compares S3's SHA-256 checksum with the bytes sent (re-reading
    #: the object when the store keeps none); "reread" always downloads and hashes the object
    verify: str = "checksum"

    def __post_init__(self) -> None:
        problems = []
        if self.sse is not None and self.sse not in SSE_MODES:
            problems.append(f"SSE must be {' or '.join(SSE_MODES)}, not {self.sse!r}")
        if self.sse_kms_key_id and self.sse != "aws:kms":
            problems.append("a KMS key id needs SSE aws:kms")
        if self.storage_class is not None and self.storage_class not in STORAGE_CLASSES:
            problems.append(f"unknown storage class {self.storage_class!r} (one of {', '.join(STORAGE_CLASSES)})")
        if (self.object_lock_mode is None) != (self.object_lock_retain_until is None):
            problems.append("object lock needs both a mode and a retain-until date")
        if self.object_lock_mode is not None and self.object_lock_mode not in LOCK_MODES:
            problems.append(f"object lock mode must be {' or '.join(LOCK_MODES)}, not {self.object_lock_mode!r}")
        if self.object_lock_retain_until is not None and self.object_lock_retain_until.tzinfo is None:
            problems.append("the object lock retain-until date needs a time zone")
        if self.acl is not None and self.acl not in CANNED_ACLS:
            problems.append(f"unknown canned ACL {self.acl!r} (one of {', '.join(CANNED_ACLS)})")
        if self.expected_bucket_owner is not None and not re.fullmatch(r"\d{12}", self.expected_bucket_owner):
            problems.append(f"expected bucket owner must be a 12-digit account id, not {self.expected_bucket_owner!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            problems.append("max attempts must be at least 1")
        if self.part_size is not None and self.part_size < 1:
            problems.append("part size must be positive")
        if self.verify not in VERIFY_MODES:
            problems.append(f"verify must be {' or '.join(VERIFY_MODES)}, not {self.verify!r}")
        if problems:
            raise RepositoryError("S3 settings: " + "; ".join(problems))

    def replace(self, **changes: Any) -> S3Settings:
        return dataclasses.replace(self, **changes)

    def connection(self) -> S3Settings:
        """The same credentials, region, endpoint, retries and checks without the settings of one
        bucket's objects (encryption, class, lock, ACL, expected owner): for reaching another bucket."""
        return self.replace(sse=None, sse_kms_key_id=None, storage_class=None, object_lock_mode=None,
                            object_lock_retain_until=None, acl=None, expected_bucket_owner=None)

    # ------------------------------------------------------------------ resolution
    def resolved_region(self) -> str | None:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    def attempts(self) -> int:
        if self.max_attempts is not None:
            return self.max_attempts
        try:
            return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "8")))
        except ValueError:
            return 8

    def resolved_endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    def session(self) -> Any:
        import boto3  # imported here: local repositories never pay for botocore

        return boto3.session.Session(
            profile_name=self.profile, aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key, aws_session_token=self.session_token,
            region_name=self.resolved_region())

    def botocore_config(self, **extra: Any) -> Any:
        from botocore.config import Config

        return Config(retries={"total_max_attempts": self.attempts(), "mode": "standard"}, connect_timeout=10,
                      read_timeout=120, max_pool_connections=16, **extra)

    def client(self, service: str = "s3") -> Any:
        """A boto3 client; for S3 the endpoint setting applies, other services use the environment's."""
        kwargs: dict[str, Any] = {"config": self.botocore_config()}
        if service == "s3" and self.resolved_endpoint():
            kwargs["endpoint_url"] = self.resolved_endpoint()
        try:
            return self.session().client(service, **kwargs)
        except Exception as exc:  # noqa: BLE001 - unknown profile, bad region: one line
            raise RepositoryError(f"cannot set up the {service} client: {type(exc).__name__}: {exc}") from None

    def filesystem(self) -> Any:
        import s3fs

        client_kwargs: dict[str, Any] = {}
        if self.resolved_region():
            client_kwargs["region_name"] = self.resolved_region()
        if self.resolved_endpoint():
            client_kwargs["endpoint_url"] = self.resolved_endpoint()
        extra = {"ExpectedBucketOwner": self.expected_bucket_owner} if self.expected_bucket_owner else {}
        fs = s3fs.S3FileSystem(
            profile=self.profile, key=self.access_key_id, secret=self.secret_access_key, token=self.session_token,
            client_kwargs=client_kwargs, skip_instance_cache=True, use_listings_cache=False,
            config_kwargs={"retries": {"total_max_attempts": self.attempts(), "mode": "standard"}},
            s3_additional_kwargs=extra)
        fs.retries = 1  # botocore's standard mode retries (max attempts above); s3fs must not multiply them
        return fs

    # ------------------------------------------------------------------ request arguments
    def owner_args(self) -> dict[str, Any]:
        """ExpectedBucketOwner, for every call on the bucket."""
        return {"ExpectedBucketOwner": self.expected_bucket_owner} if self.expected_bucket_owner else {}

    def write_args(self) -> dict[str, Any]:
        """What PutObject, CreateMultipartUpload and CopyObject carry for a new object."""
        args = self.owner_args()
        if self.sse:
            args["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        if self.object_lock_mode:
            args["ObjectLockMode"] = self.object_lock_mode
            args["ObjectLockRetainUntilDate"] = self.object_lock_retain_until
        if self.acl:
            args["ACL"] = self.acl
        return args


def parse_retain_until(text: str, now: datetime | None = None) -> datetime:
    """``2027-01-31``, ``2027-01-31T12:00:00Z`` or a duration from now (``30d``, ``12h``)."""
    now = now or datetime.now(timezone.utc)
    match = re.fullmatch(r"(\d+)([dh])", text.strip())
    if match:
        amount = int(match.group(1))
        return now + (timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount))
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RepositoryError(f"retain-until {text!r}: use a date (2027-01-31), a time with zone, or 30d / 12h") from None
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    if when <= now:
        raise RepositoryError(f"retain-until {text!r} is in the past")
    return when


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ("bucket", "some/key")."""
    if not url.startswith("s3://"):
        raise RepositoryError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket:
        raise RepositoryError(f"{url!r}: no bucket named")
    return bucket, key.strip("/")


def b64(digest: bytes) -> str:
    """A digest as S3 writes checksums: base64."""
    return base64.b64encode(digest).decode("ascii")


def hex_to_b64(hex_digest: str) -> str:
    return b64(bytes.fromhex(hex_digest))


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError (``NoSuchKey``, ``403``…), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or "") or None
    return None


def describe_error(exc: BaseException) -> str:
    """One line for a botocore error (an HTML error page in a message is left out)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        text = f"{error.get('Code', '?')}: {error.get('Message') or 'no message'}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    first = (text.strip().splitlines() or [""])[0].rstrip(": ")
    return first if len(first) <= 300 else first[:297] + "..."


def is_boto_error(exc: BaseException) -> bool:
    """Whether an exception comes from the AWS client stack (boto3, botocore, s3fs and what they use)."""
    return type(exc).__module__.startswith(("botocore", "boto3", "urllib3", "s3transfer", "aiobotocore", "aiohttp",
                                            "s3fs"))
