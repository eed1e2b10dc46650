"""The top-level command group: every command is found where LAZY_COMMANDS says, and a command
runs without importing the modules of the others."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import snaptool.cli
from snaptool.cli.main import LAZY_COMMANDS, cli


def test_every_cli_module_command_is_listed_once_under_its_module() -> None:
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(snaptool.cli.__path__):
        module = importlib.import_module(f"snaptool.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            assert command.name not in found, f"{command.name} in {found.get(command.name)} and {info.name}"
            found[command.name] = info.name
    assert found == LAZY_COMMANDS
    assert sorted(cli.list_commands(None)) == sorted(found)  # type: ignore[arg-type]


def test_a_command_imports_only_its_own_module() -> None:
    code = ("import sys; from snaptool.cli.main import main; rc = main(['backup', '--help']); "
            "print(sorted(m for m in sys.modules if m.startswith(('snaptool.cli.', 'boto3', 'snaptool.schedule'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "snaptool.cli.repo" in loaded
    for other in ("snaptool.cli.migrate", "snaptool.cli.schedule", "snaptool.cli.cloud", "boto3"):
        assert other not in loaded, other
