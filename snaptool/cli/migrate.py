"""`migrate memcached`: memcached servers into a live node or cluster, an RDB file or a repository snapshot."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

import click

from ..engines.memcached_dump import DUMP_SILENCE
from ..engines.memcached_ring import Ring
from ..errors import ValidationError
from ..jobs.migrate_flags import FlagsPolicy, FlagsRefused
from ..jobs.migrate_memcached import DUPLICATE_POLICIES, MigrateOptions, MigrationReport, migrate_memcached, summary
from ..rdb.targets import parse_target
from ..storage.repository import Repository, S3Settings
from .output import emit_json
from .repo import node_options


@click.group("migrate")
def migrate_group() -> None:
    """Move data from other stores into Redis or Valkey, every key proven in the target."""


@migrate_group.command("memcached")
@click.option("--from", "sources", multiple=True, required=True, metavar="HOST:PORT",
              help="A memcached server (repeat for every server of a client-side sharded pool).")
@click.option("--to", help="A live node or cluster: redis://host:port (rediss:// for TLS).")
@click.option("--to-dir", type=click.Path(file_okay=False), help="Write DIR/dump.rdb (checked on a local engine node).")
@click.option("--repo", "repo_url", help="Store the RDB file as a snapshot in this repository (directory or s3://).")
@click.option("--s3-region", help="--repo on S3: the region (default: the AWS environment).")
@click.option("--s3-profile", help="--repo on S3: the AWS profile.")
@click.option("--s3-endpoint-url", help="--repo on S3: an S3-compatible endpoint.")
@click.option("--key-prefix", default="", help="Prepend this to every key written (a namespace).")
@click.option("--flags", "flags_policy", metavar="POLICY",
              help="Non-zero memcached flags: ignore | hash:NAME | envelope (without it, non-zero flags stop the run).")
@click.option("--auth-file", type=click.Path(exists=True, dir_okay=False),
              help="user:password file for memcached ASCII auth (the file given to memcached -Y).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Connections per server fetching values with pipelined mg.")
@click.option("--on-duplicate", type=click.Choice(DUPLICATE_POLICIES), default="error", show_default=True,
              help="A key on several servers: stop, or keep the copy of the first / last --from.")
@click.option("--ring", "ring", metavar="KIND[:W1,W2,…]",
              help="The clients' hash ring (ketama | modula, weights in --from order): a key on several servers is "
                   "copied from the server it maps to.")
@click.option("--replace", is_flag=True, help="--to: write into a target that already holds keys (same names are overwritten).")
@click.option("--target", help="--to-dir/--repo: the engine the RDB file is for (default redis-6.2: RDB 9).")
@click.option("--engine", help="--to-dir/--repo: the local engine that loads the file for the check.")
@click.option("--no-delta", is_flag=True, help="Skip the second listing that copies keys written during the run.")
@click.option("--enumerate", "enumerate_mode", type=click.Choice(["auto", "hash", "all", "mgdump"]), default="auto",
              show_default=True, help="Listing: metadump hash (1.6.9+, misses nothing), metadump all (older "
                                      "servers) or mgdump hash (1.6.19+, keys only).")
@click.option("--fetch", "fetch_mode", type=click.Choice(["auto", "meta", "gets"]), default="auto", show_default=True,
              help="How values are read: meta mg (1.6.10+) or gets.")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds of silence from a server (or a stalled dump) before giving up.")
@click.option("--dump-silence", type=float, default=DUMP_SILENCE, show_default=True,
              help="memcached before 1.5.4 ends a dump without END: seconds of silence taken as its end.")
@click.option("--tag", "tags", multiple=True, help="--repo: label the snapshot (repeatable).")
@click.option("--kind", type=click.Choice(["manual", "automatic"]), default="manual", show_default=True,
              help="--repo: the snapshot's kind.")
@click.option("--dry-run", is_flag=True, help="List and read everything, write nothing: counts, flags inventory, refusals.")
@node_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
def memcached_command(sources: tuple[str, ...], to: str | None, to_dir: str | None, repo_url: str | None,
                      s3_region: str | None, s3_profile: str | None, s3_endpoint_url: str | None, key_prefix: str,
                      flags_policy: str | None, auth_file: str | None, workers: int, on_duplicate: str,
                      ring: str | None, replace: bool, target: str | None, engine: str | None, no_delta: bool,
                      enumerate_mode: str, fetch_mode: str, timeout: float, dump_silence: float,
                      tags: tuple[str, ...], kind: str, dry_run: bool, login: dict, as_json: bool) -> None:
    """Copy every key of memcached servers into Redis with its value, remaining TTL and flags, then
    read every key back from the target to prove it.

    \b
    Keys are listed with `lru_crawler metadump` (memcached 1.4.31+, the hash walk on 1.6.9+) and read
    with pipelined meta `mg` (1.6.10+; `gets` before). Keys written during the run are found by a
    second listing and copied too. Exit codes: 0 every key accounted for; 1 a server or target
    problem (e.g. a server whose crawler is disabled); 2 bad arguments; 3 non-zero flags without
    --flags; 4 keys lost (table on stderr).
    \b
    Examples:
      snaptool migrate memcached --from 10.0.0.5:11211 --to redis://10.0.0.9:6379
      snaptool migrate memcached --from mc1:11211 --from mc2:11211 --to redis://10.0.0.9:7000 --flags hash:mcflags
      snaptool migrate memcached --from mc1:11211 --to-dir seed/            # seed/dump.rdb
      snaptool migrate memcached --from mc1:11211 --repo s3://bucket/redis --tag from-memcached
      snaptool migrate memcached --from mc1:11211 --dry-run                 # counts and flags inventory only
    """
    repo = None
    if repo_url is not None:
        repo = Repository.open(repo_url, s3=S3Settings(region=s3_region, profile=s3_profile,
                                                       endpoint_url=s3_endpoint_url))
    options = MigrateOptions(
        sources=sources, to=to, to_dir=to_dir, repo=repo, key_prefix=key_prefix.encode(),
        flags=FlagsPolicy.parse(flags_policy), auth_file=auth_file, workers=workers, dry_run=dry_run,
        replace=replace, on_duplicate=on_duplicate, ring=Ring.parse(ring) if ring else None,
        target=parse_target(target) if target else None, engine=engine, delta=not no_delta,
        enumerate=enumerate_mode, fetch=fetch_mode, timeout=timeout, dump_silence=dump_silence, tags=tags, kind=kind,
        **login)
    with _progress() as progress:
        try:
            report = migrate_memcached(options, progress)
        except FlagsRefused as exc:
            if as_json:
                emit_json({"refused": "flags", "inventory": exc.inventory.to_json()})
            else:
                click.echo("memcached flags found (non-zero flags stop the run until --flags says what to do):",
                           err=True)
                click.echo(exc.inventory.table(), err=True)
            raise
        except ValidationError as exc:
            if isinstance(exc.report, MigrationReport):
                if as_json:
                    emit_json(exc.report.to_json())
                else:
                    click.echo(table(exc.report), err=True)
            raise
    if as_json:
        emit_json(report.to_json())
        return
    click.echo(table(report))


def table(report: MigrationReport) -> str:
    """The report for people: one line per source, then what happened to the keys."""
    lines = []
    for s in report.sources:
        lines.append(f"memcached {s.server} ({s.version}, {s.enumeration}, {s.fetch}): {s.listed:,} listed in "
                     f"{s.seconds:.1f}s")
        if s.why:
            lines.append(f"  {s.enumeration}: {s.why}")
        if s.passes > 1:
            lines.append(f"  {s.enumeration}: {s.passes} walks, {s.repeated:,} repeats dropped")
        if s.end_inferred:
            lines.append(f"  ! {s.enumeration}: the end was inferred from a silence (memcached before 1.5.4 prints no "
                         "END), so the listing may be incomplete; the second listing and the check still ran")
    total = lambda name: sum(getattr(s, name) for s in report.sources)  # noqa: E731
    check = report.check
    # the check counts keys whose TTL ran out before the write as well as after it
    expired = total("expired") + (check.expired if check is not None else report.expired_before_write)
    rows: list[tuple[str, int, str]] = [
        ("listed", report.listed, ""),
        ("read", total("read"), ""),
        ("expired during the run", expired, "TTL ran out: not counted as lost"),
        ("deleted during the run", total("vanished"), "gone between listing and reading"),
        ("unreadable", total("failed"), "LOST" if total("failed") else ""),
        ("new during the run", total("new"), "copied (second listing)"),
        ("changed during the run", total("changed"), "copied again (second listing)"),
        ("deleted after reading", total("gone_after_read"), "still copied"),
        ("on several servers", report.duplicates, _duplicates_note(report)),
    ]
    if not report.dry_run:
        rows.append(("written", report.written, report.destination))
    if check is not None:
        rows += [("verified equal", check.equal, check.target),
                 ("missing", check.missing, "LOST" if check.missing else ""),
                 ("different", check.different, "LOST" if check.different else ""),
                 ("other TTL", check.ttl_off, "LOST" if check.ttl_off else ""),
                 ("other flags", check.flags_off, "LOST" if check.flags_off else "")]
    lines += [f"  {name:<26}{value:>14,}  {note}".rstrip() for name, value, note in rows]
    inventory = report.inventory
    lines.append(f"flags: {report.flags_policy}; {inventory.nonzero:,} of {inventory.keys:,} keys have non-zero flags"
                 + (f", {report.flag_fields:,} kept in the side hash" if report.flag_fields else ""))
    if inventory.nonzero:
        lines += ["  " + line for line in inventory.table().splitlines()]
    if report.file:
        lines.append(f"file: {report.file}")
    if report.snapshot:
        lines.append(f"snapshot: {report.snapshot}")
    if report.would_refuse:
        lines.append(f"a real run would stop: {report.would_refuse}")
    lines += [f"  ! {p}" for p in report.problems + (check.problems if check is not None else [])]
    stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report.stages.items())
    lines.append(f"{summary(report)}; {report.seconds:.1f}s ({stages})" if report.ok else summary(report))
    return "\n".join(lines)


def _duplicates_note(report: MigrationReport) -> str:
    """How the copies of keys found on several servers were chosen."""
    if not report.duplicates:
        return ""
    if report.ring is None:
        return f"--on-duplicate {report.on_duplicate}"
    rest = report.duplicates - report.ring_chosen
    return (f"{report.ring_chosen:,} copied from the server --ring {report.ring} names"
            + (f", {rest:,} by --on-duplicate {report.on_duplicate} (the ring names a server without them)"
               if rest else ""))


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, int, Any], None] | None]:
    """Bars on stderr, one per stage, when it is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


COMMANDS = (migrate_group,)
