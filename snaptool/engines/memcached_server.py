"""Throwaway memcached processes for tests, demos and benchmarks (the memcached twin of EngineServer).

Each binds 127.0.0.1 on a free port, is stopped with SIGTERM (then SIGKILL) and dies with the
interpreter (the same atexit hook and parent-death signal as engine nodes). Extra command-line
arguments pass through, e.g. ``["-Y", "auth.txt"]``, ``["-o", "no_lru_crawler"]``, ``["-X"]``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Sequence

from ..errors import EngineError
from .memcached_conn import MemcachedAddress
from .server import free_port

_START_TIMEOUT = 10.0
_LIVE: dict[int, subprocess.Popen] = {}
_LOCK = threading.Lock()


def _set_pdeathsig() -> None:  # in the child, between fork and exec: die with the parent
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _kill(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGCONT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            proc.send_signal(sig)
        if sig == signal.SIGCONT:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


@atexit.register
def _cleanup() -> None:
    with _LOCK:
        procs = list(_LIVE.values())
        _LIVE.clear()
    for proc in procs:
        _kill(proc)


def find_memcached() -> str | None:
    """The memcached binary: $SNAPTOOL_MEMCACHED, else the one on PATH, else Debian's."""
    for candidate in (os.environ.get("SNAPTOOL_MEMCACHED"), shutil.which("memcached"), "/usr/bin/memcached"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class MemcachedServer:
    """``with MemcachedServer(args=["-m", "256"]) as mc: mc.address`` — one memcached process."""

    def __init__(self, args: Sequence[str] = (), *, binary: str | None = None, memory_mb: int = 256,
                 threads: int = 2) -> None:
        self.binary = binary or find_memcached()
        if self.binary is None:
            raise EngineError("memcached not found (install it, or set SNAPTOOL_MEMCACHED)")
        self.args = list(args)
        self.memory_mb = memory_mb
        self.threads = threads
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> MemcachedAddress:
        assert self.port is not None, "not started"
        return MemcachedAddress(self.host, self.port)

    @property
    def endpoint(self) -> str:
        return self.address.endpoint

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command_line(self, port: int) -> list[str]:
        args = [str(self.binary), "-l", self.host, "-p", str(port), "-U", "0", "-m", str(self.memory_mb),
                "-t", str(self.threads), *self.args]
        if hasattr(os, "geteuid") and os.geteuid() == 0 and "-u" not in self.args:
            args += ["-u", "root"]  # memcached refuses to run as root without -u
        return args

    def start(self) -> MemcachedServer:
        last = ""
        for _ in range(5):
            port = free_port(self.host)
            main = threading.current_thread() is threading.main_thread() and sys.platform.startswith("linux")
            proc = subprocess.Popen(self.command_line(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, preexec_fn=_set_pdeathsig if main else None)
            self.process, self.port = proc, port
            with _LOCK:
                _LIVE[proc.pid] = proc
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last = (proc.stderr.read() if proc.stderr else b"").decode("utf-8", "replace").strip()
                    break
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        return self
                except OSError:
                    time.sleep(0.02)
            self.stop()
            if "Address already in use" not in last and "bind" not in last:
                break
        raise EngineError(f"memcached did not start: {last or 'no answer'}")

    def pause(self) -> None:
        """SIGSTOP: the process stays, silent (a stalled server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        _kill(proc)
        with _LOCK:
            _LIVE.pop(proc.pid, None)
        if proc.stderr is not None:
            proc.stderr.close()
        self.process = None

    def __enter__(self) -> MemcachedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["MemcachedServer", "find_memcached"]
