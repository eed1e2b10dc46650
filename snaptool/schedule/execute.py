"""One run of one job: the backup, then (after a success, when the job has retention) the prune.

The prune is coordinated with the other runs of the same repository (see repos.py).

Whatever fails is logged as one line and counted, never raised: the scheduler goes on with the
other jobs and the next runs. A failed backup leaves no snapshot (backup cleans up after itself);
a failed prune leaves every snapshot it did not get to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from ..errors import SnaptoolError
from ..jobs.backup import BackupOptions, backup
from ..jobs.prune import prune
from ..storage.lock import Waiting
from ..storage.repository import Repository
from .config import Job
from .options import encryption_options
from .repos import Repositories

Clock = Callable[[], datetime]
Log = Callable[..., None]

#: For callers that run jobs without a Scheduler (which keeps its own).
_REPOSITORIES = Repositories()


@dataclass
class Outcome:
    ok: bool
    snapshot: str | None = None
    prune_ok: bool = True


def error_line(exc: BaseException) -> str:
    """Any exception as the one line a log shows (no traceback; snaptool errors say it all)."""
    if isinstance(exc, SnaptoolError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def backup_options(job: Job, lock_waiting: Waiting | None = None,
                   echo: Callable[[str], None] | None = None) -> BackupOptions:
    """The job's BackupOptions for one run (password and passphrase files are read now);
    ``lock_waiting`` hears when the backup waits for another process's repository lock, ``echo``
    the steps and warnings of an ElastiCache backup."""
    password = None
    if job.password_file:
        with open(job.password_file, encoding="utf-8") as f:
            password = f.read().strip()
    encryption = encryption_options(job.encryption) if job.encryption else None
    on_aws = job.source.startswith(("s3://", "elasticache://"))
    return BackupOptions(kind=job.kind, tags=job.tags, from_primary=job.from_primary, digest=job.digest,
                         timeout=job.timeout, tls=job.tls, username=job.user, password=password,
                         source_s3=job.s3 if on_aws else None, encryption=encryption, pinned=job.pin,
                         lock_wait=job.lock_wait, lock_waiting=lock_waiting, echo=echo, **job.elasticache)


def run_job(job: Job, *, clock: Clock, log: Log, extra: Callable[[], dict[str, Any]] | None = None,
            repositories: Repositories | None = None) -> Outcome:
    """Back up, then prune (at once, or deferred until the other backups into the repository end);
    every result is logged (``extra()`` adds fields to the finish line)."""
    repositories = repositories if repositories is not None else _REPOSITORIES
    started = time.monotonic()
    try:
        with repositories.backing_up(job.repository):
            repo = Repository.open(job.repository, s3=job.s3)
            manifest = backup(job.source, repo, backup_options(job, _waiting(job, clock, log), _echo(job, clock, log)))
    except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the scheduler
        log(clock(), "failure", job.name, stage="backup", error=error_line(exc),
            seconds=round(time.monotonic() - started, 3))
        return Outcome(ok=False, prune_ok=repositories.run_pending(job.repository))  # one it held up
    log(clock(), "finish", job.name, snapshot=manifest.id, keys=manifest.keys, bytes=manifest.size,
        seconds=manifest.seconds, **(extra() if extra else {}))
    if job.retention is not None:
        running = repositories.request_prune(job.repository, lambda: _prune(job, repo, clock, log))
        if running:
            log(clock(), "prune_deferred", job.name, repository=job.repository, backups=running)
    return Outcome(ok=True, snapshot=manifest.id, prune_ok=repositories.run_pending(job.repository))


def _echo(job: Job, clock: Clock, log: Log) -> Callable[[str], None]:
    """A backup's own lines as events: ``warning`` for what it left behind (an ElastiCache snapshot
    or export it could not delete), ``step`` for the rest."""
    def echo(line: str) -> None:
        if line.startswith("warning: "):
            log(clock(), "warning", job.name, message=line.removeprefix("warning: "))
        else:
            log(clock(), "step", job.name, message=line)
    return echo


def _waiting(job: Job, clock: Clock, log: Log) -> Waiting:
    def waiting(blocker: str, seconds: float) -> None:
        log(clock(), "lock_wait", job.name, repository=job.repository, blocker=blocker, seconds=seconds)
    return waiting


def _prune(job: Job, repo: Repository, clock: Clock, log: Log) -> bool:
    assert job.retention is not None
    try:
        report = prune(repo, job.retention.policy, now=clock(), group_by=job.retention.group_by,
                       retry_lock=job.retention.retry_lock)
    except Exception as exc:  # noqa: BLE001 - a repository locked by another process, a refused listing
        log(clock(), "prune_failure", job.name, repository=job.repository, error=error_line(exc))
        return False
    failed = report.with_outcome("failed")
    fields: dict[str, Any] = {"repository": job.repository, "removed": len(report.with_outcome("removed")),
                              "kept": len(report.decisions) - len(report.with_outcome("removed")),
                              "bytes": report.freed, "failed": len(failed)}
    if failed:
        fields["error"] = f"{failed[0].id}: {failed[0].note}"
    log(clock(), "prune", job.name, **fields)
    if failed:
        log(clock(), "prune_failure", job.name, repository=job.repository,
            error=f"{len(failed)} snapshot(s) could not be removed; first: {fields['error']}")
    return not failed
