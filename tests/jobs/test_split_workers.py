"""A split of several inputs whose worker processes die, are interrupted, fill their disk or
show their progress.

The split runs as the command a user types, in its own process group. One input is a named pipe
fed by the test: its worker reads part of a real shard file and then waits for more, so the test
acts while the split is surely running, not after a race with it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from snaptool.engines.discovery import find_engines
from snaptool.engines.server import EngineServer
from snaptool.jobs.split import split
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.slots import SlotLayout
from disk_support import limit_file_size

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a split uses worker processes on 2+ cores")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    """Two shard files of a snapshot that a real engine saved (strings, lists, hashes in db 0)."""
    engine = next(e for e in find_engines() if e.target_name == "redis-7.0")
    tmp = tmp_path_factory.mktemp("split-workers")
    with EngineServer(engine) as server:
        pipe = server.client().pipeline(transaction=False)
        for i in range(10000):  # ~3 MB per shard: the half a worker is fed outgrows the reader's 1 MB chunk
            pipe.set(f"string:{i}", os.urandom(600))  # incompressible: the shards outgrow a 1 MiB disk
            pipe.rpush(f"list:{i % 50}", i)
            pipe.hset(f"hash:{i % 50}", str(i), "y" * 20)
        pipe.execute()
        (tmp / "dump.rdb").write_bytes(server.save().read_bytes())
    report = split([tmp / "dump.rdb"], tmp / "two", SlotLayout.even(2))
    return [tmp / "two" / s.file for s in report.shards]


class StalledInput:
    """A named pipe that gives the split's header check the file's magic, then gives the worker
    that routes it the first half of the file and nothing more until :meth:`finish` (the rest)
    or :meth:`release` (nothing: the file stays cut)."""

    def __init__(self, path: Path, source: Path, split_pid: "list[int]") -> None:
        self.path, self.data, self.split_pid = path, source.read_bytes(), split_pid
        os.mkfifo(path)
        self.fed = threading.Event()
        self._go = threading.Event()
        self._complete = False
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        with open(self.path, "wb") as f:  # the parent's header check
            f.write(self.data[:9])
        # workers exist only once every header was read and closed: the next reader is a worker
        while not self.split_pid or not _children(self.split_pid[0]):
            if self._go.wait(0.01):
                return
        half = len(self.data) // 2
        try:
            with open(self.path, "wb") as f:
                f.write(self.data[:half])
                f.flush()
                self.fed.set()
                self._go.wait(120)
                if self._complete:
                    f.write(self.data[half:])
        except BrokenPipeError:  # the worker is gone
            pass

    def finish(self) -> None:
        """Feed the rest of the file and end it."""
        self._complete = True
        self._go.set()
        self._thread.join(30)

    def release(self) -> None:
        """End the feeding thread, wherever it waits (to open, to write or to be released)."""
        self._go.set()
        reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # lets a writer waiting to open go on
        try:
            deadline = time.monotonic() + 10
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:
                    os.read(reader, 1 << 16)
                except BlockingIOError:
                    time.sleep(0.01)
        finally:
            os.close(reader)
        self._thread.join(10)


def _children(pid: int) -> list[int]:
    """The split's worker processes (not multiprocessing's resource tracker, should one run)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(p) for p in f.read().split()]
        return [p for p in pids if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
    except OSError:
        return []


def _split(pipe: StalledInput, other: Path, out: Path, spool: Path, pid: list[int],
           stderr: int = subprocess.PIPE, *options: str) -> subprocess.Popen:
    """``snaptool split PIPE OTHER -o OUT --shards 3`` in a process group of its own, its
    temporary files in ``spool``; its pid goes into ``pid`` for the pipe's feeder."""
    proc = subprocess.Popen([sys.executable, "-m", "snaptool", "split", str(pipe.path), str(other),
                             "-o", str(out), "--shards", "3", "--no-validate", *options],
                            stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(spool), "COLUMNS": "160"})
    pid.append(proc.pid)
    return proc


@pytest.fixture
def stalled_split(shards, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, StalledInput, Path, Path]]:
    """``snaptool split PIPE SHARD -o out --shards 3`` running with its worker stuck on PIPE,
    its temporary files in a directory of its own."""
    spool = tmp_path / "spool"
    spool.mkdir()
    pid: list[int] = []
    pipe = StalledInput(tmp_path / "stalled.rdb", shards[0], pid)
    out = tmp_path / "out"
    proc = _split(pipe, shards[1], out, spool, pid)
    try:
        assert pipe.fed.wait(60), "the worker never opened its input"
        time.sleep(0.2)  # the worker has read what there was and waits for more
        yield proc, pipe, out, spool
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        pipe.release()


