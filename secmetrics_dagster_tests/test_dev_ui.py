"""`make dev`, the README's UI command, on a clean checkout with nothing set: it starts the sandbox and the UI with
every source pointed at it on the persistent instance data/dagster_home, a run launched through the UI's GraphQL API
collects from the sandbox, and stopping it leaves no process behind."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from secmetrics_dagster.automation.checks import check_specs
from secmetrics_dagster.sources import SOURCES

from .services import free_port
from .webserver import Webserver

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
STARTUP_TIMEOUT = 240
RUN_TIMEOUT = 240
# One vendor API and the source that needs the sandbox's extra servers (its DNS and WHOIS ports).
LAUNCHED = ("snyk_organizations", "domains")


def _descendants(pid: int) -> set[int]:
    """Every live process below pid (from /proc), whatever session or group it moved to."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DevUI(Webserver):
    def __init__(self, proc: subprocess.Popen, workdir: Path, url: str):
        self.proc, self.workdir, self.url = proc, workdir, url

    def logs(self) -> str:
        return (self.workdir / "dev.log").read_text(errors="replace")

    def sandbox_port(self) -> int:
        found = re.search(r"sandbox listening on http://127\.0\.0\.1:(\d+)", self.logs())
        assert found, self.logs()[-3000:]
        return int(found.group(1))


