"""The deployment for real: a PostgreSQL-backed Dagster instance (this repository's dagster.yaml), the
webserver and the daemon started by the container's entrypoint as they run in production, and runs
launched by each of the three routes: the schedule's tick, the webserver's GraphQL API (as the UI does),
and `dagster asset materialize` from the CLI. Every source points at the sandbox (nothing can reach out);
the schedule collects Snyk, the model source (COLLECTION_SOURCES); the stores are files, S3 (moto),
PostgreSQL and DuckDB.

The daemon's freshness evaluation is checked too: fresh after a collection, stale after a backup reload.
One deployment serves the whole module (starting it costs the most). The schedule ticks every minute, so
its first tick comes while the other tests run; its test comes last.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest
import requests
from psycopg import sql

from secmetrics_dagster.automation.checks import check_specs
from secmetrics_dagster.automation.restore import RESTORE_JOB, run_config
from secmetrics_dagster.automation.schedules import SCHEDULE_NAME
from secmetrics_dagster.sandbox import Sandbox
from secmetrics_dagster.sources import SNYK, SOURCES
from secmetrics_dagster.stores import StoresResource

from .conftest import SANDBOX_TOKEN
from .helpers import duck_rows, pg_rows
from .services import free_port
from .test_automation_freshness import plant_backup
from .webserver import Webserver

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN_TIMEOUT = 240
SCHEDULED = "snyk"


class Deployment(Webserver):
    def __init__(self, env: dict, url: str, root: Path, schema: str, pg_params: dict, db: str):
        self.env, self.url, self.root, self.schema, self.pg_params, self.db = env, url, root, schema, pg_params, db

    def wait_for(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        return super().wait_for(run_id, timeout)

    def runs(self, tags: dict | None = None) -> list[dict]:
        tag_filter = [{"key": k, "value": v} for k, v in (tags or {}).items()]
        data = self.graphql(
            """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
            ... on Runs { results { runId status jobName tags { key value } } } } }""",
            tags=tag_filter,
        )
        return data["runsOrError"]["results"]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log"))
        )


def _start(mode: str, env: dict, root: Path) -> subprocess.Popen:
    log = open(root / f"{mode}.log", "wb")
    # A session of its own: the server's code server, run workers and step processes end with its group.
    return subprocess.Popen(
        [sys.executable, "-m", "secmetrics_dagster.entrypoint", mode],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _environment(sandbox_url: str, root: Path, pg: dict, db: str, schema: str, bucket: str, s3: str, port: int) -> dict:
    source_vars = {var.env for source in SOURCES for var in source.env_vars}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in source_vars and not k.startswith(("STORE_", "DAGSTER_", "SLACK_", "COLLECTION_", "RESTORE_"))
    }
    for source in SOURCES:
        env.update(source.sandbox_env(sandbox_url, SANDBOX_TOKEN))
    env.update(
        DAGSTER_HOME=str(root / "dagster_home"),
        DAGSTER_PG_HOST=pg["host"],
        DAGSTER_PG_PORT=str(pg.get("port", 5432)),
        DAGSTER_PG_USER=pg.get("user", "postgres"),
        DAGSTER_PG_PASSWORD=pg.get("password", ""),
        DAGSTER_PG_DB=db,
        DAGSTER_WEBSERVER_HOST="127.0.0.1",
        DAGSTER_WEBSERVER_PORT=str(port),
        COLLECTION_SCHEDULE="* * * * *",
        COLLECTION_SOURCES=SCHEDULED,
        COLLECTION_STEP_RETRIES="1",
        COLLECTION_STEP_RETRY_DELAY="1",
        COLLECTION_SPOOL_DIR=str(root / "spool"),
        TENANCY="acme",
        FRESHNESS_DAEMON_INTERVAL_SECONDS="3",  # Dagster's own knob (default 30 s)
        STORE_FILE=str(root / "data/source/%TAG/%TENANCY.json"),
        STORE_AWS_S3_BUCKET=bucket,
        STORE_AWS_S3_KEY="data/%TAG/%YYYY/%MM/%DD/%UUID.json",
        STORE_AWS_S3_ENDPOINT_URL=s3,
        STORE_POSTGRES_HOST=pg["host"],
        STORE_POSTGRES_PORT=str(pg.get("port", 5432)),
        STORE_POSTGRES_USER=pg.get("user", "postgres"),
        STORE_POSTGRES_DBNAME=pg["dbname"],
        STORE_POSTGRES_SCHEMA=schema,
        STORE_DUCKDB=str(root / "data/database.duckdb"),
    )
    if pg.get("password"):
        env["STORE_POSTGRES_PASSWORD"] = pg["password"]
    return env


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, pg_params, s3_endpoint):
    root = tmp_path_factory.mktemp("deployment")
    db = f"secmetrics_instance_{uuid.uuid4().hex[:10]}"
    schema = f"t_{uuid.uuid4().hex[:12]}"
    bucket = f"secmetrics-{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    port = free_port()
    procs = []
    with Sandbox(seed=7, token=SANDBOX_TOKEN) as sandbox:
        env = _environment(sandbox.url, root, pg_params, db, schema, bucket, s3_endpoint, port)
        try:
            procs.append(_start("daemon", env, root))  # first: the schedule's clock starts when it does
            procs.append(_start("webserver", env, root))
            deployment = Deployment(env, f"http://127.0.0.1:{port}", root, schema, pg_params, db)
            deadline = time.monotonic() + 180
            while True:
                try:
                    if requests.get(f"{deployment.url}/server_info", timeout=5).ok:
                        break
                except requests.RequestException:
                    pass
                assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, deployment.logs()
                time.sleep(0.5)
            yield deployment
        finally:
            for proc in procs:
                _stop(proc)
            with psycopg.connect(**pg_params, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _file_count(deployment: Deployment, tag: str) -> int:
    doc = json.loads((deployment.root / f"data/source/{tag}/acme.json").read_text())
    assert doc["metadata"]["records"] == len(doc["data"])
    return len(doc["data"])


def test_the_entrypoint_prepares_a_postgres_instance_for_webserver_and_daemon(deployment):
    assert (Path(deployment.env["DAGSTER_HOME"]) / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    with psycopg.connect(**{**deployment.pg_params, "dbname": deployment.db}) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "jobs"} <= tables  # run, event and schedule storage in PostgreSQL
    assert "PostgreSQL instance" in (deployment.root / "webserver.log").read_text()


def test_a_materialization_launched_through_graphql_completes(deployment):
    # every check of the asset's one check step (a multi-asset check runs whole)
    checks = [("snyk_organizations", spec.name) for spec in check_specs(SNYK.dataset("snyk_organizations"))]
    run = deployment.wait_for(deployment.launch(assets=["snyk_organizations"], checks=checks))
    assert run["status"] == "SUCCESS", deployment.logs()
    assert _file_count(deployment, "snyk_organizations") == 3
    assert (
        len(
            pg_rows(
                psycopg.connect(**deployment.pg_params, autocommit=True), deployment.schema, "snyk_organizations_latest"
            )
        )
        == 3
    )


def test_cli_materialize_against_the_instance_is_recorded_there(deployment):
    done = subprocess.run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "secmetrics_dagster",
            "--select",
            "key:snyk_organizations",
        ],
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_id = re.search(r"__ASSET_JOB - ([0-9a-f-]{36}) - .*RUN_SUCCESS", done.stderr).group(1)
    run = deployment.run(run_id)  # what the UI shows, from the PostgreSQL instance
    assert (run["status"], run["jobName"]) == ("SUCCESS", "__ASSET_JOB")


def _freshness_states(deployment: Deployment, tag: str, until: str) -> list[str]:
    """The freshness daemon's verdicts on an asset (FRESHNESS_STATE_CHANGE events), waiting for `until`."""
    query = (
        "SELECT event FROM event_logs WHERE dagster_event_type = 'FRESHNESS_STATE_CHANGE' "
        "AND asset_key = %s ORDER BY id"
    )
    deadline = time.monotonic() + 60
    with psycopg.connect(**{**deployment.pg_params, "dbname": deployment.db}, autocommit=True) as conn:
        while True:
            rows = conn.execute(query, [json.dumps([tag])]).fetchall()
            states = [
                json.loads(row[0])["dagster_event"]["event_specific_data"]["new_state"]["__enum__"] for row in rows
            ]
            if until in states or time.monotonic() > deadline:
                return states
            time.sleep(1)


