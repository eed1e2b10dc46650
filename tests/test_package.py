"""The library surface: every public name resolves, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import snaptool


def test_every_public_name_resolves() -> None:
    for name in snaptool.__all__:
        assert getattr(snaptool, name) is not None, name
    assert snaptool.backup.__module__ == "snaptool.jobs.backup"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        snaptool.nothing  # noqa: B018


def test_importing_the_package_imports_no_job() -> None:
    code = "import sys, snaptool; print(sorted(m for m in sys.modules if m.startswith('snaptool.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "snaptool.jobs" not in loaded and "boto3" not in loaded
