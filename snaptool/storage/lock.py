"""The repository lock: expiring leases under ``locks/`` that keep prune from racing a backup.

Every holder writes its own lease object ``locks/<kind>-<random>.json`` (holder host and pid,
purpose, created, expires) with a create-only write — ``If-None-Match: *`` on S3, a hard link of a
complete temporary file on local disk — so a lease is never overwritten and never seen
half-written. Then it lists ``locks/``: if a live lease it conflicts with exists, it removes its own
and refuses. Two holders that race have both written before either lists, so at least one of them
sees the other (S3 listings are strongly consistent): both may back off, never both hold.

``shared`` leases (backups, relabelling) only conflict with ``exclusive`` ones (prune), which
conflict with every other lease. A lease lives ``ttl`` seconds and is renewed by a thread while the
work runs (a conditional ``If-Match`` rewrite on S3, so a renewal notices a lease that was broken),
and removed on exit. A holder that dies leaves a lease that expires by itself: an expired (stale)
lease no longer blocks anyone; it is reported, and ``break_locks`` removes it.

Expiry times are written by the holder's clock and read by everyone else's: clocks must agree to
well within the ttl (renewal every ttl/3 leaves two thirds of it as margin).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from .repository import Repository, RepositoryError
from .s3 import describe_error, is_boto_error

LOCKS = "locks"
KINDS = ("shared", "exclusive")
#: Seconds a lease lives without renewal; renewed every third of it while the work runs.
DEFAULT_TTL = 600.0
_NAME = re.compile(r"^(shared|exclusive)-[0-9a-f]{16}\.json$")
#: Pauses between tries while waiting for a lock: doubling from the first to the longest.
_FIRST_PAUSE, _LONGEST_PAUSE = 0.1, 10.0
_WAIT = re.compile(r"(\d+(?:\.\d+)?)([hms]?)")
_WAIT_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}

Clock = Callable[[], datetime]
#: waiting(blocker, seconds): another holder (``blocker`` describes its lease) has the lock; we wait
#: up to ``seconds`` for it.
Waiting = Callable[[str, float], None]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class LockedError(RepositoryError):
    """Another holder has a live lease that conflicts with the one asked for (``blocker`` names it)."""

    def __init__(self, message: str, blocker: str = "") -> None:
        super().__init__(message)
        self.blocker = blocker


class LockLostError(RepositoryError):
    """Our lease expired or was removed (broken) while the work ran: stop before changing more."""


@dataclass(frozen=True)
class LockInfo:
    """One lease object as read from ``locks/``."""

    name: str
    kind: str
    purpose: str = "?"
    host: str = "?"
    pid: int = 0
    created: datetime | None = None
    expires: datetime | None = None
    problem: str | None = None  # set when the object cannot be read as a lease

    def stale(self, now: datetime) -> bool:
        """Expired, unreadable, or held by a process of this host that no longer exists (a backup
        killed by cron's timeout or SIGKILL): it blocks nobody and ``break_locks`` may remove it."""
        return self.expires is None or now >= self.expires or self.holder_gone()

    def holder_gone(self) -> bool:
        if self.host != socket.gethostname() or self.pid <= 0 or self.pid == os.getpid():
            return False  # another machine's process cannot be checked from here
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, run by another user
        return False

    @property
    def holder(self) -> str:
        return f"{self.purpose} (pid {self.pid} on {self.host})"

    def describe(self, now: datetime) -> str:
        if self.problem:
            return f"{LOCKS}/{self.name}: unreadable ({self.problem})"
        if self.holder_gone():
            when = "its process is gone"
        else:
            when = f"expired at {_iso(self.expires)}" if self.stale(now) else f"expires {_iso(self.expires)}"
        return f"{self.kind} lock {LOCKS}/{self.name}: {self.holder}, {when}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "purpose": self.purpose, "host": self.host, "pid": self.pid,
                "created": _iso(self.created) if self.created else None,
                "expires": _iso(self.expires) if self.expires else None, "problem": self.problem}


def _encode(info: LockInfo) -> bytes:
    return (json.dumps({"format": 1, **info.to_json()}, indent=2) + "\n").encode()


def _decode(name: str, data: bytes) -> LockInfo:
    kind = name.split("-", 1)[0]
    try:
        raw = json.loads(data)
        return LockInfo(name=name, kind=kind, purpose=str(raw["purpose"]), host=str(raw["host"]), pid=int(raw["pid"]),
                        created=_parse_time(raw["created"]), expires=_parse_time(raw["expires"]))
    except (ValueError, KeyError, TypeError) as exc:
        return LockInfo(name=name, kind=kind, problem=f"{type(exc).__name__}: {exc}")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


# --------------------------------------------------------------------------- storage primitives

def _s3_location(repo: Repository, relpath: str) -> tuple[str, str]:
    bucket, _, key = repo.path(relpath).partition("/")
    return bucket, key


def _failure(repo: Repository, relpath: str, exc: Exception) -> RepositoryError:
    return RepositoryError(f"{repo.where(relpath)}: {exc}")