def test_the_daemon_evaluates_the_freshness_policy_of_the_collected_assets(deployment):
    assert "FreshnessState.PASS" in _freshness_states(deployment, "snyk_organizations", until="FreshnessState.PASS")


def test_a_backup_reload_reads_stale_to_the_daemons_freshness_evaluation(deployment, tmp_path):
    tag = "okta_users"  # pointed at the sandbox but not scheduled here, so only the restore writes it
    stores = StoresResource(
        s3_bucket=deployment.env["STORE_AWS_S3_BUCKET"],
        s3_backup="backup/%TAG/%TENANCY.json",
        s3_endpoint_url=deployment.env["STORE_AWS_S3_ENDPOINT_URL"],
    )
    plant_backup(stores, tmp_path, tag, hours_old=30)
    run_id = deployment.launch(RESTORE_JOB, run_config=json.dumps(run_config([tag], reason="test")))
    run = deployment.wait_for(run_id)
    assert run["status"] == "SUCCESS", deployment.logs()
    assert "FreshnessState.FAIL" in _freshness_states(deployment, tag, until="FreshnessState.FAIL")


def test_the_schedule_tick_launches_a_collection_that_fills_the_stores(deployment):
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (runs := deployment.runs({"dagster/schedule_name": SCHEDULE_NAME})):
        assert time.monotonic() < deadline, "no scheduled run within the time limit\n" + deployment.logs()
        time.sleep(2)
    run = deployment.wait_for(runs[-1]["runId"])  # the first tick's run
    assert run["status"] == "SUCCESS", deployment.logs()
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["secmetrics/kind"] == "collection" and run["jobName"] == "collect_all"
    conn = psycopg.connect(**deployment.pg_params, autocommit=True)
    for source in SOURCES:
        if source.group != SCHEDULED:
            continue
        for dataset in source.datasets:
            count = _file_count(deployment, dataset.tag)
            assert len(pg_rows(conn, deployment.schema, f"{dataset.tag}_latest")) == count, dataset.tag
            assert len(duck_rows(deployment.env["STORE_DUCKDB"], f"{dataset.tag}_latest")) == count, dataset.tag
            assert count > 0 or dataset.allow_empty, dataset.tag
