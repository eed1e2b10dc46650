"""List a memcached server's keys with ``lru_crawler metadump``: drained on its own thread, parsed in bulk.

A dump is not a snapshot but a live walk, and on 1.6.9–1.6.18 the crawler holds an item lock while
it writes to a slow client: a reader that pauses freezes part of the server. So the dump gets its
own connection and a thread that only moves bytes from the socket into a spool file, as fast as
they come, with a watchdog (the socket timeout) for a server that goes silent. The caller parses
the spool behind it and never blocks the server, whatever else it does meanwhile.

Every variant of the format is accepted: tokens ``name=value`` in any order (unknown names
ignored), ``flags=`` from 1.6.24, extstore fields from 1.6.39, no ``cls``/``size`` on old
releases, a leading ``OK`` from 1.6.43, no END line before 1.5.4 (the end is then a silence), and
the refusals (``BUSY``, ``ERROR locked try again later``, ``BADCLASS``, ``ERROR metadump not
allowed``, ``CLIENT_ERROR lru crawler disabled``, ``CLIENT_ERROR unauthenticated``, and a plain
``ERROR`` from services that block ``lru_crawler``). Keys are
percent-decoded to bytes, never to text: binary keys survive. ``lru_crawler mgdump`` (1.6.19+, keys
only) is drained the same way when it is asked for, and parsed by :func:`parse_mgdump`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import operator
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterator, NamedTuple
from urllib.parse import unquote_to_bytes

from ..errors import EngineError
from .memcached_conn import CannotEnumerate, MemcachedAddress, ServerInfo, open_raw, probe

_CHUNK = 1 << 20
_READ = 4 << 20
_TERMINATOR = b"END\r\n"
_MGDUMP_END = b"EN\r\n"
#: seconds of silence that end a dump of a release without END lines (before 1.5.4): --dump-silence
DUMP_SILENCE = 5.0
_CRAWLER_POLL = 0.5  # seconds between looks at a crawler job another client runs
_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0)  # BUSY / locked: about 20 s in all
#: the layout every release since 1.5.x prints, with optional fields after it: parsed in one regex pass
_FAST = re.compile(rb"^key=(\S+) exp=(-?\d+) la=\d+ cas=(\d+) fetch=\w+ cls=\d+ size=(\d+)\n", re.M)
_FAST_FLAGS = re.compile(rb"^key=(\S+) exp=(-?\d+) la=\d+ cas=(\d+) fetch=\w+ cls=\d+ size=(\d+) flags=(\d+)\n", re.M)
_FIRST, _EXP, _CAS, _SIZE, _FLAG = (operator.itemgetter(i) for i in range(5))
#: what a comparison with an earlier listing needs: the whole line, the key as printed, the cas
_LEAN = re.compile(rb"^key=(\S+) exp=-?\d+ la=\d+ cas=(\d+)[^\n]*\n", re.M)
_LEAN_KEY, _LEAN_CAS = (operator.itemgetter(i) for i in range(2))
_UNSAFE = re.compile(rb"[\x00-\x20\x7f]")
#: ``lru_crawler mgdump`` lines: ``mg <key>``, or ``mg <base64> b`` for a key stored through meta ``b``
_MGDUMP = re.compile(rb"^mg (\S+)( b)?\r\n", re.M)
#: escapes of the bytes that make a key unsafe on the text protocol
_UNSAFE_ESCAPE = re.compile(rb"%(?:[01][0-9A-Fa-f]|20|7[Ff])")


class DumpEntry(NamedTuple):
    """One item line: the key as bytes, ``exp`` absolute on the server's clock (-1: never)."""

    key: bytes
    exp: int
    cas: int
    size: int  # item size in memory (header + key + value); 0 when the release does not say
    flags: int | None  # only from 1.6.24


