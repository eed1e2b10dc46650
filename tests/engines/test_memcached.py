"""Talking to memcached: the metadump parser on every recorded format variant, the drained dump and the
fetchers against real memcached servers (Debian's 1.6.18), each compared with what the server holds.

Servers are started here on free loopback ports (``MemcachedServer``) and stopped at the end.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time

import pytest

from snaptool.engines.memcached_conn import CannotEnumerate, MemcachedAddress, MemcachedInputError, ServerInfo, \
    open_raw, probe, read_auth_file
from snaptool.engines.memcached_dump import MODES, DumpSpool, MetadumpError, choose_mode, decode_key, describe_mode, \
    dump_runs, parse_chunk, parse_line, parse_mgdump, refusal, start_dump
from snaptool.engines.memcached_ring import Ring
from snaptool.engines.memcached_fetch import GetsFetcher, MetaFetcher, columns
from snaptool.engines.memcached_dump import DumpRun, Listing, batches, lean_chunk, text_safe, unseen
from snaptool.engines.memcached_server import MemcachedServer, find_memcached
from snaptool.errors import EngineError

pytestmark = pytest.mark.skipif(find_memcached() is None, reason="memcached not installed")

# --------------------------------------------------------------------------- recorded lines

#: `lru_crawler metadump all` on memcached 1.6.18, exactly as printed (no leading OK, no flags=)
RECORDED_1_6_18 = b"""\
key=k_utf8_%D0%BA%D0%BB%D1%8E%D1%87 exp=-1 la=1795663285 cas=12 fetch=no cls=1 size=82
key=k_1000000 exp=-1 la=1795663285 cas=14 fetch=no cls=39 size=1000068
key=k_ttl0 exp=-1 la=1795663285 cas=2 fetch=yes cls=1 size=78
key=k_30d_exact exp=1798255285 la=1795663285 cas=5 fetch=no cls=2 size=100
key=bin%20key%0Awith%00nul exp=1795663406 la=1795663286 cas=16 fetch=no cls=1 size=84
key=k_1MiB_minus exp=-1 la=1795663286 cas=15 fetch=no cls=39 size=1048071
key=k_rel300 exp=1795663585 la=1795663285 cas=3 fetch=yes cls=1 size=88
key=k_pct%252F%2F%3A%3F%3D%26 exp=-1 la=1795663285 cas=13 fetch=no cls=2 size=98
key=k_abs exp=1795666885 la=1795663285 cas=4 fetch=no cls=1 size=95
key=k_flagsmax exp=-1 la=1795663285 cas=8 fetch=no cls=1 size=89
key=k_flags2%5E32 exp=-1 la=1795663285 cas=9 fetch=no cls=1 size=71
key=k_flags_over exp=-1 la=1795663285 cas=10 fetch=no cls=1 size=72
key=k_bin exp=-1 la=1795663285 cas=11 fetch=no cls=1 size=86
"""


def test_parse_1_6_18_lines_decode_keys_to_bytes() -> None:
    run = parse_chunk(RECORDED_1_6_18)
    assert len(run) == 13
    assert run.keys[0] == "k_utf8_ключ".encode()
    assert run.keys[4] == b"bin key\nwith\x00nul"
    assert run.keys[7] == b"k_pct%2F/:?=&"  # a literal %2F stays: only one level is decoded
    assert run.keys[10] == b"k_flags2^32"
    assert run.exps[0] == -1 and run.exps[3] == 1798255285
    assert run.cas[1] == b"14" and run.sizes[1] == 1000068
    assert run.flags is None  # 1.6.18 prints no flags=
    assert run.unsafe  # the key with a space, newline and NUL needs base64 for mg
    assert run.entry(6) == parse_line(RECORDED_1_6_18.splitlines()[6])


@pytest.mark.parametrize("line, expected", [
    # 1.6.24+: flags= at the end
    (b"key=user%3A1 exp=-1 la=1795663285 cas=7 fetch=no cls=1 size=82 flags=42", (b"user:1", -1, 7, 82, 42)),
    # 1.6.39+: extstore fields after flags
    (b"key=big exp=1795666885 la=1 cas=18446744073709551615 fetch=no cls=39 size=5242954 flags=3 "
     b"ext_page=12 ext_offset=4096", (b"big", 1795666885, 2**64 - 1, 5242954, 3)),
    # 1.4.31-era: no cls or size
    (b"key=old exp=1475000000 la=1474999000 cas=3 fetch=no", (b"old", 1475000000, 3, 0, None)),
    # tokens in another order, an unknown one
    (b"cas=9 size=70 key=a%20b future=x exp=-1", (b"a b", -1, 9, 70, None)),
])
def test_parse_variants(line: bytes, expected: tuple) -> None:
    assert tuple(parse_line(line)) == expected
    run = parse_chunk(line + b"\n")
    assert tuple(run.entry(0)) == expected


def test_parse_mixed_chunk_uses_the_careful_path() -> None:
    chunk = b"key=a exp=-1 la=1 cas=1 fetch=no cls=1 size=70\ncas=2 key=b exp=5\n"
    run = parse_chunk(chunk)
    assert run.keys == [b"a", b"b"] and run.cas == [b"1", b"2"] and run.exps == [-1, 5]


def test_lean_parse_for_the_second_listing() -> None:
    lean = lean_chunk(RECORDED_1_6_18)
    full = parse_chunk(RECORDED_1_6_18)
    assert lean.keys == full.keys and lean.cas == full.cas
    picked = lean.parse([4, 7])  # only the lines to read again are parsed fully
    assert picked.keys == [full.keys[4], full.keys[7]] and picked.exps == [full.exps[4], full.exps[7]]
    assert picked.unsafe


def test_bulk_replies_need_announced_sizes_to_match() -> None:
    plain = b"VA 2 f0 t-1 c1\r\nab\r\nVA 1 f3 t60 c2\r\nc\r\nMN\r\n"
    assert columns(plain, 2) == ([b"ab", b"c"], [0, 3], [-1, 60], [b"1", b"2"])
    # a value holding CRLF and something shaped like a reply: the sizes give it away
    fake = b"VA 8 f0 t-1 c1\r\nx\r\nVA 1 f0 t-1 c9\r\ny\r\nMN\r\n"
    assert columns(fake, 2) is None
    assert columns(b"EN\r\nVA 1 f0 t-1 c1\r\nz\r\nMN\r\n", 2) is None  # a miss: parsed one by one
    assert columns(b"VA 1 f0 t0 c1\r\nz\r\nMN\r\n", 1) is None  # a TTL of 0 needs a decision


def test_parse_rejects_garbage_and_decodes_every_escape() -> None:
    with pytest.raises(MetadumpError, match="unexpected line"):
        parse_chunk(b"key=a exp=-1 la=1 cas=1 fetch=no cls=1 size=70\nERROR\n")
    assert decode_key(b"%00%FF%25%3a%3A") == b"\x00\xff%::"


@pytest.mark.parametrize("line, kind, retry", [
    (b"BUSY currently processing crawler request", MetadumpError, True),
    (b"ERROR locked try again later", MetadumpError, True),
    (b"CLIENT_ERROR lru crawler disabled", CannotEnumerate, False),
    (b"ERROR metadump not allowed", CannotEnumerate, False),
    (b"CLIENT_ERROR unauthenticated", MetadumpError, False),
    (b"ERROR cannot pipeline other commands before metadump", MetadumpError, False),
    (b"BADCLASS invalid class id", MetadumpError, False),
    (b"ERROR", CannotEnumerate, False),  # ElastiCache, and releases without the listing asked for
])
def test_refusal_lines(line: bytes, kind: type, retry: bool) -> None:
    error = refusal(line, "h:1")
    assert isinstance(error, kind)
    assert getattr(error, "retry", False) is retry
    if kind is CannotEnumerate:
        assert "dual-write" in str(error)


# --------------------------------------------------------------------------- the drain, fed recorded lines

def drained(tmp_path, pieces: list[bytes], **spool_options) -> tuple[DumpSpool, list[bytes]]:
    """Feed ``pieces`` to a real DumpSpool through a socket pair, one send each, then read the
    dump while the connection stays open (a server falls silent; it does not hang up)."""
    ours, theirs = socket.socketpair()
    spool = DumpSpool(ours, str(tmp_path / "spool"), "h:1", **spool_options).start(b"")
    with theirs:
        for piece in pieces:
            theirs.sendall(piece)
            time.sleep(0.05)  # pacing, so the pieces arrive as separate reads
        runs = [parse_chunk(chunk) for chunk in spool.chunks()]
    spool.close()
    return spool, [key for run in runs for key in run.keys]


def test_a_dump_without_end_ends_with_a_silence_and_says_so(tmp_path) -> None:
    """Before 1.5.4 no END line: the lines, then nothing while the connection stays open."""
    lines = RECORDED_1_6_18.splitlines(keepends=True)
    spool, keys = drained(tmp_path, lines, ends=False, stall_timeout=30, silence=0.5)
    assert keys == parse_chunk(RECORDED_1_6_18).keys and spool.error is None
    assert spool.inferred_end  # the report says the listing may be incomplete


def test_an_empty_dump_without_end_is_empty_not_stalled(tmp_path) -> None:
    spool, keys = drained(tmp_path, [], ends=False, stall_timeout=0.5, silence=0.5)
    assert keys == [] and spool.error is None and spool.inferred_end


def test_no_dump_from_a_server_that_holds_items_is_a_stall(tmp_path) -> None:
    """Before 1.5.4 a silence ends a dump, but nothing at all from a server whose stats count
    items is a stalled crawler, never a successful listing of no keys."""
    with pytest.raises(MetadumpError, match=r"sent no dump data for 0\.5s \(stalled\)"):
        drained(tmp_path, [], ends=False, stall_timeout=0.5, silence=0.5, holds_items=True)
    spool, keys = drained(tmp_path, [RECORDED_1_6_18], ends=False, stall_timeout=0.5, silence=0.5, holds_items=True)
    assert len(keys) == 13 and spool.inferred_end  # lines, then the silence: the usual end


def test_a_short_pause_mid_dump_is_not_its_end(tmp_path) -> None:
    """A pause shorter than the silence bound: the lines after it are listed too."""
    ours, theirs = socket.socketpair()
    spool = DumpSpool(ours, str(tmp_path / "spool"), "h:1", ends=False, stall_timeout=30, silence=3).start(b"")
    lines = RECORDED_1_6_18.splitlines(keepends=True)
    with theirs:
        theirs.sendall(b"".join(lines[:5]))
        spool.wait_started()
        time.sleep(0.5)
        theirs.sendall(b"".join(lines[5:]))
        theirs.shutdown(socket.SHUT_WR)  # the server closes: also an end for a release without END
        keys = [key for chunk in spool.chunks() for key in parse_chunk(chunk).keys]
    spool.close()
    assert keys == parse_chunk(RECORDED_1_6_18).keys and not spool.inferred_end


@pytest.mark.parametrize("pieces, listed", [
    ([b"OK\r\n" + RECORDED_1_6_18 + b"END\r\n"], 13),
    ([b"O", b"K\r\n", RECORDED_1_6_18[:50], RECORDED_1_6_18[50:] + b"EN", b"D\r\n"], 13),  # split across reads
    ([b"OK\r", b"\nEND\r\n"], 0),  # an empty dump of 1.6.43+
])
def test_the_leading_ok_of_1_6_43_is_dropped(tmp_path, pieces: list[bytes], listed: int) -> None:
    spool, keys = drained(tmp_path, pieces)
    assert spool.error is None and not spool.inferred_end
    assert keys == parse_chunk(RECORDED_1_6_18).keys[:listed]


#: `lru_crawler mgdump hash` (1.6.19+) in the format of memcached's crawler (crawler.c): a text key as
#: stored, a key stored through meta `b` in base64 with ` b`, CRLF line ends, `EN` at the end. Debian's
#: 1.6.18 answers `ERROR`, so these lines follow the source, not a live capture.
RECORDED_MGDUMP = (b"mg k_ttl0\r\nmg k_utf8_\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\r\n"
                   b"mg YmluIGtleQp3aXRoAG51bA== b\r\nmg EN\r\nmg k:1\r\nEN\r\n")


def test_mgdump_lines_through_the_spool(tmp_path) -> None:
    ours, theirs = socket.socketpair()
    with theirs:
        spool = DumpSpool(ours, str(tmp_path / "spool"), "h:1", terminator=b"EN\r\n").start(b"")
        for at in range(0, len(RECORDED_MGDUMP), 7):  # in pieces, as a network delivers them
            theirs.sendall(RECORDED_MGDUMP[at:at + 7])
        runs = [parse_mgdump(chunk) for chunk in spool.chunks()]
    spool.close()
    keys = [key for run in runs for key in run.keys]
    assert keys == [b"k_ttl0", "k_utf8_ключ".encode(), b"bin key\nwith\x00nul", b"EN", b"k:1"]
    assert all(run.unsafe for run in runs if b"bin key\nwith\x00nul" in run.keys)
    assert {e for run in runs for e in run.exps} == {-1} and {s for run in runs for s in run.sizes} == {0}


@pytest.mark.parametrize("chunk", [b"mg bin proto key\r\n", b"mg a\r\nx\r\n", b"mg !!!notbase64 b\r\n"])
def test_mgdump_broken_lines_are_errors(chunk: bytes) -> None:
    with pytest.raises(MetadumpError, match="mgdump"):
        parse_mgdump(chunk)


@pytest.mark.parametrize("version, requested, mode, why", [
    ("1.6.8", "auto", "metadump all", "repeated"),
    ("1.6.18", "auto", "metadump hash", "mgdump needs 1.6.19"),
    ("1.6.19", "auto", "metadump hash", "chosen over mgdump hash"),
    ("1.6.40", "mgdump", "mgdump hash", "--enumerate mgdump"),
])
def test_the_probe_chooses_a_listing_and_says_why(version: str, requested: str, mode: str, why: str) -> None:
    info = ServerInfo(version, {}, {})
    assert describe_mode(info, choose_mode(info, requested), requested)[0] == mode
    assert why in describe_mode(info, choose_mode(info, requested), requested)[1]


def test_mgdump_needs_1_6_19() -> None:
    with pytest.raises(EngineError, match="mgdump needs memcached 1.6.19"):
        choose_mode(ServerInfo("1.6.18", {}, {}), "mgdump")


def test_ring_descriptions() -> None:
    assert str(Ring.parse("ketama:3,1")) == "ketama:3,1" and Ring.parse("modula").weights is None
    for bad in ("consistent", "ketama:", "ketama:0,1", "modula:a", "modula:1000000000,1"):
        with pytest.raises(MemcachedInputError, match="--ring"):
            Ring.parse(bad)
    with pytest.raises(MemcachedInputError, match="2 weight"):
        Ring.parse("ketama:1,2").bind([MemcachedAddress.parse("a")])


def test_ketama_points_leave_the_default_port_out_as_libmemcached_does() -> None:
    """uhashring builds the continuum independently; its node names are libmemcached's point
    names: the host alone on port 11211, host:port on any other."""
    from uhashring import HashRing

    addresses = [MemcachedAddress.parse(a) for a in ("mc1", "mc2:11300", "10.0.0.7:11211")]
    for weights in ((1, 1, 1), (5, 2, 1)):
        ring = Ring("ketama", weights).bind(addresses)
        reference = HashRing({name: {"weight": w} for name, w in zip(("mc1", "mc2:11300", "10.0.0.7"), weights)},
                             hash_fn="ketama")
        names = {"mc1": 0, "mc2:11300": 1, "10.0.0.7": 2}
        assert all(ring.server(b"user:%d" % i) == names[reference.get_node("user:%d" % i)] for i in range(5000))


def test_addresses_and_auth_files(tmp_path) -> None:
    assert MemcachedAddress.parse("10.0.0.5").endpoint == "10.0.0.5:11211"
    assert MemcachedAddress.parse("memcached://[::1]:11300").endpoint == "[::1]:11300"
    with pytest.raises(MemcachedInputError):
        MemcachedAddress.parse("redis://x:1")
    good = tmp_path / "auth"
    good.write_text("# users\nalice:s3cret\n")
    creds = read_auth_file(str(good))
    assert creds.username == "alice" and "s3cret" not in repr(creds)
    bad = tmp_path / "bad"
    bad.write_text("no colon here\n")
    with pytest.raises(MemcachedInputError, match="user:password"):
        read_auth_file(str(bad))


# --------------------------------------------------------------------------- live servers

def meta_set(address: MemcachedAddress, items: list[tuple[bytes, bytes, int, int]], token: bytes | None = None) -> None:
    """Store (key, value, flags, exptime) items with meta `ms` (base64 keys where the text protocol
    cannot carry them: memcached limits the encoded form to 250 bytes too), quietly, then wait for MN."""
    with socket.create_connection((address.host, address.port)) as sock:
        if token:
            sock.sendall(b"set auth 0 0 %d\r\n%b\r\n" % (len(token), token))
            assert sock.recv(64) == b"STORED\r\n"
        body = b"".join(b"ms %b %d F%d T%d q\r\n%b\r\n" % (k, len(v), f, t, v) if text_safe(k) else
                        b"ms %b %d b F%d T%d q\r\n%b\r\n" % (base64.b64encode(k), len(v), f, t, v)
                        for k, v, f, t in items)
        sock.sendall(body + b"mn\r\n")
        got = b""
        while not got.endswith(b"MN\r\n"):
            got += sock.recv(1 << 16)
        assert got == b"MN\r\n", got[:200]


def meta_get(address: MemcachedAddress, key: bytes) -> tuple[bytes, int, int] | None:
    """(value, flags, remaining ttl) of one key, straight from the server."""
    with socket.create_connection((address.host, address.port)) as sock:
        sock.sendall(b"mg %b v f t\r\n" % key if text_safe(key) else b"mg %b b v f t\r\n" % base64.b64encode(key))
        data = b""
        while b"\r\n" not in data or (data.startswith(b"VA") and len(data) < data.index(b"\r\n") + 4 +
                                      int(data.split()[1])):
            data += sock.recv(1 << 20)
    if data.startswith(b"EN"):
        return None
    head, rest = data.split(b"\r\n", 1)
    parts = head.split()
    flags = int(next(p for p in parts if p.startswith(b"f"))[1:])
    ttl = int(next(p for p in parts if p.startswith(b"t"))[1:])
    return rest[:int(parts[1])], flags, ttl


KEYS = [b"plain", "клю:ч".encode(), b"bin key\r\nwith\x00nul", b"pct%3A/", b"x" * 250]
#: a value that looks like more replies and like the end of a batch
TRICKY = b"a\r\nVA 1 f0 t-1 c9\r\nb\r\nEN\r\nMN\r\n"


@pytest.fixture(scope="module")
def server():
    with MemcachedServer() as mc:
        now = int(time.time())
        items = [(b"k:%05d" % i, b"v%d" % i * (i % 7), i % 3, 0 if i % 2 else 3600) for i in range(3000)]
        items += [(k, b"val-" + k, 77, now + 40 * 86400) for k in KEYS]
        items.append((b"tricky", TRICKY, 5, 0))
        meta_set(mc.address, items)
        yield mc, {k: (v, f, t) for k, v, f, t in items}


def test_probe_reads_version_settings_and_clock(server) -> None:
    mc, items = server
    info = probe(mc.address)
    assert info.version >= (1, 6, 9) and info.metadump_hash and info.meta and info.crawler
    assert info.items == len(items)
    assert abs(info.clock() - time.time()) < 3
    assert choose_mode(info) == "hash"


@pytest.mark.parametrize("mode", ["hash", "all"])
def test_dump_lists_every_key_the_server_holds(server, tmp_path, mode: str) -> None:
    mc, items = server
    info = probe(mc.address)
    runs = list(dump_runs(mc.address, info, str(tmp_path / "spool"), mode=mode))
    keys = [k for run in runs for k in run.keys]
    assert sorted(keys) == sorted(items)  # every key exactly once, binary and 250-byte keys included
    assert not list(tmp_path.iterdir())  # the spool is removed
    assert info.items == len(keys)


def test_unseen_drops_keys_listed_before_or_twice_in_one_run() -> None:
    """An LRU walk lists an item the LRU moves again, in a later walk or later in the same one."""
    lines = RECORDED_1_6_18.splitlines(keepends=True)
    run = parse_chunk(b"".join(lines[:3] + lines[1:2] + lines[3:5]))  # the second line twice
    seen = {run.keys[0]}  # listed by an earlier walk
    fresh = unseen(run, seen)
    assert fresh.keys == [run.keys[i] for i in (1, 2, 4, 5)]
    assert fresh.cas == [run.cas[i] for i in (1, 2, 4, 5)] and fresh.unsafe  # columns stay aligned
    assert seen == set(run.keys) and unseen(run, seen).keys == []


def test_metadump_all_walks_again_until_a_walk_finds_nothing_new(tmp_path) -> None:
    """Forced ``metadump all`` on 1.6.18: keys written once the first walk is over (its dump read to
    END) are found by the second walk; a third finds nothing new and ends the listing. Every key is
    yielded once; the walks of a quiet server list every key each time, the repeats are counted."""
    first = [(b"old:%04d" % i, b"v", 0, 0) for i in range(2000)]
    late = [(b"late:%03d" % i, b"w", 0, 0) for i in range(300)]
    with MemcachedServer() as mc:
        meta_set(mc.address, first)
        listing = Listing(mc.address, probe(mc.address), str(tmp_path / "spool"), mode="all")
        walks = listing.runs()
        keys = list(next(walks).keys)
        assert listing.walked == 0 and listing.spool is not None
        deadline = time.monotonic() + 30
        while not listing.spool.done:  # the server has printed END: its first walk is over
            assert time.monotonic() < deadline, "the first walk never ended"
            time.sleep(0.01)
        meta_set(mc.address, late)
        for run in walks:
            keys += run.keys
        held = {k for k, *_ in first + late}
        assert sorted(keys) == sorted(held)  # every key, each once
        assert listing.walked == 3  # the late keys made the second walk find something new
        # walk 2 repeats the old keys, walk 3 all of them; the LRU maintainer moving an item between
        # segments mid-walk can make one walk list it twice or miss it, so allow a few either way
        assert abs(listing.repeated - (len(first) + len(held))) <= 20
        assert probe(mc.address).items == len(held)
    assert not list(tmp_path.iterdir())  # every walk's spool removed


def test_meta_fetch_equals_what_the_server_holds(server, tmp_path) -> None:
    mc, items = server
    info = probe(mc.address)
    runs = list(dump_runs(mc.address, info, str(tmp_path / "s")))
    fetcher = MetaFetcher(mc.address, connections=3)
    try:
        got = {}
        for batch, results, cols in fetcher.fetch(b for run in runs for b in batches(run, max_keys=100)):
            got.update(zip(batch.keys, results if cols is None else zip(*cols)))
    finally:
        fetcher.close()
    assert got[b"tricky"][:2] == (TRICKY, 5)  # parsed by its announced length, not taken for replies
    for key in KEYS + [b"k:00000", b"k:00001", b"k:02999"]:
        value, flags, ttl, _ = got[key]
        live = meta_get(mc.address, key)
        assert (value, flags) == live[:2] == items[key][:2]
        assert abs(ttl - live[2]) <= 1
    assert got[b"k:00000"][2] > 3500 and got[b"k:00001"][2] == -1
    assert got[KEYS[0]][2] > 39 * 86400  # an absolute exptime beyond 30 days, as remaining seconds


def test_gets_fallback_reads_the_same_and_reports_binary_keys(server) -> None:
    mc, items = server
    info = probe(mc.address)
    now = int(info.clock())
    keys = [b"k:00000", b"k:00001", b"plain", KEYS[2]]
    run = DumpRun(keys, [now + 3600, -1, now + 40 * 86400, -1], [b"0"] * 4, [0] * 4, unsafe=True)
    fetcher = GetsFetcher(mc.address, info)
    try:
        ((_, results, columns),) = list(fetcher.fetch([run]))
    finally:
        fetcher.close()
    assert columns is None
    assert results[0][:2] == items[b"k:00000"][:2] and 3590 <= results[0][2] <= 3600
    assert results[1][:3] == (*items[b"k:00001"][:2], -1)
    assert results[2][:2] == items[b"plain"][:2]
    assert isinstance(results[3], str) and "meta" in results[3]  # said, never skipped in silence


def test_stalled_server_trips_the_watchdog(tmp_path) -> None:
    with MemcachedServer() as mc:
        meta_set(mc.address, [(b"k%d" % i, b"v", 0, 0) for i in range(100)])
        info = probe(mc.address)
        mc.pause()
        try:
            with pytest.raises(EngineError, match="did not answer version within 1s"):
                start_dump(mc.address, info, "hash", str(tmp_path / "spool"), stall_timeout=1.0)  # its first look
            spool = DumpSpool(open_raw(mc.address, 1.0), str(tmp_path / "spool"), mc.endpoint,
                              stall_timeout=1.0).start(MODES["hash"])
            with pytest.raises(MetadumpError, match="stalled"):
                list(spool.chunks())
            spool.close()
        finally:
            mc.resume()
        assert not (tmp_path / "spool").exists()
        # the server is not left waiting on the abandoned dump: a new one works at once
        assert sum(len(r) for r in dump_runs(mc.address, info, str(tmp_path / "again"))) == 100


@pytest.mark.parametrize("args, reason", [(["-o", "no_lru_crawler"], "crawler is disabled"),
                                          (["-X"], "dumping keys is disabled")])
def test_servers_that_cannot_list_keys_are_refused(args: list[str], reason: str, tmp_path) -> None:
    with MemcachedServer(args) as mc:
        info = probe(mc.address)
        with pytest.raises(CannotEnumerate, match=reason):
            info.require_enumerable(mc.endpoint)
        # the server's own answer to the dump says the same, had the settings not told
        spool = start_dump(mc.address, info, "hash", str(tmp_path / "spool"))
        with pytest.raises(CannotEnumerate, match=reason):
            list(spool.chunks())
        spool.close()


def test_ascii_auth(tmp_path) -> None:
    auth = tmp_path / "auth.txt"
    auth.write_text("alice:s3cret\n")
    with MemcachedServer(["-Y", str(auth)]) as mc:
        meta_set(mc.address, [(b"secret:%d" % i, b"v%d" % i, 5, 0) for i in range(50)], token=b"alice s3cret")
        with pytest.raises(EngineError, match="--auth-file"):
            probe(mc.address)
        wrong = tmp_path / "wrong.txt"
        wrong.write_text("alice:nope\n")
        with pytest.raises(EngineError, match="refused the login"):
            probe(MemcachedAddress(mc.host, mc.port, read_auth_file(str(wrong))))
        address = MemcachedAddress(mc.host, mc.port, read_auth_file(str(auth)))
        info = probe(address)
        assert info.items == 50
        (run,) = list(dump_runs(address, info, str(tmp_path / "spool")))
        fetcher = MetaFetcher(address)
        try:
            ((batch, results, columns),) = list(fetcher.fetch([run]))
        finally:
            fetcher.close()
        assert sorted((k, r[0], r[1]) for k, r in zip(batch.keys, results or zip(*columns))) == \
            sorted((b"secret:%d" % i, b"v%d" % i, 5) for i in range(50))


# --------------------------------------------------------------------------- servers that cannot be listed

def sasl_server(tmp_path, monkeypatch) -> MemcachedServer:
    """memcached -S: binary protocol only. It needs a SASL configuration to start at all."""
    (tmp_path / "memcached.conf").write_text("mech_list: plain\n")
    monkeypatch.setenv("SASL_CONF_PATH", str(tmp_path))
    return MemcachedServer(["-S"])


def test_a_sasl_only_server_is_refused_with_the_reason(tmp_path, monkeypatch) -> None:
    auth = tmp_path / "auth.txt"
    auth.write_text("alice:s3cret\n")
    with sasl_server(tmp_path, monkeypatch) as mc:
        for address in (mc.address, MemcachedAddress(mc.host, mc.port, read_auth_file(str(auth)))):
            with pytest.raises(CannotEnumerate) as refused:
                probe(address, timeout=30)
            message = str(refused.value)
            assert "binary protocol" in message and "SASL" in message and "dual-write" in message
            assert str(mc.address) in message and "\n" not in message


def test_a_server_that_is_not_memcached_is_refused(engine_server) -> None:
    node = engine_server("redis-7.0")
    with pytest.raises(CannotEnumerate, match="answered version with .-ERR unknown command.*not memcached.*dual-write"):
        probe(MemcachedAddress(node.host, node.port))
    assert node.client().ping()  # it was only asked, nothing else


def replay(answer: bytes) -> tuple[MemcachedAddress, threading.Thread]:
    """A listener that answers one connection's probe with recorded bytes, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.recv(4096)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return MemcachedAddress("127.0.0.1", listener.getsockname()[1]), thread


