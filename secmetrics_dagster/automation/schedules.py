"""The daily collection schedule (COLLECTION_SCHEDULE, COLLECTION_TIMEZONE) and the retention of old runs."""

import os
from datetime import UTC, datetime, timedelta
from typing import Optional

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._time import get_timezone
from dagster._utils.schedules import is_valid_cron_string

from ..collection.env import env_number
from ..collection.errors import ConfigError
from ..sources import SOURCES

DEFAULT_SCHEDULE = "0 6 * * *"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_RUN_RETENTION_DAYS = 90
SCHEDULE_NAME = "daily_collection"
PURGE_JOB = "purge_old_runs"

log = dg.get_dagster_logger("secmetrics.schedules")


def _problem_with_cron(cron: str) -> Optional[str]:
    if is_valid_cron_string(cron):  # Dagster's own test (ScheduleDefinition refuses what it refuses)
        return None
    return (
        f"COLLECTION_SCHEDULE={cron!r} is not a cron expression Dagster accepts (five fields: minute hour "
        "day-of-month month day-of-week); e.g. '0 6 * * *' is 06:00 every day"
    )


def _problem_with_timezone(tz: str) -> Optional[str]:
    try:
        get_timezone(tz)  # what ScheduleDefinition checks execution_timezone with
    except Exception:  # noqa: BLE001 - Dagster's own check raises whatever zoneinfo raises
        return f"COLLECTION_TIMEZONE={tz!r} is not an IANA time zone; e.g. 'UTC' or 'Europe/Amsterdam'"
    return None


def _settings() -> tuple[str, str, list[str]]:
    """(cron, timezone, problems): an unusable value is replaced by the default and reported in problems."""
    cron = (os.environ.get("COLLECTION_SCHEDULE") or DEFAULT_SCHEDULE).strip()
    tz = (os.environ.get("COLLECTION_TIMEZONE") or DEFAULT_TIMEZONE).strip()
    problems = []
    if (problem := _problem_with_cron(cron)) is not None:
        problems.append(problem)
        cron = DEFAULT_SCHEDULE
    if (problem := _problem_with_timezone(tz)) is not None:
        problems.append(problem)
        tz = DEFAULT_TIMEZONE
    return cron, tz, problems


def scheduled_groups() -> Optional[set[str]]:
    """COLLECTION_SOURCES (e.g. `snyk,okta`): the sources the schedule collects; unset means every configured one.

    It matters where a credential serves two purposes: AWS keys set for the S3 store also configure the AWS source.
    """
    raw = os.environ.get("COLLECTION_SOURCES", "")
    groups = {g.strip().lower() for g in raw.replace(";", ",").replace(" ", ",").split(",") if g.strip()}
    if not groups:
        return None
    known = {source.group for source in SOURCES}
    if groups - known:
        raise ConfigError(
            f"COLLECTION_SOURCES names unknown source(s) {', '.join(sorted(groups - known))}; "
            f"known: {', '.join(sorted(known))}"
        )
    return groups


def configured_sources() -> tuple[list[dg.AssetKey], list[str]]:
    """Asset keys of every scheduled source whose credentials are set, and the sources left out (and why)."""
    keys, left_out = [], []
    groups = scheduled_groups()
    for source in SOURCES:
        if groups is not None and source.group not in groups:
            left_out.append(f"{source.title} (not in COLLECTION_SOURCES)")
            continue
        missing = source.resource.from_env().missing_env()
        if missing:
            left_out.append(f"{source.title} ({', '.join(missing)})")
        else:
            keys += [dg.AssetKey(tag) for tag in source.tags]
    return keys, left_out


def collection_schedule(job) -> dg.ScheduleDefinition:
    """The daily collection. An unusable COLLECTION_SCHEDULE or COLLECTION_TIMEZONE does not take the code location
    down: the schedule is then stopped, its description and every tick say which variable to fix, and loading logs it.
    """
    cron, tz, problems = _settings()
    scheduled_groups()  # an unknown name fails loading, not the 06:00 tick
    problem = "; ".join(problems)
    if problem:
        log.error(f"schedule {SCHEDULE_NAME} is stopped: {problem}")

    def _tick(context: dg.ScheduleEvaluationContext):
        if problem:
            return dg.SkipReason(f"not collecting: {problem}. Fix the variable and reload the code location.")
        keys, left_out = configured_sources()
        if not keys:
            return dg.SkipReason(
                "no source is configured; set a source's variables (README, 'Collectors') to collect it"
            )
        if left_out:
            context.log.info(f"left out: {'; '.join(left_out)}")
        return dg.RunRequest(asset_selection=keys, tags={"secmetrics/trigger": "schedule"})

    if problem:
        description = (
            f"Stopped: {problem}. Fix the variable and reload the code location; the schedule then runs by itself."
        )
    else:
        description = f"Collect every configured source at '{cron}' ({tz}); sources without credentials are left out."
    return dg.ScheduleDefinition(
        name=SCHEDULE_NAME,
        target=job,
        cron_schedule=cron,
        execution_timezone=tz,
        default_status=dg.DefaultScheduleStatus.STOPPED if problem else dg.DefaultScheduleStatus.RUNNING,
        execution_fn=_tick,
        description=description,
    )


def retention_days() -> int:
    """DAGSTER_RUN_RETENTION_DAYS: whole days; 0 keeps every run."""
    return env_number("DAGSTER_RUN_RETENTION_DAYS", DEFAULT_RUN_RETENTION_DAYS, low=0)


def purge_old_runs(instance: dg.DagsterInstance, days: int, now: Optional[datetime] = None) -> list[str]:
    """Delete finished runs older than `days`, except those holding an asset's latest materialization
    (the IO manager reads an upstream asset's location from it). Returns the deleted run ids."""
    if days <= 0:
        return []
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    keep = set()
    for record in instance.get_asset_records():
        latest = record.asset_entry.last_materialization_record
        if latest is not None:
            keep.add(latest.event_log_entry.run_id)
    deleted = []
    filters = dg.RunsFilter(created_before=cutoff, statuses=list(FINISHED_STATUSES))
    for run in instance.get_runs(filters=filters):
        if run.run_id not in keep:
            instance.delete_run(run.run_id)
            deleted.append(run.run_id)
    return deleted


@dg.op(name="purge_runs", description="Delete finished runs older than DAGSTER_RUN_RETENTION_DAYS (default 90).")
def purge_runs_op(context: dg.OpExecutionContext) -> None:
    days = retention_days()
    if days == 0:
        context.log.info("DAGSTER_RUN_RETENTION_DAYS=0: every run is kept")
        return
    deleted = purge_old_runs(context.instance, days)
    context.log.info(f"deleted {len(deleted)} run(s) older than {days} days")


@dg.job(
    name=PURGE_JOB,
    tags={"secmetrics/kind": "maintenance"},
    description="Run retention: Dagster keeps runs forever; this deletes finished runs past DAGSTER_RUN_RETENTION_DAYS.",
)
def purge_job():
    purge_runs_op()


def retention_schedule() -> dg.ScheduleDefinition:
    _cron, tz, _problems = _settings()  # an unusable time zone is reported by the collection schedule; UTC here
    return dg.ScheduleDefinition(
        name="daily_run_retention",
        target=purge_job,
        cron_schedule="30 4 * * *",
        execution_timezone=tz,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Delete runs older than DAGSTER_RUN_RETENTION_DAYS every night.",
    )
