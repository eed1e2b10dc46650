"""Errors of the storage layer (local directories and S3)."""

from __future__ import annotations

from ..errors import SnaptoolError


class RepositoryError(SnaptoolError):
    """The repository cannot be reached, read or written."""
