"""`snaptool schedule run|next|crontab|check`: scheduled backups from a TOML config (docs/scheduling.md)."""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime, timezone

import click

from ..errors import SnaptoolError
from ..schedule import Config, ConfigError, EventLog, Scheduler, crontab, load_config, upcoming
from ..schedule.events import FORMATS, iso
from .output import emit_json

_config = click.option("--config", "config_path", required=True, envvar="SNAPTOOL_SCHEDULE",
                       type=click.Path(dir_okay=False), help="The TOML file declaring the jobs (env SNAPTOOL_SCHEDULE).")
_jobs = click.option("--job", "jobs", multiple=True, metavar="NAME", help="Only this job (repeatable; default: all).")


def _load(path: str, jobs: tuple[str, ...] = ()) -> Config:
    """The checked config; every problem is printed on its own line before the command fails."""
    try:
        return load_config(path).select(jobs)
    except ConfigError as exc:
        if len(exc.problems) == 1:
            raise
        for problem in exc.problems:
            click.echo(f"snaptool: error: {problem}", err=True)
        raise SnaptoolError(f"{path}: {len(exc.problems)} problems") from None


@click.group("schedule")
def schedule_group() -> None:
    """Scheduled backups: run the jobs of a TOML config, list upcoming runs, or print crontab lines."""


@schedule_group.command("run")
@_config
@_jobs
@click.option("--once", is_flag=True, help="Run every (selected) job once, now, and exit.")
@click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Log lines on stdout: text for people, json (one object per line) for collectors.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False),
              help="State file remembering each job's last run (overrides [scheduler] state).")
@click.option("--fail-on-error", is_flag=True, help="Exit 1 when a run failed (for --once under cron, systemd or "
              "Kubernetes, where the exit status is the alert).")
def run_command(config_path: str, jobs: tuple[str, ...], once: bool, log_format: str, state_path: str | None,
                fail_on_error: bool) -> None:
    """Run the scheduler until SIGTERM/SIGINT (or, with --once, each job once).

    \b
    One run per source at a time: a run due while another run of its source is still going is
    skipped and logged. Missed runs are logged and run once. A failed run is logged and counted;
    the scheduler goes on. The first SIGTERM/SIGINT lets running jobs finish, a second aborts them
    (exit 130; their snapshots stay incomplete, `snaptool gc` removes them).
    \b
    Examples:
      snaptool schedule run --config /etc/snaptool/schedule.toml --log-format json
      snaptool schedule run --config schedule.toml --once --job cache-nightly --fail-on-error
    """
    config = _load(config_path, jobs)
    if state_path:
        config = dataclasses.replace(config, state=state_path)
    log = EventLog(sys.stdout, log_format)
    scheduler = Scheduler(config, log=log)
    with scheduler.signals():
        counts = scheduler.run_once() if once else scheduler.run_forever()
    if counts.aborted:
        log.close()
        raise click.exceptions.Abort()
    if fail_on_error and (counts.failed or counts.prune_failures):
        raise SnaptoolError(f"{counts.failed} of {counts.runs} run(s) failed, {counts.prune_failures} prune(s) failed")


@schedule_group.command("next")
@_config
@_jobs
@click.option("--count", "-n", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per job.")
@click.option("--from", "start", metavar="TIME", help="Count from this UTC time (ISO 8601) instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def next_command(config_path: str, jobs: tuple[str, ...], count: int, start: str | None, as_json: bool) -> None:
    """List the upcoming runs of every job, soonest first.

    \b
    Examples:
      snaptool schedule next --config schedule.toml
      snaptool schedule next --config schedule.toml --count 7 --from 2026-11-26T00:00:00Z --json
    """
    config = _load(config_path, jobs)
    now = _parse_time(start) if start else datetime.now(timezone.utc)
    runs = sorted(((when, order, job) for order, job in enumerate(config.jobs)
                   for when in upcoming(job.schedule, now, count)), key=lambda r: (r[0], r[1]))
    if as_json:
        emit_json([{"time": iso(when), "job": job.name, "source": job.source_shown, "repository": job.repository,
                    "schedule": job.schedule.text, "when": job.schedule.describe()} for when, _, job in runs])
        return
    width = max(len(job.name) for job in config.jobs)
    for when, _, job in runs:
        click.echo(f"{iso(when)}  {job.name:<{width}}  {job.source_shown} -> {job.repository}  "
                   f"({job.schedule.describe()})")


@schedule_group.command("crontab")
@_config
@_jobs
@click.option("--snaptool", "program", default="snaptool", show_default=True,
              help="How cron should call snaptool (cron's PATH is short: give an absolute path).")
def crontab_command(config_path: str, jobs: tuple[str, ...], program: str) -> None:
    """Print crontab lines that run the same backups and prunes at the same UTC times.

    \b
    Example:
      snaptool schedule crontab --config schedule.toml --snaptool /opt/snaptool/bin/snaptool | crontab -
    """
    click.echo(crontab(_load(config_path, jobs), program), nl=False)


@schedule_group.command("check")
@_config
def check_command(config_path: str) -> None:
    """Check the config and say what each job will do (exit 1 and one line per problem otherwise)."""
    config = _load(config_path)
    now = datetime.now(timezone.utc)
    for job in config.jobs:
        click.echo(f"{job.name}: {job.source_shown} -> {job.repository}, {job.kind}"
                   + (f", tags {', '.join(job.tags)}" if job.tags else ""))
        click.echo(f"  schedule: {job.schedule.describe()}; next {iso(job.schedule.next_after(now))}")
        if job.encryption:
            click.echo(f"  encryption: {job.encryption['scheme']}")
        if job.retention is not None:
            click.echo(f"  retention: {job.retention.policy} (after each successful backup)")
    state = f"state in {config.state}" if config.state else "no state file: runs missed while stopped go unnoticed"
    click.echo(f"{config.path}: {len(config.jobs)} job(s) OK; {state}")


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--from") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


COMMANDS = (schedule_group,)
