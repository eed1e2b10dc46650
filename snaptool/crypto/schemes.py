"""The three ways a snapshot is encrypted, what its manifest records, and how it is opened again.

Every scheme stores each file as one age v1 file (a fresh file key per file); they differ in who
holds the key that opens it:

* ``age``: X25519 recipients (public keys). The backup host holds only those and cannot decrypt.
* ``passphrase``: age's scrypt recipient.
* ``kms``: a per-snapshot 32-byte data key from KMS GenerateDataKey, wrapped by one or more KMS
  keys. The files are encrypted to an X25519 recipient derived from the data key (HKDF-SHA256), so
  they stay standard age files (``snaptool key kms-identity`` writes the derived identity for
  ``age -d``). The derived public key is recorded nowhere: only a holder of the data key can make
  a file that opens with it.

The manifest's ``encryption`` records the scheme, the format, public recipients, KMS key ARNs
and wrapped data keys: never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Sequence

from . import kms
from .age import AgeWriter, Identity, Recipient, hkdf
from .recipients import SCRYPT_WORK_FACTOR, ScryptIdentity, ScryptRecipient, X25519Identity, X25519Recipient
from .errors import CryptoError

SCHEMES = ("age", "passphrase", "kms")
FORMAT = "age-v1"
SUFFIX = ".age"
KMS_DERIVATION = "x25519-hkdf-sha256-v1"
_KMS_INFO = b"snaptool/kms/age-x25519/v1"
CONTEXT_KEY = "snaptool-snapshot"


def kms_identity(data_key: bytes) -> X25519Identity:
    """The age identity a KMS data key stands for (see the module docstring)."""
    return X25519Identity(hkdf(data_key, None, _KMS_INFO))


@dataclass(frozen=True)
class EncryptionOptions:
    """How ``snaptool backup --encrypt`` encrypts: one scheme and its public material."""

    scheme: str
    recipients: tuple[str, ...] = ()  # age: age1… strings
    recipients_files: tuple[str, ...] = ()  # age: files of age1… lines
    passphrase: bytes | None = None  # passphrase
    kms_key_ids: tuple[str, ...] = ()  # kms: key ids, ARNs or aliases; the first generates the data key
    work_factor: int = SCRYPT_WORK_FACTOR  # passphrase: scrypt log2(N)

    def check(self) -> None:
        """Refuse a bad combination before any connection is made or byte is read."""
        if self.scheme not in SCHEMES:
            raise CryptoError(f"unknown encryption scheme {self.scheme!r} (choose {', '.join(SCHEMES)})")
        given = {"age": bool(self.recipients or self.recipients_files), "passphrase": self.passphrase is not None,
                 "kms": bool(self.kms_key_ids)}
        needs = {"age": "--recipient or --recipients-file", "passphrase": "--passphrase-file",
                 "kms": "--kms-key-id"}
        if not given[self.scheme]:
            raise CryptoError(f"--encrypt {self.scheme} needs {needs[self.scheme]}")
        extra = [needs[s] for s, g in given.items() if g and s != self.scheme]
        if extra:
            raise CryptoError(f"--encrypt {self.scheme} does not take {', '.join(extra)}")
        if self.scheme == "age":
            self._recipients()
        if self.scheme == "passphrase":
            ScryptRecipient(self.passphrase or b"", self.work_factor)

    def _recipients(self) -> list[X25519Recipient]:
        from .keyfiles import parse_recipients

        return parse_recipients(self.recipients, self.recipients_files)

    def seal(self, snapshot_id: str) -> Sealer:
        """The sealer for one snapshot (for KMS: a new data key, wrapped by every key given)."""
        self.check()
        if self.scheme == "age":
            recipients = self._recipients()
            return Sealer({"scheme": "age", "format": FORMAT, "recipients": [str(r) for r in recipients]},
                          list(recipients))
        if self.scheme == "passphrase":
            return Sealer({"scheme": "passphrase", "format": FORMAT, "work_factor": self.work_factor},
                          [ScryptRecipient(self.passphrase or b"", self.work_factor)])
        context = {CONTEXT_KEY: snapshot_id}
        data_key, wrapped = kms.generate(list(self.kms_key_ids), context)
        record = {"scheme": "kms", "format": FORMAT, "derivation": KMS_DERIVATION,
                  "encryption_context": context, "kms_keys": [w.to_json() for w in wrapped]}
        return Sealer(record, [kms_identity(data_key).recipient])


@dataclass
class Sealer:
    """Encrypts each file of one snapshot; ``record`` is the manifest's ``encryption``."""

    record: dict[str, Any]
    recipients: list[Recipient]
    suffix: str = SUFFIX

    def writer(self, out: BinaryIO) -> AgeWriter:
        return AgeWriter(out, self.recipients)

    def prepare(self, files: int = 1) -> None:
        """Let slow recipients (scrypt) derive the keys of the first ``files`` files while the
        source is still getting ready, rather than when its first byte arrives."""
        for recipient in self.recipients:
            if isinstance(recipient, ScryptRecipient):
                recipient.prefetch(files)


