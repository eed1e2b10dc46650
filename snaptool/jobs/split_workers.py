"""The worker processes of a split or reshard with several inputs (:mod:`snaptool.jobs.split`).

Each worker routes whole inputs into per-shard body files, then writes whole output files; only
what a process cannot send back as it is (an error) needs translating here.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import resource
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from ..errors import RdbError, SnaptoolError

_M_TOP_PAD = -2  # glibc mallopt(): bytes kept at the top of the heap when it shrinks
_TOP_PAD = 16 << 20
#: in a worker: bytes and keys routed so far, per input (two slots per input), shared with the parent
_counters: Any = None


def worker_pool(count: int, inputs: int) -> tuple[ProcessPoolExecutor | None, Any]:
    """``count`` worker processes (none when one process would do the work alone) and the shared
    counters through which they report progress on each of ``inputs`` inputs."""
    if count <= 1:
        return None, None
    counters = multiprocessing.RawArray("q", 2 * inputs)
    return ProcessPoolExecutor(max_workers=count, initializer=_start_worker, initargs=(counters,)), counters


def _start_worker(counters: Any) -> None:
    """Routing allocates and frees buffers of a megabyte or so all the time; by default glibc hands
    freed heap back to the kernel at once, and every page faults back in on the next buffer (half
    the routing time went to that). A 16 MB pad keeps them, for a few MB more peak RSS.
    Ctrl-C ends a worker quietly (the default action): the parent reports the interruption and
    removes what the workers had written."""
    global _counters
    _counters = counters
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(_M_TOP_PAD, _TOP_PAD)


def allow_open_files(count: int) -> None:
    """Let this process, and the workers it forks, keep ``count`` files open: a split keeps a body
    file per shard open while it routes, more than the usual soft limit of 1,024 for a big layout.
    The soft limit is raised toward the hard one; never lowered."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def progress_of(index: int) -> Callable[[int, int], None] | None:
    """In a worker: the progress callback for input ``index`` (bytes and keys so far)."""
    counters = _counters
    if counters is None:
        return None

    def report(done: int, keys: int) -> None:
        counters[2 * index] = done
        counters[2 * index + 1] = keys

    return report


def totals(counters: Any) -> tuple[int, int]:
    """In the parent: bytes and keys routed so far over every input."""
    return sum(counters[0::2]), sum(counters[1::2])


class WorkerError(Exception):
    """A snaptool error raised in a worker process, carried back as plain text."""

    def __init__(self, kind: str, message: str, exit_code: int) -> None:
        super().__init__(kind, message, exit_code)
        self.kind, self.message, self.exit_code = kind, message, exit_code

    @classmethod
    def of(cls, exc: SnaptoolError) -> "WorkerError":
        return cls(type(exc).__name__, str(exc), exc.exit_code)

    def rebuild(self) -> SnaptoolError:
        """The error as the parent raises it (same class family, message and exit code)."""
        rdb = self.kind in ("RdbError", "ChecksumError", "UnsupportedError")
        error = (RdbError if rdb else SnaptoolError)(self.message)
        error.exit_code = self.exit_code
        return error
