"""Prove a migration: every key written is read back from the target and compared with what was read from memcached.

Value bytes must be equal, the remaining TTL within :data:`TTL_TOLERANCE_MS` of the one memcached
gave (memcached counts whole seconds, so a TTL is only known to about a second), no TTL where
there was none, and with ``--flags hash:NAME`` the flags in the side hash, which must hold no
other field. A key that is gone from the target because its deadline has passed is counted as
expired, not lost.

Per batch, a node gets one MGET and a PTTL per key (a cluster a GET per key, routed by slot); the
values come back as one block of bytes compared with the block they should be, so the usual
outcome (all equal) costs one comparison. The node answers PTTL at some moment between sending and
receiving, so a TTL is judged against that window, not against a single instant.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import redis

from ..engines.slot_map import show_key
from ..errors import EngineError
from .migrate_ledger import NO_EXPIRY
from .migrate_resp import RedisTarget, RespConn

TTL_TOLERANCE_MS = 2000
_PROBLEMS_LISTED = 20

#: what was written: (key in the target, value bytes written, deadline in wall-clock ms or -1, flags)
Item = tuple[bytes, bytes, int, int]


@dataclass
class TargetCheck:
    target: str
    checked: int = 0
    equal: int = 0
    missing: int = 0
    different: int = 0
    ttl_off: int = 0
    flags_off: int = 0
    expired: int = 0  # gone from the target because their TTL ran out meanwhile: not a loss
    hash_fields: int = 0  # keys with flags, so fields the side hash must hold (--flags hash:NAME)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.missing + self.different + self.ttl_off + self.flags_off

    @property
    def ok(self) -> bool:
        return self.lost == 0

    def note(self, what: str) -> None:
        if len(self.problems) < _PROBLEMS_LISTED:
            self.problems.append(what)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _hget(name: bytes, key: bytes) -> bytes:
    return b"*3\r\n$4\r\nHGET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(name), name, len(key), key)


def _bulk(value: bytes | None) -> bytes:
    return b"$-1\r\n" if value is None else b"$%d\r\n%b\r\n" % (len(value), value)


class _Group:
    """The reads of one batch that go to one node, and where their answers land."""

    __slots__ = ("conn", "gets", "hgets", "values", "pttls", "flags", "same", "mget")

    def __init__(self, conn: RespConn) -> None:
        self.conn = conn
        self.gets: list[int] = []  # item indexes whose GET and PTTL go here
        self.hgets: list[int] = []  # item indexes whose side-hash HGET goes here
        self.values: list[Any] = []
        self.pttls: list[Any] = []
        self.flags: list[Any] = []
        self.same = False  # every GET reply was the expected value (compared as one block)
        self.mget = False  # the values were asked with one MGET (a node), not a GET per key


def _send(target: RedisTarget, items: list[Item], hash_name: bytes | None) -> tuple[list[_Group], int]:
    """Send the reads of one batch, node by node: GETs, then PTTLs, then side-hash HGETs; the
    groups and when they went out (ms)."""
    groups: dict[int, _Group] = {}
    if target.cluster:
        for index, item in enumerate(items):
            conn = target.route(item[0])
            group = groups.get(id(conn)) or groups.setdefault(id(conn), _Group(conn))
            group.gets.append(index)
    else:
        group = _Group(target.route(b""))
        group.gets = list(range(len(items)))
        groups[id(group.conn)] = group
    if hash_name:  # only keys with flags have a field; check_target compares the field count too
        flagged = [i for i, item in enumerate(items) if item[3]]
        if flagged:
            conn = target.route(hash_name)
            group = groups.get(id(conn)) or groups.setdefault(id(conn), _Group(conn))
            group.hgets = flagged
    bodies = []
    for group in groups.values():
        keys = [items[i][0] for i in group.gets]
        pttls = [b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%b\r\n" % (len(k), k) for k in keys]
        if target.cluster:  # keys of a batch are in many slots: one GET each
            body = b"".join([b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k) for k in keys] + pttls)
        else:  # a node answers the whole batch's values in one MGET
            group.mget = True
            body = b"".join([b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)] +
                            [b"$%d\r\n%b\r\n" % (len(k), k) for k in keys] + pttls)
        if group.hgets:
            body += b"".join([_hget(hash_name, items[i][0]) for i in group.hgets])  # type: ignore[arg-type]
        bodies.append((group.conn, body))
    sent = _now()
    for conn, body in bodies:
        conn.send(body)
    return list(groups.values()), sent


def _receive(groups: list[_Group], items: list[Item]) -> tuple[list, list, list, bool]:
    """Value, PTTL and side-hash flags of every item, as the target holds them.

    The GET replies of a node are first compared as one block with what they should be (every
    value equal is the usual outcome), and parsed one by one only when that comparison fails."""
    for group in groups:
        conn = group.conn
        want = [items[i][1] for i in group.gets]
        blob = b"".join(([b"*%d\r\n" % len(want)] if group.mget else []) +
                        [b"$%d\r\n%b\r\n" % (len(v), v) for v in want])
        group.same = conn.matches(blob)
        if group.same:
            group.values = want
        elif group.mget:
            got = conn.reply()  # the MGET's array, or the error sent instead
            if not isinstance(got, (list, redis.ResponseError)) or isinstance(got, list) and len(got) != len(want):
                raise EngineError(f"{conn.name}: MGET of {len(want)} keys answered {repr(got)[:60]}")
            group.values = [got] * len(want) if isinstance(got, redis.ResponseError) else got
        else:
            group.values = conn.replies(len(want))
        group.pttls = conn.integers(len(group.gets))
        if group.hgets:
            flags = [b"%d" % items[i][3] for i in group.hgets]
            group.flags = flags if conn.matches(b"".join(map(_bulk, flags))) else conn.replies(len(flags))
    same = all(group.same for group in groups)
    if len(groups) == 1 and len(groups[0].gets) == len(items):
        only = groups[0]
        flags_read: list[Any] = [None] * len(items)
        for i, stored in zip(only.hgets, only.flags):
            flags_read[i] = stored
        return only.values, only.pttls, flags_read, same
    values: list[Any] = [None] * len(items)
    pttls: list[Any] = [None] * len(items)
    flags_read = [None] * len(items)
    for group in groups:
        for i, value, pttl in zip(group.gets, group.values, group.pttls):
            values[i] = value
            pttls[i] = pttl
        for i, stored in zip(group.hgets, group.flags):
            flags_read[i] = stored
    return values, pttls, flags_read, same


def check_target(target: RedisTarget, batches: Iterable[list[Item]], *, hash_name: bytes | None = None,
                 progress: Callable[[int], None] | None = None) -> TargetCheck:
    """Compare every written item with the target; with ``hash_name``, the flags of every key that
    has some, and that the side hash holds no other field (keys without flags have none).

    One batch is in flight while the replies of the one before are compared."""
    report = TargetCheck(target.describe())
    started = time.monotonic()
    target.flush()
    previous: tuple[list[Item], tuple[list[_Group], int]] | None = None
    for items in batches:
        if not items:
            continue
        if hash_name:
            report.hash_fields += sum(1 for item in items if item[3])
        sent = (items, _send(target, items, hash_name))
        if previous is not None:
            _compare(report, *previous, hash_name)
            if progress is not None:
                progress(report.checked)
        previous = sent
    if previous is not None:
        _compare(report, *previous, hash_name)
    if hash_name:
        (held,) = target.read([(hash_name, b"*2\r\n$4\r\nHLEN\r\n$%d\r\n%b\r\n" % (len(hash_name), hash_name))])
        if held != report.hash_fields:
            report.flags_off += abs(int(held) - report.hash_fields) if isinstance(held, int) else report.hash_fields or 1
            report.note(f"the side hash {hash_name!r} holds {held} fields, {report.hash_fields} keys have flags")
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _now() -> int:
    return int(time.time() * 1000)


def _compare(report: TargetCheck, items: list[Item], sent: tuple[list[_Group], int], hash_name: bytes | None) -> None:
    """The node answered PTTL somewhere between sending and receiving: a TTL is right when it lies
    in that window, widened by the tolerance."""
    groups, sent_at = sent
    values, pttls, flags_read, same = _receive(groups, items)
    late = _now() - sent_at + TTL_TOLERANCE_MS  # how much less than deadline - sent_at a TTL may be
    if same and not (hash_name and any(item[3] for item in items)):
        # every value equal: only the TTLs are left to compare, in one pass
        if all(pttl == -1 if item[2] == NO_EXPIRY else (pttl >= 0 and -late <= pttl - item[2] + sent_at
                                                       <= TTL_TOLERANCE_MS)
               for item, pttl in zip(items, pttls)):
            report.checked += len(items)
            report.equal += len(items)
            return
    for (key, value, deadline, flags), got, pttl, stored in zip(items, values, pttls, flags_read):
        report.checked += 1
        if got is value or got == value:
            if deadline == NO_EXPIRY:
                if pttl == -1 and (not flags or not hash_name or stored == b"%d" % flags):
                    report.equal += 1
                    continue
            elif 0 <= pttl and -late <= pttl - deadline + sent_at <= TTL_TOLERANCE_MS and \
                    (not flags or not hash_name or stored == b"%d" % flags):
                report.equal += 1
                continue
        _judge(report, key, value, deadline, flags, got, pttl, stored, hash_name, sent_at, late)


def _judge(report: TargetCheck, key: bytes, value: bytes, deadline: int, flags: int, got: Any, pttl: Any,
           stored: Any, hash_name: bytes | None, sent_at: int, late: int) -> None:
    """Say what is wrong with one key (or that it merely expired)."""
    now = sent_at + late - TTL_TOLERANCE_MS  # when the replies were in
    if isinstance(got, redis.ResponseError) or isinstance(pttl, redis.ResponseError):
        report.different += 1
        report.note(f"{show_key(key)}: the target answered {got if isinstance(got, redis.ResponseError) else pttl}")
    elif got is None or pttl == -2:
        if deadline != NO_EXPIRY and deadline - now <= TTL_TOLERANCE_MS:
            report.expired += 1
        else:
            report.missing += 1
            report.note(f"{show_key(key)}: missing")
    elif got != value:
        report.different += 1
        report.note(f"{show_key(key)}: value differs ({len(got)} bytes in the target, {len(value)} read)")
    elif deadline == NO_EXPIRY and pttl != -1:
        report.ttl_off += 1
        report.note(f"{show_key(key)}: expires in {pttl} ms in the target, never in memcached")
    elif deadline != NO_EXPIRY and (pttl < 0 or not -late <= pttl - deadline + sent_at <= TTL_TOLERANCE_MS):
        report.ttl_off += 1
        report.note(f"{show_key(key)}: TTL {pttl} ms in the target, {deadline - now}–{deadline - sent_at} ms "
                    "expected")
    else:
        report.flags_off += 1
        report.note(f"{show_key(key)}: flags {stored!r} in {hash_name!r}, {flags} in memcached")


__all__ = ["Item", "TTL_TOLERANCE_MS", "TargetCheck", "check_target"]
