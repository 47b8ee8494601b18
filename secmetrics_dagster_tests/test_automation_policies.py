"""The daily schedule and the policies every collection asset carries, generated from SOURCES and the
environment: cron and time zone, the tick's selection, vendor pools, step retries, freshness and checks."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from secmetrics_dagster import defs
from secmetrics_dagster.assets import policies
from secmetrics_dagster.automation import checks
from secmetrics_dagster.automation.schedules import SCHEDULE_NAME, collection_schedule
from secmetrics_dagster.collection.errors import ConfigError
from secmetrics_dagster.definitions import collect_all_job
from secmetrics_dagster.sources import SOURCES
from secmetrics_dagster.sources import snyk as snyk_source

from .harness import source_assets


@pytest.fixture
def only_snyk_configured(monkeypatch):
    """Every source's variables cleared, then Snyk's token set: what a Snyk-only deployment looks like."""
    for source in SOURCES:
        for var in source.env_vars:
            monkeypatch.delenv(var.env, raising=False)
    # The AWS source also accepts the standard credential chain; point it at nothing.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SNYK_TOKEN", "sandbox-token")


def test_the_schedule_runs_every_day_at_06_00_utc_and_is_on_by_default(monkeypatch):
    monkeypatch.delenv("COLLECTION_SCHEDULE", raising=False)
    monkeypatch.delenv("COLLECTION_TIMEZONE", raising=False)
    schedule = collection_schedule(collect_all_job)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "collect_all"
    assert defs.resolve_schedule_def(SCHEDULE_NAME).cron_schedule == schedule.cron_schedule


def test_the_schedule_takes_its_hour_and_time_zone_from_the_environment(monkeypatch):
    monkeypatch.setenv("COLLECTION_SCHEDULE", "30 5 * * 1-5")
    monkeypatch.setenv("COLLECTION_TIMEZONE", "Europe/Amsterdam")
    schedule = collection_schedule(collect_all_job)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 5 * * 1-5", "Europe/Amsterdam")


@pytest.mark.parametrize(
    "name,value", [("COLLECTION_SCHEDULE", "every day at six"), ("COLLECTION_TIMEZONE", "Mars/Olympus_Mons")]
)
def test_an_unusable_schedule_setting_stops_the_schedule_naming_the_variable(monkeypatch, caplog, name, value):
    monkeypatch.setenv(name, value)
    schedule = collection_schedule(collect_all_job)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.description.startswith(f"Stopped: {name}={value!r}")
    assert any(name in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    data = schedule.evaluate_tick(dg.build_schedule_context())
    assert not data.run_requests and f"{name}={value!r}" in data.skip_message


@pytest.mark.parametrize(
    "name,value", [("COLLECTION_SCHEDULE", "0 6 30 2 *"), ("COLLECTION_TIMEZONE", "Mars/Olympus_Mons")]
)
def test_dagster_accepts_the_schedule_an_unusable_setting_leaves(monkeypatch, name, value):
    # 30 February passes croniter but not Dagster: the check is Dagster's own.
    monkeypatch.setenv(name, value)
    schedule = collection_schedule(collect_all_job)
    dg.Definitions.validate_loadable(dg.Definitions(jobs=[collect_all_job], schedules=[schedule]))
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED and name in schedule.description


def test_the_code_location_loads_with_an_unusable_schedule_and_time_zone(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "COLLECTION_SCHEDULE": "every day at six", "COLLECTION_TIMEZONE": "Mars/Olympus_Mons"}
    env["DAGSTER_HOME"] = str(tmp_path)
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "secmetrics_dagster"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "COLLECTION_SCHEDULE='every day at six'" in out.stderr + out.stdout


BAD_SETTINGS = {
    "STORE_POSTGRES_HOST": "127.0.0.1",
    "STORE_POSTGRES_PORT": "lots",
    "STORE_POSTGRES_SCHEMA": "public; drop",
    "STORE_AWS_S3_BUCKET": "b",
    "STORE_AWS_S3_BACKUP": "backup/%UUID.json",
    "STORE_DUCKDB": "x.duckdb",
    "STORE_DUCKDB_MEMORY_LIMIT": "lots",
    "COLLECTION_HTTP_MAX_RETRIES": "lots",
    "TENANCY": "acme corp",
}


def test_the_code_location_loads_with_bad_store_and_collection_settings_and_names_each_variable(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, **BAD_SETTINGS, "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "secmetrics_dagster"],
        env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    said = out.stderr + out.stdout
    assert out.returncode == 0, said[-3000:]
    errors = [line for line in said.splitlines() if "ERROR" in line and "settings: " in line]
    for variable in BAD_SETTINGS:
        if variable not in ("STORE_POSTGRES_HOST", "STORE_AWS_S3_BUCKET", "STORE_DUCKDB"):
            assert any(variable in line for line in errors), variable


def test_a_tick_requests_every_configured_source_and_leaves_out_the_rest(only_snyk_configured):
    schedule = collection_schedule(collect_all_job)
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 30, 6, tzinfo=UTC))
    [request] = schedule.evaluate_tick(context).run_requests
    assert set(request.asset_selection) == {dg.AssetKey(d.tag) for d in snyk_source.SOURCE.datasets}
    assert request.tags["secmetrics/trigger"] == "schedule"


def test_a_tick_with_no_configured_source_skips_saying_what_to_set(only_snyk_configured, monkeypatch):
    monkeypatch.delenv("SNYK_TOKEN")
    data = collection_schedule(collect_all_job).evaluate_tick(dg.build_schedule_context())
    assert not data.run_requests and "no source is configured" in data.skip_message


def test_every_collection_asset_sits_in_its_vendor_pool_with_the_step_retry_policy():
    expected_policy = policies.step_retry_policy()
    for source in SOURCES:
        for asset in source_assets(source):
            assert asset.op.pool == f"vendor_{source.group}", asset.key
            assert asset.op.retry_policy == expected_policy, asset.key
            assert asset.op.retry_policy.backoff == dg.Backoff.EXPONENTIAL
            assert asset.op.retry_policy.jitter == dg.Jitter.PLUS_MINUS


def test_step_retries_default_to_two_a_minute_apart_and_follow_the_environment(monkeypatch):
    monkeypatch.delenv("COLLECTION_STEP_RETRIES", raising=False)
    monkeypatch.delenv("COLLECTION_STEP_RETRY_DELAY", raising=False)
    assert (policies.step_retry_policy().max_retries, policies.step_retry_policy().delay) == (2, 60)
    monkeypatch.setenv("COLLECTION_STEP_RETRIES", "4")
    monkeypatch.setenv("COLLECTION_STEP_RETRY_DELAY", "5")
    assert (policies.step_retry_policy().max_retries, policies.step_retry_policy().delay) == (4, 5)
    monkeypatch.setenv("COLLECTION_STEP_RETRIES", "a few")
    with pytest.raises(ConfigError, match="COLLECTION_STEP_RETRIES"):
        policies.step_retry_policy()


def test_freshness_warns_after_24_h_fails_after_the_grace_period_and_is_set_per_source(monkeypatch):
    for name in ("COLLECTION_FRESHNESS_HOURS", "COLLECTION_FRESHNESS_GRACE_HOURS"):
        monkeypatch.delenv(name, raising=False)
    snyk = policies.freshness_policy("snyk")
    assert (snyk.warn_window.to_timedelta(), snyk.fail_window.to_timedelta()) == (
        timedelta(hours=24),
        timedelta(hours=26),
    )
    monkeypatch.setenv("COLLECTION_FRESHNESS_HOURS_TENABLE", "168")
    monkeypatch.setenv("COLLECTION_FRESHNESS_GRACE_HOURS_TENABLE", "12")
    tenable = policies.freshness_policy("tenable")
    assert (tenable.warn_window.to_timedelta(), tenable.fail_window.to_timedelta()) == (
        timedelta(hours=168),
        timedelta(hours=180),
    )
    assert policies.freshness_policy("snyk") == snyk


def test_every_asset_carries_its_sources_freshness_policy():
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for source in SOURCES:
        for dataset in source.datasets:
            assert specs[dg.AssetKey(dataset.tag)].freshness_policy == policies.freshness_policy(source.group)


def test_every_asset_has_its_checks_and_required_fields_where_the_source_names_them():
    graph = defs.resolve_asset_graph()
    for source in SOURCES:
        for dataset in source.datasets:
            names = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey(dataset.tag)}
            expected = {checks.RECORDS_PRESENT, checks.COUNT_STABLE, checks.FROM_API}
            if dataset.required_fields:
                expected.add(checks.FIELDS_PRESENT)
            if checks.typed_columns(dataset):
                expected.add(checks.COLUMNS_PARSED)
            assert names == expected, dataset.tag


def test_the_collect_all_job_runs_checks_with_the_assets_and_is_tagged_as_a_collection():
    job = defs.resolve_job_def("collect_all")
    assert job.tags["secmetrics/kind"] == "collection"
    assert f"{snyk_source.SOURCE.datasets[0].tag}_checks" in job.graph.node_names()


def test_collection_sources_narrows_the_tick_to_the_named_sources(only_snyk_configured, monkeypatch):
    monkeypatch.setenv("COLLECTION_SOURCES", "tenable")
    data = collection_schedule(collect_all_job).evaluate_tick(dg.build_schedule_context())
    assert not data.run_requests  # Snyk is configured but not named; Tenable is named but not configured
    monkeypatch.setenv("COLLECTION_SOURCES", "snyk, tenable")
    [request] = collection_schedule(collect_all_job).evaluate_tick(dg.build_schedule_context()).run_requests
    assert {k.path[-1] for k in request.asset_selection} == {d.tag for d in snyk_source.SOURCE.datasets}
    monkeypatch.setenv("COLLECTION_SOURCES", "snyk,jira")
    with pytest.raises(ConfigError, match="COLLECTION_SOURCES names unknown source.*jira"):
        collection_schedule(collect_all_job)


def test_runs_execute_steps_in_parallel_from_a_preloaded_forkserver(monkeypatch):
    from secmetrics_dagster.definitions import PRELOADED_MODULES, collection_executor

    config = defs.resolve_job_def("collect_all").executor_def.apply_config_mapping({}).value["config"]
    assert config["max_concurrent"] == 8  # more than the cores: collection waits on vendor APIs
    preload = config["start_method"]["forkserver"]["preload_modules"]
    assert preload[:3] == ["secmetrics_dagster.definitions", "falconpy", "tenable.io"]
    assert preload == list(PRELOADED_MODULES)
    # What the preload is for: a forked step finds the definitions built (`secmetrics_dagster` alone builds
    # nothing, its `defs` is lazy) and the SDKs imported, instead of paying about 1.5 s of CPU per step. The
    # forkserver skips a name that does not import, silently: every one must import in this release.
    import subprocess
    import sys

    probe = (
        f"import importlib, sys; [importlib.import_module(m) for m in {preload!r}]; "
        f"print(all(m in sys.modules for m in {preload!r}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "True"
    monkeypatch.setenv("COLLECTION_PARALLEL_STEPS", "3")
    assert collection_executor().apply_config_mapping({}).value["config"]["max_concurrent"] == 3
    monkeypatch.setenv("COLLECTION_PARALLEL_STEPS", "many")
    with pytest.raises(ConfigError, match="COLLECTION_PARALLEL_STEPS"):
        collection_executor()


def test_a_step_forked_from_the_preloaded_server_opens_its_instance_without_importing_the_storage(tmp_path):
    # Dagster's multiprocess executor starts each step in a child of the forkserver, which opens the run's instance
    # first. Without the infrastructure preload that imports SQLAlchemy, alembic and Dagster's storage (about 350
    # modules, 2 s of CPU a step here); with it, next to nothing is left to import.
    import multiprocessing

    from secmetrics_dagster.definitions import PRELOADED_MODULES

    from .forkserver_probe import probe

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOADED_MODULES))
    answers = context.Queue()
    child = context.Process(target=probe, args=(str(tmp_path), answers))
    child.start()
    imported = answers.get(timeout=120)
    child.join(60)
    assert child.exitcode == 0
    heavy = [m for m in imported if m.split(".")[0] in ("sqlalchemy", "alembic") or ".storage." in m]
    assert len(imported) < 60 and heavy == [], (
        f"{len(imported)} modules imported by the step's instance, among them {heavy[:10]}"
    )


def test_the_code_location_imports_no_vendor_sdk_until_a_pull_needs_it():
    # The webserver, the daemon and the code server load the definitions and never pull: falconpy and pyTenable
    # (about 30 MB of RSS between them) stay out of them; step processes get them from the forkserver's preload.
    import subprocess
    import sys

    probe = (
        "import sys, secmetrics_dagster.definitions; "
        "print(sorted(m for m in ('falconpy', 'tenable') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "value"),
    [("COLLECTION_FRESHNESS_HOURS_KNOWBE4", "0.01"), ("COLLECTION_FRESHNESS_GRACE_HOURS", "0")],
)
def test_a_freshness_window_dagster_would_refuse_is_refused_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}={value} is under one minute"):
        policies.freshness_policy("knowbe4")
