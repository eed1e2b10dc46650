"""Option groups for S3 writes and ElastiCache sources, shared by the repository commands and
`copy`/`seed` (kept apart from both so either can import them)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from ..storage.s3 import CANNED_ACLS, LOCK_MODES, SSE_MODES, STORAGE_CLASSES, VERIFY_MODES, parse_retain_until


#: (option suffix, S3Settings field, click keyword arguments)
_WRITE_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("sse", "sse", {"type": click.Choice(SSE_MODES),
                    "help": "Server-side encryption of every object: AES256 (SSE-S3) or aws:kms."}),
    ("sse-kms-key-id", "sse_kms_key_id", {"help": "The KMS key for SSE aws:kms (default: the account's aws/s3 key)."}),
    ("storage-class", "storage_class", {"type": click.Choice(STORAGE_CLASSES), "help": "Storage class of every object."}),
    ("object-lock-mode", "object_lock_mode", {"type": click.Choice(LOCK_MODES),
                                              "help": "Object lock for every object (the bucket must have it on)."}),
    ("object-lock-retain-until", "object_lock_retain_until",
     {"help": "Lock until this date (2027-01-31) or for a duration (30d, 12h)."}),
    ("acl", "acl", {"type": click.Choice(CANNED_ACLS),
                    "help": "Canned ACL of every object (bucket-owner-full-control for another account's bucket)."}),
    ("expected-bucket-owner", "expected_bucket_owner", {"metavar": "ACCOUNT",
                                                        "help": "Refuse the bucket unless this account owns it."}),
    ("max-attempts", "max_attempts", {"type": click.IntRange(1, 100), "help": "Tries per request on throttling, 5xx "
                                      "and broken connections (default AWS_MAX_ATTEMPTS, else 8)."}),
    ("verify", "verify", {"type": click.Choice(VERIFY_MODES), "help": "After each upload: compare S3's SHA-256 "
                          "checksum (default), or read the object back."}),
]


def s3_write_options(prefix: str = "s3-", env: str = "SNAPTOOL_S3_",
                     ownership: bool = True) -> Callable[[Callable], Callable]:
    """Options ``--<prefix>sse`` … for how S3 objects are written (env ``<env>SSE`` …); the command
    receives ``<prefix>write`` (``s3_write`` by default): the S3Settings fields given, others left out.
    ``ownership=False`` leaves out --acl and --expected-bucket-owner (for commands that name them)."""
    key = prefix.replace("-", "_")
    chosen = [o for o in _WRITE_OPTIONS if ownership or o[1] not in ("acl", "expected_bucket_owner")]

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            fields = {}
            for suffix, field, _ in chosen:
                value = kwargs.pop(f"{key}{suffix.replace('-', '_')}")
                if value is not None:
                    fields[field] = parse_retain_until(value) if field == "object_lock_retain_until" else value
            return command(**{f"{key}write": fields}, **kwargs)
        for suffix, _, extra in reversed(chosen):
            wrapper = click.option(f"--{prefix}{suffix}", f"{key}{suffix.replace('-', '_')}",
                                   envvar=f"{env}{suffix.replace('-', '_').upper()}", **extra)(wrapper)
        return wrapper
    return decorate


def elasticache_options(command: Callable) -> Callable:
    """Options of ``backup elasticache://…``; the command receives ``elasticache`` (a dict)."""
    @click.option("--export-bucket", help="elasticache://: the bucket (in the cluster's region) ElastiCache exports to.")
    @click.option("--keep-source", is_flag=True, help="elasticache://: keep the manual ElastiCache snapshot.")
    @click.option("--keep-export", is_flag=True, help="elasticache://: keep the exported .rdb objects.")
    @click.option("--grant-elasticache", "grant", is_flag=True,
                  help="elasticache://: give ElastiCache the access it needs to the export bucket first.")
    @click.option("--poll-seconds", type=float, default=15.0, show_default=True,
                  help="elasticache://: how often the snapshot's state is read.")
    @functools.wraps(command)
    def wrapper(export_bucket: str | None, keep_source: bool, keep_export: bool, grant: bool, poll_seconds: float,
                **kwargs: Any) -> Any:
        return command(elasticache={"export_bucket": export_bucket, "keep_source": keep_source,
                                    "keep_export": keep_export, "grant": grant, "poll_seconds": poll_seconds}, **kwargs)
    return wrapper
