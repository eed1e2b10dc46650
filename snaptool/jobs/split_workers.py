"""The worker processes of a split or reshard with several inputs (:mod:`snaptool.jobs.split`).

Each worker routes whole inputs into per-shard body files, then writes whole output files; only
what a process cannot send back as it is (an error) needs translating here.
"""

from __future__ import annotations

import contextlib
import ctypes
from concurrent.futures import ProcessPoolExecutor

from ..errors import RdbError, SnaptoolError

_M_TOP_PAD = -2  # glibc mallopt(): bytes kept at the top of the heap when it shrinks
_TOP_PAD = 16 << 20


def worker_pool(count: int) -> ProcessPoolExecutor | None:
    """``count`` worker processes; none when one process would do the work alone."""
    return ProcessPoolExecutor(max_workers=count, initializer=_keep_freed_memory) if count > 1 else None


def _keep_freed_memory() -> None:
    """Routing allocates and frees buffers of a megabyte or so all the time; by default glibc hands
    freed heap back to the kernel at once, and every page faults back in on the next buffer (half
    the routing time went to that). A 16 MB pad keeps them, for a few MB more peak RSS."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(_M_TOP_PAD, _TOP_PAD)


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
