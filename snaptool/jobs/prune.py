"""`snaptool prune`: retention people can predict, with the reason every snapshot is kept.

Two vocabularies, OR-ed:

* restic's keep rules (``--keep-last/-hourly/-daily/-weekly/-monthly/-yearly N``, ``--keep-within``):
  per group, the newest snapshot of each of the last N periods that have one (UTC, by the time in
  the snapshot id), and the oldest snapshot too when fewer than N periods have one;
* the managed-service rule ``--retention-days N`` (0..35): automatic snapshots younger than N days.

Keep rules apply to automatic snapshots only, unless ``include_manual``: manual snapshots are kept
until forgotten. Pinned snapshots are always kept. Incomplete snapshots are never touched (gc's
job). docs/retention.md states the rules in full.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from ..errors import SnaptoolError
from ..storage.catalog import Catalog
from ..storage.lock import DEFAULT_TTL, Lease, LockInfo, break_locks, exclusive_lock, list_locks
from ..storage.manifest import KINDS, MANIFEST, Manifest, snapshot_time
from ..storage.repository import Repository, RepositoryError

UNLIMITED = -1
MAX_RETENTION_DAYS = 35
GROUP_FIELDS = ("source", "tags")
_DURATION = re.compile(r"(\d+)([ymdh])")


class PolicyError(SnaptoolError):
    """A retention policy that is empty, contradictory or malformed."""


# --------------------------------------------------------------------------- the policy

@dataclass(frozen=True)
class Duration:
    """restic's calendar duration ``2y5m7d12h``: years, months, days, hours."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        cleaned = text.strip()
        parts = _DURATION.findall(cleaned)
        if not cleaned or "".join(n + u for n, u in parts) != cleaned:
            raise PolicyError(f"duration {text!r}: use numbers with units y, m, d, h, e.g. 7d, 36h, 2y5m")
        values: dict[str, int] = {}
        for number, unit in parts:
            if unit in values:
                raise PolicyError(f"duration {text!r}: unit {unit!r} given twice")
            values[unit] = int(number)
        return cls(values.get("y", 0), values.get("m", 0), values.get("d", 0), values.get("h", 0))

    def __str__(self) -> str:
        text = "".join(f"{n}{u}" for n, u in ((self.years, "y"), (self.months, "m"), (self.days, "d"),
                                               (self.hours, "h")) if n)
        return text or "0h"

    @property
    def zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, when: datetime) -> datetime | None:
        """``when`` minus this duration, calendar-wise as restic does (Go's AddDate: a day that does
        not exist in the target month rolls over, so 31 March minus 1m is 3 March); None when that
        is before year 1."""
        months = when.year * 12 + (when.month - 1) - self.years * 12 - self.months
        year, month = divmod(months, 12)
        try:
            first = when.replace(year=year, month=month + 1, day=1)
            return first + timedelta(days=when.day - 1 - self.days, hours=-self.hours)
        except (ValueError, OverflowError):
            return None


#: rule name → (period of a snapshot time, how the period is written in reasons)
_PERIODS: dict[str, Callable[[datetime], str]] = {
    "hourly": lambda t: t.strftime("%Y-%m-%dT%H"),
    "daily": lambda t: t.strftime("%Y-%m-%d"),
    "weekly": lambda t: "{0}-W{1:02d}".format(*t.isocalendar()),
    "monthly": lambda t: t.strftime("%Y-%m"),
    "yearly": lambda t: t.strftime("%Y"),
}
RULES = ("last", *_PERIODS)


