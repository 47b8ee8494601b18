"""Scaling out on Celery for real: Redis as broker and result backend, a PostgreSQL-backed instance shared by
the run and two `dagster-celery` workers (one on the default queue, one on Okta's own queue,
COLLECTION_CELERY_QUEUES), a collection of Snyk and Okta from the sandbox into file, S3, PostgreSQL and DuckDB,
then a worker killed with SIGKILL in the middle of a step and the run re-executed from failure.

Redis: the server on 127.0.0.1:6379 if it answers, else started here (and shut down afterwards). Each module
run takes a Redis database of its own (queues and broadcasts are per database), so parallel runs never take
each other's tasks. The commands are the README's ("Scaling out").
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import dagster as dg
import psycopg
import pytest
import redis
from psycopg import sql

from secmetrics_dagster.automation import celery
from secmetrics_dagster.collection.errors import ConfigError
from secmetrics_dagster.sandbox import Sandbox
from secmetrics_dagster.sandbox.server import Fault
from secmetrics_dagster.sources import OKTA, SNYK

from .conftest import SANDBOX_TOKEN
from .helpers import duck_rows, pg_rows
from .test_instance_postgres import _environment, _stop

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REDIS = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
         "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]  # fmt: skip
ROUTED, DEFAULT = OKTA, SNYK  # Okta on its own queue, Snyk on the default one
# One Snyk dataset and two independent Okta ones (pools run one step per vendor at a time: fewer steps, faster).
DEFAULT_TAGS, ROUTED_TAGS = ["snyk_organizations"], ["okta_users", "okta_groups"]
SELECTION = ",".join([*DEFAULT_TAGS, *ROUTED_TAGS])
MATERIALIZE = ["asset", "materialize", "-m", "secmetrics_dagster", "--select", SELECTION]


def worker_args(name: str, queue: str | None = None) -> list[str]:
    return ["worker", "start", "-A", "dagster_celery.app", "-y", "celery.yaml", "-n", name] + (
        ["-q", queue] if queue else []
    )


TIMEOUT = 120


def _redis_answers() -> bool:
    try:
        return redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def redis_server():
    """The machine's Redis, started (and afterwards shut down) here when it does not answer."""
    started = False
    if not _redis_answers():
        Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(REDIS, check=True)
        started = True
        deadline = time.monotonic() + 10
        while not _redis_answers():
            assert time.monotonic() < deadline, "redis-server did not answer on 127.0.0.1:6379 within 10 s"
            time.sleep(0.1)
    yield redis.Redis(host="127.0.0.1", port=6379)
    if started:
        redis.Redis(host="127.0.0.1", port=6379).shutdown(nosave=True)


