"""`copy`, `seed` (also reached as `export ID --repo R --to s3://…`), `check-bucket`: snapshots across
buckets, regions and accounts, and ElastiCache."""

from __future__ import annotations

import copy
import shlex
from typing import Any

import click

from ..cloud import bucket as bucket_access
from ..cloud.elasticache import ElastiCacheError
from ..jobs.copy import MODES, CopyOptions, CopyReport, copy_snapshot
from ..jobs.seed import SeedOptions, SeedPlan, seed
from ..jobs.split import parse_db_map
from .shards import on_duplicate_option
from ..rdb.targets import parse_target
from ..storage.repository import Repository, S3Settings
from ..storage.s3 import CANNED_ACLS, split_s3_url
from .output import emit_json, human_bytes
from .rdb import export_command as file_export_command
from .repo import decrypt_options, repo_options
from .s3options import s3_write_options

_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


# --------------------------------------------------------------------------- copy

@click.command("copy")
@click.argument("snapshot", default="latest")
@repo_options
@click.option("--to-repo", "to_repo", required=True, help="Destination: a directory or s3://bucket/prefix.")
@click.option("--dest-profile", help="AWS profile for the destination (another account's credentials).")
@click.option("--dest-region", help="Region of the destination bucket.")
@click.option("--dest-endpoint-url", help="S3-compatible endpoint of the destination (default: AWS_ENDPOINT_URL).")
@click.option("--acl", type=click.Choice(CANNED_ACLS), help="Canned ACL of the copies, e.g. bucket-owner-full-control.")
@click.option("--expected-bucket-owner", metavar="ACCOUNT", help="Refuse a destination bucket this account does not own.")
@click.option("--expected-source-owner", metavar="ACCOUNT", help="Refuse a source bucket this account does not own.")
@s3_write_options(prefix="dest-", env="SNAPTOOL_DEST_S3_", ownership=False)
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True,
              help="server: copy inside S3 only; stream: through this machine; auto: server-side where possible.")
@click.option("--multipart-threshold", type=int, default=5 << 30, show_default=True,
              help="Bytes above which a server-side copy goes part by part (UploadPartCopy).")
@click.option("--part-size", type=int, help="Part size of part-by-part copies (default 512 MiB).")
@_json
def copy_command(snapshot: str, repo: Repository, to_repo: str, dest_profile: str | None, dest_region: str | None,
                 dest_endpoint_url: str | None, acl: str | None, expected_bucket_owner: str | None,
                 expected_source_owner: str | None, dest_write: dict[str, Any], mode: str, multipart_threshold: int,
                 part_size: int | None, as_json: bool) -> None:
    """Copy a snapshot (id, unique prefix, or latest) to another repository: another bucket, region or
    account, or between a directory and S3. Server-side inside S3 when the destination's credentials
    can read the source; every file checked by SHA-256; the manifest last; a rerun resumes.

    \b
    Examples:
      snaptool copy latest --repo s3://prod-backups/redis --to-repo s3://dr-backups/redis --dest-region eu-west-1
      snaptool copy latest --repo s3://a/redis --to-repo s3://b/redis --dest-profile dr \\
          --acl bucket-owner-full-control --expected-bucket-owner 222233334444
      snaptool copy 20261126T0715 --repo /backups --to-repo s3://bucket/redis
    """
    fields = dict(dest_write)
    fields.update({k: v for k, v in {"acl": acl, "expected_bucket_owner": expected_bucket_owner}.items() if v})
    dest_settings = S3Settings(profile=dest_profile, region=dest_region, endpoint_url=dest_endpoint_url, **fields)
    dest = Repository.open(to_repo, s3=dest_settings)
    options = CopyOptions(mode=mode, multipart_threshold=multipart_threshold, part_size=part_size,
                          expected_source_owner=expected_source_owner)
    report = copy_snapshot(snapshot, repo, dest, options)
    if as_json:
        emit_json(report.to_json())
        return
    click.echo(_copy_summary(report))


