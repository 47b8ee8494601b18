"""`make demo`: start the bundled sandbox, materialize every asset with the dagster CLI (the datasets, then the
metrics), print what landed where and the posture scorecard.

Only local stores are used (JSON files and DuckDB under ./data); S3 and PostgreSQL settings in the
environment are ignored here so the demo can never write to a real bucket or database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from .collection.context import RunContext, expand_path
from .metrics.report import scorecard_lines
from .sources import SOURCES

SANDBOX_TOKEN = "sandbox-token"
DEMO_ENV_DROP = ("STORE_AWS_S3_BUCKET", "STORE_POSTGRES_HOST", "TENANCY")


def start_sandbox(workdir: Path) -> tuple[subprocess.Popen, str]:
    port_file = workdir / "sandbox.port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "secmetrics_dagster.sandbox", "--port", "0", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the sandbox did not start: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}"


def demo_environment(sandbox_url: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DEMO_ENV_DROP}
    for source in SOURCES:
        env.update(source.sandbox_env(sandbox_url, SANDBOX_TOKEN))
    env.update(
        STORE_FILE=env.get("STORE_FILE") or str(data / "source/%TAG/%TENANCY.json"),
        STORE_DUCKDB=env.get("STORE_DUCKDB") or str(data / "database.duckdb"),
        DAGSTER_HOME=str(data / "dagster_home"),
    )
    (data / "dagster_home").mkdir(parents=True, exist_ok=True)
    return env


def summary(env: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """One row per asset: the newest upload's record count (from DuckDB's uploads ledger) and where it landed."""
    con = duckdb.connect(env["STORE_DUCKDB"], read_only=True)
    try:
        counts = dict(
            con.execute("SELECT tag, arg_max(records, loaded_at) FROM secmetrics_uploads GROUP BY tag").fetchall()
        )
    finally:
        con.close()
    rows = []
    for source in SOURCES:
        for dataset in source.datasets:
            path = Path(expand_path(env["STORE_FILE"], RunContext(dataset.tag, "default")))
            if dataset.tag in counts:
                rows.append(
                    (dataset.tag, str(counts[dataset.tag]), str(path), f"{env['STORE_DUCKDB']} table {dataset.tag}")
                )
            else:
                rows.append((dataset.tag, "-", "not written", ""))
    return rows


def main() -> int:
    data = Path("data").resolve()
    data.mkdir(exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="secmetrics-demo-") as tmp:
        sandbox, url = start_sandbox(Path(tmp))
        try:
            env = demo_environment(url, data)
            print(f"sandbox on {url}; materializing every asset (log: {data / 'demo.log'})", flush=True)
            dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
            with open(data / "demo.log", "wb") as log:
                result = subprocess.run(
                    [dagster, "asset", "materialize", "-m", "secmetrics_dagster", "--select", "*"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        finally:
            sandbox.terminate()
            sandbox.wait(10)
    if result.returncode != 0:
        print((data / "demo.log").read_text()[-4000:], file=sys.stderr)
        print(f"demo failed: dagster exited {result.returncode}; full log in {data / 'demo.log'}", file=sys.stderr)
        return result.returncode
    rows = [("asset", "records", "JSON file", "DuckDB")] + summary(env)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("\n".join(["", *scorecard_lines(env["STORE_DUCKDB"]), ""]))
    print(f"demo finished in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
