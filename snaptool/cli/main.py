"""The `snaptool` command: a thin layer over the jobs; errors become one line and an exit code.

Exit codes: 0 success; 1 error (engine, I/O, usage of a resource); 2 unreadable or corrupt input;
3 a conversion refused because it would lose data; 4 a validation against live engines found
differences.
"""

from __future__ import annotations

import importlib
import sys

import click

from ..errors import SnaptoolError

#: command -> the module under snaptool/cli that defines it (in its COMMANDS). A command's module,
#: and the jobs it needs, are imported only when that command runs: a cron job's `snaptool backup`
#: does not pay for boto3, the scheduler or the memcached migration.
LAZY_COMMANDS = {
    "inspect": "rdb", "convert": "rdb", "digest": "rdb", "export": "cloud",
    "split": "shards", "reshard": "shards", "merge": "shards", "engines": "engines",
    "backup": "repo", "restore": "repo", "drill": "repo", "show": "repo", "forget": "repo", "gc": "repo",
    "snapshots": "retention", "prune": "retention", "locks": "retention",
    "copy": "cloud", "seed": "cloud", "check-bucket": "cloud",
    "key": "keys", "schedule": "schedule", "migrate": "migrate",
}


class _LazyGroup(click.Group):
    """The top-level group, importing a command's module when the command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = LAZY_COMMANDS.get(name)
        if module is None:
            return None
        commands = importlib.import_module(f"{__package__}.{module}").COMMANDS
        return next(c for c in commands if c.name == name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snaptool")
def cli() -> None:
    """Back up, restore, reshard and migrate Redis and Valkey data through RDB snapshots."""


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
    except Exception as exc:  # an S3 or network error no job worded: still one line, no traceback
        from ..storage.s3 import describe_error, is_boto_error
        if not is_boto_error(exc):
            raise
        click.echo(f"snaptool: error: {describe_error(exc)}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("snaptool: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
