"""The scheduler's TOML file: jobs with a source, a repository, a schedule, retention and options.

The whole file is checked before anything runs, and every problem is one line naming the job and
the field (``schedule.toml: job 'cache': schedule: …``), so a typo is found when the service is
deployed, not at 05:17 the next morning. docs/scheduling.md is the reference.

Relative paths (local sources, local repositories, ``*_file`` options, ``state``) are relative to
the config file, so the service works whatever its working directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable

from ..cloud.elasticache import parse_elasticache_url
from ..engines.address import NodeAddress, TlsOptions, redact_url
from ..errors import SnaptoolError
from ..storage.manifest import KINDS
from ..storage.repository import S3Settings
from .fields import Problem, existing, need, one_line, opt, path, strings, table, unknown
from .options import (DEFAULT_LOCK_WAIT, Retention, elasticache_from, encryption_from, lock_wait_from, retention_from,
                      s3_from)
from .timing import Schedule, ScheduleError, parse_schedule

JOB_FIELDS = ("name", "source", "repository", "schedule", "kind", "pin", "tags", "retention", "encryption", "s3",
              "elasticache", "user", "password_file", "tls", "from_primary", "digest", "timeout", "lock_wait")
SCHEDULER_FIELDS = ("state", "catch_up")
TLS_FIELDS = ("ca", "cert", "key", "insecure", "server_name")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(SnaptoolError):
    """A config file with problems; ``problems`` has one line each, the message is the first."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


@dataclass(frozen=True)
class Job:
    """One scheduled backup, and the prune after it when ``retention`` is set."""

    name: str
    source: str
    repository: str
    schedule: Schedule
    kind: str = "automatic"
    pin: bool = False  # snapshots of this job are never removed by retention
    tags: tuple[str, ...] = ()
    retention: Retention | None = None
    encryption: dict[str, Any] = field(default_factory=dict)  # EncryptionOptions fields, paths resolved
    s3: S3Settings | None = None
    s3_fields: dict[str, Any] = field(default_factory=dict)  # as written, for `schedule crontab`
    elasticache: dict[str, Any] = field(default_factory=dict)  # BackupOptions fields, elasticache:// only
    user: str | None = None
    password_file: str | None = None
    tls: TlsOptions | None = None
    from_primary: bool = False
    digest: bool = False
    timeout: float = 60.0
    lock_wait: float = DEFAULT_LOCK_WAIT  # seconds a backup waits while a prune or gc holds the lock

    @property
    def source_key(self) -> str:
        """What "the same source" means for overlaps: host:port of a node, the real path of a file."""
        return source_key(self.source)

    @property
    def source_shown(self) -> str:
        """The source for logs: never a password."""
        return redact_url(self.source)


@dataclass(frozen=True)
class Config:
    path: str
    jobs: tuple[Job, ...]
    state: str | None = None  # remembers each job's last run, so runs missed while down are known
    catch_up: bool = True  # at start, run once a job whose runs were missed while the scheduler was down

    def select(self, names: tuple[str, ...] | list[str]) -> Config:
        """Only the named jobs (all when ``names`` is empty); ConfigError for an unknown name."""
        known = {j.name for j in self.jobs}
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError([f"{self.path}: no job named {n!r} (jobs: {', '.join(sorted(known))})"
                               for n in missing])
        if not names:
            return self
        return Config(self.path, tuple(j for j in self.jobs if j.name in names), self.state, self.catch_up)


def source_key(source: str) -> str:
    if source.startswith(("redis://", "rediss://")):
        try:
            return NodeAddress.parse(source, password="").endpoint.lower()
        except SnaptoolError:
            return source
    if "://" not in source or source.startswith("file://"):
        return os.path.realpath(source.removeprefix("file://"))
    return source.split("?", 1)[0]


