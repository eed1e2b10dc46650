"""`prune`, `snapshots promote|pin|unpin`, `locks`: retention and the repository lock."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import click

from ..errors import SnaptoolError
from ..jobs.label import promote, set_pinned
from ..jobs.prune import UNLIMITED, Decision, Duration, Policy, PolicyError, PruneReport, prune
from ..storage.lock import break_locks, list_locks
from ..storage.manifest import Manifest
from ..storage.repository import Repository
from .output import emit_json, human_bytes
from .repo import repo_options, snapshots_command

_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")


def _count(option: str, text: str | None) -> int:
    if text is None:
        return 0
    if text == "unlimited":
        return UNLIMITED
    if not text.isdigit():
        raise PolicyError(f"--keep-{option} {text!r}: give a number ≥ 0 or 'unlimited'")
    return int(text)


def _group_by(text: str) -> tuple[str, ...]:
    return () if text in ("", "none") else tuple(part.strip() for part in text.split(","))


def _keep_option(rule: str, what: str) -> Callable[[Callable], Callable]:
    return click.option(f"--keep-{rule}", f"keep_{rule}", metavar="N",
                        help=f"Keep the newest snapshot of each of the last N {what} that have one "
                             "('unlimited' for all).")


@click.command("prune")
@repo_options
@_keep_option("last", "snapshots")
@_keep_option("hourly", "hours")
@_keep_option("daily", "days")
@_keep_option("weekly", "ISO weeks")
@_keep_option("monthly", "months")
@_keep_option("yearly", "years")
@click.option("--keep-within", metavar="DURATION",
              help="Keep every snapshot younger than DURATION before the group's newest (e.g. 7d, 36h, 1y6m).")
@click.option("--retention-days", metavar="N",
              help="Managed-service rule: keep automatic snapshots younger than N days (0..35; 0 keeps none).")
@click.option("--include-manual", is_flag=True,
              help="Apply the keep rules to manual snapshots too (default: manual ones are kept until forgotten).")
@click.option("--group-by", "group_by", default="source", show_default=True, metavar="FIELDS",
              help="Apply the rules per source, per tags, per 'source,tags', or 'none' (all together).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed and why the rest is kept; remove nothing.")
@click.option("--break-lock", is_flag=True, help="First remove stale (expired) locks left by dead processes.")
@click.option("--retry-lock", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
              help="While another process holds the repository lock, keep retrying this long.")
@_json
def prune_command(repo: Repository, keep_last: str | None, keep_hourly: str | None, keep_daily: str | None,
                  keep_weekly: str | None, keep_monthly: str | None, keep_yearly: str | None,
                  keep_within: str | None, retention_days: str | None, include_manual: bool, group_by: str,
                  dry_run: bool, break_lock: bool, retry_lock: float, as_json: bool) -> None:
    """Remove the snapshots a retention policy does not keep, saying why each other one is kept.

    \b
    Buckets are UTC, by the time in the snapshot id; rules are OR-ed, per source by default.
    Pinned snapshots are never removed; incomplete ones are left to `snaptool gc`.
    \b
    Examples:
      snaptool prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
      snaptool prune --retention-days 7 --repo s3://bucket/redis
      snaptool prune --keep-last 3 --keep-within 30d --include-manual --group-by none
    """
    if retention_days is not None and not retention_days.isdigit():
        raise PolicyError(f"--retention-days {retention_days!r}: give a whole number of days, 0 to 35")
    policy = Policy(last=_count("last", keep_last), hourly=_count("hourly", keep_hourly),
                    daily=_count("daily", keep_daily), weekly=_count("weekly", keep_weekly),
                    monthly=_count("monthly", keep_monthly), yearly=_count("yearly", keep_yearly),
                    within=Duration.parse(keep_within) if keep_within is not None else None,
                    retention_days=int(retention_days) if retention_days is not None else None,
                    include_manual=include_manual)
    report = prune(repo, policy, dry_run=dry_run, group_by=_group_by(group_by), break_lock=break_lock,
                   retry_lock=retry_lock)
    if as_json:
        emit_json(report.to_json())
    else:
        _print_report(report)
    failed = report.with_outcome("failed")
    if failed:
        raise SnaptoolError(f"{len(failed)} snapshot(s) could not be removed; first: {failed[0].id}: {failed[0].note}")


_VERB = {"kept": "keep", "removed": "removed", "would remove": "would remove", "locked": "keep (locked)",
         "changed": "keep (changed)", "failed": "FAILED"}


def _line(d: Decision) -> str:
    why = ", ".join(d.reasons) if d.outcome == "kept" else d.note
    return f"  {_VERB.get(d.outcome, d.outcome):<14} {d.id}  {d.kind:<9} {why}".rstrip()


def _print_report(report: PruneReport) -> None:
    now = datetime.now(timezone.utc)
    click.echo(f"policy: {report.policy}")
    for lock in report.broken_locks:
        click.echo(f"{'would break' if report.dry_run else 'broke'} stale {lock.describe(now)}", err=True)
    for lock in report.stale_locks:
        click.echo(f"stale {lock.describe(now)} (--break-lock removes it)", err=True)
    for lock in report.live_locks:
        click.echo(f"a real run would refuse now: {lock.describe(now)}", err=True)
    group = None
    for d in report.decisions:
        if d.group != group:
            group = d.group
            members = [x for x in report.decisions if x.group == group]
            gone = sum(1 for x in members if x.outcome in ("removed", "would remove"))
            click.echo(f"{group}: {len(members)} snapshot(s), keep {len(members) - gone}, "
                       f"{'remove' if report.dry_run else 'removed'} {gone}")
        click.echo(_line(d))
    if report.incomplete:
        click.echo(f"{len(report.incomplete)} incomplete snapshot(s) left alone (`snaptool gc` removes them)")
    removed = report.with_outcome("removed", "would remove")
    if report.dry_run:
        click.echo(f"would remove {len(removed)} of {len(report.decisions)} snapshot(s) "
                   f"({human_bytes(report.freed)}); nothing was removed (--dry-run)")
    else:
        click.echo(f"removed {len(removed)} of {len(report.decisions)} snapshot(s) ({human_bytes(report.freed)})")


def _relabelled(m: Manifest, changed: bool, done: str, already: str) -> str:
    return f"{m.id}: {done}" if changed else f"{m.id}: {already}, nothing changed"


@click.command("promote")
@click.argument("snapshot")
@repo_options
@_json
def promote_command(snapshot: str, repo: Repository, as_json: bool) -> None:
    """Make an automatic snapshot manual: --retention-days no longer removes it, and the keep rules
    only do with --include-manual."""
    m, changed = promote(repo, snapshot)
    if as_json:
        emit_json({"id": m.id, "kind": m.kind, "pinned": m.pinned, "changed": changed})
    else:
        click.echo(_relabelled(m, changed, "now manual (kept until forgotten)", "already manual"))


def _pin(snapshot: str, repo: Repository, pinned: bool, as_json: bool) -> None:
    m, changed = set_pinned(repo, snapshot, pinned)
    if as_json:
        emit_json({"id": m.id, "kind": m.kind, "pinned": m.pinned, "changed": changed})
    elif pinned:
        click.echo(_relabelled(m, changed, "pinned (never pruned)", "already pinned"))
    else:
        click.echo(_relabelled(m, changed, f"unpinned (retention applies to it as a {m.kind} snapshot)",
                               "not pinned"))


@click.command("pin")
@click.argument("snapshot")
@repo_options
@_json
def pin_command(snapshot: str, repo: Repository, as_json: bool) -> None:
    """Pin a snapshot: prune never removes it, whatever the policy (forget still does)."""
    _pin(snapshot, repo, True, as_json)


@click.command("unpin")
@click.argument("snapshot")
@repo_options
@_json
def unpin_command(snapshot: str, repo: Repository, as_json: bool) -> None:
    """Unpin a snapshot: retention applies to it again."""
    _pin(snapshot, repo, False, as_json)


@click.command("locks")
@repo_options
@click.option("--break", "break_stale", is_flag=True, help="Remove the stale (expired) ones.")
@_json
def locks_command(repo: Repository, break_stale: bool, as_json: bool) -> None:
    """List the repository's locks (who holds them, until when); --break removes stale ones."""
    now = datetime.now(timezone.utc)
    broken = {x.name for x in break_locks(repo)} if break_stale else set()
    locks = list_locks(repo)
    if as_json:
        emit_json({"locks": [{**x.to_json(), "stale": x.stale(now)} for x in locks], "broken": sorted(broken)})
        return
    for name in sorted(broken):
        click.echo(f"broke stale lock locks/{name}")
    for lock in locks:
        click.echo(f"{'stale ' if lock.stale(now) else ''}{lock.describe(now)}")
    if not locks and not broken:
        click.echo(f"no locks in {repo.url}")


# The relabelling commands are spelt `snaptool snapshots promote|pin|unpin ID`.
for _relabel in (promote_command, pin_command, unpin_command):
    snapshots_command.add_command(_relabel)

COMMANDS = (prune_command, locks_command, snapshots_command)
