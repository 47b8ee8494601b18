"""`python -m secmetrics_dagster.sandbox --print-env / --env-file`: one line to point every source at the sandbox."""

import shlex
import subprocess
import sys
import time

import pytest

from secmetrics_dagster.sources import SOURCES


@pytest.fixture
def running_sandbox(tmp_path):
    port_file, env_file = tmp_path / "port", tmp_path / "sandbox.env"
    proc = subprocess.Popen(
        [sys.executable, "-m", "secmetrics_dagster.sandbox", "--port", "0", "--port-file", str(port_file),
         "--env-file", str(env_file), "--print-env"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.1)
    yield proc, env_file, int(port_file.read_text())
    proc.terminate()
    proc.wait(10)


def _read_exports(proc) -> dict[str, str]:
    env = {}
    for line in proc.stdout:
        if line.startswith("# sandbox listening"):
            break
        name, _, value = line.removeprefix("export ").rstrip("\n").partition("=")
        env[name] = shlex.split(value)[0] if value else ""
    return env


def test_the_env_file_configures_every_source_against_this_sandbox(running_sandbox, monkeypatch):
    _proc, env_file, port = running_sandbox
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    env = {k: shlex.split(v)[0] for k, v in env.items()}
    assert f"127.0.0.1:{port}" in env["SNYK_ENDPOINT"] and f"127.0.0.1:{port}" in env["TIO_URL"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for source in SOURCES:
        assert source.resource.from_env().missing_env() == [], source.group


def test_print_env_prints_the_same_variables_as_export_lines(running_sandbox):
    proc, env_file, _port = running_sandbox
    exports = _read_exports(proc)
    written = {k: shlex.split(v)[0] for k, v in (line.split("=", 1) for line in env_file.read_text().splitlines())}
    assert exports == written and len(exports) >= len(SOURCES)