@dataclass(slots=True)
class DumpRun:
    """Consecutive items of a dump, column by column (a million keys are lists, not a million objects)."""

    keys: list[bytes]
    exps: list[int]
    cas: list[bytes]  # as printed: only ever compared, so never converted
    sizes: list[int]
    flags: list[int] | None = None  # from 1.6.24
    unsafe: bool = False  # some key is not safe on the text protocol (needs base64 for mg)

    def __len__(self) -> int:
        return len(self.keys)

    def entry(self, index: int) -> DumpEntry:
        return DumpEntry(self.keys[index], self.exps[index], int(self.cas[index]), self.sizes[index],
                         self.flags[index] if self.flags is not None else None)

    def slice(self, start: int, stop: int) -> DumpRun:
        return DumpRun(self.keys[start:stop], self.exps[start:stop], self.cas[start:stop], self.sizes[start:stop],
                       self.flags[start:stop] if self.flags is not None else None, self.unsafe)

    def select(self, indexes: list[int]) -> DumpRun:
        return DumpRun([self.keys[i] for i in indexes], [self.exps[i] for i in indexes],
                       [self.cas[i] for i in indexes], [self.sizes[i] for i in indexes],
                       [self.flags[i] for i in indexes] if self.flags is not None else None, self.unsafe)

    @classmethod
    def of(cls, entries: list[DumpEntry]) -> DumpRun:
        flags = [e.flags or 0 for e in entries] if any(e.flags is not None for e in entries) else None
        keys = [e.key for e in entries]
        return cls(keys, [e.exp for e in entries], [b"%d" % e.cas for e in entries], [e.size for e in entries], flags,
                   not all(map(text_safe, keys)))


def batches(run: DumpRun, max_keys: int = 1000, max_bytes: int = 4 << 20) -> Iterator[DumpRun]:
    """A run cut into fetch batches of at most ``max_keys`` keys and about ``max_bytes`` of items
    (a bigger item goes alone)."""
    sizes, start, count = run.sizes, 0, len(run.sizes)
    while start < count:
        stop = min(start + max_keys, count)
        if sum(sizes[start:stop]) <= max_bytes:  # the usual case: small items, a full batch
            yield run.slice(start, stop)
            start = stop
            continue
        total, index = 0, start
        while index < stop and (index == start or total + sizes[index] <= max_bytes):
            total += sizes[index]
            index += 1
        yield run.slice(start, index)
        start = index


class MetadumpError(EngineError):
    """The server refused or broke off a dump; ``retry`` when waiting may help (BUSY, locked)."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


# --------------------------------------------------------------------------- parsing

def decode_key(text: bytes) -> bytes:
    """A dump's percent-encoded key as the raw bytes it stands for."""
    if b"%" not in text:
        return text
    text = text.replace(b"%3A", b":")  # by far the most common escape: spare unquote most keys
    return unquote_to_bytes(text) if b"%" in text else text


def text_safe(key: bytes) -> bool:
    """Whether a key can be sent as it is on the text protocol (else: base64 with meta ``b``)."""
    return 0 < len(key) <= 250 and not _UNSAFE.search(key)


def parse_line(line: bytes) -> DumpEntry | None:
    """One dump line in any token order; None for an empty line. ValueError when it is not an item."""
    line = line.rstrip(b"\r\n")
    if not line:
        return None
    fields: dict[bytes, bytes] = {}
    for token in line.split(b" "):
        name, sep, value = token.partition(b"=")
        if not sep:
            raise ValueError(f"not an item line: {line[:120]!r}")
        fields[name] = value
    if b"key" not in fields or not fields[b"key"]:
        raise ValueError(f"item line without a key: {line[:120]!r}")
    flags = fields.get(b"flags")
    return DumpEntry(decode_key(fields[b"key"]), int(fields.get(b"exp", b"-1")), int(fields.get(b"cas", b"0")),
                     int(fields.get(b"size", b"0")), int(flags) if flags is not None else None)


def parse_chunk(chunk: bytes) -> DumpRun:
    """Every item of a run of complete lines: one regex pass when the lines have the usual layout
    (up to 1.6.23, or with flags= from 1.6.24), line by line otherwise (extstore fields, other
    orders, old releases)."""
    lines = chunk.count(b"\n")
    found = _FAST.findall(chunk)
    flags = None
    if len(found) != lines and b" flags=" in chunk:
        found = _FAST_FLAGS.findall(chunk)
        flags = list(map(int, map(_FLAG, found)))
    if len(found) != lines:
        entries = []
        for line in chunk.split(b"\n"):
            try:
                entry = parse_line(line)
            except ValueError as exc:
                raise MetadumpError(f"unexpected line in the dump: {exc}") from None
            if entry is not None:
                entries.append(entry)
        return DumpRun.of(entries)
    if not found:
        return DumpRun([], [], [], [])
    # keys are joined to decode the common escape in one pass ("\n" never occurs in an encoded key)
    blob = b"\n".join(map(_FIRST, found)).replace(b"%3A", b":")
    keys = blob.split(b"\n")
    if b"%" in blob:
        keys = [unquote_to_bytes(k) if b"%" in k else k for k in keys]
    return DumpRun(keys, list(map(int, map(_EXP, found))), list(map(_CAS, found)),
                   list(map(int, map(_SIZE, found))), flags, bool(_UNSAFE_ESCAPE.search(blob)) or not all(keys))


