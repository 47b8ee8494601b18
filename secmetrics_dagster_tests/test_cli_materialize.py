"""The dagster CLI as users run it: `dagster asset materialize -m secmetrics_dagster --select 'key:snyk_*'`,
and `--select 'group:crowdstrike or group:tenable'`.

Run as a subprocess against the sandbox, all four stores (S3 through the standard AWS_ENDPOINT_URL) and
an instance whose run storage is PostgreSQL, configured by this repository's dagster.yaml.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from secmetrics_dagster.sandbox import CrowdStrikeVolume, Sandbox, TenableVolume
from secmetrics_dagster.sources import crowdstrike, tenable

from .conftest import SANDBOX_TOKEN
from .helpers import duck_rows, pg_rows

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture
def instance_db(pg_params):
    name = f"secmetrics_instance_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def cli_env(tmp_path: Path, vendor_env: dict, bucket, s3_endpoint, pg_params, pg_schema, instance_db) -> dict:
    """The environment a user sets: a vendor's variables, all four stores, the instance on PostgreSQL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORE_", "SNYK_", "DAGSTER_", "FALCON_", "TIO_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_PG_HOST=pg_params["host"],
        DAGSTER_PG_PORT=str(pg_params.get("port", 5432)),
        DAGSTER_PG_USER=pg_params.get("user", "postgres"),
        DAGSTER_PG_PASSWORD=pg_params.get("password", ""),
        DAGSTER_PG_DB=instance_db,
        TENANCY="acme",
        STORE_FILE=str(tmp_path / "data/source/%TAG/%TENANCY.json"),
        STORE_AWS_S3_BUCKET=bucket,
        STORE_AWS_S3_KEY="data/%TAG/%YYYY/%MM/%DD/%UUID.json",
        AWS_ENDPOINT_URL=s3_endpoint,
        STORE_POSTGRES_HOST=pg_params["host"],
        STORE_POSTGRES_PORT=str(pg_params.get("port", 5432)),
        STORE_POSTGRES_USER=pg_params.get("user", "postgres"),
        STORE_POSTGRES_DBNAME=pg_params["dbname"],
        STORE_POSTGRES_SCHEMA=pg_schema,
        STORE_DUCKDB=str(tmp_path / "data/database.duckdb"),
        COLLECTION_SPOOL_DIR=str(tmp_path / "spool"),
        **vendor_env,
    )
    return env


def materialize(selection: str, env: dict) -> None:
    done = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "secmetrics_dagster", "--select", selection],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def assert_in_all_four_stores(tmp_path: Path, expected: dict, s3_client, bucket, pg_conn, pg_schema) -> None:
    for tag, count in expected.items():
        file_doc = json.loads((tmp_path / f"data/source/{tag}/acme.json").read_text())
        backup = json.loads(s3_client.get_object(Bucket=bucket, Key=f"backup/{tag}/acme.json")["Body"].read())
        assert file_doc["metadata"]["records"] == len(file_doc["data"]) == count, tag
        assert backup["metadata"]["upload_id"] == file_doc["metadata"]["upload_id"] and len(backup["data"]) == count
        assert len(pg_rows(pg_conn, pg_schema, f"{tag}_latest")) == count, tag
        assert len(duck_rows(str(tmp_path / "data/database.duckdb"), f"{tag}_latest")) == count, tag


def run_statuses(pg_params, instance_db) -> list[str]:
    with psycopg.connect(**{**pg_params, "dbname": instance_db}) as conn:
        return [row[0] for row in conn.execute("SELECT status FROM runs").fetchall()]


def test_cli_materialize_fills_all_four_stores_and_records_the_run_in_postgres(
    sandbox, tmp_path, bucket, s3_endpoint, s3_client, pg_params, pg_schema, pg_conn, instance_db
):
    env = cli_env(
        tmp_path,
        dict(SNYK_TOKEN=SANDBOX_TOKEN, SNYK_ENDPOINT=sandbox.url, SNYK_PAGE_LIMIT="20"),
        bucket,
        s3_endpoint,
        pg_params,
        pg_schema,
        instance_db,
    )
    materialize("key:snyk_*", env)
    expected = {"snyk_organizations": 2, "snyk_projects": 46, "snyk_issues": 114}
    assert_in_all_four_stores(tmp_path, expected, s3_client, bucket, pg_conn, pg_schema)
    history = s3_client.list_objects_v2(Bucket=bucket, Prefix="data/snyk_issues/")["Contents"]
    assert len(history) == 1
    assert run_statuses(pg_params, instance_db) == ["SUCCESS"]


def test_cli_materialize_of_the_crowdstrike_and_tenable_groups_fills_all_four_stores(
    tmp_path, bucket, s3_endpoint, s3_client, pg_params, pg_schema, pg_conn, instance_db
):
    # The issue's own command: falconpy and pyTenable, unpatched, against the sandbox, through the CLI.
    falcon = CrowdStrikeVolume(hosts=40, vulnerabilities=300)
    tio = TenableVolume(assets=120, vulnerabilities=600, findings=150, was=42)
    with Sandbox(seed=5, token=SANDBOX_TOKEN, crowdstrike=falcon, tenable=tio) as box:
        vendor_env = {
            **crowdstrike.SOURCE.sandbox_env(box.url, SANDBOX_TOKEN),
            **tenable.SOURCE.sandbox_env(box.url, SANDBOX_TOKEN),
        }
        env = cli_env(tmp_path, vendor_env, bucket, s3_endpoint, pg_params, pg_schema, instance_db)
        materialize("group:crowdstrike or group:tenable", env)
    expected = {
        "crowdstrike_hosts": 40,
        "crowdstrike_vulnerabilities": 300,
        "crowdstrike_zero_trust_assessment": 40,
        "tenable_assets": 120,
        "tenable_vulnerabilities": 600,
        "tenable_findings": 150,
        "tenable_was": 42,
    }
    assert_in_all_four_stores(tmp_path, expected, s3_client, bucket, pg_conn, pg_schema)
    assert run_statuses(pg_params, instance_db) == ["SUCCESS"]


def test_the_token_never_appears_in_cli_output_or_stored_files(sandbox, tmp_path):
    secret = "tok-" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORE_", "SNYK_", "DAGSTER_"))}
    env.update(
        SNYK_TOKEN=secret,
        SNYK_ENDPOINT=sandbox.url,
        DAGSTER_HOME=str(tmp_path / "home"),
        STORE_FILE=str(tmp_path / "data/%TAG.json"),
        COLLECTION_HTTP_MAX_RETRIES="0",
    )
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "secmetrics_dagster", "--select", "snyk_organizations"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0  # the sandbox does not know this token
    output = done.stdout + done.stderr
    assert "HTTP 401" in output and "Check SNYK_TOKEN" in output
    assert secret not in output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_the_readmes_asset_list_command_shows_what_a_group_selects():
    # README, "Command line": the way to check a group name before a run with the plain CLI.
    done = subprocess.run(
        [DAGSTER, "asset", "list", "-m", "secmetrics_dagster", "--select", "group:snyk"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["snyk_issues", "snyk_members", "snyk_organizations", "snyk_projects"]