def _copy_summary(report: CopyReport) -> str:
    how = "server-side" if report.server_side else "streamed"
    lines = [f"snapshot {report.snapshot}: {report.source} -> {report.destination} ({how})"]
    for f in report.files:
        lines.append(f"  {f.name}  {human_bytes(f.size):>10}  {f.action:<16} verified by {f.verified_by}")
    lines.append(f"  manifest {report.manifest}; {human_bytes(report.bytes_read)} read and "
                 f"{human_bytes(report.bytes_written)} written through this machine; {report.seconds:.1f}s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- seed

@click.command("seed")
@click.argument("snapshot", default="latest")
@repo_options
@decrypt_options
@click.option("--to", "to", required=True, help="Where the seed objects go: s3://bucket/prefix (no commas).")
@click.option("--engine-version", help="The new cluster's engine, e.g. redis-7.1 or valkey-8.0: refuse files it cannot load.")
@click.option("--target", help="Re-encode for this engine's RDB version (e.g. redis-6.2).")
@click.option("--allow-lossy", is_flag=True, help="Drop what the target cannot hold instead of refusing.")
@click.option("--shards", type=click.IntRange(1, 500), help="Re-split into N shards (default: as taken).")
@click.option("--db-map", help="With shards: where keys of other databases go, e.g. 1:0.")
@on_duplicate_option
@click.option("--region", help="Region of the new cluster (default: AWS_REGION).")
@click.option("--grant-elasticache", is_flag=True, help="Grant ElastiCache read access to the objects.")
@click.option("--engine", help="Local engine that proves the files before they are uploaded.")
@click.option("--replication-group-id", help="Print the CreateReplicationGroup request for this new group.")
@click.option("--node-type", default="cache.r7g.large", show_default=True, help="Node type of that request.")
@_json
def seed_command(snapshot: str, repo: Repository, keys: Any, to: str, engine_version: str | None, target: str | None,
                 allow_lossy: bool, shards: int | None, db_map: str | None, on_duplicate: str, region: str | None,
                 grant_elasticache: bool, engine: str | None, replication_group_id: str | None, node_type: str,
                 as_json: bool) -> None:
    """Write a snapshot as RDB objects ElastiCache can create a cluster from: plain RDB under SSE-S3,
    re-encoded for the engine, one per shard, proven on local engines first; then print the
    SnapshotArns and NodeGroupConfiguration for CreateReplicationGroup.

    \b
    Examples:
      snaptool seed latest --repo s3://backups/redis --to s3://seeds-eu/orders --engine-version redis-7.1 \\
          --target redis-7.0 --shards 3 --grant-elasticache
    """
    aws = repo.s3 or S3Settings()
    options = SeedOptions(to=to, engine_version=engine_version, target=parse_target(target) if target else None,
                          shards=shards, db_map=parse_db_map(db_map), on_duplicate=on_duplicate,
                          grant_elasticache=grant_elasticache, region=region,
                          engine=engine, allow_lossy=allow_lossy, aws=aws, keys=keys)
    plan = seed(snapshot, repo, options)
    request = plan.create_replication_group_request(replication_group_id, node_type) if replication_group_id else None
    if as_json:
        emit_json({**plan.to_json(), **({"CreateReplicationGroup": request} if request else {})})
    else:
        click.echo(_seed_summary(plan, request))
    for problem in plan.problems:
        click.echo(f"snaptool: warning: ElastiCache cannot use the objects yet: {problem}", err=True)


def _seed_summary(plan: SeedPlan, request: dict[str, Any] | None) -> str:
    lines = [f"snapshot {plan.snapshot}: {len(plan.objects)} seed object(s), RDB {plan.rdb_version}, SSE-S3, "
             f"in s3://{plan.bucket} ({plan.region})"]
    lines += [f"  {o.key}  {human_bytes(o.size)}" + (f"  node group {o.node_group} slots {o.slots}" if o.slots else "")
              for o in plan.objects]
    if plan.grant:
        lines.append(f"  granted: {plan.grant}")
    lines.append("SnapshotArns: " + " ".join(plan.snapshot_arns))
    groups = plan.node_group_configuration
    if groups:
        lines.append("NodeGroupConfiguration: " + " ".join(f"NodeGroupId={g['NodeGroupId']},Slots={g['Slots']}"
                                                           for g in groups))
    if request:
        args = ["aws", "elasticache", "create-replication-group", "--region", plan.region,
                "--replication-group-id", request["ReplicationGroupId"], "--cache-node-type", request["CacheNodeType"],
                "--replication-group-description", request["ReplicationGroupDescription"],
                "--snapshot-arns", *request["SnapshotArns"]]
        if "NumNodeGroups" in request:
            args += ["--num-node-groups", str(request["NumNodeGroups"]), "--node-group-configuration",
                     *(f"NodeGroupId={g['NodeGroupId']},Slots={g['Slots']},ReplicaCount={g['ReplicaCount']}"
                       for g in request["NodeGroupConfiguration"])]
        else:
            args += ["--num-cache-clusters", str(request["NumCacheClusters"])]
        if "Engine" in request:
            args += ["--engine", request["Engine"], "--engine-version", request["EngineVersion"]]
        lines.append(" ".join(shlex.quote(a) for a in args))
    return "\n".join(lines)


# --------------------------------------------------------------------------- export → seed

class ExportCommand(click.Command):
    """``export``: ``export FILE`` writes an RDB file's keys as JSON lines or RESP; ``export ID --repo R
    --to s3://…`` (the form the ElastiCache export is known by) runs ``seed``. The options decide:
    the file form has neither ``--repo`` nor ``--to``."""

    def __init__(self, file_export: click.Command, seed_command: click.Command) -> None:
        super().__init__("export", help=file_export.help, short_help="Keys of an RDB file as JSON lines or RESP; "
                         "with --repo and --to s3://…, a snapshot as ElastiCache seed objects.")
        self.file_export = copy.copy(file_export)
        self.file_export.epilog = ("A snapshot as ElastiCache seed objects: snaptool export ID --repo R "
                                   "--to s3://bucket/prefix [--target T] [--shards N] [--grant-elasticache] "
                                   "(the same as snaptool seed, see snaptool seed --help).")
        self.seed_command = seed_command

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        wants_seed = any(a.split("=", 1)[0] in ("--to", "--repo") for a in args)
        chosen = self.seed_command if wants_seed else self.file_export
        return chosen.make_context(info_name, args, parent=parent, **extra)


export_command = ExportCommand(file_export_command, seed_command)


# --------------------------------------------------------------------------- check-bucket

@click.command("check-bucket")
@click.argument("bucket")
@click.option("--region", required=True, help="Where ElastiCache works: the cluster's region.")
@click.option("--for", "purpose", type=click.Choice(["export", "seed"]), default="export", show_default=True,
              help="export: ElastiCache writes snapshots into it; seed: it reads seed files from it.")
@click.option("--grant-elasticache", is_flag=True, help="Add the grant ElastiCache needs, then check again.")
@click.option("--s3-profile", help="AWS profile (default: AWS_PROFILE).")
@click.option("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL).")
def check_bucket_command(bucket: str, region: str, purpose: str, grant_elasticache: bool, s3_profile: str | None,
                         s3_endpoint_url: str | None) -> None:
    """Say what a bucket lacks for ElastiCache (region, name rules, ACL grant or bucket policy) —
    before a backup or seed is started.

    \b
    Examples:
      snaptool check-bucket my-exports --region eu-west-1
      snaptool check-bucket my-exports --region ap-east-1 --grant-elasticache
    """
    name = split_s3_url(bucket)[0] if bucket.startswith("s3://") else bucket
    s3 = S3Settings(region=region, profile=s3_profile, endpoint_url=s3_endpoint_url).client("s3")
    check = bucket_access.check_bucket(s3, name, region, purpose)
    if not check.ok and grant_elasticache and check.bucket_region == region:
        click.echo(f"granted: {bucket_access.grant_elasticache(s3, name, region, purpose)}")
        check = bucket_access.check_bucket(s3, name, region, purpose)
    if not check.ok:
        raise ElastiCacheError(check.summary())
    click.echo(check.summary())


COMMANDS = (copy_command, seed_command, check_bucket_command, export_command)
