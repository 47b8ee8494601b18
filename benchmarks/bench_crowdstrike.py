#!/usr/bin/env python
"""Benchmark: Spotlight vulnerabilities from the sandbox through falconpy into all four stores, and host details.

Two parts, each measured in fresh processes (the sandbox, moto's S3 server and PostgreSQL in their own):

1. `crowdstrike_vulnerabilities` at 100,000 and 1,000,000 records (each size in its own process): records/s of the
   pull (API -> spool) and end to end, and the peak RSS of the collecting process. Targets: under 300 MB at 1M, and
   within 20% of the 100k figure (memory must not grow with the volume).
2. `crowdstrike_hosts` with 50 ms of latency on every request: the details fetched one batch at a time
   (FALCON_WORKERS=1) against concurrently (the default 8). Target: concurrent at least 4x faster.

    .venv/bin/python benchmarks/bench_crowdstrike.py                       # both parts, 100k + 1M
    .venv/bin/python benchmarks/bench_crowdstrike.py --sizes 20000 200000  # other sizes
    .venv/bin/python benchmarks/bench_crowdstrike.py --part hosts          # only the concurrency part

Exit status: 0 whether or not a target is met; 1 if a collection failed or a store holds the wrong count.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_snyk_stores as common  # noqa: E402  (its RSS sampler, phase clock, service helpers and reporting)

REPO = common.REPO
TOKEN = common.TOKEN
TENANCY = "bench"
TAG = "crowdstrike_vulnerabilities"
STORES = common.STORES
MiB = common.MiB


def start_sandbox(workdir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    port_file = workdir / f"sandbox-{uuid.uuid4().hex[:6]}.port"
    log_path = workdir / "sandbox.log"
    cmd = [sys.executable, "-m", "secmetrics_dagster.sandbox", "--port", "0", "--port-file", str(port_file),
           "--token", TOKEN, *flags]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            common.stop_process(proc)
            raise RuntimeError(f"the sandbox did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(port_file.read_text().strip())}"


# --------------------------------------------------------------------------- part 1: one size, this process


def run_vulnerabilities(args: argparse.Namespace) -> int:
    os.environ.update(common.AWS_ENV)
    import boto3
    import dagster as dg
    import duckdb
    import psycopg
    from psycopg import sql

    from secmetrics_dagster.collection.resource import CollectionResource
    from secmetrics_dagster.sources import crowdstrike as falcon_source
    from secmetrics_dagster.sources.crowdstrike import CrowdStrikeResource
    from secmetrics_dagster.stores import SnapshotIOManager, StoresResource
    from secmetrics_dagster_tests import services

    records = args.records
    hosts = max(1, min(50_000, records // 20))
    workdir = Path(tempfile.mkdtemp(prefix="secmetrics-bench-falcon-"))
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    bucket = f"secmetrics-bench-{uuid.uuid4().hex[:12]}"
    report: dict = {"records": records, "hosts": hosts, "spotlight_limit": args.spotlight_limit,
                    "duckdb_memory_limit": args.duckdb_memory_limit}
    sandbox = None
    try:
        sandbox, url = start_sandbox(workdir, "--crowdstrike-vulnerabilities", str(records),
                                     "--crowdstrike-hosts", str(hosts))
        with services.s3_server() as s3_url, services.postgres() as pg:
            s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
            s3.create_bucket(Bucket=bucket)
            stores = StoresResource(
                file_template=str(workdir / "data/source/%TAG/%TENANCY.json"), s3_bucket=bucket,
                s3_key="data/%TAG/%YYYY/%MM/%DD/%UUID.json", s3_backup="backup/%TAG/%TENANCY.json", s3_endpoint_url=s3_url,
                postgres_host=pg["host"], postgres_port=int(pg.get("port", 5432)), postgres_user=pg.get("user"),
                postgres_password=pg.get("password"), postgres_dbname=pg.get("dbname"), postgres_schema=schema,
                duckdb_path=str(workdir / "data/database.duckdb"), duckdb_memory_limit=args.duckdb_memory_limit,
            )
            resources = {
                "collection": CollectionResource(tenancy=TENANCY, spool_dir=str(workdir / "spool")),
                "stores": stores,
                "snapshot_io_manager": SnapshotIOManager(stores=stores),
                "crowdstrike": CrowdStrikeResource(client_id="sandbox-client", client_secret=TOKEN, base_url=url,
                                                   spotlight_limit=args.spotlight_limit),
            }
            instance = dg.DagsterInstance.ephemeral()
            try:
                report.update(_measure(dg, falcon_source, resources, instance))
                if report["failed"]:
                    print(report["failure"], file=sys.stderr)
                    return 1
                report["sandbox_peak_rss_mb"] = common.proc_hwm_mb(sandbox.pid)
                report["verified"] = _verify(stores, s3, pg, schema, records, duckdb, psycopg, sql)
            finally:
                with psycopg.connect(**pg, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                    for obj in page.get("Contents", []):
                        s3.delete_object(Bucket=bucket, Key=obj["Key"])
                s3.delete_bucket(Bucket=bucket)
    finally:
        if sandbox is not None:
            common.stop_process(sandbox)
        shutil.rmtree(workdir, ignore_errors=True)
    _print_size(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0 if all(v["ok"] for v in report["verified"].values()) else 1


def _measure(dg, falcon_source, resources: dict, instance) -> dict:
    import gc

    clock = common.PhaseClock()
    try:
        gc.collect()
        baseline = common.current_rss_mb()
        sampler = common.RssSampler()
        sampler.start()
        started = time.perf_counter()
        result = dg.materialize(falcon_source.assets, resources=resources, instance=instance, raise_on_error=False,
                                selection=[TAG], run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        wall = time.perf_counter() - started
        sampler.stop()
        peak = common.peak_rss_mb()
    finally:
        clock.restore()
    out = {"failed": not result.success, "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1),
           "materialize_seconds": round(wall, 2)}
    if not result.success:
        out["failure"] = common._failure_text(result)
        return out
    md = common._metadata(result, TAG)
    events = common._step_events(instance, result.run_id, TAG)
    pull_seconds = events["STEP_OUTPUT"] - events["STEP_START"]
    out["pull"] = {"seconds": round(pull_seconds, 2), "records_per_s": common._rate(md["records"], pull_seconds),
                   "requests": md.get("http_requests"), "retries": md.get("http_retries"),
                   "mb": round(md.get("http_bytes", 0) / MiB, 1)}
    out["pull_peak_mb"] = sampler.peak_between(events["STEP_START"], events["STEP_OUTPUT"])
    out["stores"] = {s: {"seconds": md.get(f"{s}_seconds"), "records_per_s": common._rate(md.get(f"{s}_records"),
                                                                                      md.get(f"{s}_seconds")),
                         "peak_mb": _phase_peak(sampler, clock, f"{s} store")}
                     for s in STORES}
    out["envelope_peak_mb"] = _phase_peak(sampler, clock, "envelope render")
    return out


def _phase_peak(sampler, clock, phase: str):
    window = clock.window(TAG, phase)
    peak = sampler.peak_between(*window) if window else None
    return round(peak, 1) if peak is not None else None


def _verify(stores, s3, pg: dict, schema: str, expected: int, duckdb, psycopg, sql) -> dict:
    path = Path(stores.file_template.replace("%TAG", TAG).replace("%TENANCY", TENANCY))
    lines = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(MiB):
            lines += chunk.count(b"\n")
    head = s3.head_object(Bucket=stores.s3_bucket, Key=f"backup/{TAG}/{TENANCY}.json")
    with psycopg.connect(**pg) as conn:
        in_pg = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, TAG))).fetchone()[0]
    con = duckdb.connect(stores.duckdb_path, read_only=True)
    try:
        in_duck = con.execute(f'SELECT count(*) FROM "{TAG}"').fetchone()[0]
    finally:
        con.close()
    counts = {"file": lines - 2, "s3": int(head["Metadata"]["records"]), "postgres": in_pg, "duckdb": in_duck}
    return {store: {"count": n, "ok": n == expected} for store, n in counts.items()}


def _print_size(r: dict) -> None:
    pull = r["pull"]
    print(f"\n== {TAG}: {r['records']:,} records ({r['hosts']:,} hosts, page {r['spotlight_limit']}) "
          f"-> file, S3, PostgreSQL, DuckDB (memory limit {r['duckdb_memory_limit']}) ==")
    print(f"  pull (API -> spool): {pull['seconds']:.1f} s, {common._fmt_rate(pull['records_per_s'])} records/s, "
          f"{pull['requests']} requests, {pull['mb']:.0f} MB")
    for store, s in r["stores"].items():
        print(f"  {store:<8} store: {s['seconds']} s, {common._fmt_rate(s['records_per_s'])} records/s, "
              f"peak RSS in it {s['peak_mb'] or 0:.1f} MB")
    print(f"  envelope render: peak RSS in it {r['envelope_peak_mb'] or 0:.1f} MB")
    print(f"  end to end: {r['materialize_seconds']:.1f} s "
          f"({common._fmt_rate(common._rate(r['records'], r['materialize_seconds']))} records/s)")
    print(f"  RSS before {r['baseline_rss_mb']:.1f} MB, peak {r['peak_rss_mb']:.1f} MB "
          f"(during the pull {r['pull_peak_mb'] or 0:.1f} MB); sandbox process peak {r.get('sandbox_peak_rss_mb') or 0:.1f} MB")
    print("  verified: " + ", ".join(f"{k} {v['count']:,}{'' if v['ok'] else ' MISMATCH'}" for k, v in r["verified"].items()))


def compare_sizes(args: argparse.Namespace) -> tuple[int, list[dict]]:
    reports = []
    with tempfile.TemporaryDirectory(prefix="secmetrics-bench-falcon-") as tmp:
        for size in args.sizes:
            out = Path(tmp) / f"{size}.json"
            print(f"\n>>> {size:,} Spotlight vulnerabilities in a fresh process", flush=True)
            rc = subprocess.call([sys.executable, str(Path(__file__).resolve()), "--records", str(size),
                                  "--spotlight-limit", str(args.spotlight_limit), "--json-out", str(out),
                                  "--duckdb-memory-limit", args.duckdb_memory_limit])
            if rc != 0 or not out.exists():
                print(f"the {size:,}-record run failed (exit {rc})", file=sys.stderr)
                return 1, reports
            reports.append(json.loads(out.read_text()))
    return 0, reports


# -------------------------------------------------------------------- part 2: host details, concurrency


def run_hosts(args: argparse.Namespace) -> dict:
    from secmetrics_dagster.collection import RunContext, Spool
    from secmetrics_dagster.collection.resource import CollectionResource
    from secmetrics_dagster.sources.base import Pull
    from secmetrics_dagster.sources.crowdstrike import CrowdStrikeResource, pull_hosts

    workdir = Path(tempfile.mkdtemp(prefix="secmetrics-bench-hosts-"))
    sandbox = None
    timings = {}
    try:
        sandbox, url = start_sandbox(workdir, "--latency-ms", str(args.latency_ms), "--crowdstrike-hosts", str(args.hosts))
        settings = CollectionResource(spool_dir=str(workdir)).http_settings()
        # An untimed pass first: the sandbox caches the host records it renders, so both timed runs find it warm.
        for workers in (args.workers, 1, args.workers):
            resource = CrowdStrikeResource(client_id="sandbox-client", client_secret=TOKEN, base_url=url,
                                           details_batch=args.details_batch, workers=workers)
            spool = Spool(RunContext("crowdstrike_hosts", TENANCY), workdir / "spool")
            client = resource.session(settings, logging.getLogger("bench"))
            started = time.perf_counter()
            with client:
                pull_hosts(Pull(resource, client, spool, {}, logging.getLogger("bench")))
            seconds = time.perf_counter() - started
            snapshot = spool.close()
            snapshot.discard()
            if snapshot.records != args.hosts:
                raise RuntimeError(f"{snapshot.records} hosts arrived, expected {args.hosts}")
            timings[workers] = {"seconds": round(seconds, 2), "requests": client.stats.requests}
    finally:
        if sandbox is not None:
            common.stop_process(sandbox)
        shutil.rmtree(workdir, ignore_errors=True)
    one, many = timings[1]["seconds"], timings[args.workers]["seconds"]
    batches = -(-args.hosts // args.details_batch)
    print(f"\n== crowdstrike_hosts: {args.hosts:,} hosts in {batches} detail batches of {args.details_batch}, "
          f"{args.latency_ms:.0f} ms latency per request ==")
    print(f"  one batch at a time (FALCON_WORKERS=1): {one:.2f} s, {timings[1]['requests']} requests")
    print(f"  concurrent (FALCON_WORKERS={args.workers}):   {many:.2f} s, {timings[args.workers]['requests']} requests")
    speedup = one / many if many else float("inf")
    print(f"  speed-up {speedup:.1f}x (target >= 4x): {'OK' if speedup >= 4 else 'UNDER TARGET'}")
    return {"one": one, "many": many, "speedup": speedup}


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "vulnerabilities", "hosts"), default="all")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="Spotlight volumes, each in its own process (default 100000 1000000)")
    parser.add_argument("--spotlight-limit", type=int, default=1000, help="Spotlight page size (default 1000, as shipped)")
    parser.add_argument("--target-mb", type=float, default=300.0)
    parser.add_argument("--duckdb-memory-limit", default="64MB",
                        help="the DuckDB store's memory limit (STORE_DUCKDB_MEMORY_LIMIT; default 64MB, as shipped)")
    parser.add_argument("--hosts", type=int, default=8000, help="hosts for the concurrency part (default 8000)")
    parser.add_argument("--details-batch", type=int, default=100, help="ids per details request (default 100, as shipped)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent detail requests (default 8, as shipped)")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)  # one size, in this process
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.records:
        return run_vulnerabilities(args)

    started = time.perf_counter()
    rc, reports, hosts = 0, [], None
    if args.part in ("all", "vulnerabilities"):
        rc, reports = compare_sizes(args)
    if args.part in ("all", "hosts"):
        hosts = run_hosts(args)
    print("\n== summary ==")
    for r in reports:
        print(f"  {r['records']:>9,} vulnerabilities: pull {common._fmt_rate(r['pull']['records_per_s'])} records/s, "
              f"end to end {common._fmt_rate(common._rate(r['records'], r['materialize_seconds']))} records/s, "
              f"peak RSS {r['peak_rss_mb']:.1f} MB")
    if len(reports) >= 2:
        small, big = reports[0], reports[-1]
        growth = (big["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"] * 100
        print(f"  peak RSS at {big['records']:,}: {big['peak_rss_mb']:.1f} MB (target < {args.target_mb:.0f}): "
              f"{'OK' if big['peak_rss_mb'] < args.target_mb else 'OVER TARGET'}; {growth:+.1f}% against "
              f"{small['records']:,} (target within 20%): {'OK' if abs(growth) <= 20 else 'OVER TARGET'}")
    if hosts:
        print(f"  host details with {args.latency_ms:.0f} ms latency: {hosts['one']:.2f} s one at a time, "
              f"{hosts['many']:.2f} s concurrent, {hosts['speedup']:.1f}x (target >= 4x)")
    print(f"  benchmark wall time {time.perf_counter() - started:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
