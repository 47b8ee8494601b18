"""`make demo`: start the bundled sandbox, materialize every asset in this process (the datasets, then the
metrics, one step after the other with Dagster's in-process executor), print what landed where and the posture
scorecard.

In-process because the demo's ~2,800 records take a few seconds to collect while the multiprocess executor of
`dagster asset materialize` spends most of a minute starting step processes and waiting on pools on a 2-core
machine (see the README's demo section for the figures).

Only local stores are used (JSON files and DuckDB under ./data); S3 and PostgreSQL settings in the
environment are ignored here so the demo can never write to a real bucket or database.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import duckdb

from .collection.context import RunContext, expand_path
from .metrics.report import scorecard_lines
from .sandbox import Sandbox
from .sources import SOURCES

SANDBOX_TOKEN = "sandbox-token"
DEMO_ENV_DROP = ("STORE_AWS_S3_BUCKET", "STORE_POSTGRES_HOST", "TENANCY")


def demo_environment(sandbox_url: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DEMO_ENV_DROP}
    for source in SOURCES:
        env.update(source.sandbox_env(sandbox_url, SANDBOX_TOKEN))
    # The demo's steps run one after another, so one KnowBe4 asset at a time may use the account's whole
    # documented 4 requests per second (the default paces each at half, as two may run at once in production).
    env.setdefault("KNOWBE4_REQUESTS_PER_SECOND", "4")
    # The sandbox's IAM (moto) has the credential report ready at the second GenerateCredentialReport call; the
    # production wait of 2 s between calls would be the demo's longest step.
    env.setdefault("AWS_CREDENTIAL_REPORT_POLL_SECONDS", "0.2")
    env.update(
        STORE_FILE=env.get("STORE_FILE") or str(data / "source/%TAG/%TENANCY.json"),
        STORE_DUCKDB=env.get("STORE_DUCKDB") or str(data / "database.duckdb"),
    )
    return env


def shown(path: str | Path) -> str:
    """A path as the summary prints it: relative to the working directory (the repository) when under it."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def materialize_everything(log_path: Path) -> bool:
    """Every asset and check of the project's Definitions, in this process, on an in-memory instance (the data
    is what the demo keeps; a SQLite instance on disk spent most of the demo committing ~1,000 events one by one);
    the run's log goes to `log_path`. The resources are built here, from the environment the demo just set."""
    import dagster as dg

    from . import definitions

    assets = [*definitions.all_assets, *definitions.metrics.assets, *definitions.all_checks]
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                assets, instance=instance, resources=definitions.build_resources(), raise_on_error=False
            )
    return result.success


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
                duckdb_file = shown(env["STORE_DUCKDB"])
                rows.append((dataset.tag, str(counts[dataset.tag]), shown(path), f"{duckdb_file} table {dataset.tag}"))
            else:
                rows.append((dataset.tag, "-", "not written", ""))
    return rows


def main() -> int:
    data = Path("data").resolve()
    data.mkdir(exist_ok=True)
    started = time.monotonic()
    log_path = data / "demo.log"
    saved = dict(os.environ)
    with Sandbox(token=SANDBOX_TOKEN) as sandbox:  # in this process: no second interpreter to start
        env = demo_environment(sandbox.url, data)
        print(f"sandbox on {sandbox.url}; materializing every asset (log: {shown(log_path)})", flush=True)
        try:
            os.environ.clear()
            os.environ.update(env)
            ok = materialize_everything(log_path)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    if not ok:
        print(log_path.read_text()[-4000:], file=sys.stderr)
        print(f"demo failed: a step failed; full log in {shown(log_path)}", file=sys.stderr)
        return 1
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