def _ended(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


def test_a_killed_worker_is_one_line_and_leaves_nothing(stalled_split) -> None:
    proc, pipe, out, spool = stalled_split
    workers = _children(proc.pid)
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    code, err = _ended(proc)
    assert code == 1 and err.strip().splitlines() == [
        f"snaptool: error: a worker process of the split died (killed, or out of memory?); nothing was "
        f"written to {out}"], err
    assert not out.exists() and not list(spool.iterdir())


def test_ctrl_c_ends_the_split_quietly_and_leaves_nothing(stalled_split) -> None:
    proc, pipe, out, spool = stalled_split
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends every process of the job
    code, err = _ended(proc)
    assert code == 130 and err.strip().splitlines() == ["snaptool: interrupted"], err
    assert not out.exists() and not list(spool.iterdir())


@pytest.mark.parametrize("disk", ["file size limit", "full tmpfs"])
def test_a_full_temporary_directory_is_one_line_naming_it(disk: str, shards, request, tmp_path: Path) -> None:
    """A 1 MiB tmpfs as TMPDIR (a real ENOSPC, where the tests may mount one), and a file-size
    limit, which makes the kernel refuse the workers' writes with EFBIG through the same path."""
    if disk == "full tmpfs":
        spool, limit, error = request.getfixturevalue("full_disk"), None, "No space left on device"
        assert sum(p.stat().st_size for p in shards) > 1 << 20
    else:
        spool, limit, error = tmp_path / "spool", min(p.stat().st_size for p in shards) // 8, "File too large"
        spool.mkdir()
    result = subprocess.run([sys.executable, "-m", "snaptool", "split", *map(str, shards), "-o",
                             str(tmp_path / "out"), "--shards", "3", "--no-validate"],
                            capture_output=True, preexec_fn=limit and limit_file_size(limit),
                            env={**os.environ, "TMPDIR": str(spool)}, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"into the temporary directory {spool}" in err and error in err and "TMPDIR" in err, err
    assert not (tmp_path / "out").exists() and not list(spool.iterdir())


def test_a_full_output_directory_is_one_line_naming_it(shards, full_disk: Path, tmp_path: Path) -> None:
    """The workers' bodies fit in TMPDIR but the shard files do not fit in DIR (a 1 MiB tmpfs)."""
    spool, out = tmp_path / "spool", full_disk / "out"
    spool.mkdir()
    result = subprocess.run([sys.executable, "-m", "snaptool", "split", *map(str, shards), "-o", str(out),
                             "--shards", "3", "--no-validate"],
                            capture_output=True, env={**os.environ, "TMPDIR": str(spool)}, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.strip().splitlines() == [
        f"snaptool: error: writing the shard files in {out}: No space left on device"], err
    assert not out.exists() and not list(spool.iterdir()) and not list(full_disk.iterdir())


def test_the_progress_bar_follows_a_worker_through_its_input(shards, tmp_path: Path) -> None:
    """On a terminal the bar counts keys as the workers route them: while one input is cut at
    half, it shows more keys than the other (whole) input holds. Fed the rest, the split ends
    with the same files as a split of the two regular files."""
    spool = tmp_path / "spool"
    spool.mkdir()
    pid: list[int] = []
    pipe = StalledInput(tmp_path / "slow.rdb", shards[0], pid)
    master, terminal = pty.openpty()
    proc = _split(pipe, shards[1], tmp_path / "out", spool, pid, terminal, "--json")
    os.close(terminal)
    drawn = bytearray()
    reader = threading.Thread(target=_read_all, args=(master, drawn), daemon=True)
    reader.start()
    other_keys = sum(1 for _ in RdbReader.open(shards[1]).records())
    try:
        assert pipe.fed.wait(60), "the worker never opened its input"
        deadline = time.monotonic() + 30
        while max(_keys_drawn(drawn), default=0) <= other_keys:
            assert time.monotonic() < deadline and proc.poll() is None, bytes(drawn)[-500:]
            time.sleep(0.1)
        pipe.finish()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
        pipe.release()
        reader.join(10)
        os.close(master)
    report = json.loads(out)
    assert proc.returncode == 0 and report["keys_in"] >= max(_keys_drawn(drawn)) > other_keys
    expected = split(shards, tmp_path / "expected", SlotLayout.even(3))
    for shard in expected.shards:
        assert (tmp_path / "out" / shard.file).read_bytes() == (tmp_path / "expected" / shard.file).read_bytes()


def _read_all(fd: int, into: bytearray) -> None:
    """Everything drawn on the terminal, until the program closes it."""
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except OSError:  # EIO: no process holds the terminal any more
            return
        if not data:
            return
        into += data


def _keys_drawn(drawn: bytearray) -> list[int]:
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(drawn)).decode("utf-8", "replace")
    return [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) keys", text)]


def test_many_shards_under_a_low_open_file_limit(shards, tmp_path: Path) -> None:
    """Each worker keeps a body file per shard open while it routes: 250 shards (a layout holds
    at most 255) under a soft limit of 128 open files, the hard limit above it, still split, into
    the files a split in this process writes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * 250 + 64:
        pytest.skip(f"the hard limit of open files here is {hard}")

    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))

    result = subprocess.run([sys.executable, "-m", "snaptool", "split", *map(str, shards), "-o",
                             str(tmp_path / "out"), "--shards", "250", "--no-validate", "--json"],
                            capture_output=True, preexec_fn=low, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    expected = split(shards, tmp_path / "expected", SlotLayout.even(250), parallel=False)
    assert json.loads(result.stdout)["keys_out"] == expected.keys_out
    for shard in expected.shards:
        assert (tmp_path / "out" / shard.file).read_bytes() == (tmp_path / "expected" / shard.file).read_bytes()
