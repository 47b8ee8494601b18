"""Real services for the tests: a PostgreSQL server and an S3-compatible server (moto), both on 127.0.0.1.

PostgreSQL: use TEST_POSTGRES_DSN if set; else the server on 127.0.0.1:5432 if it answers; else start the
machine's cluster with pg_ctlcluster; else initdb a throwaway cluster in a temporary directory. Whatever
this module started, it stops.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


@contextmanager
def postgres() -> Iterator[dict]:
    """Yields libpq keyword arguments for a database the tests may create schemas in."""
    if os.environ.get("TEST_POSTGRES_DSN"):
        dsn = os.environ["TEST_POSTGRES_DSN"]
        yield psycopg.conninfo.conninfo_to_dict(dsn)
        return
    machine = dict(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    dsn = psycopg.conninfo.make_conninfo(**machine)
    if _pg_answers(dsn):
        yield machine
        return
    clusters = sorted(glob.glob("/etc/postgresql/*"))
    if clusters and shutil.which("pg_ctlcluster"):
        version = os.path.basename(clusters[-1])
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        try:
            _wait_for(lambda: _pg_answers(dsn), 30, "the machine's PostgreSQL cluster")
        except RuntimeError:
            pass
        else:
            try:
                yield machine
            finally:
                subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"], check=False)
            return
    with _throwaway_cluster() as params:
        yield params


@contextmanager
def _throwaway_cluster() -> Iterator[dict]:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    initdb = shutil.which("initdb") or (bindirs and os.path.join(bindirs[-1], "initdb"))
    if not initdb or not os.path.exists(initdb):
        raise RuntimeError("no PostgreSQL server found: install the OS's postgresql package or set TEST_POSTGRES_DSN")
    bindir = os.path.dirname(initdb)
    tmp = tempfile.mkdtemp(prefix="secmetrics-pg-")
    os.chmod(tmp, 0o777)
    port = free_port()
    # initdb refuses to run as root; run the throwaway cluster as the postgres user when we are root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = os.path.join(tmp, "data")
    subprocess.run(
        prefix + [initdb, "-D", data, "-A", "trust", "-U", "postgres"], check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run(
        prefix
        + [
            os.path.join(bindir, "pg_ctl"),
            "-D",
            data,
            "-l",
            os.path.join(tmp, "log"),
            "-w",
            "-o",
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    params = dict(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    try:
        yield params
    finally:
        subprocess.run(
            prefix + [os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def s3_server() -> Iterator[str]:
    """moto in server mode, spoken to over HTTP like any S3-compatible endpoint."""
    if os.environ.get("TEST_S3_ENDPOINT"):
        yield os.environ["TEST_S3_ENDPOINT"]
        return
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(url + "/moto-api/", timeout=1).status_code < 500
        except requests.RequestException:
            return False

    try:
        _wait_for(up, 30, "moto S3 server")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
