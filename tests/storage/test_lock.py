"""The repository lock on local disk and on S3 (moto's server over HTTP): conditional create, shared
and exclusive leases, races between holders, stale leases, breaking, renewal and loss."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

import pytest

from snaptool.errors import SnaptoolError
from snaptool.storage.lock import (LOCKS, LockedError, LockLostError, acquire, break_locks, exclusive_lock,
                                   format_wait, list_locks, parse_wait, shared_lock, write_new)
from snaptool.storage.repository import Repository

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=timezone.utc)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["local", "s3"])
def repo_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "repo")
    return f"s3://{request.getfixturevalue('s3_bucket')}/some/prefix"


@pytest.fixture
def repo(repo_url: str) -> Repository:
    return Repository.open(repo_url)


def test_create_only_write_never_overwrites(repo: Repository) -> None:
    write_new(repo, f"{LOCKS}/x.json", b"first")
    with pytest.raises(FileExistsError):
        write_new(repo, f"{LOCKS}/x.json", b"second")  # If-None-Match: * on S3, a hard link locally
    assert repo.read_bytes(f"{LOCKS}/x.json") == b"first"


def test_exclusive_excludes_everyone_shared_excludes_exclusive(repo: Repository) -> None:
    clock = FakeClock()
    with exclusive_lock(repo, "prune", ttl=600, clock=clock, renew=False):
        for kind in ("exclusive", "shared"):
            with pytest.raises(LockedError) as refused:
                acquire(repo, kind, "backup", clock=clock)
            message = str(refused.value)
            assert "prune (pid" in message and "expires 2026-11-26T07:10:00Z" in message and "\n" not in message
        assert len(list_locks(repo)) == 1  # the refused ones removed their own lease
    assert list_locks(repo) == []
    with shared_lock(repo, "backup", clock=clock, renew=False), shared_lock(repo, "backup", clock=clock, renew=False):
        assert [x.kind for x in list_locks(repo)] == ["shared", "shared"]
        with pytest.raises(LockedError, match="backup"):
            acquire(repo, "exclusive", "prune", clock=clock)
    assert list_locks(repo) == []


@pytest.mark.parametrize("kinds", [("exclusive",) * 4, ("exclusive", "shared", "shared", "exclusive")])
def test_racing_holders_never_hold_conflicting_leases(repo_url: str, kinds: tuple[str, ...]) -> None:
    """Every holder writes, then lists: of any two conflicting holders at least one sees the other.
    (Both may back off; that is the price of needing nothing but create-only writes and listings.)"""
    rounds = 12 if repo_url.startswith("s3://") else 40
    repos = [Repository.open(repo_url) for _ in kinds]  # separate clients, as separate processes would have
    start, done = threading.Barrier(len(kinds)), threading.Barrier(len(kinds))
    held: list[list[str]] = []
    errors: list[BaseException] = []

    def contend(i: int, outcome: list[str]) -> None:
        try:
            start.wait()
            try:
                lease = acquire(repos[i], kinds[i], f"holder-{i}")
            except LockedError:
                lease = None
            else:
                outcome.append(kinds[i])
            done.wait()  # everyone has tried while the winners still hold
            if lease is not None:
                lease.release()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            start.abort()
            done.abort()

    for _ in range(rounds):
        outcome: list[str] = []
        threads = [threading.Thread(target=contend, args=(i, outcome)) for i in range(len(kinds))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        held.append(outcome)
        assert list_locks(repos[0]) == []
    for outcome in held:
        assert outcome.count("exclusive") <= 1
        assert not ("exclusive" in outcome and "shared" in outcome), outcome


def test_retry_waits_for_the_holder_to_release(repo: Repository) -> None:
    holder = acquire(repo, "exclusive", "prune")
    with pytest.raises(LockedError):
        acquire(repo, "shared", "backup", retry_for=0.3)  # tries a few times, then gives up
    threading.Timer(0.2, holder.release).start()
    with shared_lock(repo, "backup", retry_for=120, renew=False):
        assert [x.purpose for x in list_locks(repo)] == ["backup"]
    assert list_locks(repo) == []


def test_a_waiting_holder_is_told_once_and_gets_the_lock_once_it_is_released(repo: Repository) -> None:
    holder = acquire(repo, "exclusive", "prune")
    told: list[tuple[str, float]] = []
    released = threading.Event()

    def release_when_told() -> None:
        while not told:  # the holder lets go only once the waiter has said it waits
            released.wait(0.01)
        holder.release()
        released.set()

    threading.Thread(target=release_when_told, daemon=True).start()
    with shared_lock(repo, "backup", retry_for=300, renew=False, waiting=lambda *a: told.append(a)) as lease:
        assert released.is_set()
        assert [x.name for x in list_locks(repo)] == [lease.info.name]
    assert told == [(f"exclusive lock {LOCKS}/{holder.info.name}: prune (pid {os.getpid()} on {holder.info.host}), "
                     f"expires {holder.info.expires:%Y-%m-%dT%H:%M:%SZ}", 300)]
    assert list_locks(repo) == []


def test_a_wait_that_runs_out_names_the_holder_and_how_long_it_waited(repo: Repository) -> None:
    holder = acquire(repo, "exclusive", "gc")
    told: list[str] = []
    with pytest.raises(LockedError) as refused:
        acquire(repo, "shared", "backup", retry_for=0.5, waiting=lambda blocker, _: told.append(blocker))
    message = str(refused.value)
    assert f"gc (pid {os.getpid()}" in message and message.endswith("(still locked after waiting 0.5s)")
    assert len(told) == 1 and refused.value.blocker == told[0]
    assert [x.name for x in list_locks(repo)] == [holder.info.name]  # the waiter left nothing behind
    holder.release()


@pytest.mark.parametrize("text, seconds", [("0", 0), ("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400),
                                           ("1.5h", 5400), (" 2M ", 120), ("2.5", 2.5)])
def test_wait_durations(text: str, seconds: float) -> None:
    assert parse_wait(text) == seconds
    assert parse_wait(format_wait(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5x", "1h1h", "-1", "m", "10 m", "1d"])
def test_bad_wait_durations_are_one_line(text: str) -> None:
    with pytest.raises(SnaptoolError, match=r"^--lock-wait .*: give seconds or a duration such as 90s, 10m, 1h30m$"):
        parse_wait(text, "--lock-wait")


def test_a_stale_lease_is_reported_not_obeyed_and_break_lock_clears_it(repo: Repository) -> None:
    clock = FakeClock()
    dead = acquire(repo, "shared", "backup", ttl=600, clock=clock)  # its process "dies": never renewed
    clock.advance(601)
    (stale,) = list_locks(repo)
    assert stale.stale(clock()) and "expired at 2026-11-26T07:10:00Z" in stale.describe(clock())
    with exclusive_lock(repo, "prune", clock=clock, renew=False) as lease:
        assert [x.name for x in lease.stale] == [stale.name]
    live = acquire(repo, "shared", "backup", clock=clock)
    assert [x.name for x in break_locks(repo, clock=clock)] == [stale.name]  # the live one stays
    assert [x.name for x in list_locks(repo)] == [live.info.name]
    with pytest.raises(LockLostError, match="removed"):
        dead.renew()  # the dead holder, were it to wake up, learns it lost the lock
    with pytest.raises(LockLostError):
        dead.check()
    live.release()
    assert list_locks(repo) == []


def test_renewal_extends_the_lease_and_notices_a_broken_one(repo: Repository) -> None:
    clock = FakeClock()
    lease = acquire(repo, "exclusive", "prune", ttl=60, clock=clock)
    clock.advance(50)
    lease.renew()
    clock.advance(50)  # past the first expiry, within the renewed one
    lease.check()
    (info,) = list_locks(repo)
    assert info.expires == T0 + timedelta(seconds=110) and not info.stale(clock())
    with pytest.raises(LockedError):
        acquire(repo, "shared", "backup", clock=clock)
    clock.advance(61)
    with pytest.raises(LockLostError, match="expired"):
        lease.check()
    assert break_locks(repo, everything=True)
    with pytest.raises(LockLostError, match="removed"):
        lease.renew()
    lease.release()  # nothing left to remove: no error


def test_a_lease_is_renewed_by_its_thread_and_released_on_exit(repo: Repository) -> None:
    clock = FakeClock()
    with exclusive_lock(repo, "prune", ttl=60, clock=clock, renew=False) as lease:
        lease.start_renewing(every=0.01)
        ticked = threading.Event()
        deadline = datetime.now(timezone.utc) + timedelta(seconds=60)
        while lease.renewals < 3 and datetime.now(timezone.utc) < deadline:
            clock.advance(1)
            ticked.wait(0.01)
        assert lease.renewals >= 3
        assert list_locks(repo)[0].expires > T0 + timedelta(seconds=60)
    assert list_locks(repo) == []


def test_the_body_error_wins_and_the_lease_is_still_removed(repo: Repository) -> None:
    with pytest.raises(RuntimeError, match="work failed"):
        with shared_lock(repo, "backup"):
            raise RuntimeError("work failed")
    assert list_locks(repo) == []


def test_an_unreadable_lease_is_stale_and_can_be_broken(repo: Repository) -> None:
    repo.write_bytes(f"{LOCKS}/exclusive-0123456789abcdef.json", b"{not json")
    repo.write_bytes(f"{LOCKS}/README", b"not a lease: ignored")
    (junk,) = list_locks(repo)
    assert junk.problem and junk.stale(datetime.now(timezone.utc))
    with shared_lock(repo, "backup", renew=False) as lease:
        assert [x.name for x in lease.stale] == [junk.name]
    assert [x.name for x in break_locks(repo)] == [junk.name]
    assert [name for name, _, _ in repo.listdir(LOCKS)] == ["README"]


def test_a_lease_of_a_dead_process_on_this_host_is_stale() -> None:
    import socket
    import subprocess
    from datetime import datetime, timedelta, timezone

    from snaptool.storage.lock import LockInfo

    proc = subprocess.Popen(["true"])
    proc.wait()
    now = datetime.now(timezone.utc)
    dead = LockInfo("shared-x.json", "shared", "backup", socket.gethostname(), proc.pid, now, now + timedelta(hours=1))
    alive = LockInfo("shared-y.json", "shared", "backup", socket.gethostname(), os.getppid(), now, now + timedelta(hours=1))
    elsewhere = LockInfo("shared-z.json", "shared", "backup", "another-host", proc.pid, now, now + timedelta(hours=1))
    assert dead.stale(now) and "process is gone" in dead.describe(now)
    assert not alive.stale(now) and not elsewhere.stale(now)
