"""The container's entrypoint, run outside Docker: its modes, the instance it prepares, the backup reload at
start-up and the one-off modes' own Slack alerts. The webserver and daemon modes run for real in
test_instance_postgres.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from secmetrics_dagster import entrypoint
from secmetrics_dagster.sources import SOURCES

from .conftest import SANDBOX_TOKEN
from .test_automation_alerts import SlackCapture
from .test_automation_freshness import plant_backup

ROOT = Path(__file__).resolve().parents[1]


def test_an_unknown_mode_prints_the_usage_and_exits_2(capsys):
    assert entrypoint.main(["serve"]) == 2
    assert "python -m secmetrics_dagster.entrypoint webserver" in capsys.readouterr().err


def test_a_postgres_instance_refuses_to_start_without_all_its_variables(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_USER": "dagster"}
    with pytest.raises(SystemExit, match="DAGSTER_PG_PORT, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB is not set"):
        entrypoint.prepare_home(env)
    assert (tmp_path / "home/dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()


def test_without_postgres_runs_stay_in_a_sqlite_instance_in_dagster_home(tmp_path):
    description = entrypoint.prepare_home({"DAGSTER_HOME": str(tmp_path / "home")})
    assert "SQLite instance" in description and not (tmp_path / "home/dagster.yaml").exists()
    with pytest.raises(SystemExit, match="DAGSTER_HOME is not set"):
        entrypoint.prepare_home({})


def test_webserver_and_daemon_modes_serve_this_code_location():
    webserver = entrypoint.server_command("webserver", ["--read-only"], {})
    assert webserver[0].endswith("dagster-webserver")
    assert webserver[1:] == ["-m", "secmetrics_dagster", "-h", "0.0.0.0", "-p", "3000", "--read-only"]
    daemon = entrypoint.server_command("daemon", [], {})
    assert daemon[0].endswith("dagster-daemon") and daemon[1:] == ["run", "-m", "secmetrics_dagster"]


def test_with_a_separate_code_server_the_servers_load_the_code_from_it():
    env = {"DAGSTER_CODE_SERVER_HOST": "code", "DAGSTER_WEBSERVER_HOST": "127.0.0.1", "DAGSTER_WEBSERVER_PORT": "8080"}
    assert entrypoint.server_command("webserver", [], env)[1:] == [
        "--grpc-host",
        "code",
        "--grpc-port",
        "4000",
        "-h",
        "127.0.0.1",
        "-p",
        "8080",
    ]
    assert entrypoint.server_command("daemon", [], env)[1:] == ["run", "--grpc-host", "code", "--grpc-port", "4000"]
    assert entrypoint.server_command("code-server", [], {})[1:] == [
        "code-server",
        "start",
        "-m",
        "secmetrics_dagster",
        "-h",
        "0.0.0.0",
        "-p",
        "4000",
    ]


@pytest.fixture
def container_env(tmp_path, sandbox, bucket, s3_endpoint):
    """What `docker run --env-file .env` would pass: the sandbox's Snyk, a file store and an S3 backup bucket."""
    source_vars = {var.env for source in SOURCES for var in source.env_vars}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in source_vars and not k.startswith(("STORE_", "DAGSTER_", "SLACK_", "RESTORE_", "AWS_ENDPOINT"))
    }
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        TENANCY="acme",
        SNYK_TOKEN=SANDBOX_TOKEN,
        SNYK_ENDPOINT=sandbox.url,
        STORE_FILE=str(tmp_path / "data/%TAG/%TENANCY.json"),
        STORE_AWS_S3_BUCKET=bucket,
        STORE_AWS_S3_ENDPOINT_URL=s3_endpoint,
        COLLECTION_SPOOL_DIR=str(tmp_path / "spool"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )  # the S3 store's (moto accepts any)
    return env


def _entrypoint(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "secmetrics_dagster.entrypoint", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _runs(env):
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))
    return list(reversed(instance.get_runs()))  # oldest first


