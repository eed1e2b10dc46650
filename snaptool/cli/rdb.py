"""`inspect`, `export`, `convert` and `digest`: commands over one RDB file."""

from __future__ import annotations

import contextlib
import io
import sys

import click

from ..jobs.convert import convert
from ..jobs.digest import digest_file
from ..jobs.export import export_file
from ..jobs.inspect import inspect_file
from ..rdb.model import KINDS
from ..rdb.targets import parse_target
from ..storage.atomic import atomic_output
from .output import emit_json, file_progress, human_bytes

_checksum_option = click.option("--no-verify-checksum", "no_verify", is_flag=True,
                                help="Read a file whose CRC-64 trailer does not match its bytes.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
_file_argument = click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))


@click.command("inspect")
@_file_argument
@_json_option
@click.option("--slots", is_flag=True,
              help="Keys and bytes per cluster slot range and how even a --shards split would be (slower: one record at a time).")
@click.option("--shards", type=click.IntRange(1, 16384), default=3, show_default=True,
              help="Shards of the even split --slots and --html measure.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report with charts to this file.")
@_checksum_option
def inspect_command(file: str, as_json: bool, slots: bool, shards: int, html_path: str | None,
                    no_verify: bool) -> None:
    """Summarise an RDB file: version, AUX fields, keys per db, types, encodings, biggest keys.

    \b
    Example:
      snaptool inspect dump.rdb
      snaptool inspect dump.rdb --json | jq .by_type
      snaptool inspect dump.rdb --slots --shards 5
      snaptool inspect dump.rdb --html report.html
    """
    detail = slots or html_path is not None
    with file_progress(file, "inspect") as progress:
        report = inspect_file(file, verify_checksum=not no_verify, progress=progress,
                              shards=shards if detail else None)
    if html_path is not None:
        from ..jobs.report_html import write_html  # only this option needs it
        write_html(report, html_path)
    if as_json:
        data = report.to_json()
        if not slots:
            data.pop("slots", None)
            data.pop("size_buckets", None)
        emit_json(data)
        return
    echo = click.echo
    echo(f"file      {report.path} ({human_bytes(report.size)})")
    echo(f"format    {report.magic} (RDB {report.version}) by {report.writer}, checksum {report.checksum}")
    for key in ("ctime", "used-mem"):
        if key in report.aux:
            echo(f"{key:<9} {report.aux[key]}")
    echo(f"keys      {report.keys:,} ({report.expires:,} with expiry)")
    for db, stats in sorted(report.databases.items()):
        echo(f"  db {db:<5} {stats.keys:>12,} keys {stats.expires:>12,} expiring {human_bytes(stats.bytes):>11}")
    if report.lru_keys or report.lfu_keys:
        echo(f"eviction  {report.lru_keys:,} keys with LRU idle time, {report.lfu_keys:,} with LFU counter")
    echo("by type")
    for name, row in sorted(report.by_type.items(), key=lambda kv: -kv[1]["bytes"]):
        echo(f"  {name:<12} {row['keys']:>12,} keys {human_bytes(row['bytes']):>11}")
    echo("by encoding")
    for name, row in sorted(report.by_encoding.items(), key=lambda kv: -kv[1]["bytes"]):
        echo(f"  {name:<22} {row['keys']:>12,} keys {human_bytes(row['bytes']):>11}")
    if report.functions:
        echo(f"functions {', '.join(report.functions)}")
    if report.modules:
        echo("modules   " + ", ".join(f"{name} ({n} keys)" for name, n in report.modules.items()))
    if report.biggest:
        echo("biggest keys")
        for row in report.biggest:
            echo(f"  {human_bytes(row['bytes']):>11}  {row['type']:<7} db {row['db']}  {row['key']}")
    if slots and report.slots is not None:
        _echo_slots(report.slots.to_json())
    if html_path is not None:
        click.echo(f"wrote {html_path}", err=True)


def _echo_slots(spread: dict) -> None:
    """The --slots part of people's output: one line per shard of the even split, then the busiest slots."""
    echo = click.echo
    echo(f"slots     {spread['keys']:,} keys in {spread['slots_used']:,} of 16384 slots; "
         f"even split over {spread['shards']} shards:")
    for row in spread["by_shard"]:
        where = ",".join(f"{s}-{e}" for s, e in row["slots"])
        echo(f"  {row['name']:<12} {where:<12} {row['keys']:>12,} keys {row['keys_pct']:>6.2f}%"
             f" {human_bytes(row['bytes']):>11} {row['bytes_pct']:>6.2f}%")
    imbalance = spread["imbalance"]
    echo(f"  imbalance (max/mean): keys {imbalance['keys']:.3f}, bytes {imbalance['bytes']:.3f}")
    if spread["busiest"]:
        echo("busiest slots")
        for row in spread["busiest"]:
            echo(f"  slot {row['slot']:<6} {row['keys']:>12,} keys {human_bytes(row['bytes']):>11}")