@pytest.fixture(scope="module")
def dev_ui(tmp_path_factory):
    """`make dev` in a fresh directory holding what a clone has at its top (Makefile, dagster.yaml)."""
    if shutil.which("make") is None:
        pytest.fail("`make` is not installed; the README's UI command needs it")
    workdir = tmp_path_factory.mktemp("clone")
    for name in ("Makefile", "dagster.yaml"):
        shutil.copy(ROOT / name, workdir / name)
    source_vars = {var.env for source in SOURCES for var in source.env_vars}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in source_vars
        and not k.startswith(("STORE_", "DAGSTER_", "SLACK_", "COLLECTION_", "RESTORE_", "AWS_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    port = free_port()
    # This interpreter's virtualenv stands in for the one `make setup` builds (-o: never rebuild it here).
    command = ["make", "dev", f"VENV={VENV}", "-o", f"{VENV}/.installed", f"DEV_ARGS=-h 127.0.0.1 -p {port}"]
    with open(workdir / "dev.log", "wb") as log:
        # setsid: make and what it runs get a group of their own, killed whatever happens below.
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    ui = DevUI(proc, workdir, f"http://127.0.0.1:{port}")
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            seen |= _descendants(proc.pid)
            try:
                if requests.get(f"{ui.url}/server_info", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, ui.logs()[-5000:]
            assert time.monotonic() < deadline, f"the UI did not answer within {STARTUP_TIMEOUT}s\n{ui.logs()[-5000:]}"
            time.sleep(0.5)
        ui.seen = seen
        yield ui
    finally:
        for pid in {proc.pid, *seen, *_descendants(proc.pid)}:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait(30)


def _dataset(tag: str):
    return next(d for s in SOURCES for d in s.datasets if d.tag == tag)


def test_a_run_launched_in_the_ui_collects_from_the_sandbox_make_dev_started(dev_ui):
    checks = [(tag, spec.name) for tag in LAUNCHED for spec in check_specs(_dataset(tag))]
    status = dev_ui.wait_for(dev_ui.launch(assets=LAUNCHED, checks=checks), RUN_TIMEOUT)["status"]
    assert status == "SUCCESS", dev_ui.logs()[-8000:]
    # The run is on the persistent instance, and the sources' records landed in make dev's local stores.
    assert list((dev_ui.workdir / "data/dagster_home").glob("history/runs/*.db")), "no run history in data/dagster_home"
    for tag in LAUNCHED:
        envelope = json.loads((dev_ui.workdir / f"data/source/{tag}/default.json").read_text())
        assert envelope["data"], tag


def test_stopping_make_dev_stops_the_ui_and_the_sandbox_leaving_no_process(dev_ui):
    sandbox_port, ui_port = dev_ui.sandbox_port(), int(dev_ui.url.rsplit(":", 1)[1])
    assert _listening(sandbox_port) and _listening(ui_port)
    started = dev_ui.seen | _descendants(dev_ui.proc.pid)
    os.killpg(dev_ui.proc.pid, signal.SIGTERM)  # what a terminal's Ctrl-C or a closed session does to make's group
    assert dev_ui.proc.wait(90) is not None
    deadline = time.monotonic() + 30
    while (left := sorted(pid for pid in started if _alive(pid))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"left running: {left}\n{dev_ui.logs()[-3000:]}"
    assert not _listening(sandbox_port) and not _listening(ui_port)


def _make_dev(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`make dev ARGS` in a fresh checkout-like directory, to its end (for commands that end by themselves)."""
    for name in ("Makefile", "dagster.yaml"):
        shutil.copy(ROOT / name, workdir / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        ["make", "dev", f"VENV={VENV}", "-o", f"{VENV}/.installed", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=180, start_new_session=True,
    )  # fmt: skip


def test_when_the_ui_exits_by_itself_the_sandbox_stops_too(tmp_path):
    done = _make_dev(tmp_path, "DEV_ARGS=--help")  # dagster dev prints its usage and exits at once
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = re.search(r"sandbox listening on http://127\.0\.0\.1:(\d+)", done.stderr)
    assert found and "Start a local deployment of Dagster" in done.stdout
    assert not _listening(int(found.group(1)))


def test_make_dev_with_sandbox_0_runs_the_ui_without_the_sandbox(tmp_path):
    done = _make_dev(tmp_path, "SANDBOX=0", "DEV_ARGS=--help")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Start a local deployment of Dagster" in done.stdout and "sandbox" not in done.stderr


# ------------------------------------------------------------------ the top-level dagster.yaml, both ways

PG_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def _instance_like_dagster_dev_without_dagster_home(tmp_path):
    # What `dagster dev` does when DAGSTER_HOME is unset (dagster/_cli/utils.py, _get_temporary_instance): the
    # instance lives in a temporary directory and is configured by ./dagster.yaml of the working directory.
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path), config_dir=str(ROOT)))


def test_with_nothing_set_the_repositorys_dagster_yaml_keeps_runs_in_sqlite_in_the_instance_directory(
    tmp_path, monkeypatch
):
    for name in PG_VARS:
        monkeypatch.delenv(name, raising=False)
    with _instance_like_dagster_dev_without_dagster_home(tmp_path) as instance:
        assert type(instance._run_storage).__name__ == "SqliteRunStorage"
        assert instance.root_directory == str(tmp_path)
        assert instance.get_settings("concurrency")["pools"]["default_limit"] == 1  # the rest of the file applies
        assert instance.get_runs() == []
    assert list(tmp_path.glob("history/runs.db"))


def test_with_dagster_pg_set_the_same_dagster_yaml_keeps_runs_in_postgresql(tmp_path, monkeypatch, pg_params):
    import uuid

    import dagster as dg
    import psycopg
    from psycopg import sql

    db = f"secmetrics_instance_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        monkeypatch.setenv("DAGSTER_PG_HOST", pg_params["host"])
        monkeypatch.setenv("DAGSTER_PG_PORT", str(pg_params.get("port", 5432)))
        monkeypatch.setenv("DAGSTER_PG_USER", pg_params.get("user", "postgres"))
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", pg_params.get("password", ""))
        monkeypatch.setenv("DAGSTER_PG_DB", db)
        with _instance_like_dagster_dev_without_dagster_home(tmp_path) as instance:
            assert type(instance._run_storage).__name__ == "PostgresRunStorage"
            run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), run_id=uuid.uuid4().hex)
            # The password is read from the environment where the storage connects, never written into the
            # instance reference Dagster passes its webserver and daemon on their command lines.
            assert "DAGSTER_PG_PASSWORD" in instance.get_ref().storage_data.config_yaml
        with psycopg.connect(**{**pg_params, "dbname": db}) as conn:
            assert conn.execute("SELECT run_id FROM runs").fetchall() == [(run.run_id,)]
    finally:
        with psycopg.connect(**pg_params, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def test_dagster_pg_host_without_the_rest_is_refused_naming_what_is_missing(tmp_path, monkeypatch):
    for name in PG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_PG_HOST", "db.internal")
    monkeypatch.setenv("DAGSTER_PG_USER", "dagster")
    with pytest.raises(Exception, match="DAGSTER_PG_PORT, DAGSTER_PG_DB are not set"):
        _instance_like_dagster_dev_without_dagster_home(tmp_path)


def test_the_instance_class_loads_without_building_the_definitions_so_a_bad_setting_cannot_stop_the_webserver():
    # The webserver and the daemon import the instance class dagster.yaml names; a setting that breaks the
    # definitions (an unknown source) must show in the code location, not keep those processes from starting.
    env = dict(os.environ, COLLECTION_SOURCES="jira")
    probe = (
        "import sys, secmetrics_dagster.instance; "
        "assert 'secmetrics_dagster.definitions' not in sys.modules, 'the definitions were built'; "
        "import secmetrics_dagster; secmetrics_dagster.defs"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert "the definitions were built" not in done.stderr
    assert done.returncode != 0 and "jira" in done.stderr  # the definitions themselves still refuse the name
