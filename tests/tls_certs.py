"""Throwaway certificates for TLS tests: a self-signed CA, a server certificate it signs for
127.0.0.1 / localhost and, for mutual TLS, a client certificate.

``make_certs(directory)`` → ``{"ca", "cert", "key", "client_cert", "client_key"}`` (file paths as
str). Keys are EC P-256: quick to make, accepted by every OpenSSL an engine is built with.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from typing import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from snaptool.engines.discovery import Engine
from snaptool.engines.server import EngineServer, EngineStartError, free_port


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "snaptool tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> str:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return str(path)


def _write_cert(cert: x509.Certificate, path: Path) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _issue(common_name: str, ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name,
           usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None = None,
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_ca(directory: str | Path, name: str = "ca") -> tuple[str, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA written to ``directory/<name>.crt``; returns (path, certificate, key)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"snaptool test {name}")
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _write_cert(cert, directory / f"{name}.crt"), cert, key


def make_certs(directory: str | Path) -> dict[str, str]:
    """CA, server certificate (127.0.0.1, ::1, localhost) and client certificate in ``directory``."""
    directory = Path(directory)
    ca_path, ca_cert, ca_key = make_ca(directory)
    sans: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                    x509.IPAddress(ipaddress.ip_address("::1"))]
    server, server_key = _issue("127.0.0.1", ca_key, ca_cert.subject, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client, client_key = _issue("snaptool backup client", ca_key, ca_cert.subject,
                                ExtendedKeyUsageOID.CLIENT_AUTH)
    return {
        "ca": ca_path,
        "cert": _write_cert(server, directory / "server.crt"),
        "key": _write_key(server_key, directory / "server.key"),
        "client_cert": _write_cert(client, directory / "client.crt"),
        "client_key": _write_key(client_key, directory / "client.key"),
    }


__all__ = ["make_ca", "make_certs"]


def tls_server(engine_server: Callable[..., EngineServer], engine: Engine, certs: dict[str, str], *,
               auth_clients: str = "no", config: dict[str, str] | None = None) -> tuple[EngineServer, int]:
    """A node with a TLS port next to its plain one; skips on engines built without TLS."""
    port = free_port()
    config = {**(config or {}), "tls-port": str(port), "tls-cert-file": certs["cert"],
              "tls-key-file": certs["key"], "tls-ca-cert-file": certs["ca"],
              "tls-auth-clients": auth_clients}
    try:
        return engine_server(engine, config=config), port
    except EngineStartError as exc:
        if any("tls" in line.lower() for line in exc.log_tail):
            pytest.skip(f"{engine.name} is built without TLS support")
        raise
