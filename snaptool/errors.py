"""Exceptions users can catch; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class SnaptoolError(Exception):
    """Base of every error snaptool raises on purpose (exit code 1 unless a subclass says otherwise)."""

    exit_code = 1


class RdbError(SnaptoolError):
    """An RDB file (or DUMP payload) that cannot be read: truncated, corrupt, hostile or unsupported.

    Carries where it happened so the one-line message names file, byte offset and key.
    """

    exit_code = 2

    def __init__(self, message: str, *, offset: int | None = None, path: str | None = None,
                 key: bytes | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.path = path
        self.key = key

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(str(self.path))
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ChecksumError(RdbError):
    """The CRC64 trailer does not match the bytes (use --no-verify-checksum to read anyway)."""


class UnsupportedError(RdbError):
    """Valid-looking input that this version of snaptool deliberately refuses (unknown type, opcode, version)."""


class LossyConversionError(SnaptoolError):
    """A conversion would drop data the target cannot represent; lists the affected keys."""

    exit_code = 3

    def __init__(self, message: str, keys: list[bytes]) -> None:
        super().__init__(message)
        self.keys = keys


class EngineError(SnaptoolError):
    """A live engine could not be found, started or talked to."""


class ValidationError(SnaptoolError):
    """A check against a live engine found differences; ``report`` says which."""

    exit_code = 4

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