@dataclass(frozen=True)
class Policy:
    """What to keep. Counts are N ≥ 0 or UNLIMITED (-1); 0 means the rule is off."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration | None = None
    retention_days: int | None = None  # managed-service rule, automatic snapshots only
    include_manual: bool = False  # keep rules also decide about manual snapshots

    def counts(self) -> dict[str, int]:
        return {rule: getattr(self, rule) for rule in RULES}

    @property
    def has_keep_rules(self) -> bool:
        return any(self.counts().values()) or (self.within is not None and not self.within.zero)

    def validate(self) -> None:
        for rule, n in self.counts().items():
            if n < UNLIMITED:
                raise PolicyError(f"--keep-{rule} {n}: give a number ≥ 0 or 'unlimited'")
        if self.retention_days is not None and not 0 <= self.retention_days <= MAX_RETENTION_DAYS:
            raise PolicyError(f"--retention-days {self.retention_days}: give 0 to {MAX_RETENTION_DAYS} "
                              "(use --keep-within for longer)")
        if not self.has_keep_rules and self.retention_days is None:
            raise PolicyError("no retention rule given (--keep-last/-hourly/-daily/-weekly/-monthly/-yearly N, "
                              "--keep-within D or --retention-days N): refusing to decide what to remove")
        if self.include_manual and not self.has_keep_rules:
            raise PolicyError("--include-manual needs a keep rule (--keep-*): --retention-days never "
                              "applies to manual snapshots")

    def __str__(self) -> str:
        parts = [f"{'all' if n == UNLIMITED else n} {rule}" for rule, n in self.counts().items() if n]
        text = f"keep {', '.join(parts)}" if parts else ""
        if self.within is not None and not self.within.zero:
            text += f"{' and ' if text else 'keep '}everything within {self.within} of the newest"
        if text:
            text += " of the " + ("automatic and manual" if self.include_manual else "automatic") + " snapshots"
        if self.retention_days is not None:
            text += f"{'; ' if text else ''}keep automatic snapshots younger than {self.retention_days} days"
        if not self.include_manual:
            text += "; manual snapshots are kept until forgotten"
        return text + "; pinned snapshots are always kept"


# --------------------------------------------------------------------------- deciding

@dataclass
class Decision:
    """What retention says about one complete snapshot, and what then happened to it."""

    id: str
    time: datetime
    kind: str
    group: str
    keep: bool
    reasons: list[str]
    size: int = 0
    #: "kept", "removed", "would remove", "locked" (object lock refused), "changed" (pinned or
    #: promoted meanwhile), "failed"
    outcome: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": self.kind,
                "group": self.group, "keep": self.keep, "reasons": self.reasons, "size": self.size,
                "outcome": self.outcome, "note": self.note}


def _group_of(m: Manifest, group_by: tuple[str, ...]) -> str:
    parts = []
    for name in group_by:
        if name == "source":
            parts.append(f"source {m.source.get('url', '?')}")
        else:
            parts.append(f"tags {','.join(sorted(m.tags)) or '(none)'}")
    return ", ".join(parts) or "all snapshots"


def _check_group_by(group_by: Iterable[str]) -> tuple[str, ...]:
    fields = tuple(group_by)
    for name in fields:
        if name not in GROUP_FIELDS:
            raise PolicyError(f"--group-by {name!r}: use source, tags, both (source,tags) or none")
    return fields


def plan(manifests: Iterable[Manifest], policy: Policy, *, now: datetime,
         group_by: Iterable[str] = ("source",)) -> list[Decision]:
    """Decide, without touching storage, which snapshots the policy keeps and why; newest first
    within each group, groups in name order."""
    policy.validate()
    fields = _check_group_by(group_by)
    groups: dict[str, list[Decision]] = {}
    for m in manifests:
        reasons = []
        if m.pinned:
            reasons.append("pinned")
        if m.kind == "manual" and not policy.include_manual:
            reasons.append("manual: kept until forgotten")
        if m.kind not in KINDS:
            reasons.append(f"kind {m.kind!r} unknown to this snaptool: kept")
        decision = Decision(m.id, snapshot_time(m.id), m.kind, _group_of(m, fields), False, reasons)
        groups.setdefault(decision.group, []).append(decision)
    out = []
    for name in sorted(groups):
        members = sorted(groups[name], key=lambda d: (d.time, d.id), reverse=True)
        candidates = [d for d in members
                      if d.kind == "automatic" or (d.kind == "manual" and policy.include_manual)]
        _apply_keep_rules(candidates, policy, now)
        if policy.retention_days is not None:
            for d in members:
                if d.kind == "automatic" and now - d.time < timedelta(days=policy.retention_days):
                    d.reasons.append(f"younger than {policy.retention_days} days (retention-days)")
        for d in members:
            d.keep = bool(d.reasons)
        out.extend(members)
    return out


def _apply_keep_rules(candidates: list[Decision], policy: Policy, now: datetime) -> None:
    """restic's ApplyPolicy over one group, newest first: a rule keeps a snapshot when it opens a
    period the rule has not kept yet and the rule's count is not used up; the oldest snapshot is
    kept as well while a count is left."""
    counts = policy.counts()
    last_period: dict[str, str | int | None] = dict.fromkeys(RULES)
    cutoff = None
    if policy.within is not None and not policy.within.zero and candidates:
        past = [d.time for d in candidates if d.time < now]
        cutoff = policy.within.before(max(past)) if past else None
    for nr, d in enumerate(candidates):
        if policy.within is not None and not policy.within.zero and (cutoff is None or d.time > cutoff):
            d.reasons.append(f"within {policy.within}")
        oldest = nr == len(candidates) - 1
        for rule in RULES:
            if counts[rule] == 0:
                continue
            period: str | int = nr if rule == "last" else _PERIODS[rule](d.time)
            if period != last_period[rule] or oldest:
                reason = "last snapshot" if rule == "last" else f"{rule} snapshot {period}"
                d.reasons.append(f"oldest {reason}" if period == last_period[rule] else reason)
                last_period[rule] = period
                if counts[rule] > 0:
                    counts[rule] -= 1


# --------------------------------------------------------------------------- S3 object lock

class _ObjectLocks:
    """Which stored objects S3 object lock still protects. A plain DELETE on a locked object only
    hides it behind a delete marker, so locked snapshots are found first and kept, not hidden."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    @classmethod
    def of(cls, repo: Repository) -> _ObjectLocks | None:
        """None for local repositories and buckets without object lock."""
        if repo.is_local:
            return None
        bucket = repo.root.partition("/")[0]
        try:
            config = repo.fs.call_s3("get_object_lock_configuration", Bucket=bucket)
        except OSError as exc:
            response = getattr(exc.__cause__, "response", None) or {}
            if response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                return None
            return cls(repo)  # cannot tell (e.g. not allowed to read the configuration): ask each object
        enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        return cls(repo) if enabled else None

    def hold(self, snapshot_id: str, names: list[str], now: datetime) -> str | None:
        """Why one of the snapshot's objects cannot be deleted yet, or None."""
        for name in sorted(names, key=lambda n: n != MANIFEST):
            relpath = f"snapshots/{snapshot_id}/{name}"
            bucket, _, key = self.repo.path(relpath).partition("/")
            try:
                head = self.repo.fs.call_s3("head_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise RepositoryError(f"{self.repo.where(relpath)}: {exc}") from None
            if head.get("ObjectLockLegalHoldStatus") == "ON":
                return f"object lock: legal hold on {name}"
            until = head.get("ObjectLockRetainUntilDate")
            if until is not None and until.astimezone(timezone.utc) > now:
                return (f"object lock: {head.get('ObjectLockMode', 'retention').lower()} until "
                        f"{until.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ} on {name}")
        return None


# --------------------------------------------------------------------------- pruning

@dataclass
class PruneReport:
    policy: str
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # left alone: gc's job
    stale_locks: list[LockInfo] = field(default_factory=list)
    live_locks: list[LockInfo] = field(default_factory=list)  # dry run only: would have refused
    broken_locks: list[LockInfo] = field(default_factory=list)

    def with_outcome(self, *outcomes: str) -> list[Decision]:
        return [d for d in self.decisions if d.outcome in outcomes]

    @property
    def freed(self) -> int:
        return sum(d.size for d in self.with_outcome("removed", "would remove"))

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "dry_run": self.dry_run, "decisions": [d.to_json() for d in self.decisions],
                "incomplete": self.incomplete, "bytes": self.freed,
                "stale_locks": [x.to_json() for x in self.stale_locks],
                "live_locks": [x.to_json() for x in self.live_locks],
                "broken_locks": [x.to_json() for x in self.broken_locks]}


