"""Run retention: Dagster keeps runs forever, so a nightly job deletes finished runs past
DAGSTER_RUN_RETENTION_DAYS, keeping any run that holds an asset's latest materialization."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from secmetrics_dagster import defs
from secmetrics_dagster.automation.schedules import purge_old_runs, retention_days
from secmetrics_dagster.collection.errors import ConfigError


@dg.asset
def snyk_projects():
    return 1


@dg.op
def noop():
    pass


@dg.job
def housekeeping():
    noop()


def _history(instance):
    older = dg.materialize([snyk_projects], instance=instance).run_id
    latest = dg.materialize([snyk_projects], instance=instance).run_id
    other = housekeeping.execute_in_process(instance=instance).run_id
    return older, latest, other


def test_finished_runs_past_the_retention_are_deleted_except_the_latest_materialization():
    instance = dg.DagsterInstance.ephemeral()
    older, latest, other = _history(instance)
    in_100_days = datetime.now(UTC) + timedelta(days=100)
    assert set(purge_old_runs(instance, 90, now=in_100_days)) == {older, other}
    assert [run.run_id for run in instance.get_runs()] == [latest]
    assert instance.get_latest_materialization_event(dg.AssetKey("snyk_projects")).run_id == latest


def test_recent_runs_and_a_retention_of_zero_keep_everything():
    instance = dg.DagsterInstance.ephemeral()
    _history(instance)
    assert purge_old_runs(instance, 90) == []
    assert purge_old_runs(instance, 0, now=datetime.now(UTC) + timedelta(days=1000)) == []
    assert len(instance.get_runs()) == 3


def test_the_retention_runs_nightly_and_reads_its_days_from_the_environment(monkeypatch):
    assert defs.resolve_schedule_def("daily_run_retention").job_name == "purge_old_runs"
    monkeypatch.delenv("DAGSTER_RUN_RETENTION_DAYS", raising=False)
    assert retention_days() == 90
    monkeypatch.setenv("DAGSTER_RUN_RETENTION_DAYS", "30")
    assert retention_days() == 30
    monkeypatch.setenv("DAGSTER_RUN_RETENTION_DAYS", "a month")
    with pytest.raises(ConfigError, match="DAGSTER_RUN_RETENTION_DAYS"):
        retention_days()