def test_restore_mode_reloads_the_backups_into_the_stores(container_env, all_stores, tmp_path):
    slack = SlackCapture()
    try:
        plant_backup(all_stores, tmp_path, "snyk_organizations", hours_old=30)
        done = _entrypoint({**container_env, "SLACK_WEBHOOK_URL": slack.url}, "restore", "snyk_organizations")
    finally:
        slack.close()
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "data/snyk_organizations/acme.json").read_text())
    assert doc["metadata"]["records"] == 3 and doc["data"][0]["id"] == "org-0"
    [run] = _runs(container_env)
    assert run.job_name == "restore_from_backup" and run.status == dg.DagsterRunStatus.SUCCESS
    assert any("restore completed" in text for text in slack.texts), slack.texts
    assert slack.secret not in done.stdout + done.stderr


def test_a_one_off_start_with_restore_on_start_reloads_then_collects_and_alerts(container_env, all_stores, tmp_path):
    plant_backup(all_stores, tmp_path, "snyk_organizations", hours_old=30)
    slack = SlackCapture()
    try:
        done = _entrypoint(
            {**container_env, "SLACK_WEBHOOK_URL": slack.url, "RESTORE_ON_START": "true"},
            "materialize",
            "--select",
            "key:snyk_organizations",
        )
    finally:
        slack.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    restore, collection = _runs(container_env)
    assert restore.job_name == "restore_from_backup" and restore.status == dg.DagsterRunStatus.SUCCESS
    assert collection.job_name == "__ASSET_JOB" and collection.status == dg.DagsterRunStatus.SUCCESS
    doc = json.loads((tmp_path / "data/snyk_organizations/acme.json").read_text())
    assert doc["metadata"]["records"] == 2 and doc["data"][0]["id"] != "org-0"  # the sandbox's, after the backup's
    texts = slack.texts
    assert "restore completed" in texts[0]
    assert "collection started" in texts[1] and "collection completed" in texts[2] and "2 records" in texts[2]


@dg.asset
def _first() -> int:
    return 1


@dg.asset
def _second() -> int:
    return 2


def _two_asset_job() -> dg.JobDefinition:
    """Module level, so execute_job can reconstruct it (what the plain CLI's execute_materialize_command calls)."""
    job = dg.define_asset_job("two_assets", selection=[_first, _second], executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[_first, _second], jobs=[job]).resolve_job_def("two_assets")


def test_dagsters_execute_job_runs_the_whole_job_for_an_empty_asset_selection():
    # The upstream behaviour the entrypoint guards against (README, "A selection that matches nothing runs
    # everything"): the plain CLI resolves a typo to no key and passes execute_job that empty list, which
    # _logged_execute_job turns into no selection at all. If Dagster changes that, this test fails and the README's
    # paragraph should be updated.
    keys = dg.AssetSelection.groups("snky").resolve(_two_asset_job().asset_layer.asset_graph)
    assert keys == set()
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(_two_asset_job), instance, asset_selection=list(keys))
        assert result.success
        materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
        one = dg.execute_job(dg.reconstructable(_two_asset_job), instance, asset_selection=[dg.AssetKey("_first")])
        only = {e.asset_key.path[-1] for e in one.get_asset_materialization_events()}
    assert materialized == {"_first", "_second"}  # nothing selected: everything ran
    assert only == {"_first"}  # one key selected: that one ran


def test_a_selection_that_matches_no_asset_is_refused_naming_the_groups(capsys, tmp_path):
    # Dagster 1.13's CLI would run every asset for it (an empty key list means "no selection" to execute_job).
    env = {"DAGSTER_HOME": str(tmp_path / "home")}
    assert entrypoint.materialize(["--select", "group:snky"], env) == 2
    said = capsys.readouterr()
    assert "matches no asset" in said.out + said.err and "snyk" in said.out + said.err
    assert not (tmp_path / "home").exists()  # refused before any instance or run was made
    assert entrypoint.unmatched_selection("group:snyk") is None
    assert entrypoint.unmatched_selection("key:okta_*") is None
