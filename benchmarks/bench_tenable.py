#!/usr/bin/env python
"""Benchmark: Tenable.io vulnerability exports from the sandbox through pyTenable into file, S3, PostgreSQL and DuckDB.

    .venv/bin/python benchmarks/bench_tenable.py                     # 100k and 1M findings, each in its own process,
                                                                     # then 50 ms latency: 1 download thread vs 8
    .venv/bin/python benchmarks/bench_tenable.py --records 200000    # one size, this process
    .venv/bin/python benchmarks/bench_tenable.py --latency-only      # only the concurrency comparison

Prints records/s of the pull (export -> spool) and of each store, and the peak RSS of the collecting process
(dagster.materialize runs here), against a 300 MB target at 1M that must also stay within 20% of the 100k figure.
The sandbox runs in its own process (not counted), as does moto's S3 server; PostgreSQL and S3 come from
secmetrics_dagster_tests/services.py exactly as in bench_snyk_stores.py, through the shared helpers in common.py.
Each finding's asset has 50 findings, so a chunk (TIO_VULN_NUM_ASSETS=50 assets) holds 2,500 findings.
Exit status: 1 if a collection failed or a store holds the wrong count, else 0 (targets missed or not).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import common  # the RSS sampler, phase clock, sandbox, stores, one measured run and the checks
from common import GROWTH_LIMIT, STORES, TOKEN, MiB, _rate

TAG = "tenable_vulnerabilities"
FINDINGS_PER_ASSET = 50
TARGET_MB = common.DEFAULT_TARGET_MB
LATENCY_RECORDS = 10_000  # 200 chunks of 50 findings: round trips, not the sandbox's CPU, dominate
LATENCY_MS = 50.0


def sandbox_args(records: int, findings_per_asset: int, latency_ms: float) -> list[str]:
    assets = max(1, records // findings_per_asset)
    return [
        "--latency-ms",
        str(latency_ms),
        "--tenable-assets",
        str(assets),
        "--tenable-vulnerabilities",
        str(records),
        "--tenable-findings",
        "0",
        "--tenable-was",
        "0",
        "--tenable-status-polls",
        "3",
    ]


def run_once(args: argparse.Namespace) -> int:
    """One size in this process: sandbox -> tenable_vulnerabilities -> the stores; figures as JSON and text."""
    common.load()
    importlib.import_module(
        "tenable.io"
    )  # as the step processes' forkserver preloads it: time the pull, not the import

    from secmetrics_dagster.assets import build_assets
    from secmetrics_dagster.sources import tenable as tenable_source
    from secmetrics_dagster.sources.tenable import TenableResource

    report: dict = {
        "records": args.records,
        "threads": args.threads,
        "latency_ms": args.latency_ms,
        "stores": list(args.stores),
    }
    with common.bench(
        "secmetrics-bench-tenable-", sandbox_args(args.records, args.findings_per_asset, args.latency_ms), args.stores
    ) as run:
        tenable = TenableResource(
            access_key=TOKEN,
            secret_key=TOKEN,
            url=run.url,
            export_threads=args.threads,
            export_poll_seconds=0.05,
            vuln_num_assets=50,
        )
        if not common.collect(
            run,
            report,
            vendor={"tenable": tenable},
            assets=build_assets([tenable_source.SOURCE]),
            selection=[TAG],
            tag=TAG,
            expected=args.records,
            figures=_figures,
        ):
            return 1
    return common.finish(report, print_report, args.json_out)


def _figures(m: common.Measurement) -> dict:
    md = m.md
    out = {
        "pull": {
            "seconds": round(m.pull_seconds, 2),
            "records": md["records"],
            "records_per_s": _rate(md["records"], m.pull_seconds),
            "http_requests": md.get("http_requests"),
            "http_retries": md.get("http_retries"),
            "http_mb": round(md.get("http_bytes", 0) / MiB, 1),
        },
        "pull_peak_rss_mb": round(m.sampler.peak_between(*m.pull_window) or 0, 1),
        "store_figures": {},
    }
    for store in STORES:
        if md.get(f"{store}_records") is None:
            continue
        phase_peak = m.phase_peak(f"{store} store")
        out["store_figures"][store] = {
            "seconds": md.get(f"{store}_seconds"),
            "mb": round(md.get(f"{store}_bytes", 0) / MiB, 1),
            "records_per_s": _rate(md.get(f"{store}_records"), md.get(f"{store}_seconds")),
            "peak_rss_mb": round(phase_peak, 1) if phase_peak else None,
        }
    return out


def print_report(r: dict) -> None:
    pull = r["pull"]
    print(
        f"\n== {TAG}: {r['records']:,} findings, {r['threads']} download thread(s), {r['latency_ms']:.0f} ms latency "
        f"-> {', '.join(r['stores'])} =="
    )
    print(
        f"  pull (export -> spool): {pull['seconds']:.2f} s, {pull['records_per_s'] or 0:,} records/s, "
        f"{pull['http_requests']} requests, {pull['http_mb']} MB"
    )
    for store, s in r["store_figures"].items():
        print(
            f"  {store:<8} store: {s['seconds']:.2f} s, {s['records_per_s'] or 0:,} records/s, {s['mb']} MB, "
            f"peak RSS in this phase {s['peak_rss_mb']} MB"
        )
    print("  verified counts: " + common.verified_text(r["verified"]))
    print(
        f"  materialize {r['materialize_seconds']:.1f} s ({_rate(r['records'], r['materialize_seconds']) or 0:,} records/s "
        f"end to end); RSS baseline {r['baseline_rss_mb']} MB, peak {r['peak_rss_mb']} MB (pull phase "
        f"{r['pull_peak_rss_mb']} MB); sandbox process peak {r.get('sandbox_peak_rss_mb')} MB (not counted)"
    )


def child(records: int, threads: int, latency_ms: float, stores: list[str]) -> dict:
    report = common.child(
        __file__,
        [
            "--records",
            str(records),
            "--threads",
            str(threads),
            "--latency-ms",
            str(latency_ms),
            "--stores",
            ",".join(stores),
        ],
        f"{records:,} findings, {threads} thread(s), {latency_ms:.0f} ms latency,",
        f"{records:,}-finding",
    )
    if report is None:
        raise SystemExit(1)
    return report


def compare(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    sizes = [] if args.latency_only else [child(n, args.threads, 0, list(STORES)) for n in (100_000, 1_000_000)]
    serial = child(LATENCY_RECORDS, 1, LATENCY_MS, ["file"])
    concurrent = child(LATENCY_RECORDS, 8, LATENCY_MS, ["file"])
    print("\n== Tenable vulnerabilities: summary ==")
    if sizes:
        for r in sizes:
            print(
                f"  {r['records']:>9,} findings: pull {r['pull']['records_per_s']:,} records/s, end to end "
                f"{_rate(r['records'], r['materialize_seconds']):,} records/s, peak RSS {r['peak_rss_mb']} MB; stores "
                + ", ".join(f"{k} {v['records_per_s'] or 0:,}/s" for k, v in r["store_figures"].items())
            )
        check = common.size_check(sizes, TARGET_MB, GROWTH_LIMIT)
        print(f"  peak RSS at 1M: {check.big['peak_rss_mb']} MB (target < {TARGET_MB:.0f} MB): {check.peak_ok}")
        print(f"  1M vs 100k: {check.growth:+.1%} (target within {GROWTH_LIMIT:.0%}): {check.growth_ok}")
    speedup = serial["pull"]["seconds"] / concurrent["pull"]["seconds"]
    print(
        f"  {LATENCY_RECORDS:,} findings in {serial['pull']['http_requests']} requests at {LATENCY_MS:.0f} ms latency: "
        f"1 thread {serial['pull']['seconds']:.2f} s, 8 threads {concurrent['pull']['seconds']:.2f} s -> "
        f"{speedup:.1f}x (target >= 4x): {common.ok(speedup >= 4, 'UNDER TARGET')}"
    )
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
        args.findings_per_asset = 1  # 50-finding chunks (num_assets=50): the latency is what is measured
    return run_once(args) if args.records is not None else compare(args)


if __name__ == "__main__":
    sys.exit(main())
