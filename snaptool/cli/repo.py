"""`backup`, `restore`, `drill`, `snapshots`, `show`, `forget`, `gc`: snapshots in a repository."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from ..engines.address import TlsOptions
from ..errors import ValidationError
from ..jobs.backup import BackupOptions, backup
from ..jobs.drill import DrillCheck, drill
from ..jobs.gc import gc
from ..jobs.restore import RestoreOptions, restore
from ..jobs.split import parse_db_map
from ..rdb.slots import SlotLayout
from ..rdb.targets import parse_target
from ..storage.catalog import Catalog
from ..storage.lock import exclusive_lock, format_wait, parse_wait
from ..storage.manifest import Manifest
from ..storage.repository import Repository, S3Settings
from .s3options import elasticache_options, s3_write_options
from .shards import on_duplicate_option
from .output import emit_json, human_bytes, transfer_progress

_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


def repo_options(command: Callable) -> Callable:
    """--repo and the S3 settings; the command receives ``repo`` (an opened Repository)."""
    @click.option("--repo", "repo_url", envvar="SNAPTOOL_REPO", default="./snaptool-repo", show_default=True,
                  help="Repository: a directory or s3://bucket/prefix (env SNAPTOOL_REPO).")
    @click.option("--s3-region", help="S3 region (default: AWS_REGION / AWS_DEFAULT_REGION / the profile).")
    @click.option("--s3-profile", help="AWS profile (default: AWS_PROFILE).")
    @click.option("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL).")
    @s3_write_options()
    @functools.wraps(command)
    def wrapper(repo_url: str, s3_region: str | None, s3_profile: str | None, s3_endpoint_url: str | None,
                s3_write: dict, **kwargs: Any) -> Any:
        settings = S3Settings(region=s3_region, profile=s3_profile, endpoint_url=s3_endpoint_url, **s3_write)
        return command(repo=Repository.open(repo_url, s3=settings), **kwargs)
    return wrapper


def node_options(command: Callable) -> Callable:
    """How to log in to live nodes; the command receives ``login`` (tls, username, password)."""
    @click.option("--user", help="ACL user (or put it in the URL: redis://user:pass@host:port).")
    @click.option("--password-file", type=click.File("r"), help="Read the password from this file "
                  "(or put it in the URL, or set REDISCLI_AUTH).")
    @click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), help="CA certificate (implies TLS).")
    @click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate for TLS.")
    @click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Client key for TLS.")
    @click.option("--tls-insecure", is_flag=True, help="TLS without verifying the server's certificate.")
    @functools.wraps(command)
    def wrapper(user: str | None, password_file: Any, tls_ca: str | None, tls_cert: str | None,
                tls_key: str | None, tls_insecure: bool, **kwargs: Any) -> Any:
        tls = None
        if tls_ca or tls_cert or tls_insecure:
            tls = TlsOptions(ca_file=tls_ca, cert_file=tls_cert, key_file=tls_key, insecure=tls_insecure)
        password = password_file.read().strip() if password_file is not None else None
        return command(login={"tls": tls, "username": user, "password": password}, **kwargs)
    return wrapper


def decrypt_options(command: Callable) -> Callable:
    """--identity / --passphrase-file for encrypted snapshots; the command receives ``keys``
    (None when neither is given: plain and KMS-encrypted snapshots need nothing)."""
    @click.option("--identity", "identity_files", multiple=True, type=click.Path(dir_okay=False),
                  envvar="SNAPTOOL_IDENTITY", help="age identity file (AGE-SECRET-KEY-1…) for snapshots encrypted "
                  "to age recipients (repeatable; env SNAPTOOL_IDENTITY).")
    @click.option("--passphrase-file", "decrypt_passphrase_file", type=click.Path(dir_okay=False),
                  envvar="SNAPTOOL_PASSPHRASE_FILE",
                  help="File holding the passphrase of a passphrase-encrypted snapshot (env SNAPTOOL_PASSPHRASE_FILE).")
    @functools.wraps(command)
    def wrapper(identity_files: tuple[str, ...], decrypt_passphrase_file: str | None, **kwargs: Any) -> Any:
        keys = None
        if identity_files or decrypt_passphrase_file:
            from ..crypto import DecryptionKeys, identities_from, read_passphrase
            keys = DecryptionKeys(identities=identities_from(identity_files),
                                  passphrase=read_passphrase(decrypt_passphrase_file) if decrypt_passphrase_file
                                  else None)
        return command(keys=keys, **kwargs)
    return wrapper


def encrypt_options(command: Callable) -> Callable:
    """--encrypt and its key options; the command receives ``encryption`` (EncryptionOptions or None)."""
    @click.option("--encrypt", "scheme", type=click.Choice(["age", "passphrase", "kms"]),
                  help="Encrypt every file at rest: to age recipients, with a passphrase, or with a KMS data key.")
    @click.option("--recipient", "recipients", multiple=True, metavar="AGE1…",
                  help="--encrypt age: an age X25519 public key (repeatable; any one identity decrypts).")
    @click.option("--recipients-file", multiple=True, type=click.Path(dir_okay=False),
                  help="--encrypt age: a file of recipients, one per line (repeatable).")
    @click.option("--passphrase-file", "encrypt_passphrase_file", type=click.Path(dir_okay=False),
                  help="--encrypt passphrase: the file holding the passphrase.")
    @click.option("--kms-key-id", "kms_key_ids", multiple=True, metavar="ID|ARN|alias/NAME",
                  help="--encrypt kms: a KMS key wrapping the snapshot's data key (repeatable: each one, e.g. "
                  "in another region or account, can decrypt alone).")
    @functools.wraps(command)
    def wrapper(scheme: str | None, recipients: tuple[str, ...], recipients_file: tuple[str, ...],
                encrypt_passphrase_file: str | None, kms_key_ids: tuple[str, ...], **kwargs: Any) -> Any:
        encryption = None
        if scheme is None:
            if recipients or recipients_file or encrypt_passphrase_file or kms_key_ids:
                raise click.UsageError("--recipient, --recipients-file, --passphrase-file and --kms-key-id need "
                                       "--encrypt age|passphrase|kms")
        else:
            from ..crypto import EncryptionOptions, read_passphrase
            passphrase = read_passphrase(encrypt_passphrase_file) if encrypt_passphrase_file else None
            encryption = EncryptionOptions(scheme, recipients=recipients, recipients_files=recipients_file,
                                           passphrase=passphrase, kms_key_ids=kms_key_ids)
            encryption.check()
        return command(encryption=encryption, **kwargs)
    return wrapper


def _describe(m: Manifest) -> str:
    shards = f"{len(m.files)} shards" if m.sharded else "1 file"
    tags = f"  [{', '.join(m.tags)}]" if m.tags else ""
    locked = f"  (encrypted: {m.encryption.get('scheme')})" if m.encryption else ""
    kind = f"{m.kind}{'*' if m.pinned else ''}"
    return (f"{m.id}  {kind:<10} {m.keys:>12,} keys {human_bytes(m.size):>11}  {shards:<10} "
            f"{m.source.get('url', '')}{tags}{locked}")


@click.command("backup")
@click.argument("source")
@repo_options
@node_options
@click.option("--tag", "tags", multiple=True, help="Label the snapshot (repeatable).")
@click.option("--kind", type=click.Choice(["manual", "automatic"]), default="manual", show_default=True,
              help="Retention treats automatic snapshots by age; manual ones stay until forgotten.")
@click.option("--from-primary", is_flag=True, help="Cluster: read every shard from its primary, not a replica.")
@click.option("--digest", is_flag=True, help="Also record each file's DEBUG DIGEST (decodes every value: slow).")
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds without data from a node before giving up.")
@click.option("--pin", is_flag=True, help="Never remove this snapshot by retention (prune).")
@click.option("--lock-wait", default="0", show_default=True, metavar="DURATION",
              help="While a prune or gc holds the repository lock, wait up to this long (90s, 10m, 1h) "
              "instead of failing at once.")
@encrypt_options
@elasticache_options
@_json
def backup_command(source: str, repo: Repository, login: dict, tags: tuple[str, ...], kind: str,
                   from_primary: bool, digest: bool, timeout: float, pin: bool, lock_wait: str, encryption: Any,
                   elasticache: dict, as_json: bool) -> None:
    """Back up an RDB file, a live node or a whole cluster into the repository.

    \b
    SOURCE is a file path or URL (file://, s3://, https://), a node redis://[user:pass@]host:port
    (rediss:// for TLS), any node of a cluster (every shard is taken, from replicas where up), or
    an ElastiCache replication group elasticache://NAME?region=R (with --export-bucket).
    \b
    Examples:
      snaptool backup dump.rdb --repo /backups
      snaptool backup redis://10.0.0.5:6379 --repo s3://bucket/redis --tag nightly --kind automatic
      REDISCLI_AUTH=secret snaptool backup rediss://cache:6380 --tls-ca ca.pem
      snaptool backup redis://10.0.0.5:6379 --encrypt age --recipient age1…   # the host cannot decrypt
      snaptool backup dump.rdb --encrypt kms --kms-key-id alias/backups --kms-key-id arn:aws:kms:eu-west-1:…
    """
    options = BackupOptions(kind=kind, tags=tags, from_primary=from_primary, digest=digest, timeout=timeout,
                            encryption=encryption, pinned=pin, export_bucket=elasticache["export_bucket"],
                            keep_source=elasticache["keep_source"], keep_export=elasticache["keep_export"],
                            grant_elasticache=elasticache["grant"], poll_seconds=elasticache["poll_seconds"],
                            lock_wait=parse_wait(lock_wait, "--lock-wait"), lock_waiting=_say_waiting,
                            echo=lambda line: click.echo(f"snaptool: {line}", err=True), **login)
    with transfer_progress() as bar_for:
        manifest = backup(source, repo, options, progress_for=bar_for)
    if as_json:
        emit_json(manifest.to_json())
        return
    locked = f", encrypted ({manifest.encryption['scheme']})" if manifest.encryption else ""
    click.echo(f"snapshot {manifest.id}: {manifest.keys:,} keys, {human_bytes(manifest.size)} in "
               f"{len(manifest.files)} file(s){locked}, {manifest.seconds:.1f}s, stored in {repo.url}")


def _say_waiting(blocker: str, seconds: float) -> None:
    click.echo(f"snaptool: waiting up to {format_wait(seconds)} for the repository lock: {blocker}", err=True)


@click.command("restore")
@click.argument("snapshot", default="latest")
@repo_options
@node_options
@click.option("--to", "to", help="A live node or cluster: redis://host:port (rediss:// for TLS).")
@click.option("--to-dir", type=click.Path(file_okay=False), help="Write RDB files to start new nodes with.")
@click.option("--shards", type=int, help="--to-dir: re-split into N shards.")
@click.option("--slots", type=click.Path(dir_okay=False), help="--to-dir: re-split by this layout.")
@click.option("--db-map", help="--to-dir with --shards/--slots: where keys of other databases go, e.g. 1:0.")
@on_duplicate_option
@click.option("--target", help="Re-encode for this engine (e.g. redis-6.2) when it is older.")
@click.option("--allow-lossy", is_flag=True, help="Drop what the target cannot hold instead of refusing.")
@click.option("--replace", is_flag=True, help="--to: overwrite keys that already exist (RESTORE … REPLACE).")
@click.option("--flush", is_flag=True, help="--to: FLUSHALL the target first.")
@click.option("--validate", "validate_spec", default="all", show_default=True,
              help="'all' keys, or 'sample:N' to compare N keys (counts are always complete).")
@click.option("--engine", help="--to-dir: the engine that loads the files for validation.")
@decrypt_options
@_json
def restore_command(snapshot: str, repo: Repository, login: dict, to: str | None, to_dir: str | None,
                    shards: int | None, slots: str | None, db_map: str | None, on_duplicate: str, target: str | None,
                    allow_lossy: bool, replace: bool,
                    flush: bool, validate_spec: str, engine: str | None, keys: Any, as_json: bool) -> None:
    """Restore a snapshot (id, unique prefix, or latest) into a live node/cluster or into files,
    then prove the result equals the snapshot.

    \b
    Examples:
      snaptool restore latest --to redis://127.0.0.1:6379
      snaptool restore 20261126T0715 --to redis://10.0.0.7:7000 --flush
      snaptool restore latest --to-dir seed/ --shards 6 --target redis-6.2
      snaptool restore latest --to redis://127.0.0.1:6379 --identity backup-key.txt   # encrypted to age
    """
    if shards is not None and slots is not None:
        raise click.UsageError("give --shards or --slots, not both")
    layout = SlotLayout.even(shards) if shards else SlotLayout.load(slots) if slots else None
    options = RestoreOptions(to=to, to_dir=to_dir, layout=layout, db_map=parse_db_map(db_map), on_duplicate=on_duplicate,
                             target=parse_target(target) if target else None,
                             replace=replace, flush=flush, sample=_sample(validate_spec), engine=engine,
                             allow_lossy=allow_lossy, keys=keys, **login)
    with transfer_progress() as bar_for:
        try:
            report = restore(snapshot, repo, options, progress=bar_for("restore", None))
        except ValidationError as exc:
            if exc.report is not None:
                click.echo(exc.report.table(), err=True)
            raise
    if as_json:
        emit_json(report.to_json())
    else:
        rate = f", {report.keys_per_second:,.0f} keys/s" if report.keys_per_second and to else ""
        skipped = f", {report.expired_skipped:,} already expired (skipped)" if report.expired_skipped else ""
        click.echo(f"restored {report.snapshot} into {report.destination}: {report.restored:,} keys{skipped}"
                   f"{rate}, {report.seconds:.1f}s")
    if report.validation is not None:
        click.echo(report.validation.summary(), err=True)


def _sample(spec: str) -> int | None:
    if spec == "all":
        return None
    if spec.startswith("sample:") and spec[7:].isdigit() and int(spec[7:]) > 0:
        return int(spec[7:])
    raise click.BadParameter("use 'all' or 'sample:N'", param_hint="--validate")


@click.command("drill")
@click.argument("snapshot", default="latest")
@repo_options
@click.option("--engine", help="Engine to restore into (default: the oldest one here that loads the snapshot).")
@click.option("--target", help="Re-encode for this engine first (drills a restore into an older engine).")
@click.option("--junit", type=click.Path(dir_okay=False), help="Also write the result as JUnit XML.")
@decrypt_options
@_json
def drill_command(snapshot: str, repo: Repository, engine: str | None, target: str | None, junit: str | None,
                  keys: Any, as_json: bool) -> None:
    """Restore drill for CI: fetch, check sha256 and CRC-64, load into throwaway engine node(s),
    compare every key and the digest with the snapshot, tear down. Exit 0 pass, 4 fail.

    \b
    Example:
      snaptool drill latest --repo s3://bucket/redis --junit drill.xml
      snaptool drill latest --repo s3://bucket/redis --identity /run/secrets/backup-key.txt
    """
    def echo(check: DrillCheck) -> None:
        if not as_json:
            click.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.name:<40} {check.seconds:7.2f}s  "
                       f"{check.message.splitlines()[0] if check.message else ''}", err=not check.ok)

    report = drill(snapshot, repo, engine=engine, target=parse_target(target) if target else None, echo=echo,
                   keys=keys)
    if junit:
        from ..storage.atomic import atomic_output
        with atomic_output(junit) as f:
            f.write(report.to_junit())
    if as_json:
        emit_json(report.to_json())
    else:
        where = f" on {report.engine}" if report.engine else ""
        click.echo(f"drill {report.snapshot}{where}: {'PASSED' if report.ok else 'FAILED'} "
                   f"({report.keys:,} keys, {report.seconds:.1f}s)")
    if not report.ok:
        failed = next(c for c in report.checks if not c.ok)
        raise ValidationError(f"drill failed at '{failed.name}': {failed.message.splitlines()[0]}")


@click.group("snapshots", invoke_without_command=True)
@repo_options
@_json
def snapshots_command(repo: Repository, as_json: bool) -> None:
    """List the snapshots in the repository, oldest first; incomplete ones are marked.

    \b
    With a command, relabel one snapshot for retention instead:
      snaptool snapshots promote ID --repo R    # automatic -> manual
      snaptool snapshots pin ID --repo R        # never pruned
    """
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        given = [p.opts[0] for p in ctx.command.params
                 if p.name and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"give {', '.join(given)} after the command: snaptool snapshots "
                                   f"{ctx.invoked_subcommand} ID {given[0]} …")
        return
    listing = Catalog(repo).list()
    if as_json:
        emit_json([{"id": e.id, "complete": e.complete, "problem": e.problem,
                    **({"manifest": e.manifest.to_json()} if e.manifest else {})} for e in listing])
        return
    if any(e.manifest is not None and e.manifest.pinned for e in listing):
        click.echo("(* pinned: never removed by prune)", err=True)
    for entry in listing:
        if entry.manifest is not None:
            click.echo(_describe(entry.manifest))
        else:
            click.echo(f"{entry.id}  INCOMPLETE: {entry.problem} (never restored; `snaptool gc` removes it)")
    if not listing:
        click.echo(f"no snapshots in {repo.url}", err=True)


@click.command("show")
@click.argument("snapshot")
@repo_options
@_json
def show_command(snapshot: str, repo: Repository, as_json: bool) -> None:
    """Show one snapshot's manifest: source, files, checksums, counts per database."""
    m = Catalog(repo).resolve(snapshot)
    if as_json:
        emit_json(m.to_json())
        return
    click.echo(_describe(m))
    click.echo(f"  created {m.created} by {m.tool.get('name')} {m.tool.get('version')} in {m.seconds:.1f}s; "
               f"source {m.source.get('type')} {m.source.get('engine') or ''}")
    if m.pinned:
        click.echo("  pinned: never removed by prune (snaptool snapshots unpin ID to release)")
    if m.encryption:
        click.echo(f"  encrypted at rest: {_encryption_line(m.encryption)}")
    for f in m.files:
        where = f" from {f.node} ({f.role})" if f.node else ""
        slots = f" slots {','.join(f'{a}-{b}' for a, b in f.slots)}" if f.slots else ""
        click.echo(f"  {f.name}  {f.magic}  {human_bytes(f.size)}  sha256 {f.sha256[:16]}…  crc64 {f.crc64}"
                   f"{where}{slots}")
        if f.stored_sha256:
            click.echo(f"      stored {human_bytes(f.stored_size or 0)}  sha256 {f.stored_sha256[:16]}…")
        for db, stats in f.databases.items():
            click.echo(f"      db{db}: {stats.keys:,} keys, {stats.expires:,} with expiry")


def _encryption_line(record: dict) -> str:
    scheme = record.get("scheme")
    if scheme == "age":
        return f"{record.get('format')}, to {', '.join(record.get('recipients') or [])}"
    if scheme == "kms":
        arns = ", ".join(k.get("key_arn", "?") for k in record.get("kms_keys") or [])
        return f"{record.get('format')}, data key wrapped by {arns}"
    if scheme == "passphrase":
        return f"{record.get('format')}, passphrase (scrypt work factor {record.get('work_factor')})"
    return f"{scheme} ({record.get('format')})"


@click.command("forget")
@click.argument("snapshot")
@repo_options
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
def forget_command(snapshot: str, repo: Repository, dry_run: bool) -> None:
    """Remove one snapshot (its manifest first, then its files)."""
    catalog = Catalog(repo)
    m = catalog.resolve(snapshot)
    if not dry_run:
        with exclusive_lock(repo, "forget", renew=False):  # not while a backup or prune runs
            catalog.forget(m.id)
    click.echo(f"{'would remove' if dry_run else 'removed'} {m.id} ({human_bytes(m.size)})")


@click.command("gc")
@repo_options
@click.option("--apply", "really", is_flag=True, help="Remove them (default: only list them).")
@click.option("--min-age", type=float, default=3600, show_default=True,
              help="Seconds: younger leftovers may be backups still running, and are kept.")
@_json
def gc_command(repo: Repository, really: bool, min_age: float, as_json: bool) -> None:
    """Remove incomplete snapshots left by interrupted backups (a dry run unless --apply)."""
    report = gc(repo, dry_run=not really, min_age_seconds=min_age)
    if as_json:
        emit_json(report.__dict__)
        return
    for sid in report.removed:
        click.echo(f"removed {sid}")
    for sid in report.would_remove:
        click.echo(f"would remove {sid} (use --apply)")
    for sid in report.kept_young:
        click.echo(f"kept {sid}: younger than {min_age:.0f}s, may still be running")
    if not (report.removed or report.would_remove or report.kept_young):
        click.echo("nothing to clean up")


# `snapshots` is listed by cli/retention.py, which adds its relabelling subcommands
COMMANDS = (backup_command, restore_command, drill_command, show_command, forget_command, gc_command)