def prune(repo: Repository, policy: Policy, *, now: datetime | None = None, dry_run: bool = False,
          group_by: Iterable[str] = ("source",), break_lock: bool = False,
          lock_ttl: float = DEFAULT_TTL, retry_lock: float = 0.0) -> PruneReport:
    """Apply ``policy``: forget every complete snapshot it does not keep, under an exclusive lock.

    ``now`` (default: the current UTC time) dates snapshots for --retention-days and is the clock
    for locks. A dry run takes no lock and deletes nothing; it reports the locks a real run would
    meet. ``break_lock`` first removes stale locks; ``retry_lock`` seconds are spent retrying while
    another holder has the repository locked. Snapshots S3 object lock still protects are
    kept and reported ("locked"); a snapshot that cannot be removed is reported ("failed") and the
    rest go on.
    """
    fixed = now
    clock = (lambda: fixed) if fixed is not None else (lambda: datetime.now(timezone.utc))
    now = clock()
    policy.validate()
    fields = _check_group_by(group_by)
    report = PruneReport(policy=str(policy), dry_run=dry_run)
    Catalog(repo).require("prune")
    if break_lock:
        report.broken_locks = ([x for x in list_locks(repo) if x.stale(now)] if dry_run
                               else break_locks(repo, clock=clock))
    lock: contextlib.AbstractContextManager[Lease | None] = (
        contextlib.nullcontext() if dry_run
        else exclusive_lock(repo, "prune", ttl=lock_ttl, clock=clock, retry_for=retry_lock))
    with lock as lease:
        if lease is None:
            broken = {x.name for x in report.broken_locks}
            current = [x for x in list_locks(repo) if x.name not in broken]
            report.stale_locks = [x for x in current if x.stale(now)]
            report.live_locks = [x for x in current if not x.stale(now)]
        else:
            report.stale_locks = lease.stale
        catalog = Catalog(repo)
        listing = catalog.list()
        report.incomplete = [e.id for e in listing if not e.complete]
        complete = {e.id: e for e in listing if e.manifest is not None}
        report.decisions = plan([e.manifest for e in complete.values() if e.manifest], policy, now=now,
                                group_by=fields)
        locks = _ObjectLocks.of(repo)
        for d in sorted(report.decisions, key=lambda d: (d.time, d.id)):  # oldest first
            d.size = sum(size for _, size in complete[d.id].files)
            if d.keep:
                d.outcome = "kept"
                continue
            if lease is not None:
                lease.check()
            _remove(catalog, d, complete[d.id].manifest, [n for n, _ in complete[d.id].files], locks, now, dry_run)
    return report


def _remove(catalog: Catalog, d: Decision, listed: Manifest | None, names: list[str],
            locks: _ObjectLocks | None, now: datetime, dry_run: bool) -> None:
    """Forget one snapshot the policy does not keep, recording the outcome on ``d``."""
    try:
        hold = locks.hold(d.id, names, now) if locks is not None else None
        if hold:
            d.outcome, d.note = "locked", hold
            return
        if dry_run:
            d.outcome = "would remove"
            return
        fresh = catalog.manifest(d.id)  # pinned or promoted since it was listed?
        if listed is not None and (fresh.pinned != listed.pinned or fresh.kind != listed.kind):
            d.outcome, d.note = "changed", "pinned or promoted while prune ran; left alone"
            return
        catalog.forget(d.id)
        d.outcome = "removed"
    except SnaptoolError as exc:  # storage refused, manifest vanished or unreadable: report, go on
        d.outcome, d.note = "failed", str(exc)
