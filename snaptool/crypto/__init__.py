"""Client-side encryption at rest: age v1 files, keyed by age recipients, a passphrase or AWS KMS.

See docs/encryption.md for the formats, the manifest record and the threat model.
"""

from .age import AgeWriter, decrypt, stored_size
from .recipients import ScryptIdentity, ScryptRecipient, X25519Identity, X25519Recipient
from .errors import CryptoError, DecryptError
from .keyfiles import load_identities, parse_recipients, read_passphrase, write_identity_file
from .schemes import SCHEMES, DecryptionKeys, EncryptionOptions, Sealer, Unsealed, identities_from, kms_identity

__all__ = [
    "AgeWriter", "CryptoError", "DecryptError", "DecryptionKeys", "EncryptionOptions", "SCHEMES", "ScryptIdentity",
    "ScryptRecipient", "Sealer", "Unsealed", "X25519Identity", "X25519Recipient", "decrypt", "identities_from",
    "kms_identity", "load_identities", "parse_recipients", "read_passphrase", "stored_size", "write_identity_file",
]