def parse_mgdump(chunk: bytes) -> DumpRun:
    """Every key of a run of ``lru_crawler mgdump`` lines (1.6.19+). Keys only: no expiry, cas or
    size (exp -1, cas 0, size 0). A key written through the binary protocol with a space or CRLF
    in it is printed raw and breaks its line: that is an error. One such key cannot be told apart:
    ``<token> b`` with a valid base64 token reads as a base64 key (a wrong name, then a miss),
    which is why mgdump is only used when asked for."""
    found = _MGDUMP.findall(chunk)
    if len(found) != chunk.count(b"\n"):
        bad = next((line for line in chunk.split(b"\n") if line and not _MGDUMP.fullmatch(line + b"\n")), b"")
        raise MetadumpError(f"unexpected line in the mgdump: {bad[:120]!r} (a binary-protocol key with a space or "
                            "CRLF breaks mgdump lines: list with metadump instead)")
    try:
        keys = [base64.b64decode(key, validate=True) if b64 else key for key, b64 in found]
    except binascii.Error:
        raise MetadumpError("an mgdump line marked base64 (b) holds no base64 key") from None
    count = len(keys)
    return DumpRun(keys, [-1] * count, [b"0"] * count, [0] * count, None, not all(map(text_safe, keys)))


def refusal(line: bytes, where: str, command: bytes = b"lru_crawler metadump") -> EngineError:
    """The error a non-item first line of a dump (the reply to ``command``) stands for."""
    text = line.decode("utf-8", "replace").strip()
    if text == "ERROR":  # an unknown command: ElastiCache blocks lru_crawler, old releases lack the listing
        name = command.decode("utf-8", "replace").strip()
        return CannotEnumerate(where, f"it answered {name} with ERROR: a managed service that blocks lru_crawler "
                                      "(ElastiCache), or a release without that listing")
    if text.startswith("BUSY"):
        return MetadumpError(f"memcached at {where}: another LRU crawler job is running ({text})", retry=True)
    if text.startswith("ERROR locked"):
        return MetadumpError(f"memcached at {where}: the hash table is being resized ({text})", retry=True)
    if "lru crawler disabled" in text:
        return CannotEnumerate(where, "its LRU crawler is disabled (-o no_lru_crawler)")
    if "not allowed" in text:
        return CannotEnumerate(where, "dumping keys is disabled on it (-X)")
    if "unauthenticated" in text:
        return MetadumpError(f"memcached at {where} requires a login (memcached -Y): pass --auth-file")
    if "cannot pipeline" in text:
        return MetadumpError(f"memcached at {where}: the dump connection carried another command ({text})")
    return MetadumpError(f"memcached at {where} refused the dump: {text[:120]}")


# --------------------------------------------------------------------------- draining

