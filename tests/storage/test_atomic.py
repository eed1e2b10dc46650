"""Outputs appear whole or not at all, with the permissions any new file gets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from snaptool.storage.atomic import atomic_output


def test_finished_file_has_the_usual_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "out.rdb") as f:
            f.write(b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.rdb").stat().st_mode) == 0o644


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "out.rdb") as f:
            f.write(b"partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