def test_a_service_that_rejects_stats_settings_is_refused() -> None:
    """ElastiCache Serverless answers version but rejects stats settings."""
    address, thread = replay(b"VERSION 1.6.22\r\nERROR\r\nERROR\r\n")
    with pytest.raises(CannotEnumerate, match="answered stats settings with 'ERROR'.*ElastiCache.*dual-write"):
        probe(address)
    thread.join()


def test_plain_error_to_a_listing_is_refused_with_the_reason(server, tmp_path) -> None:
    """Debian's 1.6.18 answers plain ERROR to lru_crawler mgdump, as ElastiCache does to every
    lru_crawler command: the reason and the dual-write advice, and nothing spooled."""
    mc, _ = server
    spool = start_dump(mc.address, probe(mc.address), "mgdump", str(tmp_path / "spool"))
    with pytest.raises(CannotEnumerate) as refused:
        list(spool.chunks())
    spool.close()
    message = str(refused.value)
    assert "lru_crawler mgdump hash with ERROR" in message and "ElastiCache" in message and "dual-write" in message
    assert spool.written == 0 and not (tmp_path / "spool").exists()


def answering(mc: MemcachedServer, connections: int = 8) -> int:
    """How many new connections get an answer to `version` (a worker blocked on the crawler lock does not)."""
    count = 0
    for _ in range(connections):
        with socket.create_connection((mc.host, mc.port)) as sock:
            sock.settimeout(1)
            sock.sendall(b"version\r\n")
            with contextlib.suppress(socket.timeout):
                count += sock.recv(64).startswith(b"VERSION")
    return count


