"""Key material on disk: age identity files, recipient lists and passphrase files.

Identity files use age's own layout (``# comments`` and one ``AGE-SECRET-KEY-1…`` per line), so a
key made by ``snaptool key generate`` works with ``age -d -i`` and one made by ``age-keygen`` works
here. Messages name the file and line, never a secret.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Iterable, Iterator

from .recipients import X25519Identity, X25519Recipient
from .errors import CryptoError


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CryptoError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise CryptoError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def _entries(path: str, what: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a key file that is neither blank nor a ``#`` comment."""
    try:
        text = _read(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError(f"{path}: the {what} is not text") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def load_identities(path: str) -> list[X25519Identity]:
    """Every identity in an age identity file (as written by age-keygen or snaptool key generate)."""
    identities = []
    for number, line in _entries(path, "identity file"):
        if not line.upper().startswith("AGE-SECRET-KEY-1"):
            raise CryptoError(f"{path}, line {number}: not an age X25519 identity (AGE-SECRET-KEY-1…); "
                              "other identity types are not supported")
        try:
            identities.append(X25519Identity.parse(line))
        except CryptoError:
            raise CryptoError(f"{path}, line {number}: not a valid age identity (bad checksum or length)") from None
    if not identities:
        raise CryptoError(f"{path}: no identity in the file")
    return identities


def identity_file_text(identity: X25519Identity, when: datetime | None = None) -> str:
    when = when or datetime.now(timezone.utc)
    return (f"# created: {when.isoformat(timespec='seconds').replace('+00:00', 'Z')}\n"
            f"# public key: {identity.recipient}\n{identity.secret_text()}\n")


def write_identity_file(path: str, identity: X25519Identity) -> None:
    """Create ``path`` (mode 0600) holding ``identity``; an existing file is never overwritten."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CryptoError(f"{path}: already exists; not overwritten") from None
    except OSError as exc:
        raise CryptoError(f"{path}: cannot create it: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask allowed
        with os.fdopen(fd, "w") as f:
            f.write(identity_file_text(identity))
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise


def parse_recipients(texts: Iterable[str], files: Iterable[str] = ()) -> list[X25519Recipient]:
    """Recipients given one by one and in recipients files (one per line, ``#`` comments)."""
    out = [X25519Recipient.parse(t) for t in texts]
    for path in files:
        for number, line in _entries(path, "recipients file"):
            try:
                out.append(X25519Recipient.parse(line))
            except CryptoError as exc:
                raise CryptoError(f"{path}, line {number}: {exc}") from None
    unique = list(dict.fromkeys(out))
    if not unique:
        raise CryptoError("no recipient given")
    return unique


def read_passphrase(path: str) -> bytes:
    """The passphrase in ``path``: its bytes without one trailing newline."""
    data = _read(path, "passphrase file")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise CryptoError(f"{path}: the passphrase file is empty")
    return data
