"""Retention: prune's decisions against a plain statement of the rules over random histories, the
managed-service rule, pinned and promoted snapshots, dry runs, locks, S3 object lock, and the
commands as users run them — on local repositories and on S3 (moto's server over HTTP)."""

from __future__ import annotations

import calendar
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snaptool.jobs.label import promote, set_pinned
from snaptool.jobs.prune import UNLIMITED, Duration, Policy, PolicyError, plan, prune
from snaptool.storage.catalog import Catalog, file_path, shard_file_name
from snaptool.storage.lock import LockedError, acquire, list_locks, shared_lock
from snaptool.storage.manifest import DbStats, FileEntry, Manifest
from snaptool.storage.repository import Repository

SOURCES = ("redis://10.0.0.5:6379", "redis://10.0.0.6:6379")
BASE = datetime(2025, 12, 1, tzinfo=timezone.utc)  # histories cross two new years and a 53-week ISO year
NOW = datetime(2026, 11, 26, 7, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- building histories

def snap(when: datetime, n: int, kind: str = "automatic", *, pinned: bool = False, source: int = 0,
         tags: tuple[str, ...] = ()) -> Manifest:
    sid = f"{when:%Y%m%dT%H%M%SZ}-node-{source}-{n:06x}"
    files = [FileEntry(name=shard_file_name(sid, 1), size=1000, sha256="0" * 64, rdb_version=11,
                       magic="REDIS0011", crc64=None, databases={0: DbStats(10, 0)})]
    return Manifest(id=sid, created=f"{when:%Y-%m-%dT%H:%M:%SZ}", kind=kind,
                    source={"url": SOURCES[source], "type": "node"}, files=files, tags=list(tags), pinned=pinned)


def store(repo: Repository, manifests: list[Manifest]) -> None:
    """Data file first, manifest last, as a backup does."""
    catalog = Catalog(repo)
    for m in manifests:
        repo.write_bytes(file_path(m.id, m.files[0].name), b"x" * 10)
        catalog.commit(m)


def every_object(repo: Repository) -> dict[str, int]:
    return {path: info["size"] for path, info in repo.fs.find(repo.root, detail=True).items()}


@pytest.fixture(params=["local", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    if request.param == "local":
        return Repository.open(str(tmp_path / "repo"))
    return Repository.open(f"s3://{request.getfixturevalue('s3_bucket')}/backups")


# --------------------------------------------------------------------------- the rules, stated plainly

PERIOD_OF = {
    "last": lambda m, t: m.id,  # every snapshot is a period of its own
    "hourly": lambda m, t: (t.year, t.month, t.day, t.hour),
    "daily": lambda m, t: (t.year, t.month, t.day),
    "weekly": lambda m, t: t.isocalendar()[:2],  # ISO year and week, Monday to Sunday
    "monthly": lambda m, t: (t.year, t.month),
    "yearly": lambda m, t: t.year,
}


def time_of(m: Manifest) -> datetime:
    return datetime.strptime(m.id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def minus(newest: datetime, within: Duration) -> datetime:
    """``newest`` minus ``within`` as restic computes it (Go's AddDate, then the hours): step back
    the years and months keeping the day of the month; a day the month lacks counts on past its
    end (31 March - 1m: 31 February is 3 March, 29 February 2028 - 1y: 1 March 2027); then step
    back the days and hours."""
    year, month = newest.year - within.years, newest.month - within.months
    while month < 1:
        year, month = year - 1, month + 12
    length = calendar.monthrange(year, month)[1]
    moved = newest.replace(year=year, month=month, day=min(newest.day, length))
    return moved + timedelta(days=max(0, newest.day - length) - within.days, hours=-within.hours)


def expected(manifests: list[Manifest], policy: Policy, now: datetime,
             group_by: tuple[str, ...]) -> dict[str, set[str]]:
    """For every snapshot, the names of the rules that keep it (empty: removed).

    - pinned snapshots are kept; manual ones are kept unless the keep rules include them;
    - the keep rules look at automatic snapshots (and manual ones with include_manual), per group;
    - keep-<period> N keeps the newest snapshot of each of the N most recent periods that have a
      snapshot (all of them for unlimited), and the oldest snapshot too when fewer than N periods
      have one (always for unlimited); "newest" orders by time, then id;
    - keep-within D (D not zero) keeps every snapshot later than (the newest one before now) minus D,
      calendar-wise (see minus); if no snapshot is before now, all of them;
    - retention-days N keeps automatic snapshots less than N days older than now.
    """
    why: dict[str, set[str]] = {m.id: set() for m in manifests}
    groups: dict[tuple, list[Manifest]] = {}
    for m in manifests:
        if m.pinned:
            why[m.id].add("pinned")
        if m.kind == "manual" and not policy.include_manual:
            why[m.id].add("manual")
        key = tuple(m.source["url"] if f == "source" else frozenset(m.tags) for f in group_by)
        groups.setdefault(key, []).append(m)
    for members in groups.values():
        candidates = sorted((m for m in members if m.kind == "automatic" or policy.include_manual),
                            key=lambda m: (time_of(m), m.id), reverse=True)
        for rule, period_of in PERIOD_OF.items():
            n = getattr(policy, rule)
            if n == 0 or not candidates:
                continue
            newest_of: dict[object, Manifest] = {}
            for m in candidates:
                newest_of.setdefault(period_of(m, time_of(m)), m)
            periods = list(newest_of)  # most recent first
            for period in periods if n == UNLIMITED else periods[:n]:
                why[newest_of[period].id].add(rule)
            if n == UNLIMITED or len(periods) < n:
                why[candidates[-1].id].add(rule)
        if policy.within is not None and policy.within != Duration() and candidates:
            past = [time_of(m) for m in candidates if time_of(m) < now]
            cutoff = minus(max(past), policy.within) if past else None
            for m in candidates:
                if cutoff is None or time_of(m) > cutoff:
                    why[m.id].add("within")
        for m in members:
            if policy.retention_days is not None and m.kind == "automatic" and \
                    now - time_of(m) < timedelta(days=policy.retention_days):
                why[m.id].add("retention")
    return why


def rule_names(reasons: list[str]) -> set[str]:
    """The rule behind each reason prune gives."""
    names = set()
    for reason in reasons:
        words = reason.removeprefix("oldest ").split()
        if reason == "pinned":
            names.add("pinned")
        elif reason.startswith("manual:"):
            names.add("manual")
        elif reason.startswith("within "):
            names.add("within")
        elif reason.endswith("(retention-days)"):
            names.add("retention")
        elif words[:2] == ["last", "snapshot"]:
            names.add("last")
        else:
            assert words[1] == "snapshot", reason
            names.add(words[0])
    return names


# --------------------------------------------------------------------------- random histories

counts = st.sampled_from([0, 0, 0, 1, 2, 3, 5, 7, UNLIMITED])
durations = st.builds(Duration, years=st.sampled_from([0, 0, 0, 1, 2]),
                      months=st.sampled_from([0, 0, 1, 2, 3, 11, 12, 13]),
                      days=st.sampled_from([0, 0, 0, 1, 2, 7, 30, 90]), hours=st.sampled_from([0, 0, 1, 11, 12, 36]))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    within = draw(st.none() | durations)
    policy = Policy(last=draw(counts), hourly=draw(counts), daily=draw(counts), weekly=draw(counts),
                    monthly=draw(counts), yearly=draw(counts), within=within,
                    retention_days=draw(st.none() | st.integers(0, 35)), include_manual=draw(st.booleans()))
    if not policy.has_keep_rules:
        policy = Policy(**{**policy.__dict__, "include_manual": False, "within": None,
                           "retention_days": policy.retention_days if policy.retention_days is not None else 7})
    return policy


clock_hours = st.sampled_from([0, 1, 12, 13, 23])
clock_minutes = st.sampled_from([0, 0, 30, 59])


def drawn_snapshot(draw: st.DrawFn, when: datetime, n: int) -> Manifest:
    """A snapshot at ``when`` of a random kind, source and tags, now and then pinned."""
    return snap(when, n, draw(st.sampled_from(["automatic", "automatic", "automatic", "manual"])),
                pinned=draw(st.integers(0, 9)) == 0, source=draw(st.integers(0, 1)),
                tags=tuple(draw(st.sets(st.sampled_from(["nightly", "weekly"]), max_size=1))))


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> list[Manifest]:
    span = draw(st.sampled_from([3, 40, 400]))  # dense histories share periods, sparse ones skip them
    return [drawn_snapshot(draw, BASE + timedelta(days=draw(st.integers(0, span)), hours=draw(clock_hours),
                                                  minutes=draw(clock_minutes)), n)
            for n in range(draw(st.integers(0, max_size)))]


nows = st.builds(lambda d, h: BASE + timedelta(days=d, hours=h), st.integers(0, 430),
                 st.sampled_from([0, 12]))  # some histories reach past now; some snapshots are exactly N days old

#: days where years and months subtracted by the calendar roll over: month ends, leap days, the day after
EDGES = [datetime(*day, tzinfo=timezone.utc) for day in
         [(2028, 2, 29), (2028, 3, 1), (2028, 3, 31), (2027, 3, 31), (2028, 1, 31), (2026, 12, 31),
          (2026, 5, 31), (2029, 2, 28), (2028, 4, 30)]]


@st.composite
def month_end_histories(draw: st.DrawFn, max_size: int = 40,
                        reaches: st.SearchStrategy[Duration] = durations) -> tuple[list[Manifest], datetime]:
    """The newest snapshot on an edge day; each other one within three days of the end of the month
    a duration drawn from ``reaches`` lands in, counted back from the newest, then shifted back by
    its days and hours: where the cutoff falls, whether the day rolls over or not. And a time to
    prune at, sometimes before the newest snapshot."""
    newest = draw(st.sampled_from(EDGES)) + timedelta(hours=draw(clock_hours))
    history = [drawn_snapshot(draw, newest, 0)]
    for n in range(1, draw(st.integers(1, max_size))):
        reach = draw(reaches)
        year, month = divmod(newest.year * 12 + newest.month - 12 * reach.years - reach.months, 12)
        when = datetime(year, month + 1, 1, tzinfo=timezone.utc) + timedelta(  # the first of the month after
            days=draw(st.integers(-3, 2)) - reach.days, hours=draw(clock_hours) - reach.hours,
            minutes=draw(clock_minutes))
        if when <= newest:
            history.append(drawn_snapshot(draw, when, n))
    return history, newest + timedelta(days=draw(st.integers(-2, 40)), hours=draw(st.sampled_from([0, 12])))


def scenarios(max_size: int = 40) -> st.SearchStrategy[tuple[list[Manifest], datetime]]:
    """A history and the time prune runs at."""
    return st.tuples(histories(max_size), nows) | month_end_histories(max_size)


group_bys = st.sampled_from([("source",), (), ("tags",), ("source", "tags")])


def assert_decisions_follow_the_rules(history: list[Manifest], now: datetime, policy: Policy,
                                      group_by: tuple[str, ...]) -> None:
    want = expected(history, policy, now, group_by)
    decisions = plan(history, policy, now=now, group_by=group_by)
    assert sorted(d.id for d in decisions) == sorted(want)
    for d in decisions:
        assert rule_names(d.reasons) == want[d.id], (d.id, d.reasons)
        assert d.keep == bool(want[d.id])
        for reason in d.reasons:  # a period reason names the snapshot's own period
            if reason.removeprefix("oldest ").startswith("daily snapshot"):
                assert reason.endswith(f"{d.time:%Y-%m-%d}")
            if reason.removeprefix("oldest ").startswith("weekly snapshot"):
                assert reason.endswith("{0}-W{1:02d}".format(*d.time.isocalendar()))


@settings(max_examples=500, deadline=None)
@given(scenario=scenarios(), policy=policies(), group_by=group_bys)
def test_decisions_follow_the_plain_statement_of_the_rules(scenario: tuple[list[Manifest], datetime],
                                                           policy: Policy, group_by: tuple[str, ...]) -> None:
    assert_decisions_follow_the_rules(*scenario, policy, group_by)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), within=durations.filter(lambda d: d != Duration()), include_manual=st.booleans(),
       group_by=group_bys)
def test_keep_within_around_month_ends_and_leap_days(data: st.DataObject, within: Duration, include_manual: bool,
                                                     group_by: tuple[str, ...]) -> None:
    """Most snapshots where this policy's own cutoff falls."""
    history, now = data.draw(month_end_histories(reaches=st.just(within) | durations))
    assert_decisions_follow_the_rules(history, now, Policy(within=within, include_manual=include_manual), group_by)


@settings(max_examples=500, deadline=None)
@given(newest=st.sampled_from(EDGES) | st.datetimes(datetime(2024, 1, 1), datetime(2030, 12, 31),
                                                    timezones=st.just(timezone.utc)), within=durations)
def test_keep_within_cutoff_is_calendar_arithmetic(newest: datetime, within: Duration) -> None:
    assert within.before(newest) == minus(newest, within)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(max_size=15), policy=policies(), dry_run=st.booleans())
def test_prune_removes_exactly_what_the_rules_do_not_keep(scenario: tuple[list[Manifest], datetime],
                                                          policy: Policy, dry_run: bool) -> None:
    history, now = scenario
    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository.open(tmp)
        store(repo, history)
        repo.write_bytes("snapshots/20200101T000000Z-node-0-abcdef/x.rdb", b"interrupted")  # incomplete
        before = every_object(repo)
        report = prune(repo, policy, now=now, dry_run=dry_run)
        kept = {sid for sid, why in expected(history, policy, now, ("source",)).items() if why}
        remaining = {m.id for m in Catalog(repo).complete()}
        if dry_run:
            assert every_object(repo) == before
            assert {d.id for d in report.with_outcome("would remove")} == {m.id for m in history} - kept
        else:
            assert remaining == kept
            assert {d.id for d in report.with_outcome("removed")} == {m.id for m in history} - kept
        assert report.incomplete == ["20200101T000000Z-node-0-abcdef"]
        assert repo.exists("snapshots/20200101T000000Z-node-0-abcdef/x.rdb")
        assert list_locks(repo) == []


# --------------------------------------------------------------------------- rules by example

def test_durations_follow_restic() -> None:
    assert Duration.parse("2y5m") == Duration(years=2, months=5)
    assert Duration.parse("1y2m3d4h") == Duration(1, 2, 3, 4) and str(Duration(1, 2, 3, 4)) == "1y2m3d4h"
    assert Duration.parse("36h") == Duration(hours=36)
    for bad in ("", "7", "d", "7w", "7d 2h", "-1d", "1d1d", "7D"):
        with pytest.raises(PolicyError, match="duration"):
            Duration.parse(bad)
    march_31 = datetime(2026, 3, 31, tzinfo=timezone.utc)
    assert Duration(months=1).before(march_31) == datetime(2026, 3, 3, tzinfo=timezone.utc)  # 31 Feb rolls over
    assert Duration(years=1).before(datetime(2028, 2, 29, tzinfo=timezone.utc)) == \
        datetime(2027, 3, 1, tzinfo=timezone.utc)
    assert Duration(days=1, hours=12).before(march_31) == datetime(2026, 3, 29, 12, tzinfo=timezone.utc)
    assert Duration(years=5000).before(march_31) is None  # before year 1: keeps everything


def test_keep_within_is_relative_to_the_newest_and_strict() -> None:
    newest = datetime(2026, 3, 31, tzinfo=timezone.utc)
    history = [snap(newest, 0), snap(datetime(2026, 3, 3, 0, 0, 1, tzinfo=timezone.utc), 1),
               snap(datetime(2026, 3, 3, tzinfo=timezone.utc), 2)]
    decisions = plan(history, Policy(within=Duration(months=1)), now=NOW)  # now is months later: irrelevant
    assert [(d.keep, d.reasons) for d in decisions] == [(True, ["within 1m"]), (True, ["within 1m"]), (False, [])]


def test_restic_oldest_rule_and_reasons() -> None:
    day = datetime(2026, 11, 20, tzinfo=timezone.utc)
    history = [snap(day + timedelta(hours=h), h) for h in (1, 5, 9)] + [snap(day - timedelta(days=1), 9)]
    decisions = plan(history, Policy(daily=3), now=NOW)
    assert [(d.id[:16], d.reasons) for d in decisions] == [
        ("20261120T090000Z", ["daily snapshot 2026-11-20"]),
        ("20261120T050000Z", []),
        ("20261120T010000Z", []),
        ("20261119T000000Z", ["daily snapshot 2026-11-19"])]
    decisions = plan(history[:3], Policy(daily=3), now=NOW)  # one day only: the oldest is kept as well
    assert [d.reasons for d in decisions] == [["daily snapshot 2026-11-20"], [], ["oldest daily snapshot 2026-11-20"]]


def test_managed_service_retention_days() -> None:
    history = [snap(NOW - timedelta(days=i, hours=5), i, "manual" if i % 10 == 0 else "automatic",
                    pinned=i == 33) for i in range(40)]
    by_id = {m.id: m for m in history}

    def kept(policy: Policy) -> list[int]:
        return sorted(int(d.id[-6:], 16) for d in plan(history, policy, now=NOW) if d.keep)

    manual = [0, 10, 20, 30]
    assert kept(Policy(retention_days=7)) == sorted({*range(7), *manual, 33})
    assert kept(Policy(retention_days=0)) == sorted([*manual, 33])  # 0: no automatic snapshot is kept
    # weeks W48 (i 1..3 automatic), W47 (i 4..10), W46 (i 11..17): the newest automatic of each
    assert kept(Policy(retention_days=7, weekly=3)) == sorted({*range(7), *manual, 33, 11})  # rules are OR-ed
    assert kept(Policy(last=1, include_manual=True)) == [0, 33]  # manual ones take part, pinned stays
    reasons = {d.id: d.reasons for d in plan(history, Policy(retention_days=7), now=NOW)}
    assert reasons[history[3].id] == ["younger than 7 days (retention-days)"]
    assert reasons[history[10].id] == ["manual: kept until forgotten"]
    assert reasons[history[33].id] == ["pinned"]
    assert by_id[history[33].id].kind == "automatic"


def test_a_kind_this_version_does_not_know_is_kept() -> None:
    old = snap(NOW - timedelta(days=90), 0, "hourly-export")
    (decision,) = plan([old], Policy(last=1, include_manual=True, retention_days=0), now=NOW)
    assert decision.keep and decision.reasons == ["kind 'hourly-export' unknown to this snaptool: kept"]


def test_policies_that_cannot_be_applied_are_refused() -> None:
    for policy, message in [(Policy(), "no retention rule"), (Policy(daily=0, last=0), "no retention rule"),
                            (Policy(retention_days=36), "0 to 35"), (Policy(retention_days=-1), "0 to 35"),
                            (Policy(retention_days=3, include_manual=True), "--include-manual needs"),
                            (Policy(daily=-2), "--keep-daily")]:
        with pytest.raises(PolicyError, match=message):
            plan([], policy, now=NOW)
    with pytest.raises(PolicyError, match="group-by"):
        plan([], Policy(last=1), now=NOW, group_by=("host",))


# --------------------------------------------------------------------------- on real repositories

def test_prune_local_and_s3_with_pinned_promoted_and_dry_run(repo: Repository) -> None:
    history = [snap(NOW - timedelta(days=i), i) for i in range(6)]
    history[4].pinned = True
    store(repo, history)
    before = every_object(repo)
    dry = prune(repo, Policy(retention_days=2), now=NOW, dry_run=True)
    assert every_object(repo) == before  # a dry run deletes nothing
    assert [d.outcome for d in dry.decisions] == ["kept", "kept", "would remove", "would remove", "kept",
                                                  "would remove"]
    promoted, changed = promote(repo, history[3].id)
    assert changed and promoted.kind == "manual" and not promote(repo, history[3].id)[1]
    report = prune(repo, Policy(retention_days=2), now=NOW)
    assert [d.outcome for d in report.decisions] == ["kept", "kept", "removed", "kept", "kept", "removed"]
    assert report.decisions[3].reasons == ["manual: kept until forgotten"]
    assert report.decisions[4].reasons == ["pinned"]
    assert report.freed > 0
    assert {m.id for m in Catalog(repo).complete()} == {history[i].id for i in (0, 1, 3, 4)}
    assert not repo.exists(f"snapshots/{history[2].id}")  # data files go too
    set_pinned(repo, history[4].id, False)
    prune(repo, Policy(retention_days=2), now=NOW)
    assert {m.id for m in Catalog(repo).complete()} == {history[i].id for i in (0, 1, 3)}
    assert list_locks(repo) == []


def test_prune_refuses_while_another_holder_has_the_repository(repo: Repository) -> None:
    store(repo, [snap(NOW - timedelta(days=i), i) for i in range(3)])
    with shared_lock(repo, "backup", renew=False):
        with pytest.raises(LockedError, match=r"backup \(pid \d+ on .*\), expires"):
            prune(repo, Policy(last=1))
        dry = prune(repo, Policy(last=1), dry_run=True)  # a dry run takes no lock, and says why a real one would fail
        assert [x.purpose for x in dry.live_locks] == ["backup"]
        assert len(Catalog(repo).complete()) == 3
    assert len(prune(repo, Policy(last=1)).with_outcome("removed")) == 2


def test_a_stale_lock_is_reported_and_break_lock_clears_it(repo: Repository) -> None:
    store(repo, [snap(NOW - timedelta(days=i), i) for i in range(3)])
    acquire(repo, "shared", "backup", ttl=60, clock=lambda: NOW - timedelta(hours=1))  # its holder died
    report = prune(repo, Policy(last=2), now=NOW)
    assert [x.purpose for x in report.stale_locks] == ["backup"] and len(report.with_outcome("removed")) == 1
    assert len(list_locks(repo)) == 1  # reported, still there
    report = prune(repo, Policy(last=2), now=NOW, break_lock=True)
    assert [x.purpose for x in report.broken_locks] == ["backup"] and report.stale_locks == []
    assert list_locks(repo) == []


def test_s3_object_lock_keeps_a_snapshot_and_says_so(s3_env: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="locked-backups", ObjectLockEnabledForBucket=True)
    repo = Repository.open("s3://locked-backups/redis")
    history = [snap(NOW - timedelta(days=i), i) for i in range(4)]
    store(repo, history)
    s3.put_object_retention(Bucket="locked-backups", Key=f"redis/snapshots/{history[1].id}/manifest.json",
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime(2100, 1, 1)})
    s3.put_object_legal_hold(Bucket="locked-backups", Key=f"redis/snapshots/{history[2].id}/{history[2].files[0].name}",
                             LegalHold={"Status": "ON"})
    for dry_run in (True, False):
        report = prune(repo, Policy(last=1), now=NOW, dry_run=dry_run)
        outcomes = {d.id: (d.outcome, d.note) for d in report.decisions}
        assert outcomes[history[1].id] == ("locked",
                                           "object lock: governance until 2100-01-01T00:00:00Z on manifest.json")
        assert outcomes[history[2].id] == ("locked", f"object lock: legal hold on {history[2].files[0].name}")
        assert outcomes[history[3].id][0] == ("would remove" if dry_run else "removed")
    assert [m.id for m in Catalog(repo).complete()] == [history[i].id for i in (2, 1, 0)]
    versions = s3.list_object_versions(Bucket="locked-backups", Prefix="redis/snapshots/")
    hidden = {marker["Key"].split("/")[2] for marker in versions.get("DeleteMarkers", [])}
    assert hidden == {history[3].id}  # no delete marker hides a locked object: only the removed snapshot has them


