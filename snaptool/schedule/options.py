"""A job's nested tables: ``retention`` (prune's Policy), ``encryption`` (EncryptionOptions, passed
through field by field), ``s3`` (S3Settings) and ``elasticache`` (BackupOptions' fields for an
``elasticache://`` source), and ``lock_wait``. None of them may hold a secret: passphrases come from
files, S3 credentials from the AWS environment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import SnaptoolError
from ..jobs.backup import BackupOptions
from ..jobs.prune import GROUP_FIELDS, MAX_RETENTION_DAYS, UNLIMITED, Duration, Policy
from ..storage.lock import parse_wait
from ..storage.repository import S3Settings
from .fields import Problem, existing, opt, path, strings, unknown

COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
RETENTION_FIELDS = (*COUNTS, "within", "retention_days", "include_manual", "group_by", "retry_lock")
#: S3Settings fields a config may not set: secrets, and an absolute lock date that makes no sense
#: for recurring backups (use the bucket's default retention).
S3_EXCLUDED = ("access_key_id", "secret_access_key", "session_token", "object_lock_mode", "object_lock_retain_until")
_S3_INTS = ("max_attempts", "part_size")
#: BackupOptions fields for an elasticache:// source; `snaptool backup` spells each --export-bucket …
ELASTICACHE_FIELDS = ("export_bucket", "keep_source", "keep_export", "grant_elasticache", "poll_seconds")
#: How long a scheduled backup waits while another process (a prune, gc) holds the repository lock.
DEFAULT_LOCK_WAIT = 600.0
_NO_SECRET = "a config file holds no secret"
#: CryptoError messages speak of backup's options; in a config the same things are fields.
_FLAG_NAMES = (("--encrypt ", "scheme "), ("--recipients-file", "recipients_files"), ("--recipient", "recipients"),
               ("--passphrase-file", "passphrase_file"), ("--kms-key-id", "kms_key_ids"))


# --------------------------------------------------------------------------- retention

@dataclass(frozen=True)
class Retention:
    """The prune that follows each successful backup of a job."""

    policy: Policy
    group_by: tuple[str, ...] = ("source",)
    retry_lock: float = 600.0  # seconds prune keeps retrying while another process holds the lock


def retention_from(values: dict[str, Any]) -> Retention:
    unknown(values, RETENTION_FIELDS)
    counts = {rule: _count(values, rule) for rule in COUNTS}
    within_text = opt(values, "within", str, named=True)
    within = Duration.parse(within_text) if within_text is not None else None
    days = opt(values, "retention_days", int, named=True)
    if days is not None and not 0 <= days <= MAX_RETENTION_DAYS:
        raise Problem(f"retention_days: give 0 to {MAX_RETENTION_DAYS}, not {days} (use within for longer)")
    include_manual = bool(opt(values, "include_manual", bool, named=True))
    policy = Policy(**counts, within=within, retention_days=days, include_manual=include_manual)
    if not policy.has_keep_rules and days is None:
        raise Problem(f"no rule: give one of {', '.join(COUNTS)}, within or retention_days")
    if include_manual and not policy.has_keep_rules:
        raise Problem("include_manual needs a keep rule (last … yearly, within): retention_days never applies "
                      "to manual snapshots")
    policy.validate()
    retry = opt(values, "retry_lock", float, named=True)
    if retry is not None and retry < 0:
        raise Problem(f"retry_lock: give seconds ≥ 0, not {retry}")
    return Retention(policy, _group_by(values.get("group_by", ["source"])), 600.0 if retry is None else retry)


def _count(values: dict[str, Any], rule: str) -> int:
    value = values.get(rule, 0)
    if value == "unlimited":
        return UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Problem(f"{rule}: give a whole number ≥ 0 or \"unlimited\", not {value!r}")
    return value


def _group_by(value: Any) -> tuple[str, ...]:
    if value in ("none", []):
        return ()
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else \
        strings(value, key="group_by")
    for name in names:
        if name not in GROUP_FIELDS:
            raise Problem(f"group_by: {name!r}: use [\"source\"], [\"tags\"], [\"source\", \"tags\"] or \"none\"")
    return tuple(names)


def policy_flags(retention: Retention) -> list[str]:
    """The same retention as `snaptool prune` options."""
    policy, flags = retention.policy, []
    for rule in COUNTS:
        n = getattr(policy, rule)
        if n:
            flags += [f"--keep-{rule}", "unlimited" if n == UNLIMITED else str(n)]
    if policy.within is not None and not policy.within.zero:
        flags += ["--keep-within", str(policy.within)]
    if policy.retention_days is not None:
        flags += ["--retention-days", str(policy.retention_days)]
    if policy.include_manual:
        flags.append("--include-manual")
    if retention.group_by != ("source",):
        flags += ["--group-by", ",".join(retention.group_by) or "none"]
    if retention.retry_lock:
        flags += ["--retry-lock", f"{retention.retry_lock:g}"]
    return flags


# --------------------------------------------------------------------------- encryption

def encryption_fields() -> dict[str, Any]:
    """EncryptionOptions' fields and defaults, read from the class so new options pass through."""
    from ..crypto.schemes import EncryptionOptions

    out = {}
    for f in dataclasses.fields(EncryptionOptions):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def encryption_from(values: dict[str, Any], base: str) -> dict[str, Any]:
    """The encryption table with paths resolved, checked by building EncryptionOptions from it."""
    known = encryption_fields()
    allowed = tuple(k for k in known if k != "passphrase") + ("passphrase_file",)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "passphrase":
            raise Problem(f"passphrase: {_NO_SECRET}: put it in a file and give passphrase_file")
        if key not in allowed:
            raise Problem(f"unknown field {key!r} (fields: {', '.join(allowed)})")
        if key.endswith("_file"):
            out[key] = existing(opt(values, key, str, named=True), base, key=key)
        elif key.endswith("_files"):
            out[key] = tuple(path(p, base) for p in strings(value, allow_one=True, key=key))
        elif isinstance(known.get(key), tuple):
            out[key] = tuple(strings(value, allow_one=True, key=key))
        elif known.get(key) is not None:
            out[key] = opt(values, key, type(known[key]), named=True)
        else:
            out[key] = value
    if "scheme" not in out:
        raise Problem("scheme: missing (age, passphrase or kms)")
    try:
        encryption_options(out).check()
    except SnaptoolError as exc:
        raise Problem(_field_names(str(exc))) from None
    return out