def crawler_settles(mc: MemcachedServer, running: str) -> None:
    """Until ``stats`` says lru_crawler_running is ``running`` (at most about 10 s)."""
    for _ in range(200):
        if probe(mc.address).stats["lru_crawler_running"] == running:
            return
        time.sleep(0.05)
    raise AssertionError(f"lru_crawler_running never became {running}")


def test_a_crawler_job_already_running_is_waited_for_then_refused(tmp_path) -> None:
    """Another client's dump that nobody reads keeps the crawler busy. On 1.6.18 a second crawler
    command is not answered BUSY but blocks a worker thread: none may be sent, so the migration
    waits (--timeout), then refuses with one clear line."""
    with MemcachedServer() as mc:
        meta_set(mc.address, [(b"k:%06d" % i, b"x" * 20, 0, 0) for i in range(100000)])
        with socket.create_connection((mc.host, mc.port)) as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            other.sendall(b"lru_crawler metadump all\r\n")  # never read
            crawler_settles(mc, "1")
            assert answering(mc) == 8
            with pytest.raises(MetadumpError, match="another LRU crawler job .* none was started"):
                start_dump(mc.address, probe(mc.address), "hash", str(tmp_path / "spool"), stall_timeout=2)
            assert answering(mc) == 8  # no crawler command of ours waits behind it, holding a worker
            assert not (tmp_path / "spool").exists()
        crawler_settles(mc, "0")  # the abandoned dump ends with its socket
        assert sum(len(run) for run in dump_runs(mc.address, probe(mc.address), str(tmp_path / "again"))) == 100000