def test_a_snapshot_that_cannot_be_deleted_is_reported_and_the_rest_go_on(tmp_path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr not found")
    repo = Repository.open(str(tmp_path / "repo"))
    history = [snap(NOW - timedelta(days=i), i) for i in range(3)]
    store(repo, history)
    stuck = tmp_path / "repo" / "snapshots" / history[1].id / "manifest.json"
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode != 0:
        pytest.skip("immutable files are not supported here")
    try:
        report = prune(repo, Policy(last=1), now=NOW)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    outcomes = {d.id: d for d in report.decisions}
    assert outcomes[history[1].id].outcome == "failed" and "permission denied" in outcomes[history[1].id].note
    assert outcomes[history[2].id].outcome == "removed"


# --------------------------------------------------------------------------- the commands

# main() for real, in a child process
_MAIN = "import sys; from snaptool.cli.main import main; sys.exit(main(sys.argv[1:]))"


def snaptool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("snaptool: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_prune_and_gc_refuse_a_repository_that_does_not_exist(tmp_path: Path) -> None:
    """A mistyped --repo in a cron line fails loudly and creates nothing."""
    missing = tmp_path / "no-such-repo"
    for args in (["prune", "--keep-last", "1"], ["prune", "--keep-last", "1", "--dry-run"], ["gc", "--apply"], ["gc"]):
        one_line_error(snaptool(*args, "--repo", str(missing)), f"no snaptool repository at {missing}", "--repo")
        assert not missing.exists()


def test_prune_from_the_command_line(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    history = [snap(now - timedelta(days=i, hours=1), i, "manual" if i == 5 else "automatic") for i in range(30)]
    store(Repository.open(repo), history)
    dry = snaptool("prune", "--repo", repo, "--keep-daily", "7", "--keep-weekly", "4", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout
    assert "policy: keep 7 daily, 4 weekly of the automatic snapshots; manual snapshots are kept" in out
    assert f"  keep           {history[0].id}  automatic daily snapshot {history[0].id[:4]}-" in out
    assert f"  keep           {history[5].id}  manual    manual: kept until forgotten" in out
    assert f"  would remove   {history[29].id}  automatic" in out
    assert "nothing was removed (--dry-run)" in out
    assert len(Catalog(Repository.open(repo)).complete()) == 30
    ran = snaptool("prune", "--repo", repo, "--keep-daily", "7", "--keep-weekly", "4", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    removed = [d["id"] for d in report["decisions"] if d["outcome"] == "removed"]
    assert removed and len(Catalog(Repository.open(repo)).complete()) == 30 - len(removed)


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    for args, fragment in [(["--keep-within", "7w"], "duration '7w'"), (["--retention-days", "36"], "0 to 35"),
                           (["--retention-days", "x"], "whole number"), ([], "no retention rule"),
                           (["--keep-daily", "many"], "--keep-daily 'many'"),
                           (["--keep-last", "1", "--group-by", "host"], "--group-by 'host'")]:
        one_line_error(snaptool("prune", "--repo", repo, *args), fragment)
    one_line_error(snaptool("snapshots", "promote", "nope", "--repo", repo), "no complete snapshot 'nope'")


def test_a_locked_repository_is_one_line_naming_holder_and_expiry(tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    store(repo, [snap(NOW, 0)])
    with shared_lock(repo, "backup", renew=False) as lease:
        line = one_line_error(snaptool("prune", "--repo", repo.url, "--keep-last", "1"),
                              f"backup (pid {lease.info.pid} on {lease.info.host})", "expires 20")
        assert "try again later" in line
        listed = snaptool("locks", "--repo", repo.url)
        assert f"shared lock locks/{lease.info.name}: backup" in listed.stdout


def test_prune_reports_a_stale_lock_and_break_lock_clears_it_from_the_command_line(tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    store(repo, [snap(NOW - timedelta(days=i), i) for i in range(2)])
    dead = acquire(repo, "shared", "backup", ttl=1, clock=lambda: NOW - timedelta(days=1))  # its holder died
    reported = snaptool("prune", "--repo", repo.url, "--keep-last", "1")
    assert reported.returncode == 0, reported.stderr
    assert f"stale shared lock locks/{dead.info.name}: backup" in reported.stderr and "--break-lock" in reported.stderr
    assert [x.name for x in list_locks(repo)] == [dead.info.name] and len(Catalog(repo).complete()) == 1
    broke = snaptool("prune", "--repo", repo.url, "--keep-last", "1", "--break-lock")
    assert broke.returncode == 0 and f"broke stale shared lock locks/{dead.info.name}" in broke.stderr
    assert list_locks(repo) == []


def test_promote_pin_unpin_and_locks_from_the_command_line(tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    m = snap(NOW - timedelta(days=3), 0)
    store(repo, [m])
    assert snaptool("snapshots", "promote", m.id[:20], "--repo", repo.url).stdout.strip() == \
        f"{m.id}: now manual (kept until forgotten)"
    assert "already manual, nothing changed" in snaptool("snapshots", "promote", m.id, "--repo", repo.url).stdout
    pinned = json.loads(snaptool("snapshots", "pin", m.id, "--repo", repo.url, "--json").stdout)
    assert pinned == {"id": m.id, "kind": "manual", "pinned": True, "changed": True}
    assert Catalog(repo).manifest(m.id).pinned
    assert "unpinned" in snaptool("snapshots", "unpin", m.id, "--repo", repo.url).stdout
    assert not Catalog(repo).manifest(m.id).pinned
    acquire(repo, "shared", "backup", ttl=1, clock=lambda: NOW - timedelta(days=1))  # stale
    assert "stale shared lock" in snaptool("locks", "--repo", repo.url).stdout
    broke = snaptool("locks", "--repo", repo.url, "--break")
    assert "broke stale lock" in broke.stdout and list_locks(repo) == []
