"""RespConnection against a peer that does not speak RESP: one error naming the line, no traceback."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from snaptool.engines.address import NodeAddress
from snaptool.engines.resp import ConnectionLost, RespConnection, encode


@pytest.fixture
def peer() -> Iterator[tuple[NodeAddress, list[bytes]]]:
    """A loopback server that answers every connection with the bytes put in the list."""
    server = socket.create_server(("127.0.0.1", 0))
    answers: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1 << 16)
                conn.sendall(answers.pop(0))
                conn.recv(1 << 16)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield NodeAddress("127.0.0.1", server.getsockname()[1]), answers
    server.close()


@pytest.mark.parametrize("answer, read", [
    (b":12\r\n:x1\r\n", lambda c: c.integers(2)),  # a batch of integers with one that is not
    (b"$ten\r\n", lambda c: c.reply()),
    (b"*2x\r\n", lambda c: c.reply()),
    (b":--3\r\n", lambda c: c.reply()),
    (b"HTTP/1.1 400 Bad Request\r\n", lambda c: c.replies(1)),
])
def test_a_reply_that_is_not_resp_is_one_error(peer, answer: bytes, read) -> None:
    address, answers = peer
    answers.append(answer)
    with RespConnection(address, timeout=5) as conn:
        conn.send(encode("PTTL", "k") * 2)
        with pytest.raises(ConnectionLost, match=r"^lost the connection to redis://127\.0\.0\.1:\d+ "
                                                 r"\(not a RESP reply: b'"):
            read(conn)
