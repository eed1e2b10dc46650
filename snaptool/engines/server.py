"""Throwaway engine nodes for tests, demos and validation.

>>> with EngineServer(find_engine("redis-7.0")) as srv:      # doctest: +SKIP
...     srv.client().set("k", "v")
...     rdb = srv.save()

Each server binds 127.0.0.1 on a free port, keeps its data and ``engine.log`` in a private
directory (a temp dir by default, removed on stop), never saves on its own (``save ''``,
``appendonly no``) and is shut down with ``SHUTDOWN NOSAVE`` (then SIGTERM/SIGKILL). Servers still
running at interpreter exit are killed by an atexit hook, and, when started from the main thread
on Linux, also die with their parent process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import EngineError
from .address import NodeAddress
from .discovery import Engine

DEFAULT_START_TIMEOUT = 60.0
LOG_NAME = "engine.log"
_LOG_TAIL_LINES = 12
_PORT_RETRIES = 6
_RESERVED = {"port", "bind", "dir", "dbfilename", "logfile", "daemonize", "cluster-enabled",
             "cluster-config-file"}
# "12345:M 26 Nov 2024 04:29:00.123 # message"  →  "message"
_LOG_PREFIX = re.compile(r"^\d+:[A-Z] \d{1,2} \w{3} \d{4} [\d:.]+ [#*.-] ")
# host-tuning warnings every engine prints at start: not what a caller needs to see
_LOG_NOISE = ("overcommit_memory", "Transparent Huge Pages", "THP support")
_PORT_IN_USE = ("Address already in use", "Could not create server TCP listening socket")

# pid → Popen of every engine process still running; what the atexit hook kills.
_LIVE: dict[int, subprocess.Popen] = {}
# temp dirs created for servers and not removed yet (also removed at exit)
_TEMP_DIRS: set[str] = set()
_LIVE_LOCK = threading.Lock()


class EngineStartError(EngineError):
    """The engine did not come up (or refused the RDB file); carries the tail of engine.log."""

    def __init__(self, message: str, *, log_tail: list[str] | None = None,
                 log_path: str | None = None, returncode: int | None = None) -> None:
        super().__init__(message)
        self.log_tail = list(log_tail or [])
        self.log_path = log_path
        self.returncode = returncode


def free_port(host: str = "127.0.0.1", *, cluster: bool = False) -> int:
    """A port the OS just handed out for ``host:0`` (closed again before returning).

    With ``cluster=True`` the port is at most 55535 and port + 10000 (the cluster bus) is free too.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if not cluster:
            return port
        if port <= 55535 and _bindable(host, port + 10000):
            return port
    raise EngineError("no free port pair (port, port + 10000) found for a cluster node")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _quick_client(host: str, port: int, timeout: float, password: str | None = None) -> redis.Redis:
    """A client that fails fast: no retries, no backoff (redis-py retries by default)."""
    return redis.Redis(host=host, port=port, password=password, socket_timeout=timeout, socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


def _kill(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, OSError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def _register(proc: subprocess.Popen) -> None:
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc


def _unregister(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        with _LIVE_LOCK:
            _LIVE.pop(proc.pid, None)


@atexit.register
def _cleanup_all() -> None:
    with _LIVE_LOCK:
        items = list(_LIVE.values())
        _LIVE.clear()
        dirs = list(_TEMP_DIRS)
        _TEMP_DIRS.clear()
    for proc in items:
        _kill(proc, timeout=3.0)
    for directory in dirs:
        shutil.rmtree(directory, ignore_errors=True)


def live_servers() -> list[int]:
    """Pids of engine processes started by this interpreter that are still registered."""
    with _LIVE_LOCK:
        return [pid for pid, proc in _LIVE.items() if proc.poll() is None]


class EngineServer:
    """One throwaway engine process.

    ``config`` adds ``--key value`` arguments (e.g. ``{"maxmemory-policy": "allkeys-lfu"}``);
    ``rdb`` names a file copied into the data dir as ``dbfilename`` before start, so the engine
    loads it; ``cluster=True`` starts in cluster mode and, when ``assign_slots`` is true and the
    node owns no slot after start, assigns all 16384 slots to it (a working one-node cluster).
    """

    def __init__(self, engine: Engine, *, dbfilename: str | None = None, dir: str | os.PathLike | None = None,  # noqa: A002
                 config: dict[str, str] | None = None, cluster: bool = False,
                 rdb: str | os.PathLike | None = None, assign_slots: bool = True,
                 start_timeout: float = DEFAULT_START_TIMEOUT) -> None:
        self.engine = engine
        self.dbfilename = dbfilename or "dump.rdb"
        if os.sep in self.dbfilename:
            raise ValueError("dbfilename must be a plain file name (use dir= for the directory)")
        self._own_dir = dir is None
        self._dir: Path | None = None if dir is None else Path(dir).absolute()
        self.config: dict[str, str] = {k.lstrip("-"): str(v) for k, v in (config or {}).items()}
        reserved = sorted(set(self.config) & _RESERVED)
        if reserved:
            raise ValueError(f"config may not set {', '.join(reserved)}: EngineServer manages them "
                             "(use dir=, dbfilename=, cluster=)")
        self.cluster = cluster
        self.assign_slots = assign_slots
        self.start_timeout = start_timeout
        self._pending_rdb: Path | None = Path(rdb) if rdb is not None else None
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    # ------------------------------------------------------------------ properties
    @property
    def dir(self) -> Path:
        """The data directory (created on first use)."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"snaptool-{self.engine.target_name}-"))
            with _LIVE_LOCK:
                _TEMP_DIRS.add(str(self._dir))
        return self._dir

    @property
    def rdb_path(self) -> Path:
        return self.dir / self.dbfilename

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_NAME

    @property
    def url(self) -> str:
        self._require_running()
        return f"redis://{self.host}:{self.port}"

    @property
    def password(self) -> str | None:
        """The ``requirepass`` the node was started with (the default user's password)."""
        return self.config.get("requirepass")

    @property
    def address(self) -> NodeAddress:
        """Where to reach the node, with the default user's password."""
        self._require_running()
        return NodeAddress(self.host, self.port, password=self.password)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __repr__(self) -> str:
        state = f"{self.host}:{self.port}" if self.running else "stopped"
        return f"<EngineServer {self.engine.name} {state}>"

    # ------------------------------------------------------------------ lifecycle
    def command_line(self, port: int) -> list[str]:
        args = [self.engine.binary, "--port", str(port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--dbfilename", self.dbfilename,
                "--daemonize", "no", "--logfile", str(self.log_path)]
        if self.engine.supports_enable_debug_command:
            args += ["--enable-debug-command", "yes"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
        for key, value in self.config.items():
            args += [f"--{key}", value]
        return args

    def start(self, timeout: float | None = None) -> EngineServer:
        """Start the engine and wait until it answers PING and has finished loading."""
        if self.running:
            return self
        timeout = self.start_timeout if timeout is None else timeout
        if self._pending_rdb is not None and not self._pending_rdb.is_file():
            raise EngineError(f"RDB file {str(self._pending_rdb)!r} does not exist")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._pending_rdb is not None:
            src = self._pending_rdb
            if src.resolve() != self.rdb_path.resolve():
                shutil.copyfile(src, self.rdb_path)
            self._pending_rdb = None
        last_error: EngineStartError | None = None
        for _ in range(_PORT_RETRIES):
            try:
                self._spawn(free_port(self.host, cluster=self.cluster), timeout)
                return self
            except EngineStartError as exc:
                if not any(marker in line for line in exc.log_tail for marker in _PORT_IN_USE):
                    raise
                last_error = exc  # someone grabbed the port between our probe and the bind
        assert last_error is not None
        raise last_error

    def _spawn(self, port: int, timeout: float) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        use_pdeathsig = sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as out:  # stdout/stderr too: config errors go there
            proc = subprocess.Popen(self.command_line(port), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=str(self.dir), close_fds=True,
                                    preexec_fn=_set_pdeathsig if use_pdeathsig else None)
        self.process, self.port = proc, port
        _register(proc)
        try:
            self._wait_ready(timeout, log_offset)
        except BaseException:
            self._halt()
            raise

    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        client = _quick_client(self.host, self.port, 5, self.password)
        why = "no answer to PING"
        try:
            while True:
                code = self.process.poll()
                if code is not None:
                    # Give the engine's last log lines a moment to land.
                    raise self._start_error(f"exited with code {code} during start", log_offset, code)
                try:
                    if client.ping():
                        info = client.info("persistence")
                        if int(info.get("loading", 0)) == 0 and not int(info.get("async_loading", 0) or 0):
                            if self.cluster and self.assign_slots:
                                self._claim_slots(client)
                            return
                        why = "still loading"
                except (redis.ConnectionError, redis.TimeoutError):
                    why = "no answer to PING"
                except redis.ResponseError as exc:
                    if "LOADING" not in str(exc):
                        raise self._start_error(f"answered {exc}", log_offset) from None
                    why = "still loading"
                if time.monotonic() > deadline:
                    raise self._start_error(f"not ready after {timeout:.0f}s ({why})", log_offset)
                time.sleep(0.02)
        finally:
            client.close()

    def _claim_slots(self, client: redis.Redis) -> None:
        info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        if re.search(r"cluster_slots_assigned:0\b", text):
            client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" in text:
                return
            time.sleep(0.05)

    def log_tail(self, lines: int = _LOG_TAIL_LINES, offset: int = 0) -> list[str]:
        """The last lines of engine.log (from byte ``offset``), without the pid/time prefix."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return []
        text = data.decode("utf-8", "replace")
        out = [_LOG_PREFIX.sub("", line).rstrip() for line in text.splitlines()]
        out = [line for line in out if line.strip() and not set(line.strip()) <= set("_.-'`|/\\ ")
               and not any(noise in line for noise in _LOG_NOISE)]
        return out[-lines:]

    def _start_error(self, what: str, log_offset: int, code: int | None = None) -> EngineStartError:
        tail: list[str] = []
        for _ in range(10):  # the process may still be flushing its last lines
            tail = self.log_tail(offset=log_offset)
            if tail or self.process is None or self.process.poll() is not None:
                break
            time.sleep(0.02)
        summary = " | ".join(tail) if tail else "(engine.log is empty)"
        return EngineStartError(f"{self.engine.name} {what}; last lines of {self.log_path}: {summary}",
                                log_tail=tail, log_path=str(self.log_path), returncode=code)

    def _require_running(self) -> None:
        if not self.running:
            raise EngineError(f"{self.engine.name} server is not running")

    def client(self, db: int = 0, decode_responses: bool = False, **kwargs: Any) -> redis.Redis:
        """A redis-py client for database ``db``."""
        self._require_running()
        kwargs.setdefault("socket_timeout", 120)
        kwargs.setdefault("password", self.password)
        return redis.Redis(host=self.host, port=self.port, db=db, decode_responses=decode_responses, **kwargs)

    def save(self) -> Path:
        """Run SAVE and return the path of the RDB file it wrote."""
        client = self.client()
        try:
            client.save()
        finally:
            client.close()
        return self.rdb_path

    def _halt(self) -> None:
        """Stop the process (SHUTDOWN NOSAVE, then SIGTERM/SIGKILL) but keep the directory."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            try:
                client = _quick_client(self.host, self.port, 3, self.password)
                try:
                    client.execute_command("SHUTDOWN", "NOSAVE")
                except (redis.ConnectionError, redis.TimeoutError):
                    pass  # the usual answer: the server closed the connection while exiting
                except redis.ResponseError:
                    pass  # refused (e.g. still loading): signals below
                finally:
                    client.close()
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            except Exception:  # noqa: BLE001 - never let cleanup fail
                pass
        _kill(proc)
        _unregister(proc)
        self.process = None

    def stop(self) -> None:
        """Shut the engine down and remove its directory if it is a temp dir. Idempotent."""
        self._halt()
        self._remove_temp_dir()
        self.port = None

    def _remove_temp_dir(self) -> None:
        if self._own_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            with _LIVE_LOCK:
                _TEMP_DIRS.discard(str(self._dir))
            self._dir = None

    def restart(self) -> EngineServer:
        """Stop (keeping the directory and its files) and start again."""
        self._halt()
        return self.start()

    def load(self, rdb_path: str | os.PathLike) -> EngineServer:
        """Stop, copy ``rdb_path`` into the data dir as ``dbfilename`` and start a fresh engine on it.

        Raises EngineStartError (an EngineError) carrying the engine's log tail, e.g. "Can't handle
        RDB format version 10", when the engine refuses the file.
        """
        src = Path(rdb_path)
        if not src.is_file():
            raise EngineError(f"RDB file {str(src)!r} does not exist")
        data = src.read_bytes() if self._dir is not None and src.resolve() == self.rdb_path.resolve() else None
        self._halt()
        self.dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.dir.glob("nodes-*.conf"):
            leftover.unlink()
        if data is not None:
            self.rdb_path.write_bytes(data)
        else:
            shutil.copyfile(src, self.rdb_path)
        self._pending_rdb = None
        return self.start()

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        proc = getattr(self, "process", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                _kill(proc, timeout=2.0)
                _unregister(proc)
        if getattr(self, "_own_dir", False) and getattr(self, "_dir", None) is not None:
            with contextlib.suppress(Exception):
                self._remove_temp_dir()


__all__ = ["EngineServer", "EngineStartError", "free_port", "live_servers"]
