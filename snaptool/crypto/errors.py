"""What can go wrong with keys and encrypted objects, as one-line errors."""

from __future__ import annotations

from ..errors import SnaptoolError


class CryptoError(SnaptoolError):
    """A key problem: none given, none that fits, one that cannot be read, a KMS call refused."""


class DecryptError(CryptoError):
    """An encrypted object that fails authentication or is not a well-formed age file: altered,
    truncated, or not what the manifest says it is."""

    exit_code = 2
