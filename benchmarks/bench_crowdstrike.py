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
import importlib
import logging
import sys
import time

import common  # the RSS sampler, phase clock, sandbox, stores, one measured run and the checks
from common import STORES, TENANCY, TOKEN, MiB, _fmt_rate, _rate

TAG = "crowdstrike_vulnerabilities"


# --------------------------------------------------------------------------- part 1: one size, this process


def run_vulnerabilities(args: argparse.Namespace) -> int:
    common.load()
    importlib.import_module("falconpy")  # as the step processes' forkserver preloads it: time the pull, not the import

    from secmetrics_dagster.assets import build_assets
    from secmetrics_dagster.sources import crowdstrike as falcon_source
    from secmetrics_dagster.sources.crowdstrike import CrowdStrikeResource
    from secmetrics_dagster.stores import StoresResource

    args.duckdb_memory_limit = args.duckdb_memory_limit or StoresResource().duckdb_memory_limit

    records = args.records
    hosts = max(1, min(50_000, records // 20))
    report: dict = {
        "records": records,
        "hosts": hosts,
        "spotlight_limit": args.spotlight_limit,
        "duckdb_memory_limit": args.duckdb_memory_limit,
    }
    sandbox_args = ["--crowdstrike-vulnerabilities", str(records), "--crowdstrike-hosts", str(hosts)]
    with common.bench("secmetrics-bench-falcon-", sandbox_args, duckdb_memory_limit=args.duckdb_memory_limit) as run:
        falcon = CrowdStrikeResource(
            client_id="sandbox-client", client_secret=TOKEN, base_url=run.url, spotlight_limit=args.spotlight_limit
        )
        if not common.collect(
            run,
            report,
            vendor={"crowdstrike": falcon},
            assets=build_assets([falcon_source.SOURCE]),
            selection=[TAG],
            tag=TAG,
            expected=records,
            figures=_figures,
        ):
            return 1
    return common.finish(report, _print_size, args.json_out)


def _figures(m: common.Measurement) -> dict:
    md = m.md
    return {
        "pull": {
            "seconds": round(m.pull_seconds, 2),
            "records_per_s": _rate(md["records"], m.pull_seconds),
            "requests": md.get("http_requests"),
            "retries": md.get("http_retries"),
            "mb": round(md.get("http_bytes", 0) / MiB, 1),
        },
        "pull_peak_mb": m.sampler.peak_between(*m.pull_window),
        "stores": {
            s: {
                "seconds": md.get(f"{s}_seconds"),
                "records_per_s": _rate(md.get(f"{s}_records"), md.get(f"{s}_seconds")),
                "peak_mb": _round(m.phase_peak(f"{s} store")),
            }
            for s in STORES
        },
        "envelope_peak_mb": _round(m.phase_peak("envelope render")),
    }


def _round(peak: float | None) -> float | None:
    return round(peak, 1) if peak is not None else None


def _print_size(r: dict) -> None:
    pull = r["pull"]
    print(
        f"\n== {TAG}: {r['records']:,} records ({r['hosts']:,} hosts, page {r['spotlight_limit']}) "
        f"-> file, S3, PostgreSQL, DuckDB (memory limit {r['duckdb_memory_limit']}) =="
    )
    print(
        f"  pull (API -> spool): {pull['seconds']:.1f} s, {_fmt_rate(pull['records_per_s'])} records/s, "
        f"{pull['requests']} requests, {pull['mb']:.0f} MB"
    )
    for store, s in r["stores"].items():
        print(
            f"  {store:<8} store: {s['seconds']} s, {_fmt_rate(s['records_per_s'])} records/s, "
            f"peak RSS in it {s['peak_mb'] or 0:.1f} MB"
        )
    print(f"  envelope render: peak RSS in it {r['envelope_peak_mb'] or 0:.1f} MB")
    print(
        f"  end to end: {r['materialize_seconds']:.1f} s "
        f"({_fmt_rate(_rate(r['records'], r['materialize_seconds']))} records/s)"
    )
    print(
        f"  RSS before {r['baseline_rss_mb']:.1f} MB, peak {r['peak_rss_mb']:.1f} MB "
        f"(during the pull {r['pull_peak_mb'] or 0:.1f} MB); sandbox process peak {r.get('sandbox_peak_rss_mb') or 0:.1f} MB"
    )
    print("  verified: " + common.verified_text(r["verified"]))


def compare_sizes(args: argparse.Namespace) -> tuple[int, list[dict]]:
    reports = []
    for size in args.sizes:
        limit = ["--duckdb-memory-limit", args.duckdb_memory_limit] if args.duckdb_memory_limit else []
        report = common.child(
            __file__,
            ["--records", str(size), "--spotlight-limit", str(args.spotlight_limit), *limit],
            f"{size:,} Spotlight vulnerabilities",
            f"{size:,}-record",
        )
        if report is None:
            return 1, reports
        reports.append(report)
    return 0, reports


# -------------------------------------------------------------------- part 2: host details, concurrency


def run_hosts(args: argparse.Namespace) -> dict:
    from secmetrics_dagster.collection import RunContext, Spool
    from secmetrics_dagster.collection.resource import CollectionResource
    from secmetrics_dagster.sources.base import Pull
    from secmetrics_dagster.sources.crowdstrike import CrowdStrikeResource, pull_hosts

    timings = {}
    sandbox_args = ["--latency-ms", str(args.latency_ms), "--crowdstrike-hosts", str(args.hosts)]
    with common.scratch_dir("secmetrics-bench-hosts-") as workdir, common.sandbox(workdir, sandbox_args) as (_, url):
        settings = CollectionResource(spool_dir=str(workdir)).http_settings()
        # An untimed pass first: the sandbox caches the host records it renders, so both timed runs find it warm.
        for workers in (args.workers, 1, args.workers):
            resource = CrowdStrikeResource(
                client_id="sandbox-client",
                client_secret=TOKEN,
                base_url=url,
                details_batch=args.details_batch,
                workers=workers,
            )
            spool = Spool(RunContext("crowdstrike_hosts", TENANCY), workdir / "spool")
            client = resource.client(settings, logging.getLogger("bench"))
            started = time.perf_counter()
            with client:
                pull_hosts(Pull(resource, client, spool, {}, logging.getLogger("bench")))
            seconds = time.perf_counter() - started
            snapshot = spool.close()
            snapshot.discard()
            if snapshot.records != args.hosts:
                raise RuntimeError(f"{snapshot.records} hosts arrived, expected {args.hosts}")
            timings[workers] = {"seconds": round(seconds, 2), "requests": client.stats.requests}
    one, many = timings[1]["seconds"], timings[args.workers]["seconds"]
    batches = -(-args.hosts // args.details_batch)
    print(
        f"\n== crowdstrike_hosts: {args.hosts:,} hosts in {batches} detail batches of {args.details_batch}, "
        f"{args.latency_ms:.0f} ms latency per request =="
    )
    print(f"  one batch at a time (FALCON_WORKERS=1): {one:.2f} s, {timings[1]['requests']} requests")
    print(f"  concurrent (FALCON_WORKERS={args.workers}):   {many:.2f} s, {timings[args.workers]['requests']} requests")
    speedup = one / many if many else float("inf")
    print(f"  speed-up {speedup:.1f}x (target >= 4x): {common.ok(speedup >= 4, 'UNDER TARGET')}")
    return {"one": one, "many": many, "speedup": speedup}


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "vulnerabilities", "hosts"), default="all")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="Spotlight volumes, each in its own process (default 100000 1000000)",
    )
    parser.add_argument(
        "--spotlight-limit", type=int, default=1000, help="Spotlight page size (default 1000, as shipped)"
    )
    parser.add_argument("--target-mb", type=float, default=common.DEFAULT_TARGET_MB)
    parser.add_argument(
        "--duckdb-memory-limit",
        default=None,
        help="the DuckDB store's memory limit (STORE_DUCKDB_MEMORY_LIMIT; default: as shipped)",
    )
    parser.add_argument("--hosts", type=int, default=8000, help="hosts for the concurrency part (default 8000)")
    parser.add_argument(
        "--details-batch", type=int, default=100, help="ids per details request (default 100, as shipped)"
    )
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
        print(
            f"  {r['records']:>9,} vulnerabilities: pull {_fmt_rate(r['pull']['records_per_s'])} records/s, "
            f"end to end {_fmt_rate(_rate(r['records'], r['materialize_seconds']))} records/s, "
            f"peak RSS {r['peak_rss_mb']:.1f} MB"
        )
    if len(reports) >= 2:
        check = common.size_check(reports, args.target_mb)
        print(
            f"  peak RSS at {check.big['records']:,}: {check.big['peak_rss_mb']:.1f} MB (target < {args.target_mb:.0f}): "
            f"{check.peak_ok}; {check.growth * 100:+.1f}% against "
            f"{check.small['records']:,} (target within 20%): {check.growth_ok}"
        )
    if hosts:
        print(
            f"  host details with {args.latency_ms:.0f} ms latency: {hosts['one']:.2f} s one at a time, "
            f"{hosts['many']:.2f} s concurrent, {hosts['speedup']:.1f}x (target >= 4x)"
        )
    print(f"  benchmark wall time {time.perf_counter() - started:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
