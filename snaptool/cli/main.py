"""The `snaptool` command: a thin layer over the jobs; errors become one line and an exit code.

Exit codes: 0 success; 1 error (engine, I/O, usage of a resource); 2 unreadable or corrupt input;
3 a conversion refused because it would lose data; 4 a validation against live engines found
differences.
"""

from __future__ import annotations

import sys

import click

from ..errors import SnaptoolError
from .engines import engines_command
from .cloud import COMMANDS as CLOUD_COMMANDS, export_command
from .keys import COMMANDS as KEY_COMMANDS
from .migrate import COMMANDS as MIGRATE_COMMANDS
from .repo import COMMANDS as REPO_COMMANDS
from .retention import COMMANDS as RETENTION_COMMANDS
from .schedule import COMMANDS as SCHEDULE_COMMANDS
from .rdb import convert_command, digest_command, inspect_command
from .shards import merge_command, reshard_command, split_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snaptool")
def cli() -> None:
    """Back up, restore, reshard and migrate Redis and Valkey data through RDB snapshots."""


for command in (inspect_command, export_command, convert_command, digest_command, split_command,
                reshard_command, merge_command, engines_command, *REPO_COMMANDS,
                *RETENTION_COMMANDS, *CLOUD_COMMANDS, *KEY_COMMANDS,
                *SCHEDULE_COMMANDS, *MIGRATE_COMMANDS):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning snaptool errors into a one-line message and exit code."""
    try:
        cli.main(args=argv, prog_name="snaptool", standalone_mode=False)
    except SnaptoolError as exc:
        click.echo(f"snaptool: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("snaptool: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    except OSError as exc:  # a file that cannot be opened or written, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"snaptool: error: {where}{exc.strerror or exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("snaptool: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