def encryption_options(values: dict[str, Any]) -> Any:
    """EncryptionOptions for one run (the passphrase file is read each time, so it can be rotated)."""
    from ..crypto import EncryptionOptions, read_passphrase

    kwargs = {k: v for k, v in values.items() if k != "passphrase_file"}
    if values.get("passphrase_file"):
        kwargs["passphrase"] = read_passphrase(values["passphrase_file"])
    try:
        return EncryptionOptions(**kwargs)
    except TypeError as exc:
        raise Problem(str(exc)) from None


def _field_names(message: str) -> str:
    for flag, name in _FLAG_NAMES:
        message = message.replace(flag, name)
    return message


# --------------------------------------------------------------------------- S3

def s3_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(S3Settings) if f.name not in S3_EXCLUDED)


def s3_from(values: dict[str, Any]) -> tuple[S3Settings, dict[str, Any]]:
    allowed = s3_fields()
    for key in values:
        if key in ("access_key_id", "secret_access_key", "session_token"):
            raise Problem(f"{key}: {_NO_SECRET}: give credentials through the AWS environment (a profile, "
                          "a role, AWS_* variables)")
        if key not in allowed:
            raise Problem(f"unknown field {key!r} (fields: {', '.join(allowed)})")
    checked = {k: opt(values, k, int if k in _S3_INTS else str, named=True) for k in values}
    return S3Settings(**checked), checked


# --------------------------------------------------------------------------- elasticache, lock_wait

def elasticache_from(values: dict[str, Any]) -> dict[str, Any]:
    """The ``elasticache`` table: BackupOptions keyword arguments, typed by the fields' defaults."""
    unknown(values, ELASTICACHE_FIELDS)
    defaults = {f.name: f.default for f in dataclasses.fields(BackupOptions) if f.name in ELASTICACHE_FIELDS}
    out = {key: opt(values, key, str if defaults[key] is None else type(defaults[key]), named=True)
           for key in values}
    if not out.get("export_bucket"):
        raise Problem("export_bucket: missing (the bucket, in the cluster's region, that ElastiCache exports to)")
    if out.get("poll_seconds", 1.0) <= 0:
        raise Problem(f"poll_seconds: must be a positive number of seconds, not {out['poll_seconds']!r}")
    return out


def lock_wait_from(value: Any) -> float:
    """``lock_wait``: seconds (a number) or a duration such as ``"10m"``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Problem(f"give seconds or a duration such as \"90s\", \"10m\", not {value!r}")
    if isinstance(value, str):
        try:
            return parse_wait(value, "duration")
        except SnaptoolError as exc:
            raise Problem(str(exc)) from None
    if value < 0:
        raise Problem(f"give seconds ≥ 0, not {value!r}")
    return float(value)
