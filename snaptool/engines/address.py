"""Where a live node is and how to log in to it: one parsed form of ``redis://`` / ``rediss://`` URLs.

Every job that talks to a live node (backup over replication, restore, validation, cluster layout)
takes a :class:`NodeAddress`, so credentials and TLS settings are parsed once, carried to the other
nodes of a cluster unchanged, and never printed: :meth:`NodeAddress.redacted` is the only form that
goes into messages and manifests.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..errors import EngineError

DEFAULT_PORT = 6379
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 30.0
#: Read like redis-cli does, so a password need not appear on a command line.
PASSWORD_ENV = "REDISCLI_AUTH"


@dataclass(frozen=True)
class TlsOptions:
    """Client-side TLS settings (``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-insecure``)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # do not verify the server's certificate (self-signed, no CA at hand)
    server_name: str | None = None  # SNI / name checked in the certificate; default the host

    def context(self) -> ssl.SSLContext:
        """An SSL context with these settings; EngineError naming the file that could not be used."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise EngineError(f"TLS settings: {exc}") from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True)
class NodeAddress:
    """One node: host, port, credentials, database and TLS. ``str()`` never shows the password."""

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: TlsOptions | None = None

    @classmethod
    def parse(cls, url: str, *, tls: TlsOptions | None = None, username: str | None = None,
              password: str | None = None) -> NodeAddress:
        """Parse ``redis://[user:pass@]host[:port][/db]`` or ``rediss://…`` (TLS).

        Explicit ``username``/``password`` win over the URL; without a password anywhere,
        ``$REDISCLI_AUTH`` is used. ``rediss://`` without ``tls`` means TLS with the system CAs.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EngineError(f"invalid node URL {redact_url(url)!r}: {exc}") from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise EngineError(f"invalid node URL {redact_url(url)!r}: expected redis://host:port "
                              "or rediss://host:port")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise EngineError(f"invalid node URL {redact_url(url)!r}: the path must be a database number")
        if parts.scheme == "rediss" and tls is None:
            tls = TlsOptions()
        user = username if username is not None else (unquote(parts.username) if parts.username else None)
        secret = password if password is not None else (unquote(parts.password) if parts.password else None)
        if secret is None:
            secret = os.environ.get(PASSWORD_ENV) or None
        return cls(parts.hostname, port or DEFAULT_PORT, user or None, secret, int(path or 0), tls)

    # ------------------------------------------------------------------ naming
    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def redacted(self) -> str:
        """The URL without the password (the user name stays: it says which ACL user was used)."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        db = f"/{self.db}" if self.db else ""
        return f"{scheme}://{user}{self.endpoint}{db}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"NodeAddress({self.redacted()!r})"

    def with_endpoint(self, host: str, port: int) -> NodeAddress:
        """Another node of the same deployment: same credentials and TLS settings."""
        return replace(self, host=host or self.host, port=port)

    # ------------------------------------------------------------------ connecting
    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` (fail fast: no retries, short connect timeout)."""
        kwargs: dict[str, Any] = dict(host=self.host, port=self.port, db=self.db, username=self.username,
                                      password=self.password, socket_connect_timeout=CONNECT_TIMEOUT,
                                      socket_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0))
        if self.tls is not None:
            kwargs.update(ssl=True, ssl_ca_certs=self.tls.ca_file, ssl_certfile=self.tls.cert_file,
                          ssl_keyfile=self.tls.key_file,
                          ssl_cert_reqs="none" if self.tls.insecure else "required",
                          ssl_check_hostname=not self.tls.insecure)
        return kwargs

    def client(self, db: int | None = None, **overrides: Any) -> redis.Redis:
        """A redis-py client for this node (``db`` overrides the URL's database)."""
        kwargs = self.redis_kwargs()
        if db is not None:
            kwargs["db"] = db
        kwargs.update(overrides)
        return redis.Redis(**kwargs)

    def control(self, call: Any, timeout: float = SOCKET_TIMEOUT) -> Any:
        """Run ``call(client)`` on a short-lived redis-py client, for the few control commands a job
        sends (INFO, CLUSTER SLOTS, FLUSHALL); failures become one-line EngineErrors naming the node."""
        client = self.client(socket_timeout=timeout)
        try:
            return call(client)
        except redis.AuthenticationError as exc:
            raise EngineError(f"authentication to {self.redacted()} failed: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise EngineError(f"cannot reach {self.redacted()}: {exc}") from None
        except redis.ResponseError as exc:
            raise EngineError(f"{self.redacted()} refused: {exc}") from None
        finally:
            client.close()

    def cluster_client(self, **overrides: Any) -> RedisCluster:
        """A cluster-aware client that starts from this node and follows MOVED/ASK."""
        kwargs = self.redis_kwargs()
        kwargs.pop("db")
        kwargs.pop("retry")
        kwargs.update(overrides)
        return RedisCluster(**kwargs)

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
        """A raw connected socket (TLS-wrapped when configured), for protocols redis-py does not
        speak, such as the replication stream. EngineError when the node cannot be reached."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise EngineError(f"cannot connect to {self.redacted()}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            return sock
        try:
            return self.tls.context().wrap_socket(sock, server_hostname=self.tls.server_name or self.host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise EngineError(f"TLS handshake with {self.redacted()} failed: {exc}") from None


def redact_url(url: str) -> str:
    """Any URL with its password replaced by ``***``, for messages about URLs that did not parse."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return url.split("@")[-1]
