"""Scheduled backups: a TOML config of jobs, their run times, and the scheduler that runs them.

See docs/scheduling.md. ``load_config`` checks a whole file up front; ``Scheduler`` runs it (with an
injectable clock and sleep); ``upcoming`` lists run times; ``crontab`` prints equivalent cron lines.
"""

from .config import Config, ConfigError, Job, load_config, parse_config
from .crontab import crontab, job_line
from .events import EventLog
from .execute import run_job
from .options import Retention
from .runner import Counts, Scheduler
from .timing import Cron, Dues, ScheduleError, Window, due_between, parse_schedule, spread_offset, upcoming

__all__ = ["Config", "ConfigError", "Counts", "Cron", "Dues", "EventLog", "Job", "Retention", "ScheduleError",
           "Scheduler", "Window", "crontab", "due_between", "job_line", "load_config", "parse_config",
           "parse_schedule", "run_job", "spread_offset", "upcoming"]
