#!/usr/bin/env python
"""Benchmark: Tenable.io vulnerability exports from the sandbox through pyTenable into file, S3, PostgreSQL and DuckDB.

    .venv/bin/python benchmarks/bench_tenable.py                     # 100k and 1M findings, each in its own process,
                                                                     # then 50 ms latency: 1 download thread vs 8
    .venv/bin/python benchmarks/bench_tenable.py --records 200000    # one size, this process
    .venv/bin/python benchmarks/bench_tenable.py --latency-only      # only the concurrency comparison

Prints records/s of the pull (export -> spool) and of each store, and the peak RSS of the collecting process
(dagster.materialize runs here), against a 300 MB target at 1M that must also stay within 20% of the 100k figure.
The sandbox runs in its own process (not counted), as does moto's S3 server; PostgreSQL and S3 come from
secmetrics_dagster_tests/services.py exactly as in bench_snyk_stores.py, whose measuring helpers this script uses.
Each finding's asset has 50 findings, so a chunk (TIO_VULN_NUM_ASSETS=50 assets) holds 2,500 findings.
Exit status: 1 if a collection failed or a store holds the wrong count, else 0 (targets missed or not).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_snyk_stores import (  # noqa: E402  (the shared measuring helpers)
    AWS_ENV, MiB, PhaseClock, RssSampler, _failure_text, _metadata, _rate, _step_events, current_rss_mb, peak_rss_mb,
    proc_hwm_mb, stop_process,
)

TOKEN = "sandbox-token"
TENANCY = "bench"
TAG = "tenable_vulnerabilities"
STORES = ("file", "s3", "postgres", "duckdb")
FINDINGS_PER_ASSET = 50
TARGET_MB = 300.0
GROWTH_LIMIT = 0.20
LATENCY_RECORDS = 20_000  # 200 chunks of 100 findings: enough round trips for latency to dominate
LATENCY_MS = 50.0


def start_sandbox(workdir: Path, records: int, findings_per_asset: int, latency_ms: float) -> tuple[subprocess.Popen, str]:
    port_file = workdir / "sandbox.port"
    log_path = workdir / "sandbox.log"
    assets = max(1, records // findings_per_asset)
    cmd = [sys.executable, "-m", "secmetrics_dagster.sandbox", "--port", "0", "--port-file", str(port_file),
           "--token", TOKEN, "--latency-ms", str(latency_ms), "--tenable-assets", str(assets),
           "--tenable-vulnerabilities", str(records), "--tenable-findings", "0", "--tenable-was", "0",
           "--tenable-status-polls", "3"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"the sandbox did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(port_file.read_text().strip())}"


def run_once(args: argparse.Namespace) -> int:
    """One size in this process: sandbox -> tenable_vulnerabilities -> the stores; figures as JSON and text."""
    os.environ.update(AWS_ENV)
    import boto3
    import dagster as dg
    import duckdb
    import psycopg
    from psycopg import sql

    from secmetrics_dagster.collection.resource import CollectionResource
    from secmetrics_dagster.sources import tenable as tenable_source
    from secmetrics_dagster.sources.tenable import TenableResource
    from secmetrics_dagster.stores import SnapshotIOManager, StoresResource
    from secmetrics_dagster_tests import services

    workdir = Path(tempfile.mkdtemp(prefix="secmetrics-bench-tenable-"))
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    bucket = f"secmetrics-bench-{uuid.uuid4().hex[:12]}"
    report: dict = {"records": args.records, "threads": args.threads, "latency_ms": args.latency_ms,
                    "stores": list(args.stores)}
    sandbox = None
    try:
        sandbox, url = start_sandbox(workdir, args.records, args.findings_per_asset, args.latency_ms)
        with services.s3_server() as s3_url, services.postgres() as pg:
            s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
            s3.create_bucket(Bucket=bucket)
            everything = dict(
                file_template=str(workdir / "data/source/%TAG/%TENANCY.json"), s3_bucket=bucket,
                s3_key="data/%TAG/%YYYY/%MM/%DD/%UUID.json", s3_backup="backup/%TAG/%TENANCY.json", s3_endpoint_url=s3_url,
                postgres_host=pg["host"], postgres_port=int(pg.get("port", 5432)), postgres_user=pg.get("user"),
                postgres_password=pg.get("password"), postgres_dbname=pg.get("dbname"), postgres_schema=schema,
                duckdb_path=str(workdir / "data/database.duckdb"))
            off = {"file": ["file_template"], "s3": ["s3_bucket"], "postgres": ["postgres_host"], "duckdb": ["duckdb_path"]}
            for store in STORES:
                if store not in args.stores:
                    for key in off[store]:
                        everything[key] = None
            stores = StoresResource(**everything)
            tenable = TenableResource(access_key=TOKEN, secret_key=TOKEN, url=url, export_threads=args.threads,
                                      export_poll_seconds=0.05, vuln_num_assets=50)
            resources = {"collection": CollectionResource(tenancy=TENANCY, spool_dir=str(workdir / "spool")),
                         "stores": stores, "tenable": tenable, "snapshot_io_manager": SnapshotIOManager(stores=stores)}
            instance = dg.DagsterInstance.ephemeral()
            try:
                report.update(_measure(dg, tenable_source, resources, instance))
                if report["failed"]:
                    print(report["failure"], file=sys.stderr)
                    return 1
                report["sandbox_peak_rss_mb"] = proc_hwm_mb(sandbox.pid)
                report["verified"] = _verify(stores, s3, pg, schema, args.records, args.stores, duckdb, psycopg, sql)
            finally:
                with psycopg.connect(**pg, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    for obj in page.get("Contents", []):
                        s3.delete_object(Bucket=bucket, Key=obj["Key"])
                s3.delete_bucket(Bucket=bucket)
    finally:
        if sandbox is not None:
            stop_process(sandbox)
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0 if all(v["ok"] for v in report["verified"].values()) else 1


def _measure(dg, tenable_source, resources: dict, instance) -> dict:
    clock = PhaseClock()  # timing-only wrappers around the envelope render and each store's write
    try:
        gc.collect()
        baseline = current_rss_mb()
        sampler = RssSampler()
        sampler.start()
        start = time.perf_counter()
        result = dg.materialize(tenable_source.assets, resources=resources, instance=instance, raise_on_error=False,
                                selection=[TAG], run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        wall = time.perf_counter() - start
        sampler.stop()
        peak = peak_rss_mb()
    finally:
        clock.restore()
    out = {"failed": not result.success, "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1),
           "materialize_seconds": round(wall, 2)}
    if not result.success:
        out["failure"] = "materialization failed:\n" + _failure_text(result)
        return out
    md = _metadata(result, TAG)
    events = _step_events(instance, result.run_id, TAG)
    pull_seconds = events["STEP_OUTPUT"] - events["STEP_START"]
    out["pull"] = {"seconds": round(pull_seconds, 2), "records": md["records"],
                   "records_per_s": _rate(md["records"], pull_seconds), "http_requests": md.get("http_requests"),
                   "http_retries": md.get("http_retries"), "http_mb": round(md.get("http_bytes", 0) / MiB, 1)}
    out["pull_peak_rss_mb"] = round(sampler.peak_between(events["STEP_START"], events["STEP_OUTPUT"]) or 0, 1)
    out["store_figures"] = {}
    for store in STORES:
        if md.get(f"{store}_records") is None:
            continue
        window = clock.window(TAG, f"{store} store")
        phase_peak = sampler.peak_between(*window) if window else None
        out["store_figures"][store] = {"seconds": md.get(f"{store}_seconds"), "mb": round(md.get(f"{store}_bytes", 0) / MiB, 1),
                                       "records_per_s": _rate(md.get(f"{store}_records"), md.get(f"{store}_seconds")),
                                       "peak_rss_mb": round(phase_peak, 1) if phase_peak else None}
    return out


def _verify(stores, s3, pg: dict, schema: str, expected: int, enabled, duckdb, psycopg, sql) -> dict:
    checks = {}
    if "file" in enabled:
        path = Path(stores.file_template.replace("%TAG", TAG).replace("%TENANCY", TENANCY))
        with open(path, "rb") as handle:
            checks["file"] = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(MiB), b"")) - 2
    if "s3" in enabled:
        checks["s3"] = int(s3.head_object(Bucket=stores.s3_bucket, Key=f"backup/{TAG}/{TENANCY}.json")["Metadata"]["records"])
    if "postgres" in enabled:
        with psycopg.connect(**pg) as conn:
            checks["postgres"] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, TAG))).fetchone()[0]
    if "duckdb" in enabled:
        con = duckdb.connect(stores.duckdb_path, read_only=True)
        try:
            checks["duckdb"] = con.execute(f'SELECT count(*) FROM "{TAG}"').fetchone()[0]
        finally:
            con.close()
    return {store: {"count": n, "ok": n == expected} for store, n in checks.items()}


def print_report(r: dict) -> None:
    pull = r["pull"]
    print(f"\n== {TAG}: {r['records']:,} findings, {r['threads']} download thread(s), {r['latency_ms']:.0f} ms latency "
          f"-> {', '.join(r['stores'])} ==")
    print(f"  pull (export -> spool): {pull['seconds']:.2f} s, {pull['records_per_s'] or 0:,} records/s, "
          f"{pull['http_requests']} requests, {pull['http_mb']} MB")
    for store, s in r["store_figures"].items():
        print(f"  {store:<8} store: {s['seconds']:.2f} s, {s['records_per_s'] or 0:,} records/s, {s['mb']} MB, "
              f"peak RSS in this phase {s['peak_rss_mb']} MB")
    print("  verified counts: " + ", ".join(f"{k} {v['count']:,}{'' if v['ok'] else ' MISMATCH'}"
                                            for k, v in r["verified"].items()))
    print(f"  materialize {r['materialize_seconds']:.1f} s ({_rate(r['records'], r['materialize_seconds']) or 0:,} records/s "
          f"end to end); RSS baseline {r['baseline_rss_mb']} MB, peak {r['peak_rss_mb']} MB (pull phase "
          f"{r['pull_peak_rss_mb']} MB); sandbox process peak {r.get('sandbox_peak_rss_mb')} MB (not counted)")


def child(records: int, threads: int, latency_ms: float, stores: list[str], out: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--records", str(records), "--threads", str(threads),
           "--latency-ms", str(latency_ms), "--stores", ",".join(stores), "--json-out", str(out)]
    print(f"\n>>> {records:,} findings, {threads} thread(s), {latency_ms:.0f} ms latency, in a fresh process", flush=True)
    if subprocess.call(cmd) != 0 or not out.exists():
        raise SystemExit(f"the {records:,}-finding run failed")
    return json.loads(out.read_text())


def compare(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="secmetrics-bench-tenable-") as tmp:
        sizes = [] if args.latency_only else [
            child(n, args.threads, 0, list(STORES), Path(tmp) / f"{n}.json") for n in (100_000, 1_000_000)]
        serial = child(LATENCY_RECORDS, 1, LATENCY_MS, ["file"], Path(tmp) / "serial.json")
        concurrent = child(LATENCY_RECORDS, 8, LATENCY_MS, ["file"], Path(tmp) / "concurrent.json")
    print("\n== Tenable vulnerabilities: summary ==")
    if sizes:
        small, big = sizes
        for r in sizes:
            print(f"  {r['records']:>9,} findings: pull {r['pull']['records_per_s']:,} records/s, end to end "
                  f"{_rate(r['records'], r['materialize_seconds']):,} records/s, peak RSS {r['peak_rss_mb']} MB; stores "
                  + ", ".join(f"{k} {v['records_per_s'] or 0:,}/s" for k, v in r["store_figures"].items()))
        growth = (big["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"]
        print(f"  peak RSS at 1M: {big['peak_rss_mb']} MB (target < {TARGET_MB:.0f} MB): "
              f"{'OK' if big['peak_rss_mb'] < TARGET_MB else 'OVER TARGET'}")
        print(f"  1M vs 100k: {growth:+.1%} (target within {GROWTH_LIMIT:.0%}): "
              f"{'OK' if abs(growth) <= GROWTH_LIMIT else 'OVER TARGET'}")
    speedup = serial["pull"]["seconds"] / concurrent["pull"]["seconds"]
    print(f"  {LATENCY_RECORDS:,} findings in {serial['pull']['http_requests']} requests at {LATENCY_MS:.0f} ms latency: "
          f"1 thread {serial['pull']['seconds']:.2f} s, 8 threads {concurrent['pull']['seconds']:.2f} s -> "
          f"{speedup:.1f}x (target >= 4x): {'OK' if speedup >= 4 else 'UNDER TARGET'}")
    print(f"  benchmark wall time {time.perf_counter() - started:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, help="run one size in this process (default: the full comparison)")
    parser.add_argument("--threads", type=int, default=4, help="TIO_EXPORT_THREADS (default 4)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sandbox latency per request (default 0)")
    parser.add_argument("--findings-per-asset", type=int, default=FINDINGS_PER_ASSET, help=argparse.SUPPRESS)
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated subset of file,s3,postgres,duckdb")
    parser.add_argument("--latency-only", action="store_true", help="only the 50 ms latency comparison")
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.stores = [s for s in args.stores.split(",") if s]
    if set(args.stores) - set(STORES):
        parser.error(f"--stores takes {','.join(STORES)}")
    if args.records is not None and args.latency_ms and args.findings_per_asset == FINDINGS_PER_ASSET:
        args.findings_per_asset = 2  # 100-finding chunks: many round trips, so the latency is what is measured
    return run_once(args) if args.records is not None else compare(args)


if __name__ == "__main__":
    sys.exit(main())
