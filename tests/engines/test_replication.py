"""snaptool.engines.replication against live engines: snapshots taken over the replication
protocol must be the node's data (same DEBUG DIGEST), however the node sends them (disk-based or
diskless, plain or TLS, any kind of login), and every failure must be one EngineError naming the
node without its password.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable

import pytest

from snaptool.engines.address import NodeAddress, TlsOptions
from snaptool.engines.discovery import Engine
from snaptool.engines.replication import MARK_LEN, RdbStream, open_rdb_stream
from snaptool.engines.sample import populate
from snaptool.engines.server import EngineServer, free_port
from snaptool.errors import EngineError
from snaptool.jobs.digest import digest_file, digest_records
from snaptool.rdb.checksum import crc64
from snaptool.rdb.items import Record
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.targets import parse_target

from tls_certs import make_ca, make_certs, tls_server

DISK = {"repl-diskless-sync": "no"}
DISKLESS = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "0"}
MODES = {"disk": DISK, "diskless": DISKLESS}
SECRET = "s3cret-Pa55word"

StartServer = Callable[..., EngineServer]


def live_digest(server: EngineServer) -> str:
    client = server.client()
    try:
        return client.execute_command("DEBUG", "DIGEST").decode()
    finally:
        client.close()


def drain(stream: RdbStream, path: Path, size: int = 1 << 20) -> bytes:
    """Write the whole stream to ``path`` as a consumer would and return the bytes."""
    with stream, open(path, "wb") as out:
        while chunk := stream.read(size):
            out.write(chunk)
    return path.read_bytes()


def assert_whole_rdb(data: bytes) -> None:
    """Header, EOF opcode and a CRC-64 trailer that matches: nothing missing, no mark appended."""
    assert data[:5] in (b"REDIS", b"VALKE")
    assert data[-9] == 0xFF
    assert crc64(data[:-8]) == int.from_bytes(data[-8:], "little")


def assert_redacted(exc: pytest.ExceptionInfo[EngineError], address: NodeAddress) -> None:
    message = str(exc.value)
    assert address.redacted() in message
    assert "\n" not in message
    if address.password:
        assert address.password not in message


# ---------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("mode", sorted(MODES))
def test_snapshot_digest_equals_live_digest(each_engine: Engine, engine_server: StartServer,
                                            tmp_path: Path, mode: str) -> None:
    server = engine_server(each_engine, config=MODES[mode])
    populate(server.client, each_engine)
    stream = open_rdb_stream(server.address, timeout=30)
    info = stream.info
    assert info.mode == mode
    assert info.replid is not None and len(info.replid) == 40 and info.offset is not None
    data = drain(stream, tmp_path / "snap.rdb")
    assert stream.closed
    assert stream.bytes_read == len(data)
    if mode == "disk":
        assert info.size == len(data)
    else:
        assert info.size is None
    assert_whole_rdb(data)
    report = digest_file(tmp_path / "snap.rdb", parse_target(each_engine.target_name))
    assert report.keys > 100
    assert report.digest == live_digest(server)


def test_without_diskless_a_diskless_node_sends_a_sized_payload(engine_server: StartServer,
                                                                 tmp_path: Path) -> None:
    """Not announcing ``capa eof`` makes a node set up for diskless sync save to disk first."""
    server = engine_server(config=DISKLESS)
    server.client().set("k", "v")
    stream = open_rdb_stream(server.address, diskless=False)
    assert stream.info.mode == "disk"
    data = drain(stream, tmp_path / "snap.rdb")
    assert stream.info.size == len(data)
    assert_whole_rdb(data)


def test_small_and_odd_reads_never_show_the_end_mark(engine_server: StartServer, tmp_path: Path) -> None:
    """Diskless: reads smaller than, equal to and just above the held-back mark length, and
    readinto, all give the same RDB bytes and stop exactly before the mark."""
    server = engine_server(config=DISKLESS)
    engine = server.engine
    populate(server.client, engine)
    sizes = [1, MARK_LEN - 1, MARK_LEN, MARK_LEN + 1, 7, 4096, 100_000]
    parts: list[bytes] = []
    with open_rdb_stream(server.address) as stream:
        assert stream.info.mode == "diskless"
        i = 0
        while True:
            size = sizes[i % len(sizes)]
            i += 1
            if i % 3 == 0:
                buf = bytearray(size)
                n = stream.readinto(buf)
                chunk = bytes(buf[:n])
            else:
                chunk = stream.read(size)
            assert len(chunk) <= size
            if not chunk:
                break
            parts.append(chunk)
        assert stream.read(10) == b""  # stays at the end
        assert stream.bytes_read == sum(map(len, parts))
    data = b"".join(parts)
    assert_whole_rdb(data)
    (tmp_path / "snap.rdb").write_bytes(data)
    assert digest_file(tmp_path / "snap.rdb", parse_target(engine.target_name)).digest == live_digest(server)


def test_rdb_reader_consumes_the_stream_directly(engine_server: StartServer) -> None:
    """No temporary file: the RDB reader takes the socket stream as its input."""
    server = engine_server(config=DISKLESS)
    engine = server.engine
    populate(server.client, engine)
    with open_rdb_stream(server.address) as stream:
        reader = RdbReader(stream, path=server.address.redacted())
        header = reader.read_header()
        report = digest_records((i for i in reader.items() if type(i) is Record),
                                parse_target(engine.target_name))
    assert header.version == engine.max_rdb_version
    assert report.digest == live_digest(server)


def test_keep_alives_while_the_node_waits_reset_the_timeout(engine_server: StartServer) -> None:
    """With a 3 s diskless delay the node is silent apart from its one-per-second newlines, so
    a 2 s timeout only holds because the keep-alives are read (and skipped)."""
    server = engine_server(config={"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "3"})
    server.client().set("k", "v")
    with open_rdb_stream(server.address, timeout=2) as stream:
        assert stream.info.mode == "diskless"
        assert stream.info.waited >= 2.0
        data = stream.read()
    assert_whole_rdb(data)


# ---------------------------------------------------------------------------------------- logins
def test_requirepass(engine_server: StartServer) -> None:
    server = engine_server(config={**DISKLESS, "requirepass": SECRET})
    server.client().set("k", "v")
    with open_rdb_stream(server.address) as stream:
        assert_whole_rdb(stream.read())

    wrong = NodeAddress(server.host, server.port, password="not-" + SECRET)
    with pytest.raises(EngineError, match=r"^authentication to redis://127\.0\.0\.1:\d+ failed") as exc:
        open_rdb_stream(wrong)
    assert_redacted(exc, wrong)
    assert SECRET not in str(exc.value)

    anonymous = NodeAddress(server.host, server.port)
    with pytest.raises(EngineError, match="NOAUTH") as exc:
        open_rdb_stream(anonymous)
    assert_redacted(exc, anonymous)


def test_acl_user_with_only_replica_rights(engine_server: StartServer, tmp_path: Path) -> None:
    """``+psync +replconf`` is all a backup user needs; with ``+sync`` instead of ``+psync`` the
    client falls back to SYNC; without ``+replconf`` it is refused with a clear message."""
    server = engine_server(config=DISKLESS)
    engine = server.engine
    populate(server.client, engine)
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", "backup", "reset", "on", ">" + SECRET, "+psync", "+replconf")
    admin.execute_command("ACL", "SETUSER", "oldstyle", "reset", "on", ">" + SECRET, "+sync", "+replconf")
    admin.execute_command("ACL", "SETUSER", "nosync", "reset", "on", ">" + SECRET, "+psync", "+sync")
    target = parse_target(engine.target_name)
    expected = live_digest(server)

    backup = NodeAddress(server.host, server.port, username="backup", password=SECRET)
    stream = open_rdb_stream(backup)
    assert stream.info.replid is not None
    drain(stream, tmp_path / "psync.rdb")
    assert digest_file(tmp_path / "psync.rdb", target).digest == expected

    oldstyle = NodeAddress(server.host, server.port, username="oldstyle", password=SECRET)
    stream = open_rdb_stream(oldstyle)
    assert stream.info.replid is None and stream.info.offset is None  # SYNC has no +FULLRESYNC
    drain(stream, tmp_path / "sync.rdb")
    assert digest_file(tmp_path / "sync.rdb", target).digest == expected

    nosync = NodeAddress(server.host, server.port, username="nosync", password=SECRET)
    with pytest.raises(EngineError, match=r"redis://nosync@127\.0\.0\.1:\d+ refused REPLCONF: NOPERM.*"
                                          r"\(a backup user needs \+psync \+replconf\)$") as exc:
        open_rdb_stream(nosync)
    assert_redacted(exc, nosync)

    wrong = NodeAddress(server.host, server.port, username="backup", password="wrong-" + SECRET)
    with pytest.raises(EngineError, match=r"^authentication to redis://backup@127\.0\.0\.1:\d+ failed: "
                                          "WRONGPASS") as exc:
        open_rdb_stream(wrong)
    assert_redacted(exc, wrong)
    assert SECRET not in str(exc.value)


# ---------------------------------------------------------------------------------------- TLS
def test_tls(each_engine: Engine, engine_server: StartServer, tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    server, port = tls_server(engine_server, each_engine, certs, config=DISKLESS)
    populate(server.client, each_engine)
    address = NodeAddress(server.host, port, tls=TlsOptions(ca_file=certs["ca"]))
    stream = open_rdb_stream(address)
    assert stream.info.mode == "diskless"
    drain(stream, tmp_path / "snap.rdb")
    assert digest_file(tmp_path / "snap.rdb", parse_target(each_engine.target_name)).digest == live_digest(server)

    other_ca = make_ca(tmp_path / "other", "other-ca")[0]
    wrong = NodeAddress(server.host, port, tls=TlsOptions(ca_file=other_ca))
    with pytest.raises(EngineError, match=r"TLS handshake with rediss://127\.0\.0\.1:\d+ failed.*certificate"):
        open_rdb_stream(wrong)


def test_mutual_tls(each_engine: Engine, engine_server: StartServer, tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    server, port = tls_server(engine_server, each_engine, certs, auth_clients="yes", config=DISKLESS)
    server.client().set("k", "v")
    with_cert = NodeAddress(server.host, port, tls=TlsOptions(ca_file=certs["ca"], cert_file=certs["client_cert"],
                                                              key_file=certs["client_key"]))
    with open_rdb_stream(with_cert) as stream:
        assert_whole_rdb(stream.read())

    without = NodeAddress(server.host, port, tls=TlsOptions(ca_file=certs["ca"]))
    with pytest.raises(EngineError, match=r"rediss://127\.0\.0\.1:\d+.* (failed|closed)") as exc:
        open_rdb_stream(without, timeout=5)
    assert_redacted(exc, without)


# ---------------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("mode", sorted(MODES))
def test_node_killed_mid_transfer(engine_server: StartServer, mode: str) -> None:
    server = engine_server(config=MODES[mode])
    client = server.client()
    client.execute_command("DEBUG", "POPULATE", "1000000", "key", "20")  # about 35 MB of RDB
    client.close()
    stream = open_rdb_stream(server.address, timeout=10)
    assert stream.info.mode == mode
    assert stream.read(65536)
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    expected = (r"closed the connection after \d+ of \d+ bytes" if mode == "disk"
                else r"closed the connection after \d+ bytes, before the end mark")
    with pytest.raises(EngineError, match=r"^redis://127\.0\.0\.1:\d+ " + expected):
        while stream.read(1 << 20):
            pass
    stream.close()


def test_closed_port() -> None:
    address = NodeAddress("127.0.0.1", free_port(), password=SECRET)
    with pytest.raises(EngineError, match=r"^cannot connect to redis://127\.0\.0\.1:\d+") as exc:
        open_rdb_stream(address, connect_timeout=2)
    assert_redacted(exc, address)


def test_silent_node_times_out_quickly() -> None:
    """A port that accepts connections but never answers: a timeout error after about 1 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # the kernel completes the connection; nobody ever answers
        address = NodeAddress("127.0.0.1", listener.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(EngineError, match=r"^no data from redis://127\.0\.0\.1:\d+ for 1s$"):
            open_rdb_stream(address, timeout=1)
        assert time.monotonic() - started < 5