class DumpSpool:
    """One dump drained into ``path`` by a thread; :meth:`chunks` follows the file as it grows.

    ``ends`` says the release prints END (1.5.4+): then any silence longer than ``stall_timeout``
    is an error (the watchdog), and the socket is closed so the server stops waiting on it too.
    Releases before 1.5.4 print no END, so a silence is their end: ``silence`` seconds after the
    last bytes, or ``stall_timeout`` before the first (an empty dump, unless ``holds_items``: the
    server said it holds items, so that silence is a stall). ``inferred_end`` then says the listing
    may be incomplete (a server that paused that long mid-dump looks the same).
    """

    def __init__(self, sock: socket.socket, path: str, where: str, *, ends: bool = True,
                 stall_timeout: float = 60.0, silence: float = DUMP_SILENCE,
                 terminator: bytes = _TERMINATOR, holds_items: bool = False) -> None:
        self.sock = sock
        self.terminator = terminator
        self.path = path
        self.where = where
        self.ends = ends
        self.holds_items = holds_items
        self.stall_timeout = stall_timeout
        self.silence = silence
        self.command = b""
        self.written = 0
        self.done = False
        self.inferred_end = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._out = open(path, "wb", buffering=0)
        self._thread = threading.Thread(target=self._drain, name=f"metadump {where}", daemon=True)

    def start(self, command: bytes) -> DumpSpool:
        self.command = command
        self.sock.sendall(command)
        self._thread.start()
        return self

    def _drain(self) -> None:
        sock, pending, first = self.sock, b"", True
        try:
            sock.settimeout(self.stall_timeout)
            while True:
                try:
                    data = sock.recv(_CHUNK)
                except socket.timeout:
                    if not self.ends and not (first and self.holds_items):
                        self.inferred_end = True
                        break  # releases before 1.5.4 print no END: the end is a silence
                    raise MetadumpError(f"memcached at {self.where} sent no dump data for {self.stall_timeout:g}s "
                                        "(stalled); the dump was abandoned") from None
                if not data:
                    if not self.ends and not first:
                        break
                    raise MetadumpError(f"memcached at {self.where} closed the connection during the dump")
                data = pending + data
                if first:
                    data = self._head(data)
                    if data is None:
                        return
                    first = False
                    if not self.ends:
                        sock.settimeout(self.silence)
                end = self.terminator
                if data.endswith(end) and (len(data) == len(end) or data[-len(end) - 1:-len(end)] == b"\n"):
                    self._write(data[:-len(end)])
                    break
                keep = len(end)
                self._write(data[:-keep])
                pending = data[-keep:]
            if not self.ends and pending:
                self._write(pending)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            self.error = exc if isinstance(exc, EngineError) else \
                MetadumpError(f"memcached at {self.where}: dump failed: {exc}")
        finally:
            self._out.close()
            try:
                self.sock.close()
            except OSError:
                pass
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def _head(self, data: bytes) -> bytes | None:
        """The stream's start: drop a leading OK, stop on a refusal or an empty dump (None)."""
        if data.startswith(b"OK\r\n"):
            data = data[4:]
        if data.startswith((b"key=", b"mg ")) or not data:
            return data
        if data == self.terminator:
            return None
        end = data.find(b"\n")
        if end < 0 and len(data) < 512:
            # keep reading until the first line is whole; only a refusal line lacks "key=" / "mg "
            more = self.sock.recv(512)
            if not more:
                raise refusal(data, self.where, self.command)
            return self._head(data + more)
        raise refusal(data[:end if end >= 0 else 512], self.where, self.command)

    def _write(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            with self._cond:
                self.written += len(data)
                self._cond.notify_all()

    def chunks(self) -> Iterator[bytes]:
        """Runs of complete lines, as soon as the drain has written them; raises the drain's error."""
        rest = b""
        with open(self.path, "rb") as fh:
            read = 0
            while True:
                with self._cond:
                    while self.written == read and not self.done:
                        self._cond.wait(0.5)
                    available, finished = self.written - read, self.done
                if self.error is not None:
                    raise self.error
                if available:
                    data = fh.read(min(available, _READ))
                    read += len(data)
                    data = rest + data
                    cut = data.rfind(b"\n") + 1
                    rest = data[cut:]
                    if cut:
                        yield data[:cut]
                    continue
                if finished:
                    break
        if rest.strip():
            raise MetadumpError(f"memcached at {self.where}: the dump ended in the middle of a line")

    def wait_started(self) -> None:
        """Until the first bytes are spooled or the dump is over (a refusal comes at once)."""
        with self._cond:
            while not self.written and not self.done:
                self._cond.wait(0.5)

    def close(self) -> None:
        """Stop draining (closing the socket ends the server's side) and remove the spool."""
        try:
            self.sock.close()
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(5)
        try:
            os.unlink(self.path)
        except OSError:
            pass


# --------------------------------------------------------------------------- enumeration

#: the listings by the name ``--enumerate`` gives them, and the commands they send
MODES = {"hash": b"lru_crawler metadump hash\r\n", "all": b"lru_crawler metadump all\r\n",
         "mgdump": b"lru_crawler mgdump hash\r\n"}


def choose_mode(info: ServerInfo, requested: str = "auto") -> str:
    """``hash`` on 1.6.9+ (no LRU misses), ``all`` before. ``mgdump`` only when asked for: every
    release that has it (1.6.19+) has ``metadump hash`` too, which lists the same keys with their
    expiry, cas and size. A request a release cannot serve fails."""
    if requested == "auto":
        return "hash" if info.metadump_hash else "all"
    if requested == "hash" and not info.metadump_hash:
        raise EngineError(f"metadump hash needs memcached 1.6.9 or later (this is {info.version_text})")
    if requested == "mgdump" and not info.mgdump:
        raise EngineError(f"lru_crawler mgdump needs memcached 1.6.19 or later (this is {info.version_text})")
    return requested


def describe_mode(info: ServerInfo, mode: str, requested: str = "auto") -> tuple[str, str]:
    """The listing's name in reports, and why it was chosen."""
    name = MODES[mode].decode().removeprefix("lru_crawler ").strip()
    if requested != "auto":
        return name, f"--enumerate {requested}"
    if mode == "all":
        return name, "before 1.6.9 there is no hash walk: the LRU walk is repeated until a pass finds nothing new"
    if info.mgdump:
        return name, ("chosen over mgdump hash: the same keys, with the expiry, cas and size that the expired "
                      "count, the second listing and the batching need")
    return name, "1.6.9+: the hash-table walk misses no key the LRU moves (mgdump needs 1.6.19)"


def wait_for_crawler(address: MemcachedAddress, timeout: float) -> None:
    """Wait up to ``timeout`` while another crawler job runs on the server (``stats``:
    ``lru_crawler_running 1``), then refuse. A crawler command sent meanwhile is not answered BUSY
    on 1.6.18: it blocks a worker thread until the other job ends, so none is sent before."""
    deadline = time.monotonic() + timeout
    while probe(address, timeout).stats.get("lru_crawler_running", "0") != "0":
        if time.monotonic() >= deadline:
            raise MetadumpError(f"memcached at {address}: another LRU crawler job (a key dump, or a crawl) has been "
                                f"running on it for {timeout:g}s; a second one would wait behind it and block a "
                                "worker thread, so none was started: run the migration again once it has finished")
        time.sleep(_CRAWLER_POLL)


def start_dump(address: MemcachedAddress, info: ServerInfo, mode: str, path: str, *,
               stall_timeout: float = 60.0, silence: float = DUMP_SILENCE) -> DumpSpool:
    """A running dump (``hash``, ``all`` or ``mgdump``: :data:`MODES`) once no other crawler job
    runs, BUSY and locked refusals retried for about 20 s before giving up."""
    wait_for_crawler(address, stall_timeout)
    command = MODES[mode]
    terminator = _MGDUMP_END if mode == "mgdump" else _TERMINATOR
    for delay in (*_RETRY_DELAYS, None):
        sock = open_raw(address, stall_timeout)
        with contextlib.suppress(OSError):  # slack for the moments the drain thread waits for the interpreter
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        spool = DumpSpool(sock, path, str(address), ends=info.metadump_end, stall_timeout=stall_timeout,
                          holds_items=int(info.stats.get("curr_items", "0") or 0) > 0,
                          silence=silence, terminator=terminator).start(command)
        spool.wait_started()
        error = spool.error
        if not isinstance(error, MetadumpError) or not error.retry or delay is None:
            return spool
        spool.close()
        time.sleep(delay)
    raise AssertionError("unreachable")


@dataclass(slots=True)
class LeanRun:
    """Consecutive items of a dump with only the keys and cas parsed; :meth:`parse` parses the
    lines of some of them fully (a second listing compares every key but re-reads few, so the
    lines are only cut out of the chunk when some are wanted)."""

    chunk: bytes  # whole lines, every one an item
    keys: list[bytes]
    cas: list[bytes]

    def __len__(self) -> int:
        return len(self.keys)

    def parse(self, indexes: list[int]) -> DumpRun:
        lines = self.chunk.split(b"\n")
        return parse_chunk(b"".join(lines[i] + b"\n" for i in indexes))


def lean_chunk(chunk: bytes) -> LeanRun | DumpRun:
    """Keys and cas of a run of lines (a full :class:`DumpRun` when the lines are not all usual)."""
    found = _LEAN.findall(chunk)
    if len(found) != chunk.count(b"\n"):
        return parse_chunk(chunk)
    if not found:
        return LeanRun(b"", [], [])
    blob = b"\n".join(map(_LEAN_KEY, found)).replace(b"%3A", b":")
    keys = blob.split(b"\n")
    if b"%" in blob:
        keys = [unquote_to_bytes(k) if b"%" in k else k for k in keys]
    return LeanRun(chunk, keys, list(map(_LEAN_CAS, found)))


def unseen(run: DumpRun, seen: set[bytes]) -> DumpRun:
    """The items of ``run`` whose key is not in ``seen``, each key once (an LRU walk may list an item
    the LRU moves twice, even within one run); their keys are added to ``seen``."""
    fresh = []
    for index, key in enumerate(run.keys):
        if key not in seen:
            seen.add(key)
            fresh.append(index)
    return run.select(fresh) if len(fresh) != len(run) else run


class Listing:
    """Every key of a server, in runs (:meth:`runs`), its first walk started at once.

    Starting is separate from reading so a caller can let a listing drain in the background while
    it works on something else. ``hash`` is one walk; ``all`` (before 1.6.9) misses and repeats
    items the LRU moves, so it is walked again until a pass finds nothing new (at most ``passes``
    times) and repeats are dropped. ``walked`` and ``repeated`` say how many walks ran and how many
    items they listed again, for the report.
    """

    def __init__(self, address: MemcachedAddress, info: ServerInfo, path: str, *, mode: str = "auto",
                 stall_timeout: float = 60.0, silence: float = DUMP_SILENCE, passes: int = 3) -> None:
        info.require_enumerable(str(address))
        self.address, self.info, self.path = address, info, path
        self.mode = choose_mode(info, mode)
        self.stall_timeout, self.silence = stall_timeout, silence
        self.passes = passes if self.mode == "all" else 1
        self.inferred_end = False  # some walk ended by a silence (no END line before 1.5.4): maybe incomplete
        self.walked = 0  # walks finished
        self.repeated = 0  # items listed again (by a later walk, or twice in one), dropped
        self.spool: DumpSpool | None = start_dump(address, info, self.mode, path, stall_timeout=stall_timeout,
                                                  silence=silence)

    def runs(self, lean: bool = False) -> Iterator[DumpRun | LeanRun]:
        """The runs; with ``lean``, :class:`LeanRun` where the lines allow (``hash`` walks only)."""
        seen: set[bytes] | None = set() if self.mode == "all" else None
        parse = parse_mgdump if self.mode == "mgdump" else lean_chunk if lean and seen is None else parse_chunk
        try:
            for number in range(self.passes):
                if self.spool is None:
                    self.spool = start_dump(self.address, self.info, self.mode, self.path,
                                            stall_timeout=self.stall_timeout, silence=self.silence)
                new = 0
                for chunk in self.spool.chunks():
                    run = parse(chunk)
                    if seen is not None:
                        listed = len(run)
                        run = unseen(run, seen)
                        self.repeated += listed - len(run)
                    new += len(run)
                    if len(run):
                        yield run
                self.inferred_end |= self.spool.inferred_end
                self.spool.close()
                self.spool = None
                self.walked += 1
                if seen is None or (number and not new):
                    return
        finally:
            self.close()

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


def dump_runs(address: MemcachedAddress, info: ServerInfo, path: str, *, mode: str = "auto",
              stall_timeout: float = 60.0, passes: int = 3) -> Iterator[DumpRun]:
    """Every key of a server, in runs (a :class:`Listing` read at once)."""
    yield from Listing(address, info, path, mode=mode, stall_timeout=stall_timeout, passes=passes).runs()


__all__ = ["DumpEntry", "DumpRun", "DumpSpool", "Listing", "MODES", "MetadumpError", "batches", "choose_mode",
           "decode_key", "describe_mode", "dump_runs", "LeanRun", "lean_chunk", "parse_chunk", "parse_line",
           "parse_mgdump", "refusal", "start_dump", "text_safe", "unseen", "wait_for_crawler"]
