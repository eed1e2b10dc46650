"""Disks that fill up, for the tests of what a failed write leaves behind."""

from __future__ import annotations

import resource
import signal
from typing import Callable


def limit_file_size(limit: int = 64 << 10) -> Callable[[], None]:
    """A ``preexec_fn``: in the child, writes past ``limit`` bytes of a file fail with EFBIG, as
    on a full disk (SIGXFSZ ignored, so the write fails instead of killing the process)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply
