"""Test helpers for S3: moto's server in its own process, and a fault-injecting HTTP proxy.

* :func:`moto_server` starts ``python -m moto.server`` with extra environment (e.g.
  ``S3_UPLOAD_PART_MIN_SIZE`` so multipart paths run with small objects);
* :func:`aws_environment` points the standard AWS environment at an endpoint;
* :func:`assume_account` gets credentials that moto maps to another account (through STS);
* :class:`FaultProxy` is a real HTTP/1.1 proxy in front of moto: it counts the body bytes that go
  through it in each direction and, for the first N requests matching a rule, answers 503
  SlowDown or 500 InternalError, drops the connection in the middle of the request body, or
  forwards the request and then drops the connection instead of answering, or flips one bit of the
  request body on its way (a corruption in transit). A request is recorded before its answer goes
  out, so a test sees every request its client has been answered.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest


@contextlib.contextmanager
def moto_process(**env: str) -> Iterator[tuple[str, int]]:
    """moto's server (real HTTP) in its own process on a free loopback port, ``env`` added to its
    environment; yields its URL and process id. RuntimeError when it does not start (the
    benchmarks in scripts/ use this too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start (is moto[server] installed?)") from None
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def moto_server(**env: str) -> Iterator[str]:
    """A moto server for a test (skipped when moto cannot start); yields its URL."""
    try:
        server = moto_process(**env)
        url, _ = server.__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


def aws_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path,
                    region: str = "us-east-1") -> None:
    """The standard AWS environment pointed at ``endpoint``, nothing from the machine's own setup."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-empty-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))


def assume_account(endpoint: str, account: str, name: str = "snaptool-copier") -> dict[str, str]:
    """Credentials of a role in ``account`` (moto maps them to that account)."""
    import boto3

    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{name}", RoleSessionName=name)["Credentials"]
    return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"]}


def reset_moto(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()


# --------------------------------------------------------------------------- the proxy

@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names

    @property
    def is_upload_part(self) -> bool:
        return self.method == "PUT" and "partNumber" in self.query and "x-amz-copy-source" not in self.headers

    @property
    def is_part_copy(self) -> bool:
        return self.method == "PUT" and "partNumber" in self.query and "x-amz-copy-source" in self.headers

    @property
    def is_copy(self) -> bool:
        return self.method == "PUT" and "x-amz-copy-source" in self.headers and "partNumber" not in self.query

    @property
    def is_put(self) -> bool:
        return self.method == "PUT" and "partNumber" not in self.query and "x-amz-copy-source" not in self.headers

    @property
    def is_complete(self) -> bool:
        return self.method == "POST" and "uploadId" in self.query


@dataclass
class _Rule:
    fault: str  # "503", "500", "drop", "lost-reply", "tamper"
    when: Callable[[Request], bool]
    times: int
    used: int = 0


@dataclass
class Seen:
    method: str
    path: str
    query: str
    status: int | str
    up: int  # request body bytes
    down: int  # response body bytes
    headers: dict[str, str] = field(default_factory=dict)  # the request's, lower-case names


@dataclass
class Traffic:
    seen: list[Seen] = field(default_factory=list)

    @property
    def up(self) -> int:
        return sum(s.up for s in self.seen)

    @property
    def down(self) -> int:
        return sum(s.down for s in self.seen)


_ERRORS = {"503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
           "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again.")}
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "expect", "te", "upgrade"}


class FaultProxy:
    """An HTTP proxy in front of ``upstream`` that can fail chosen requests."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.traffic = Traffic()
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, fault: str, when: Callable[[Request], bool], times: int = 1) -> None:
        """The next ``times`` requests for which ``when`` is true get ``fault``."""
        assert fault in ("503", "500", "drop", "lost-reply", "tamper")
        with self._lock:
            self._rules.append(_Rule(fault, when, times))

    def faults_left(self) -> int:
        with self._lock:
            return sum(r.times - r.used for r in self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.traffic = Traffic()

    def _take(self, request: Request) -> str | None:
        with self._lock:
            for rule in self._rules:
                if rule.used < rule.times and rule.when(request):
                    rule.used += 1
                    return rule.fault
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.traffic.seen.append(seen)

    # ------------------------------------------------------------------ one client connection
    def _serve(self, sock: socket.socket) -> None:
        rfile = sock.makefile("rb")
        try:
            while self._one(sock, rfile):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            rfile.close()
            with contextlib.suppress(OSError):
                sock.close()

    def _one(self, sock: socket.socket, rfile) -> bool:
        line = rfile.readline(65537)
        if not line or not line.strip():
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            h = rfile.readline(65537).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            name, _, value = h.partition(":")
            headers.append((name.strip(), value.strip()))
        lower = {k.lower(): v for k, v in headers}
        split = urllib.parse.urlsplit(target)
        request = Request(method, split.path, urllib.parse.parse_qs(split.query, keep_blank_values=True), lower)
        fault = self._take(request)
        expect = lower.get("expect", "").lower() == "100-continue"
        length = int(lower.get("content-length", "0") or 0)
        chunked = "chunked" in lower.get("transfer-encoding", "").lower()
        if fault in _ERRORS:
            if not expect:
                _read_body(rfile, length, chunked)
            status, reason, code, message = _ERRORS[fault]
            body = b"" if method == "HEAD" else (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>fault</RequestId></Error>").encode()
            self._record(Seen(method, split.path, split.query, status, 0, len(body), lower))
            sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: "
                         f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            return False
        if expect:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if fault == "drop":
            _read_body(rfile, length // 2, False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            self._record(Seen(method, split.path, split.query, "dropped", length // 2, 0, lower))
            return False
        body = _read_body(rfile, length, chunked)
        if fault == "tamper" and body:  # one bit flipped on the way; the checksum headers stay as sent
            body = body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 1]) + body[len(body) // 2 + 1:]
        upstream = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            forward = {k: v for k, v in headers if k.lower() not in _HOP and k.lower() != "content-length"}
            if body or method in ("PUT", "POST"):
                forward["Content-Length"] = str(len(body))
            upstream.request(method, target, body=body, headers=forward)
            response = upstream.getresponse()
            data = response.read()
            reply_headers = response.getheaders()
        finally:
            upstream.close()
        if fault == "lost-reply":  # the request took effect; the client never hears of it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._record(Seen(method, split.path, split.query, "lost-reply", len(body), 0, lower))
            return False
        out = [f"HTTP/1.1 {response.status} {response.reason}"]
        for name, value in reply_headers:
            if name.lower() in _HOP or (name.lower() == "content-length" and method != "HEAD"):
                continue
            out.append(f"{name}: {value}")
        if method != "HEAD":
            out.append(f"Content-Length: {len(data)}")
        close = lower.get("connection", "").lower() == "close"
        out.append("Connection: close" if close else "Connection: keep-alive")
        self._record(Seen(method, split.path, split.query, response.status, len(body), len(data), lower))
        sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + data)
        return not close


def _read_body(rfile, length: int, chunked: bool) -> bytes:
    if not chunked:
        return rfile.read(length) if length else b""
    parts = []
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(rfile.read(size))
        rfile.readline()
