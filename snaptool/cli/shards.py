"""`split`, `reshard` and `merge`: RDB files by hash slot, each result proven on live engines."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..engines.cluster import read_layout
from ..engines.discovery import Engine, engine_for_rdb, find_engine
from ..errors import SnaptoolError, ValidationError
from ..jobs.dedupe import POLICIES, selected_records
from ..jobs.merge import merge
from ..jobs.split import parse_db_map, split
from ..jobs.validate import ValidationReport, validate_cluster, validate_node
from ..rdb.slots import SlotLayout
from ..rdb.targets import Target, parse_target
from .output import emit_json, file_progress, human_bytes

# Inputs are read more than once (routing, duplicate search, validation): files, not pipes.
_inputs = click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
_target = click.option("--target", help="Engine or RDB version to write for (default: the newest input version).")
_validate = click.option("--validate/--no-validate", default=True, show_default=True,
                         help="Load the result into live engine nodes and compare every key.")
_engine = click.option("--engine", help="Engine for validation (default: the oldest one here that loads the result).")
_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable summary on stdout.")
_lossy = click.option("--allow-lossy", is_flag=True, help="Drop what the target cannot hold instead of refusing.")
_checksum = click.option("--no-verify-checksum", "no_verify", is_flag=True, help="Read inputs whose CRC-64 is wrong.")
on_duplicate_option = click.option("--on-duplicate", type=click.Choice(POLICIES), default="error", show_default=True,
                             help="A key met twice (several inputs, or databases mapped together): refuse, "
                                  "keep the first, or keep the last.")


def _shared_options(command):
    """The options every command here takes, in one place."""
    for option in reversed((on_duplicate_option, _target, _lossy, _validate, _engine, _json, _checksum)):
        command = option(command)
    return command


def _layout(shards: int | None, slots: str | None, cluster: str | None) -> SlotLayout:
    chosen = [x for x in (shards, slots, cluster) if x is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --shards N, --slots FILE, --cluster URL")
    if shards is not None:
        return SlotLayout.even(shards)
    if slots is not None:
        return SlotLayout.load(slots)
    return read_layout(cluster)


def _validation_engine(spec: str | None, target: Target) -> Engine:
    if spec:
        return find_engine(spec)
    try:
        return engine_for_rdb(target.rdb_version, target.flavour)
    except SnaptoolError as exc:
        raise SnaptoolError(f"cannot validate: {exc} (use --engine, or --no-validate)") from None


def _finish(report: ValidationReport | None, summary: dict, as_json: bool) -> None:
    if report is not None:
        summary["validation"] = {**asdict(report), "ok": report.ok}
    if as_json:
        emit_json(summary)
    if report is not None:
        click.echo(report.summary(), err=True)
        if not report.ok:
            click.echo(report.table(), err=True)
            raise ValidationError(report.summary(), report)


def _split_command(name: str, doc: str):
    @click.command(name, help=doc)
    @_inputs
    @click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write.")
    @click.option("--shards", type=int, help="N shards with the slot ranges `redis-cli --cluster create` assigns.")
    @click.option("--slots", type=click.Path(dir_okay=False), help="Layout: JSON [{name, slots}] or nodes.conf / CLUSTER NODES text.")
    @click.option("--cluster", help="Read the layout from a live cluster (redis://host:port).")
    @click.option("--db-map", help="Where keys of other databases go, e.g. 1:0,5:0 (cluster nodes hold db 0).")
    @_shared_options
    def command(inputs: tuple[str, ...], out_dir: str, shards: int | None, slots: str | None, cluster: str | None,
                db_map: str | None, on_duplicate: str, target: str | None, allow_lossy: bool, validate: bool,
                engine: str | None, as_json: bool, no_verify: bool) -> None:
        layout = _layout(shards, slots, cluster)
        mapping = parse_db_map(db_map)
        with file_progress(list(inputs), name) as progress:
            report = split(list(inputs), out_dir, layout, target=parse_target(target) if target else None,
                           db_map=mapping, on_duplicate=on_duplicate, allow_lossy=allow_lossy,
                           verify_checksum=not no_verify, progress=progress)
        if not as_json:
            click.echo(f"{report.keys_out:,} keys from {len(report.inputs)} file(s) into {len(report.shards)} "
                       f"shards for {report.target} (RDB {report.rdb_version}) in {out_dir}:")
            for shard in report.shards:
                ranges = ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in shard.slots)
                click.echo(f"  {shard.file:<20} {sum(shard.keys.values()):>12,} keys {human_bytes(shard.bytes):>11}  slots {ranges}")
            for reason, n in report.dropped.items():
                click.echo(f"  dropped: {n:,} {reason}")
        validation = None
        if validate:
            node_engine = _validation_engine(engine, parse_target(report.target))
            files = [f"{out_dir}/{s.file}" for s in report.shards]
            kept = selected_records(list(inputs), on_duplicate, map_db=lambda db, path: mapping.get(db, db),
                                    verify_checksum=not no_verify)
            validation = validate_cluster(node_engine, layout, files, kept)
        _finish(validation, asdict(report), as_json)

    return command


split_command = _split_command("split", """Split snapshots into one RDB file per shard, by hash slot.

\b
Examples:
  snaptool split dump.rdb -o shards/ --shards 3
  snaptool split dump.rdb -o shards/ --slots layout.json --db-map 1:0
  snaptool split dump.rdb -o shards/ --cluster redis://10.0.0.5:6379 --no-validate
Writes DIR/<shard>.rdb and DIR/layout.json, then (by default) starts a local cluster on the files
and proves every key is on the right node with the right value.""")

reshard_command = _split_command("reshard", """Reshard N shard snapshots into M, in one streaming pass.

\b
Example:
  snaptool reshard old/shard-0001.rdb old/shard-0002.rdb old/shard-0003.rdb -o new/ --shards 5""")


@click.command("merge")
@_inputs
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@_shared_options
def merge_command(inputs: tuple[str, ...], output: str, on_duplicate: str, target: str | None, allow_lossy: bool,
                  validate: bool, engine: str | None, as_json: bool, no_verify: bool) -> None:
    """Merge snapshots (e.g. a cluster's shards) into one RDB file for a standalone node.

    \b
    Example:
      snaptool merge shards/*.rdb -o all.rdb
      snaptool merge a.rdb b.rdb -o all.rdb --on-duplicate last
    """
    with file_progress(list(inputs), "merge") as progress:
        report = merge(list(inputs), output, on_duplicate=on_duplicate,
                       target=parse_target(target) if target else None, allow_lossy=allow_lossy,
                       verify_checksum=not no_verify, progress=progress)
    if not as_json:
        click.echo(f"wrote {output}: {report.keys_out:,} keys from {len(report.inputs)} files for {report.target} "
                   f"(RDB {report.rdb_version}), {report.duplicates:,} duplicated keys, {human_bytes(report.bytes)}")
    validation = None
    if validate:
        node_engine = _validation_engine(engine, parse_target(report.target))
        kept = selected_records(list(inputs), on_duplicate, verify_checksum=not no_verify)
        validation = validate_node(node_engine, output, kept, databases=max(report.databases, default=0) + 1)
    _finish(validation, asdict(report), as_json)


COMMANDS = (split_command, reshard_command, merge_command)
