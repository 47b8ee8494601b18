"""Shared fixtures: real PostgreSQL, a real S3 server over HTTP, the vendor sandbox, and store settings."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import sql

# Read when the assets are defined, so before the first import of the package: the suite runs each collection
# step once (fault tests count on one attempt); test_automation_retries.py covers step retries.
os.environ.setdefault("COLLECTION_STEP_RETRIES", "0")

from secmetrics_dagster.collection.resource import CollectionResource  # noqa: E402
from secmetrics_dagster.sandbox import Sandbox, SnykVolume
from secmetrics_dagster.sources.snyk import SnykResource
from secmetrics_dagster.stores.io_manager import StoresResource

from . import services

SANDBOX_TOKEN = "sandbox-token"


@pytest.fixture(scope="session", autouse=True)
def _aws_test_credentials():
    # moto accepts any credentials; these keep boto3 from looking anywhere else (no network, no profiles).
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_EC2_METADATA_DISABLED",
        )
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
    )
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def pg_params():
    with services.postgres() as params:
        yield params


@pytest.fixture(scope="session")
def s3_endpoint():
    with services.s3_server() as url:
        yield url


@pytest.fixture
def pg_store(pg_params, pg_schema):
    """The PostgreSQL store on this test's schema."""
    from secmetrics_dagster.stores.postgres import PostgresStore

    return PostgresStore(
        host=pg_params["host"],
        port=int(pg_params.get("port", 5432)),
        user=pg_params.get("user"),
        dbname=pg_params.get("dbname"),
        schema=pg_schema,
    )


@pytest.fixture
def pg_schema(pg_params):
    """A fresh schema per test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_conn(pg_params):
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        yield conn


@pytest.fixture
def s3_client(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client):
    name = f"secmetrics-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def sandbox():
    with Sandbox(
        seed=7, token=SANDBOX_TOKEN, snyk=SnykVolume(orgs=2, projects_per_org=23, issues_per_org=57, members_per_org=5)
    ) as box:
        yield box


@pytest.fixture
def snyk(sandbox) -> SnykResource:
    return SnykResource(token=SANDBOX_TOKEN, endpoint=sandbox.url, page_limit=10)


@pytest.fixture
def collection(tmp_path) -> CollectionResource:
    # Short timeouts and near-zero backoff keep fault tests fast (the read timeout stays under the 2 s of the
    # sandbox's timeout faults, with room for a loaded machine); the behaviour is the same as production.
    return CollectionResource(
        tenancy="acme",
        spool_dir=str(tmp_path / "spool"),
        http_read_timeout=1.0,
        http_connect_timeout=2,
        http_max_retries=2,
        http_backoff_base=0.01,
        http_max_wait=10,
    )


@pytest.fixture
def file_stores(tmp_path) -> StoresResource:
    """The file store alone: what a source's own tests need (paging, faults, records), no servers."""
    return StoresResource(file_template=str(tmp_path / "data/source/%TAG/%TENANCY.json"))


@pytest.fixture
def all_stores(tmp_path, bucket, s3_endpoint, pg_params, pg_schema) -> StoresResource:
    return StoresResource(
        file_template=str(tmp_path / "data/source/%TAG/%TENANCY.json"),
        s3_bucket=bucket,
        s3_key="data/%TAG/%YYYY/%MM/%DD/%UUID.json",
        s3_backup="backup/%TAG/%TENANCY.json",
        s3_endpoint_url=s3_endpoint,
        postgres_host=pg_params["host"],
        postgres_port=int(pg_params.get("port", 5432)),
        postgres_user=pg_params.get("user"),
        postgres_dbname=pg_params.get("dbname"),
        postgres_schema=pg_schema,
        duckdb_path=str(tmp_path / "data/database.duckdb"),
    )


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`make demo`'s program run once per test session in a fresh directory: (its directory, the finished process).

    Under pytest-xdist the workers share one run: the first to ask runs it under a lock in the session's common
    temporary directory, the others read what it printed.
    """
    import fcntl
    import json
    import subprocess
    import sys

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    workdir, saved = shared / "demo-run", shared / "demo-run.json"
    command = [sys.executable, "-m", "secmetrics_dagster.demo"]
    with open(shared / "demo-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not saved.exists():
            workdir.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("STORE_", "SNYK_", "DAGSTER_"))}
            env["COLLECTION_SPOOL_DIR"] = str(workdir / "spool")
            done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
            saved.write_text(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}))
        result = json.loads(saved.read_text())
    return workdir, subprocess.CompletedProcess(command, result["returncode"], result["stdout"], result["stderr"])


def pytest_configure(config):
    # With pytest-xdist (`make test` runs three workers), the servers start once, in the controlling process, and
    # reach the workers through the variables services.py honours; whatever was started stops at the end.
    if hasattr(config, "workerinput") or config.pluginmanager.hasplugin("xdist") is False:
        return
    if not getattr(config.option, "numprocesses", None):
        return
    stack = contextlib.ExitStack()
    pg = stack.enter_context(services.postgres())
    os.environ["TEST_POSTGRES_DSN"] = psycopg.conninfo.make_conninfo(**pg)
    os.environ["TEST_S3_ENDPOINT"] = stack.enter_context(services.s3_server())
    config._secmetrics_services = stack


def pytest_unconfigure(config):
    stack = getattr(config, "_secmetrics_services", None)
    if stack is not None:
        stack.close()


def pytest_report_header(config):
    return f"secmetrics-dagster tests: cwd {Path.cwd()}"