def load_config(path: str) -> Config:
    """Read and check the whole file; ConfigError lists every problem found."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: str) -> Config:
    """The config from parsed TOML (``path`` names the file in messages and anchors relative paths)."""
    problems: list[str] = []
    base = os.path.dirname(os.path.abspath(path))
    for key in data:
        if key not in ("scheduler", "defaults", "job"):
            problems.append(f"{path}: unknown table {key!r} (tables: [scheduler], [defaults], [[job]])")
    state, catch_up, defaults = None, True, {}
    try:
        state, catch_up = _scheduler(table(data.get("scheduler", {})), base)
    except Problem as exc:
        problems.append(f"{path}: scheduler: {exc}")
    try:
        defaults = table(data.get("defaults", {}))
        if "name" in defaults:
            raise Problem("name: every job names itself")
        unknown(defaults, JOB_FIELDS)
    except Problem as exc:
        problems.append(f"{path}: defaults: {exc}")
        defaults = {}
    raw_jobs = data.get("job", [])
    if not isinstance(raw_jobs, list) or not raw_jobs:
        problems.append(f"{path}: no jobs: declare each one as a [[job]] table")
        raw_jobs = []
    jobs: list[Job] = []
    for number, raw in enumerate(raw_jobs, 1):
        if not isinstance(raw, dict):
            problems.append(f"{path}: job #{number}: must be a [[job]] table")
            continue
        job, job_problems = _job({**defaults, **raw}, number, base, own_s3="s3" in raw)
        problems.extend(f"{path}: {p}" for p in job_problems)
        if job is not None:
            if any(j.name == job.name for j in jobs):
                problems.append(f"{path}: job {job.name!r}: name: used by another job")
            jobs.append(job)
    problems.extend(f"{path}: {p}" for p in _shared_repositories(jobs))
    if problems:
        raise ConfigError(problems)
    return Config(path, tuple(jobs), state, catch_up)


def _scheduler(values: dict[str, Any], base: str) -> tuple[str | None, bool]:
    unknown(values, SCHEDULER_FIELDS)
    state = opt(values, "state", str, named=True)
    catch_up = opt(values, "catch_up", bool, named=True)
    return (path(state, base) if state else None), (True if catch_up is None else catch_up)


def _job(raw: dict[str, Any], number: int, base: str, own_s3: bool = True) -> tuple[Job | None, list[str]]:
    """One job, or its problems (each ``job 'NAME': field: problem``). ``own_s3``: the job sets s3
    itself (not through [defaults])."""
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        return None, [f"job #{number}: name: give each job a name of letters, digits, '.', '_' and '-' "
                      f"(up to 64), not {name!r}"]
    who = f"job {name!r}"
    problems = [f"{who}: unknown field {k!r} (fields: {', '.join(JOB_FIELDS)})" for k in raw if k not in JOB_FIELDS]
    readers: dict[str, Callable[[], Any]] = {
        "source": lambda: _source(need(raw, "source", str), base),
        "repository": lambda: _repository(need(raw, "repository", str), base),
        "schedule": lambda: _schedule(need(raw, "schedule", str), name),
        "kind": lambda: _kind(opt(raw, "kind", str) or "automatic"),
        "pin": lambda: bool(opt(raw, "pin", bool)),
        "tags": lambda: tuple(strings(raw.get("tags", []), allow_one=True)),
        "retention": lambda: retention_from(table(raw["retention"])) if "retention" in raw else None,
        "encryption": lambda: encryption_from(table(raw["encryption"]), base) if "encryption" in raw else {},
        "s3": lambda: s3_from(table(raw["s3"])) if "s3" in raw else (None, {}),
        "elasticache": lambda: elasticache_from(table(raw["elasticache"])) if "elasticache" in raw else {},
        "user": lambda: opt(raw, "user", str),
        "password_file": lambda: existing(opt(raw, "password_file", str), base),
        "tls": lambda: _tls(table(raw["tls"]), base) if "tls" in raw else None,
        "from_primary": lambda: bool(opt(raw, "from_primary", bool)),
        "digest": lambda: bool(opt(raw, "digest", bool)),
        "timeout": lambda: _timeout(raw.get("timeout", 60.0)),
        "lock_wait": lambda: lock_wait_from(raw.get("lock_wait", DEFAULT_LOCK_WAIT)),
    }
    values: dict[str, Any] = {"name": name}
    for key, read in readers.items():
        try:
            values[key] = read()
        except (Problem, SnaptoolError) as exc:
            problems.append(f"{who}: {key}: {one_line(exc)}")
    if not problems:
        problems += _elasticache_problems(who, values["source"], "elasticache" in raw)
    if problems:
        return None, problems
    values["s3"], values["s3_fields"] = values["s3"]
    if values["s3"] is not None and not _uses_s3(values["repository"], values["source"]):
        if own_s3:
            return None, [f"{who}: s3: S3 settings given, but neither the repository nor the source is on AWS "
                          "(s3://, elasticache://)"]
        values["s3"], values["s3_fields"] = None, {}  # from [defaults]: for the jobs that use S3
    return Job(**values), []


def _uses_s3(repository: str, source: str) -> bool:
    return repository.startswith("s3://") or source.startswith(("s3://", "elasticache://"))


def _elasticache_problems(who: str, source: str, has_table: bool) -> list[str]:
    """An elasticache:// source needs the table (its export bucket); other sources may not have one."""
    if source.startswith("elasticache://") and not has_table:
        return [f"{who}: elasticache: missing: an elasticache:// source needs elasticache = "
                "{ export_bucket = \"…\" }, the bucket ElastiCache exports to"]
    if has_table and not source.startswith("elasticache://"):
        return [f"{who}: elasticache: given, but the source is not elasticache://"]
    return []