class Cluster:
    def __init__(self, env: dict, root: Path, sandbox: Sandbox, queue: str, schema: str, pg_params: dict):
        self.env, self.root, self.sandbox, self.queue = env, root, sandbox, queue
        self.schema, self.pg = schema, pg_params
        self.workers: dict[str, subprocess.Popen] = {}

    def start_worker(self, name: str, queue: str | None = None) -> subprocess.Popen:
        command = [str(BIN / "dagster-celery"), *worker_args(name, queue)]
        log = self.root / f"{name}.log"
        # A session of its own: the CLI, the celery worker and its pool processes end with its group.
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.workers[name] = proc
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, self.logs()
            time.sleep(0.2)
        return proc

    def materialize(self) -> subprocess.Popen:
        command = [str(BIN / "dagster"), *MATERIALIZE]
        return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log"))
        )

    def store_state(self, tag: str):
        """(file envelope, PostgreSQL rows, DuckDB rows) of a dataset; None where a store has nothing yet."""
        path = self.root / f"data/source/{tag}/acme.json"
        doc = json.loads(path.read_text()) if path.exists() else None
        with psycopg.connect(**self.pg, autocommit=True) as conn:
            try:
                pg = pg_rows(conn, self.schema, f"{tag}_latest")
            except psycopg.errors.UndefinedTable:
                pg = None
        duck = None
        if Path(self.env["STORE_DUCKDB"]).exists():
            try:
                duck = duck_rows(self.env["STORE_DUCKDB"], f"{tag}_latest")
            except Exception as exc:  # noqa: BLE001 - duckdb raises CatalogException for a missing view
                if "does not exist" not in str(exc):
                    raise
        return doc, pg, duck


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_server, pg_params, s3_endpoint):
    root = tmp_path_factory.mktemp("celery")
    db = f"secmetrics_celery_{uuid.uuid4().hex[:10]}"
    schema = f"t_{uuid.uuid4().hex[:12]}"
    bucket = f"secmetrics-{uuid.uuid4().hex[:12]}"
    queue = ROUTED.group  # the README's `-q okta`; the Redis database of its own keeps parallel runs apart
    redis_db = 1 + redis_server.incr("secmetrics-tests:celery-db") % 15  # databases 1..15, one per module run
    redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    with Sandbox(seed=7, token=SANDBOX_TOKEN) as sandbox:
        env = _environment(sandbox.url, root, pg_params, db, schema, bucket, s3_endpoint, port=0)
        broker = f"redis://127.0.0.1:6379/{redis_db}"
        env.update(
            COLLECTION_EXECUTOR="celery",
            CELERY_BROKER_URL=broker,
            CELERY_BACKEND_URL=broker,
            COLLECTION_CELERY_QUEUES=f"{ROUTED.group}={queue}",
            COLLECTION_STEP_RETRIES="0",  # a killed step is re-executed by hand, not retried
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the CLI starts `celery` from the PATH
        )
        home = Path(env["DAGSTER_HOME"])
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        saved = dict(os.environ)
        os.environ.update({k: env[k] for k in env if k.startswith("DAGSTER_PG_")})
        try:
            with dg.DagsterInstance.from_config(str(home)):
                pass  # creates the instance's tables once, before the workers connect
        finally:
            os.environ.clear()
            os.environ.update(saved)
        box = Cluster(env, root, sandbox, queue, schema, pg_params)
        try:
            box.start_worker("default")
            box.start_worker("okta", queue)
            yield box
        finally:
            for proc in box.workers.values():
                _stop(proc)
            redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
            with psycopg.connect(**pg_params, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def instance(cluster, monkeypatch):
    for key, value in cluster.env.items():
        if key.startswith("DAGSTER_PG_"):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(cluster.env["DAGSTER_HOME"]) as inst:
        yield inst


def _step_pids(instance, run_id: str) -> dict[str, int]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return {r.event_log_entry.dagster_event.step_key: r.event_log_entry.dagster_event.pid for r in records}


def _consistent(state) -> int:
    doc, pg, duck = state
    assert doc["metadata"]["records"] == len(doc["data"]) == len(pg) == len(duck)
    return len(doc["data"])


def test_steps_run_in_the_celery_workers_and_a_routed_vendor_in_its_queues_worker(cluster, instance):
    run = cluster.materialize()
    out, _ = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 0, out[-3000:] + cluster.logs()
    [record] = instance.get_run_records(limit=1)
    pids = _step_pids(instance, record.dagster_run.run_id)
    assert set(pids) >= {*DEFAULT_TAGS, *ROUTED_TAGS}
    for step, pid in pids.items():
        assert pid not in (os.getpid(), run.pid)
        worker = "okta" if step in ROUTED_TAGS else "default"
        assert os.getpgid(pid) == cluster.workers[worker].pid, f"{step} ran outside the {worker} worker"
    for tag in [*DEFAULT_TAGS, *ROUTED_TAGS]:
        _consistent(cluster.store_state(tag))


def _wait(check, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return value


def test_a_worker_killed_mid_step_leaves_no_half_written_upload_and_the_re_execution_succeeds(cluster, instance):
    before = {tag: cluster.store_state(tag) for tag in ROUTED_TAGS}
    # The Okta users pull hangs on the sandbox until the worker is killed in the middle of it.
    cluster.sandbox.add_fault(Fault("okta.users", "timeout", times=0, delay=30))
    cluster.sandbox.reset_stats()
    known = {r.dagster_run.run_id for r in instance.get_run_records()}
    run = cluster.materialize()
    try:
        _wait(lambda: cluster.sandbox.stats().get("okta.users"), "the Okta users step never reached the sandbox")
        run_id = _wait(lambda: {r.dagster_run.run_id for r in instance.get_run_records()} - known, "no run").pop()
        os.killpg(cluster.workers["okta"].pid, signal.SIGKILL)
        cluster.workers["okta"].wait(10)
        # Snyk, on the other worker, still completes; the killed step never reports, so the run is stopped.
        _wait(lambda: set(DEFAULT_TAGS) <= set(_materialized(instance, run_id)), "snyk did not finish", 60)
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE, out[-3000:]
    unfinished = set(ROUTED_TAGS) - set(_materialized(instance, run_id))
    assert "okta_users" in unfinished
    # The killed step and those after it left every store as it was; what finished before the kill is whole.
    assert {tag: cluster.store_state(tag) for tag in unfinished} == {tag: before[tag] for tag in unfinished}
    for tag in set(ROUTED_TAGS) - unfinished:
        _consistent(cluster.store_state(tag))
    cluster.sandbox.clear_faults()
    cluster.start_worker("okta-2", cluster.queue)
    retry = subprocess.run(
        [sys.executable, "-m", "secmetrics_dagster.automation.celery", "reexecute", run_id],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert retry.returncode == 0 and "RUN_SUCCESS" in retry.stdout, retry.stdout[-3000:] + retry.stderr[-3000:]
    [record] = instance.get_run_records(limit=1)
    assert record.dagster_run.parent_run_id == run_id
    steps = set(_step_pids(instance, record.dagster_run.run_id))
    assert steps & {*DEFAULT_TAGS, *ROUTED_TAGS} == unfinished  # only the assets that had not finished
    for tag in ROUTED_TAGS:
        assert _consistent(cluster.store_state(tag)) > 0 or ROUTED.dataset(tag).allow_empty


def _materialized(instance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return [r.event_log_entry.dagster_event.asset_key.path[-1] for r in records]


def test_collection_celery_queues_tags_each_named_vendor_and_refuses_an_unknown_one(monkeypatch):
    monkeypatch.setenv("COLLECTION_CELERY_QUEUES", "okta=okta, Tenable=big")
    assert celery.op_tags() == {"okta": {celery.QUEUE_TAG: "okta"}, "tenable": {celery.QUEUE_TAG: "big"}}
    monkeypatch.setenv("COLLECTION_CELERY_QUEUES", "oktaa=okta")
    with pytest.raises(ConfigError, match="unknown source 'oktaa'"):
        celery.queues()


def test_the_executor_stays_multiprocess_unless_celery_is_chosen_with_its_broker(monkeypatch):
    for name in ("COLLECTION_EXECUTOR", "CELERY_BROKER_URL", "CELERY_BACKEND_URL"):
        monkeypatch.delenv(name, raising=False)
    assert celery.executor_name() == "multiprocess"
    monkeypatch.setenv("COLLECTION_EXECUTOR", "celery")
    with pytest.raises(ConfigError, match="needs CELERY_BROKER_URL"):
        celery.celery_executor()
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:secret@127.0.0.1:6379/3")
    monkeypatch.setenv("CELERY_BACKEND_URL", "redis://:secret@127.0.0.1:6379/3")
    assert celery.celery_executor().name == "celery"


def test_the_readmes_scaling_out_commands_are_the_ones_this_module_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("**Scaling out.**") :]
    block = block[block.index("```bash\n") + len("```bash\n") : block.index("```", block.index("```bash\n") + 7)]
    assert [shlex.split(line) for line in block.strip().splitlines()] == [
        REDIS,
        ["dagster-celery", *worker_args("default")],
        ["dagster-celery", *worker_args(ROUTED.group, ROUTED.group)],
        ["dagster", *MATERIALIZE],
        ["python", "-m", "secmetrics_dagster.automation.celery", "reexecute", "RUN_ID"],
    ]