@click.command("export")
@_file_argument
@click.option("--format", "fmt", type=click.Choice(["jsonl", "resp"]), default="jsonl", show_default=True,
              help="jsonl: one JSON object per key; resp: commands for `redis-cli --pipe`.")
@click.option("--db", type=int, help="Only keys of this database.")
@click.option("--match", help="Only keys matching this glob (*, ?, [..]).")
@click.option("--type", "types", multiple=True, type=click.Choice(KINDS), help="Only keys of this type (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write here instead of stdout.")
@_checksum_option
def export_command(file: str, fmt: str, db: int | None, match: str | None, types: tuple[str, ...],
                   output: str, no_verify: bool) -> None:
    """Export every key as JSON lines or as RESP commands.

    \b
    Examples:
      snaptool export dump.rdb --match 'user:*' | jq .
      snaptool export dump.rdb --format resp | redis-cli --pipe
    """
    with contextlib.ExitStack() as stack:
        binary = sys.stdout.buffer if output == "-" else stack.enter_context(atomic_output(output))
        out = binary if fmt == "resp" else io.TextIOWrapper(binary, encoding="utf-8", write_through=False)
        progress = stack.enter_context(file_progress(file, "export"))
        try:
            report = export_file(file, out, fmt=fmt, db=db, match=match, types=types,
                                 verify_checksum=not no_verify, progress=progress)
        finally:
            out.flush()
            if fmt != "resp":
                out.detach()
    for reason, n in report.not_exported.items():
        click.echo(f"snaptool: {n} keys not exported ({reason}: RESP has no command for them)", err=True)


@click.command("convert")
@_file_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--target", help="Engine or RDB version to write for: redis-6.2, redis-7.0, valkey-8.1, rdb-9 … "
                               "(default: the input's own version).")
@click.option("--allow-lossy", is_flag=True,
              help="Drop what the target cannot hold (field TTLs, functions, …) instead of refusing.")
@_json_option
@_checksum_option
def convert_command(file: str, output: str, target: str | None, allow_lossy: bool, as_json: bool,
                    no_verify: bool) -> None:
    """Rewrite an RDB file for a target engine, copying records byte for byte where possible.

    \b
    Examples:
      snaptool convert redis74.rdb -o for-valkey.rdb --target valkey-8.1
      snaptool convert dump.rdb -o old.rdb --target redis-6.2 --allow-lossy
    """
    with file_progress(file, "convert") as progress:
        report = convert(file, output, parse_target(target) if target else None, allow_lossy=allow_lossy,
                         verify_checksum=not no_verify, progress=progress)
    if as_json:
        emit_json(report.__dict__)
        return
    click.echo(f"wrote {output}: {report.keys:,} keys for {report.target} (RDB {report.target_version}), "
               f"{report.passthrough:,} copied, {report.reencoded:,} re-encoded, {human_bytes(report.bytes_out)}")
    for reason, n in report.dropped.items():
        click.echo(f"  dropped: {n:,} {reason}")


@click.command("digest")
@_file_argument
@click.option("--engine", help="Engine whose DEBUG DIGEST to reproduce (default: the newest engine that "
                               "writes the file's RDB version).")
@click.option("--at-ms", type=int, help="Leave out keys expired at this Unix time in ms (default: now).")
@_json_option
@_checksum_option
def digest_command(file: str, engine: str | None, at_ms: int | None, as_json: bool, no_verify: bool) -> None:
    """Print the DEBUG DIGEST an engine reports after loading FILE.

    \b
    Example:
      snaptool digest dump.rdb --engine redis-7.0
      redis-cli DEBUG DIGEST          # the same 40 hex digits, on the node that loaded dump.rdb
    """
    with file_progress(file, "digest") as progress:
        report = digest_file(file, parse_target(engine) if engine else None, at_ms=at_ms,
                             verify_checksum=not no_verify, progress=progress)
    if as_json:
        emit_json(report.__dict__)
        return
    click.echo(report.digest)
    notes = []
    if report.expired_skipped:
        notes.append(f"{report.expired_skipped:,} expired keys left out")
    if report.modules:
        notes.append(f"{report.modules:,} module values digested by type only")
    if notes:
        click.echo(f"snaptool: {report.engine}, {report.keys:,} keys; " + "; ".join(notes), err=True)


COMMANDS = (inspect_command, convert_command, digest_command)  # export: see cli/cloud.py
