"""The age v1 file format (https://age-encryption.org/v1), streaming, on `cryptography`'s primitives.

An age file is a text header — one stanza per recipient, each wrapping a random 16-byte file key —
closed by an HMAC, then a 16-byte nonce and the payload: ChaCha20-Poly1305 over 64 KiB chunks
(STREAM: an 11-byte chunk counter and a final-chunk flag in each nonce), so a reordered, dropped,
altered or truncated chunk fails authentication.

Why this module and not a binding: pyrage (rage) only encrypts from a reader it pulls itself, and
passphrases only from bytes in memory. A backup pushes bytes as they arrive from the source, in the
same single pass that hashes and parses them, at constant memory. The format is small and fully
specified; the tests prove interoperability with rage (pyrage) and the ``age`` CLI both ways.
The recipient types (X25519, scrypt) are in :mod:`snaptool.crypto.recipients`.
"""

from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Protocol, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CryptoError, DecryptError

VERSION_LINE = b"age-encryption.org/v1"
CHUNK = 64 * 1024
TAG = 16
FILE_KEY_SIZE = 16
NONCE_SIZE = 16
MAX_HEADER = 1 << 20
ZERO_NONCE = bytes(12)


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def unb64(text: bytes) -> bytes:
    """Strict unpadded base64, as age requires (a non-canonical encoding is an error)."""
    if b"=" in text or len(text) % 4 == 1:
        raise ValueError("invalid base64")
    data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    if b64(data) != text:
        raise ValueError("non-canonical base64")
    return data


@dataclass
class Stanza:
    """One recipient's entry in the header: ``-> type arg…`` and a body (the wrapped file key)."""

    type: str
    args: list[str]
    body: bytes

    def encode(self) -> bytes:
        text = b64(self.body)
        lines = [text[i:i + 64] for i in range(0, len(text), 64)]
        if not lines or len(lines[-1]) == 64:
            lines.append(b"")  # the body ends with a line shorter than 64 columns
        return b"-> " + " ".join([self.type, *self.args]).encode() + b"\n" + b"\n".join(lines) + b"\n"


class Recipient(Protocol):
    """Wraps a file key into stanza(s) (see snaptool.crypto.recipients)."""

    def wrap(self, file_key: bytes) -> list[Stanza]: ...


class Identity(Protocol):
    """Unwraps the file key from the stanza meant for it, or returns None."""

    passphrase: bool  # a passphrase (scrypt) identity: "wrong passphrase" rather than "wrong key"

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None: ...


# --------------------------------------------------------------------------- header

def _header_mac(file_key: bytes, header: bytes) -> bytes:
    return hmac.new(hkdf(file_key, None, b"header"), header, "sha256").digest()


def encode_header(stanzas: Sequence[Stanza], file_key: bytes) -> bytes:
    head = VERSION_LINE + b"\n" + b"".join(s.encode() for s in stanzas) + b"---"
    return head + b" " + b64(_header_mac(file_key, head)) + b"\n"


@dataclass
class Header:
    stanzas: list[Stanza]
    mac: bytes
    covered: bytes  # the bytes the MAC covers: up to and including "---"
    rest: bytes  # payload bytes read past the header


def read_header(src: BinaryIO) -> Header:
    """Read and parse the header, leaving the payload unread (but for ``rest``)."""
    buf = bytearray()
    start = len(VERSION_LINE) + 1
    mark = -1
    while True:
        if len(buf) >= start and not buf.startswith(VERSION_LINE + b"\n"):
            raise DecryptError("not an age file (no age-encryption.org/v1 header)")
        if mark < 0:
            mark = buf.find(b"\n---", max(start - 1, len(buf) - 4096 - 3))
        end = buf.find(b"\n", mark + 4) if mark >= 0 else -1
        if end >= 0:
            break
        if len(buf) > MAX_HEADER:
            raise DecryptError(f"the header is longer than {MAX_HEADER:,} bytes (refused)")
        block = src.read(4096)
        if not block:
            raise DecryptError("the object ends inside its header (truncated, or not an age file)")
        buf += block
    lines = bytes(buf[start:mark + 1]).split(b"\n")[:-1]
    mac_line = bytes(buf[mark + 1:end])
    try:
        stanzas = _parse_stanzas(lines)
        if not mac_line.startswith(b"--- "):
            raise ValueError("bad MAC line")
        mac = unb64(mac_line[4:])
        if len(mac) != 32:
            raise ValueError("bad MAC length")
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise DecryptError(f"malformed age header ({exc})") from None
    return Header(stanzas, mac, bytes(buf[:mark + 4]), bytes(buf[end + 1:]))


def _parse_stanzas(lines: list[bytes]) -> list[Stanza]:
    stanzas = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith(b"-> "):
            raise ValueError(f"line {i + 2} is not a stanza")
        words = line[3:].split(b" ")
        if not all(words) or any(not 33 <= c <= 126 for w in words for c in w):
            raise ValueError(f"line {i + 2}: bad stanza arguments")
        i += 1
        body = []
        while True:
            if i == len(lines):
                raise ValueError("a stanza without a body")
            part = lines[i]
            i += 1
            if len(part) > 64:
                raise ValueError("a stanza body line is longer than 64 columns")
            body.append(part)
            if len(part) < 64:
                break
        stanzas.append(Stanza(words[0].decode("ascii"), [w.decode("ascii") for w in words[1:]],
                              unb64(b"".join(body))))
    if not stanzas:
        raise ValueError("no recipient stanza")
    return stanzas