def _shared_repositories(jobs: list[Job]) -> list[str]:
    """Prune works on a whole repository, so jobs sharing one must agree on retention."""
    problems, first = [], {}
    for job in jobs:
        other = first.setdefault(job.repository, job)
        if other is not job and job.retention != other.retention:
            problems.append(f"job {job.name!r}: retention: differs from job {other.name!r}, which uses the same "
                            f"repository {job.repository}; prune applies to the whole repository, so jobs sharing "
                            "one need the same retention (or none), or another repository or prefix")
    return problems


def _source(value: str, base: str) -> str:
    if value.startswith(("redis://", "rediss://")):
        NodeAddress.parse(value)  # EngineError: a one-line reason, the password redacted
        return value
    if value.startswith("elasticache://"):
        parse_elasticache_url(value)  # ElastiCacheError: a one-line reason
        return value
    if value.startswith("file://"):
        return path(value.removeprefix("file://"), base)
    if "://" in value:
        if value.split("://", 1)[0] not in ("s3", "http", "https"):
            raise Problem(f"{redact_url(value)!r}: give redis://, rediss://, elasticache://, a file path, file://, "
                          "s3:// or https://")
        return value
    return path(value, base)


def _repository(value: str, base: str) -> str:
    if value.startswith("s3://"):
        if not value[len("s3://"):].strip("/"):
            raise Problem(f"{value!r}: no bucket named")
        return value.rstrip("/")
    if value.startswith("file://"):
        value = value.removeprefix("file://")
    elif "://" in value:
        raise Problem(f"{value!r}: a repository is a local directory or s3://bucket/prefix")
    return path(value, base)


def _schedule(value: str, job: str) -> Schedule:
    try:
        return parse_schedule(value, job)
    except ScheduleError as exc:
        raise Problem(f"{exc}; write a cron expression like '30 2 * * *' or a daily UTC window like "
                      "'05:00-06:00'") from None


def _kind(value: str) -> str:
    if value not in KINDS:
        raise Problem(f"must be {' or '.join(KINDS)}, not {value!r}")
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise Problem(f"must be a positive number of seconds, not {value!r}")
    return float(value)


def _tls(values: dict[str, Any], base: str) -> TlsOptions:
    unknown(values, TLS_FIELDS)

    def file(key: str) -> str | None:
        return existing(opt(values, key, str, named=True), base, key=key)

    return TlsOptions(ca_file=file("ca"), cert_file=file("cert"), key_file=file("key"),
                      insecure=bool(opt(values, "insecure", bool, named=True)),
                      server_name=opt(values, "server_name", str, named=True))