def write_new(repo: Repository, relpath: str, data: bytes) -> str:
    """Create ``relpath`` only if it does not exist (FileExistsError otherwise), complete or not at
    all; returns a token for ``_rewrite`` (the ETag on S3, the content locally)."""
    if repo.is_local:
        path = repo.local_path(relpath)
        assert path is not None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            _link_or_create(tmp, path, data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return data.decode()
    bucket, key = _s3_location(repo, relpath)
    try:
        return repo.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")["ETag"]
    except FileExistsError:
        raise
    except OSError as exc:
        raise _failure(repo, relpath, exc) from None
    except Exception as exc:  # noqa: BLE001 - an endpoint that cannot be reached, and the like
        if not is_boto_error(exc):
            raise
        raise RepositoryError(f"{repo.where(relpath)}: {describe_error(exc)}") from None


def _link_or_create(tmp: str, path: str, data: bytes) -> None:
    """A hard link publishes a complete file atomically and fails if the name exists; where links
    are not supported, an O_EXCL create does the same minus atomicity of the content."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _rewrite(repo: Repository, relpath: str, data: bytes, token: str) -> str:
    """Replace ``relpath`` only if it is still what we wrote (``token``); LockLostError otherwise."""
    if repo.is_local:
        path = repo.local_path(relpath)
        assert path is not None
        try:
            with open(path, "rb") as f:
                current = f.read().decode(errors="replace")
        except FileNotFoundError:
            raise LockLostError(f"{repo.where(relpath)}: our lock was removed") from None
        if current != token:
            raise LockLostError(f"{repo.where(relpath)}: our lock was replaced")
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return data.decode()
    bucket, key = _s3_location(repo, relpath)
    try:
        return repo.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=token)["ETag"]
    except FileNotFoundError:
        raise LockLostError(f"{repo.where(relpath)}: our lock was removed") from None
    except OSError as exc:
        if _s3_code(exc) == "PreconditionFailed":
            raise LockLostError(f"{repo.where(relpath)}: our lock was replaced") from None
        raise _failure(repo, relpath, exc) from None


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs error, when there is one."""
    response = getattr(exc.__cause__, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _read(repo: Repository, relpath: str) -> bytes | None:
    """The object's bytes, or None when it vanished since it was listed."""
    try:
        return repo.read_bytes(relpath)
    except RepositoryError as exc:
        if "not found" in str(exc):
            return None
        raise


def _delete(repo: Repository, relpath: str) -> None:
    try:
        repo.fs.rm(repo.path(relpath))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _failure(repo, relpath, exc) from None


# --------------------------------------------------------------------------- reading and breaking

def list_locks(repo: Repository) -> list[LockInfo]:
    """Every lease under ``locks/`` (other names there are ignored)."""
    out = []
    for name, kind, _ in repo.listdir(LOCKS):
        if kind != "file" or not _NAME.match(name):
            continue
        data = _read(repo, f"{LOCKS}/{name}")
        if data is not None:
            out.append(_decode(name, data))
    return out


def break_locks(repo: Repository, *, everything: bool = False, clock: Clock | None = None) -> list[LockInfo]:
    """Remove stale leases (or, with ``everything``, live ones too: their holders notice at their next
    renewal and stop); returns what was removed. Each lease is re-read just before removal, so one
    renewed in the meantime is left alone."""
    clock = clock or utcnow
    removed = []
    for info in list_locks(repo):
        if not everything and not info.stale(clock()):
            continue
        relpath = f"{LOCKS}/{info.name}"
        data = _read(repo, relpath)
        if data is None:
            continue
        again = _decode(info.name, data)
        if not everything and not again.stale(clock()):
            continue
        _delete(repo, relpath)
        removed.append(again)
    return removed


# --------------------------------------------------------------------------- holding

@dataclass
class Lease:
    """A lease we hold. ``check()`` before each irreversible step: it raises once the lease expired
    without renewal or was broken."""

    repo: Repository
    info: LockInfo
    token: str
    ttl: float
    clock: Clock
    stale: list[LockInfo] = field(default_factory=list)  # expired leases of others, seen when acquiring
    lost: str | None = None
    renewals: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def relpath(self) -> str:
        return f"{LOCKS}/{self.info.name}"

    def renew(self) -> None:
        """Push the expiry ``ttl`` past now; a lease that was broken or replaced is marked lost."""
        with self._guard:
            if self.lost:
                raise LockLostError(self.lost)
            now = self.clock()
            info = dataclasses.replace(self.info, expires=now + timedelta(seconds=self.ttl))
            try:
                self.token = _rewrite(self.repo, self.relpath, _encode(info), self.token)
            except LockLostError as exc:
                self.lost = str(exc)
                raise
            self.info = info
            self.renewals += 1

    def check(self) -> None:
        if self.lost:
            raise LockLostError(self.lost)
        if self.info.expires is not None and self.clock() >= self.info.expires:
            raise LockLostError(f"{self.repo.where(self.relpath)}: our lock expired at {_iso(self.info.expires)} "
                                "before it could be renewed")

    def start_renewing(self, every: float | None = None) -> None:
        """Renew from a background thread every ``every`` seconds (default ttl/3) until released."""
        interval = every if every is not None else self.ttl / 3

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except LockLostError:
                    return
                except Exception:  # noqa: BLE001 - a failed call is retried; check() sees the expiry
                    continue

        self._thread = threading.Thread(target=loop, name=f"lock-renew-{self.info.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and remove the lease (unless it was already broken)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._guard:
            if not self.lost:
                _delete(self.repo, self.relpath)
                self.lost = "released"


def acquire(repo: Repository, kind: str, purpose: str, *, ttl: float = DEFAULT_TTL,
            clock: Clock | None = None, retry_for: float = 0.0, waiting: Waiting | None = None) -> Lease:
    """Write our lease, then refuse (removing it again) if a conflicting live lease exists; with
    ``retry_for`` seconds, try again until then after pauses that grow (jittered, so racing holders
    that both backed off rarely collide twice, and a long wait costs few requests). ``waiting`` is
    told once, at the first refusal, so a caller can say what it waits for."""
    if kind not in KINDS:
        raise ValueError(f"lock kind {kind!r}: use one of {KINDS}")
    deadline = time.monotonic() + retry_for
    pause = _FIRST_PAUSE
    while True:
        try:
            return _try_acquire(repo, kind, purpose, ttl, clock or utcnow)
        except LockedError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                if retry_for > 0:
                    raise LockedError(f"{exc} (still locked after waiting {format_wait(retry_for)})",
                                      exc.blocker) from None
                raise
            if waiting is not None and pause == _FIRST_PAUSE:  # the first refusal
                waiting(exc.blocker, retry_for)
            time.sleep(min(left, random.uniform(pause / 2, pause)))
            pause = min(pause * 2, _LONGEST_PAUSE)


def parse_wait(text: str, what: str = "lock wait") -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1h30m`` (how long to wait for a lock)."""
    cleaned = text.strip().lower()
    parts = _WAIT.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned or len({u for _, u in parts}) < len(parts):
        raise RepositoryError(f"{what} {text!r}: give seconds or a duration such as 90s, 10m, 1h30m")
    return sum(float(n) * _WAIT_UNITS[u] for n, u in parts)


def format_wait(seconds: float) -> str:
    """``600`` → ``10m``, ``5400`` → ``1h30m``, ``2.5`` → ``2.5s``: as parse_wait reads it."""
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


def _try_acquire(repo: Repository, kind: str, purpose: str, ttl: float, clock: Clock) -> Lease:
    now = clock()
    info = LockInfo(name=f"{kind}-{secrets.token_hex(8)}.json", kind=kind, purpose=purpose,
                    host=socket.gethostname(), pid=os.getpid(), created=now, expires=now + timedelta(seconds=ttl))
    lease = Lease(repo, info, write_new(repo, f"{LOCKS}/{info.name}", _encode(info)), ttl, clock)
    try:
        others = [other for other in list_locks(repo) if other.name != info.name]
        now = clock()
        live = [o for o in others if not o.stale(now) and (kind == "exclusive" or o.kind == "exclusive")]
        if live:
            more = f" (and {len(live) - 1} more)" if len(live) > 1 else ""
            blocker = f"{live[0].describe(now)}{more}"
            raise LockedError(f"repository {repo.url} is locked: {blocker}; {purpose} needs "
                              f"a{'n' if kind == 'exclusive' else ''} {kind} lock, try again later", blocker)
        lease.stale = [o for o in others if o.stale(now)]
    except BaseException:
        with contextlib.suppress(Exception):
            lease.release()
        raise
    return lease


@contextlib.contextmanager
def _held(repo: Repository, kind: str, purpose: str, ttl: float, clock: Clock | None, renew: bool,
          retry_for: float, waiting: Waiting | None) -> Iterator[Lease]:
    lease = acquire(repo, kind, purpose, ttl=ttl, clock=clock, retry_for=retry_for, waiting=waiting)
    try:
        if renew:
            lease.start_renewing()
        yield lease
    finally:
        # a lease that cannot be removed (storage unreachable) expires by itself: the work's own
        # outcome matters more than the clean-up
        with contextlib.suppress(Exception):
            lease.release()


def exclusive_lock(repo: Repository, purpose: str, *, ttl: float = DEFAULT_TTL, clock: Clock | None = None,
                   renew: bool = True, retry_for: float = 0.0,
                   waiting: Waiting | None = None) -> contextlib.AbstractContextManager[Lease]:
    """``with exclusive_lock(repo, "prune"):`` — no other lease may be live (prune, and anything that
    deletes snapshots)."""
    return _held(repo, "exclusive", purpose, ttl, clock, renew, retry_for, waiting)


def shared_lock(repo: Repository, purpose: str, *, ttl: float = DEFAULT_TTL, clock: Clock | None = None,
                renew: bool = True, retry_for: float = 0.0,
                waiting: Waiting | None = None) -> contextlib.AbstractContextManager[Lease]:
    """``with shared_lock(repo, "backup"):`` — many may hold one at once; none while an exclusive
    lease is live."""
    return _held(repo, "shared", purpose, ttl, clock, renew, retry_for, waiting)