def unwrap_file_key(header: Header, identities: Sequence[Identity]) -> bytes:
    """The file key, from the first identity that opens a stanza; the header MAC checked."""
    for identity in identities:
        file_key = identity.unwrap(header.stanzas)
        if file_key is not None:
            break
    else:
        kinds = {s.type for s in header.stanzas}
        if "scrypt" in kinds:
            if any(getattr(i, "passphrase", False) for i in identities):
                raise CryptoError("wrong passphrase")
            raise CryptoError("it is encrypted with a passphrase, and none was given")
        if "X25519" in kinds:
            raise CryptoError("none of the given identities is a recipient of it (wrong key)")
        raise CryptoError(f"no given identity opens it (stanzas: {', '.join(sorted(kinds))})")
    if len(file_key) != FILE_KEY_SIZE:
        raise DecryptError("malformed file key")
    if not hmac.compare_digest(_header_mac(file_key, header.covered), header.mac):
        raise DecryptError("the header MAC does not match (the header was altered)")
    return file_key


# --------------------------------------------------------------------------- payload

def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class AgeWriter:
    """A writable file: what is written goes to ``out`` as one age file, 64 KiB at a time.

    Holds at most one chunk. ``close()`` seals the final chunk; an unclosed writer leaves an
    object that fails authentication when read, never one that reads as shorter.
    """

    def __init__(self, out: BinaryIO, recipients: Sequence[Recipient]) -> None:
        if not recipients:
            raise CryptoError("no recipient to encrypt to")
        file_key = os.urandom(FILE_KEY_SIZE)
        stanzas = [s for r in recipients for s in r.wrap(file_key)]
        if len(stanzas) > 1 and any(s.type == "scrypt" for s in stanzas):
            raise CryptoError("a passphrase cannot be combined with other recipients")
        nonce = os.urandom(NONCE_SIZE)
        self._aead = ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))
        self._out = out
        self._buf = bytearray()
        self._counter = 0
        self.closed = False
        out.write(encode_header(stanzas, file_key) + nonce)

    def write(self, data: bytes) -> int:
        """Seal every chunk that is surely not the last; keep the rest (1..64 KiB) back, since
        only close() knows which chunk is last. Large writes are sealed in place, not copied."""
        size = len(data)
        view = memoryview(data)
        buf = self._buf
        if buf:
            take = min(CHUNK - len(buf), size)
            buf += view[:take]
            view = view[take:]
            if not view:
                return size
            self._out.write(self._seal(buf, False))  # full, and more follows
            buf.clear()
        full = (len(view) - 1) // CHUNK
        for i in range(full):
            self._out.write(self._seal(view[i * CHUNK:(i + 1) * CHUNK], False))
        buf += view[max(full, 0) * CHUNK:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._out.write(self._seal(bytes(self._buf), True))
            self._buf.clear()
            self.closed = True

    def _seal(self, chunk: bytes | bytearray | memoryview, last: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._counter, last), chunk, None)
        self._counter += 1
        return sealed


def decrypt(src: BinaryIO, identities: Sequence[Identity]) -> Iterator[bytes]:
    """The plaintext of the age file read from ``src``, chunk by chunk, each authenticated before
    it is yielded. Raises DecryptError (altered, truncated, malformed) or CryptoError (no key)."""
    header = read_header(src)
    file_key = unwrap_file_key(header, identities)
    reader = _Exact(src, header.rest)
    nonce = reader.read(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise DecryptError("the object ends before its payload (truncated)")
    aead = ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))
    counter = 0
    chunk = reader.read(CHUNK + TAG)
    while True:
        if len(chunk) < TAG:
            raise DecryptError(f"the payload ends inside chunk {counter} (truncated)")
        following = reader.read(CHUNK + TAG) if len(chunk) == CHUNK + TAG else b""
        last = not following
        try:
            plain = aead.decrypt(_nonce(counter, last), chunk, None)
        except InvalidTag:
            raise DecryptError(f"chunk {counter} of the payload fails authentication "
                               "(the object was altered or truncated)") from None
        if last and not plain and counter:
            raise DecryptError("the payload ends with an empty chunk (malformed)")
        yield plain
        if last:
            return
        counter += 1
        chunk = following


class _Exact:
    """Reads exactly n bytes (fewer only at the end), starting with what the header left over."""

    def __init__(self, src: BinaryIO, head: bytes) -> None:
        self.src = src
        self.head = head

    def read(self, n: int) -> bytes:
        parts = []
        if self.head:
            parts.append(self.head[:n])
            self.head = self.head[n:]
        want = n - sum(len(p) for p in parts)
        while want > 0:
            data = self.src.read(want)
            if not data:
                break
            parts.append(data)
            want -= len(data)
        return b"".join(parts)


def stored_size(plain_size: int, header_size: int = 0) -> int:
    """The size of an age file holding ``plain_size`` bytes (header size aside)."""
    chunks = max(1, -(-plain_size // CHUNK))
    return header_size + NONCE_SIZE + plain_size + chunks * TAG
