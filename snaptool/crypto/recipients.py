"""age's recipient types: X25519 public keys (``age1…``) and identities (``AGE-SECRET-KEY-1…``),
and scrypt passphrases — each wraps the file key of an age file into a header stanza.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import bech32
from .age import FILE_KEY_SIZE, TAG, ZERO_NONCE, Stanza, b64, hkdf, unb64
from .errors import CryptoError, DecryptError

#: age's own default: about a second and 256 MiB of memory per file, on purpose.
SCRYPT_WORK_FACTOR = 18
#: Refuse files asking for more (2^21 costs 2 GiB): a hostile header must not exhaust the host.
MAX_SCRYPT_WORK_FACTOR = 20
_X25519_INFO = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_RECIPIENT_HRP = "age"
_IDENTITY_HRP = "age-secret-key-"
#: one scrypt derivation at a time: concurrent shard uploads must not each take 256 MiB at once
_SCRYPT_LOCK = threading.Lock()


# --------------------------------------------------------------------------- X25519

def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # a low-order point: the shared secret would be all zeros
        raise DecryptError("an X25519 share is not a valid public key") from None


class X25519Recipient:
    """An ``age1…`` public key: anyone can encrypt to it, only its identity can decrypt."""

    def __init__(self, public: bytes) -> None:
        if len(public) != 32:
            raise CryptoError("an X25519 public key is 32 bytes")
        self.public = public

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        try:
            hrp, data = bech32.decode(text.strip())
        except ValueError as exc:
            raise CryptoError(f"{text.strip()!r} is not an age recipient (age1…): {exc}") from None
        if hrp != _RECIPIENT_HRP or text.strip() != text.strip().lower() or len(data) != 32:
            raise CryptoError(f"{text.strip()!r} is not an age X25519 recipient (age1…)")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(_RECIPIENT_HRP, self.public)

    def __repr__(self) -> str:
        return f"X25519Recipient({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other.public == self.public

    def __hash__(self) -> int:
        return hash(self.public)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        try:
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public))
        except ValueError:
            raise CryptoError(f"recipient {self} is not a usable X25519 key") from None
        key = hkdf(shared, share + self.public, _X25519_INFO)
        body = ChaCha20Poly1305(key).encrypt(ZERO_NONCE, file_key, None)
        return [Stanza("X25519", [b64(share).decode()], body)]


class X25519Identity:
    """An ``AGE-SECRET-KEY-1…`` private key. Its text is never part of a repr or an error."""

    passphrase = False

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise CryptoError("an X25519 private key is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self.recipient = X25519Recipient(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        try:
            hrp, data = bech32.decode(text.strip())
        except ValueError:
            raise CryptoError("not an age identity (AGE-SECRET-KEY-1…)") from None
        if hrp != _IDENTITY_HRP or len(data) != 32:
            raise CryptoError("not an age X25519 identity (AGE-SECRET-KEY-1…)")
        return cls(data)

    def secret_text(self) -> str:
        """The identity as age writes it (uppercase Bech32): a secret, for key files only."""
        raw = self._key.private_bytes_raw()
        return bech32.encode(_IDENTITY_HRP, raw).upper()

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={str(self.recipient)!r})"

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != "X25519":
                continue
            if len(stanza.args) != 1 or len(stanza.body) != FILE_KEY_SIZE + TAG:
                raise DecryptError("malformed X25519 stanza in the header")
            try:
                share = unb64(stanza.args[0].encode())
            except ValueError:
                raise DecryptError("malformed X25519 stanza in the header") from None
            if len(share) != 32:
                raise DecryptError("malformed X25519 stanza in the header")
            shared = _exchange(self._key, share)
            key = hkdf(shared, share + self.recipient.public, _X25519_INFO)
            try:
                return ChaCha20Poly1305(key).decrypt(ZERO_NONCE, stanza.body, None)
            except InvalidTag:
                continue  # a stanza for another recipient
        return None


# --------------------------------------------------------------------------- scrypt (passphrase)

def _scrypt(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    with _SCRYPT_LOCK:
        return Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1).derive(passphrase)


class ScryptRecipient:
    """A passphrase, stretched with scrypt; an age file with it has no other recipient."""

    def __init__(self, passphrase: bytes, work_factor: int = SCRYPT_WORK_FACTOR) -> None:
        if not passphrase:
            raise CryptoError("the passphrase is empty")
        if not 1 <= work_factor <= MAX_SCRYPT_WORK_FACTOR:
            raise CryptoError(f"scrypt work factor must be 1..{MAX_SCRYPT_WORK_FACTOR}")
        self._passphrase = passphrase
        self.work_factor = work_factor
        self._ahead: list[Future[tuple[bytes, bytes]]] = []

    def prefetch(self, count: int = 1) -> None:
        """Start deriving the keys of the next ``count`` files in a background thread (scrypt
        releases the GIL), so its fixed second overlaps the source's own start — a node's BGSAVE —
        instead of adding to the backup's wall time. Each derived key wraps one file only."""
        for _ in range(count):
            future: Future[tuple[bytes, bytes]] = Future()
            self._ahead.append(future)
            threading.Thread(target=self._derive_into, args=(future,), daemon=True).start()

    def _derive_into(self, future: Future[tuple[bytes, bytes]]) -> None:
        salt = os.urandom(16)
        try:
            future.set_result((salt, _scrypt(self._passphrase, salt, self.work_factor)))
        except BaseException as exc:  # handed to wrap(), which raises it where it is needed
            future.set_exception(exc)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        if self._ahead:
            salt, key = self._ahead.pop(0).result()
        else:
            salt = os.urandom(16)
            key = _scrypt(self._passphrase, salt, self.work_factor)
        body = ChaCha20Poly1305(key).encrypt(ZERO_NONCE, file_key, None)
        return [Stanza("scrypt", [b64(salt).decode(), str(self.work_factor)], body)]


class ScryptIdentity:
    """Opens files encrypted with the same passphrase."""

    passphrase = True

    def __init__(self, passphrase: bytes, max_work_factor: int = MAX_SCRYPT_WORK_FACTOR) -> None:
        self._passphrase = passphrase
        self.max_work_factor = max_work_factor

    def __repr__(self) -> str:
        return "ScryptIdentity(***)"

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None:
        mine = [s for s in stanzas if s.type == "scrypt"]
        if not mine:
            return None
        if len(stanzas) != 1:
            raise DecryptError("a passphrase-encrypted file must have exactly one stanza")
        stanza = mine[0]
        try:
            salt = unb64(stanza.args[0].encode())
            factor = stanza.args[1]
            if len(stanza.args) != 2 or len(salt) != 16 or not factor.isdigit() or factor != str(int(factor)) \
                    or len(stanza.body) != FILE_KEY_SIZE + TAG:
                raise ValueError
        except (ValueError, IndexError):
            raise DecryptError("malformed scrypt stanza in the header") from None
        if not 1 <= int(factor) <= self.max_work_factor:
            raise DecryptError(f"scrypt work factor {factor} is outside 1..{self.max_work_factor} (refused)")
        key = _scrypt(self._passphrase, salt, int(factor))
        try:
            return ChaCha20Poly1305(key).decrypt(ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            return None
