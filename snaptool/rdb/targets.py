"""Target engines: which RDB version each loads and how its DEBUG DIGEST formats values.

Users name a target by engine (`redis-7.0`, `valkey-8.1`) or by number (`rdb-9`); everything that
differs between engines (header magic, allowed types, digest details) hangs off :class:`Target`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SnaptoolError


@dataclass(frozen=True)
class Target:
    """An engine release (or a bare RDB version) as a writer and digest see it."""

    name: str
    rdb_version: int
    flavour: str  # "redis" or "valkey"
    #: zset scores in DEBUG DIGEST: "%.17g" (Redis ≤ 7.0) or "fpconv" (Redis ≥ 7.2, every Valkey)
    score_format: str
    #: Redis ≥ 7.4 mixes "!!hexpire!!" into the digest of a hash field that has a TTL; Valkey does not.
    hexpire_marker: bool
    #: engine version as a tuple, (0,) for a bare rdb-N target
    version: tuple[int, ...] = (0,)

    @property
    def magic(self) -> bytes:
        from .constants import magic_for
        return magic_for(self.rdb_version)

    @property
    def version_aux(self) -> tuple[bytes, bytes] | None:
        """The AUX field an engine writes to name itself (`redis-ver 7.0.0`, `valkey-ver 8.1.0`);
        None for a bare `rdb-N` target."""
        if self.version == (0,):
            return None
        key = b"valkey-ver" if self.flavour == "valkey" else b"redis-ver"
        return key, ".".join(map(str, (*self.version, 0)[:3])).encode()

    @property
    def supports_field_ttl(self) -> bool:
        return self.rdb_version >= 12


def _engine(flavour: str, version: str, rdb: int) -> Target:
    ver = tuple(int(x) for x in version.split("."))
    modern = flavour == "valkey" or ver >= (7, 2)
    return Target(
        name=f"{flavour}-{version}", rdb_version=rdb, flavour=flavour,
        score_format="fpconv" if modern else "%.17g",
        hexpire_marker=flavour == "redis" and ver >= (7, 4), version=ver,
    )


ENGINES: dict[str, Target] = {t.name: t for t in [
    _engine("redis", "2.4", 2), _engine("redis", "2.6", 6), _engine("redis", "2.8", 6),
    _engine("redis", "3.0", 6), _engine("redis", "3.2", 7), _engine("redis", "4.0", 8),
    _engine("redis", "5.0", 9), _engine("redis", "6.0", 9), _engine("redis", "6.2", 9),
    _engine("redis", "7.0", 10), _engine("redis", "7.2", 11), _engine("redis", "7.4", 12),
    _engine("redis", "8.0", 12),
    _engine("valkey", "7.2", 11), _engine("valkey", "8.0", 11), _engine("valkey", "8.1", 11),
    _engine("valkey", "9.0", 80),
]}

#: For `digest` without --engine: the newest engine that writes each RDB version.
_NEWEST_WRITER = {2: "redis-2.4", 6: "redis-3.0", 7: "redis-3.2", 8: "redis-4.0", 9: "redis-6.2",
                  10: "redis-7.0", 11: "valkey-8.1", 12: "redis-8.0", 80: "valkey-9.0"}


def rdb_target(version: int) -> Target:
    """A bare `rdb-N` target: Redis flavour below 80, Valkey from 80 on."""
    flavour = "valkey" if version >= 80 else "redis"
    return Target(name=f"rdb-{version}", rdb_version=version, flavour=flavour,
                  score_format="fpconv" if version >= 11 else "%.17g",
                  hexpire_marker=flavour == "redis" and version >= 12)


def parse_target(name: str) -> Target:
    """Resolve `redis-7.0`, `valkey-8.1`, `rdb-9` (or a bare number) into a Target."""
    key = name.strip().lower()
    if key in ENGINES:
        return ENGINES[key]
    number = key[4:] if key.startswith("rdb-") else key
    if number.isdigit() and (1 <= int(number) <= 12 or int(number) == 80):
        return rdb_target(int(number))
    known = ", ".join(sorted(ENGINES, key=lambda n: (n.split('-')[0], ENGINES[n].version)))
    raise SnaptoolError(f"unknown target {name!r}: use one of {known}, or rdb-1 … rdb-12, rdb-80")


def default_engine_for(rdb_version: int, flavour: str = "redis") -> Target:
    """The newest engine that writes this RDB version (the default for `digest`)."""
    if flavour == "valkey" or rdb_version >= 80:
        return ENGINES["valkey-9.0"]
    best = max((v for v in _NEWEST_WRITER if v <= rdb_version), default=2)
    return ENGINES[_NEWEST_WRITER[best]]