@dataclass
class Unsealed:
    """What opens a snapshot's files, and which key that was (for reports)."""

    identities: list[Identity]
    via: str


@dataclass(frozen=True)
class DecryptionKeys:
    """What a restore or drill may use to open encrypted snapshots. KMS needs nothing here: the
    wrapped data key is in the manifest, and the AWS environment decides who may unwrap it."""

    identities: tuple[X25519Identity, ...] = field(default=())
    passphrase: bytes | None = None

    def unseal(self, record: dict[str, Any], snapshot: str) -> Unsealed:
        scheme, fmt = record.get("scheme"), record.get("format")
        if fmt != FORMAT or scheme not in SCHEMES:
            raise CryptoError(f"snapshot {snapshot} is encrypted with {scheme!r} ({fmt}), which this snaptool "
                              "cannot read")
        if scheme == "age":
            return self._age(record, snapshot)
        if scheme == "passphrase":
            if self.passphrase is None:
                raise CryptoError(f"snapshot {snapshot} is encrypted with a passphrase; give --passphrase-file FILE")
            return Unsealed([ScryptIdentity(self.passphrase)], "passphrase")
        try:
            wrapped = [kms.WrappedKey(k["key_arn"], k["wrapped_key"]) for k in record["kms_keys"]]
            context = dict(record["encryption_context"])
        except (KeyError, TypeError):
            raise CryptoError(f"snapshot {snapshot}: the manifest's KMS record is incomplete") from None
        if record.get("derivation") != KMS_DERIVATION:
            raise CryptoError(f"snapshot {snapshot}: unknown KMS key derivation {record.get('derivation')!r}")
        try:
            data_key, arn = kms.unwrap(wrapped, context)
        except CryptoError as exc:
            raise CryptoError(f"snapshot {snapshot}: {exc}") from None
        return Unsealed([kms_identity(data_key)], f"KMS key {arn}")

    def _age(self, record: dict[str, Any], snapshot: str) -> Unsealed:
        wanted = [str(r) for r in record.get("recipients") or []]
        if not self.identities:
            raise CryptoError(f"snapshot {snapshot} is encrypted to age recipient(s) {', '.join(wanted)}; give "
                              "--identity FILE with the identity of one of them")
        matching = [i for i in self.identities if str(i.recipient) in wanted]
        if not matching:
            have = ", ".join(str(i.recipient) for i in self.identities)
            raise CryptoError(f"snapshot {snapshot} is encrypted to {', '.join(wanted)}; the given identities are "
                              f"for {have} (wrong key)")
        return Unsealed(list(matching), f"age identity {matching[0].recipient}")


def identities_from(paths: Sequence[str]) -> tuple[X25519Identity, ...]:
    """Every identity in the given identity files."""
    from .keyfiles import load_identities

    return tuple(i for path in paths for i in load_identities(path))
