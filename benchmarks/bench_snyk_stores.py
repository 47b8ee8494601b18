#!/usr/bin/env python
"""Benchmark: N Snyk sandbox issues through the real collector into file, S3, PostgreSQL and DuckDB.

Prints records/s for the pull (API -> spool) and for each store, wall time, and the peak RSS of the
process that runs the collection (dagster.materialize runs in this process), against a 300 MB target.
Then the store phase (fan_out: the envelope render and every store, written at the same time) against the
slowest single store: after the run, the same upload is written again to each store alone, one at a time, from
a hard link of the spool (outside every other figure; --no-solo skips it); target: within 1.25x.

    .venv/bin/python benchmarks/bench_snyk_stores.py                      # 200,000 records
    .venv/bin/python benchmarks/bench_snyk_stores.py --records 20000 --page-limit 50
    .venv/bin/python benchmarks/bench_snyk_stores.py --compare            # 20,000 vs 200,000, one process each
    .venv/bin/python benchmarks/bench_snyk_stores.py --records 1000000 --no-solo   # end to end at 1M

The sandbox runs in its own process (its memory is not counted); so does moto's S3 server. PostgreSQL is the
one on 127.0.0.1:5432 when it answers, else one the test services start. A fresh bucket, a fresh schema
(dropped at the end) and a temp dir (file store, DuckDB, spool; removed at the end) keep runs independent.
Exit status: 0 whether or not the target is met; 1 if the collection failed or a store holds the wrong count.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from contextlib import contextmanager

import common
from common import STORES, TOKEN, MiB, _fmt_rate, _rate, verdict

from secmetrics_dagster.stores.verify import stores_written

TAG = "snyk_issues"
PHASE_TARGET = 1.25  # the store phase within 1.25x of the slowest single store


@contextmanager
def duckdb_settings(settings: list[str]):
    """WHAT-IF only: run `SET name = value` on the DuckDB store's write connection (a candidate fix); undone after."""
    from secmetrics_dagster.stores import DuckDBStore

    original = DuckDBStore.connect

    def connect(self, read_only: bool = False, **kwargs):
        con = original(self, read_only=read_only, **kwargs)
        if not read_only:
            for item in settings:
                name, value = item.split("=", 1)
                con.execute(f"SET {name} = '{value}'")
        return con

    if settings:
        DuckDBStore.connect = connect
    try:
        yield
    finally:
        DuckDBStore.connect = original


# ------------------------------------------------------------------------------------------- one run


def run_once(args: argparse.Namespace) -> int:
    script_start = time.perf_counter()

    t = time.perf_counter()
    common.load()
    from secmetrics_dagster.assets import build_assets
    from secmetrics_dagster.sources import snyk as snyk_source
    from secmetrics_dagster.sources.snyk import SnykResource

    import_seconds = time.perf_counter() - t

    orgs = 2
    per_org = args.records // orgs
    records = per_org * orgs
    if records != args.records:
        print(f"note: {args.records} records rounded down to {records} (2 orgs x {per_org} issues)")

    report: dict = {"records": records, "page_limit": args.page_limit, "target_mb": args.target_mb}
    t = time.perf_counter()
    sandbox_args = [
        "--snyk-orgs",
        str(orgs),
        "--snyk-issues-per-org",
        str(per_org),
        "--snyk-projects-per-org",
        "25",
        "--snyk-members-per-org",
        "2",
        "--snyk-rate-limit",
        "0",  # unlimited: this measures the stores and the pull, not the quota
    ]
    with common.bench("secmetrics-bench-", sandbox_args) as run:
        services_seconds = time.perf_counter() - t
        # The sandbox has no rate limit here: pace at the setting's ceiling, so the figures are the stores' and
        # the pull's own, not Snyk's 1,620 requests a minute (benchmarks/bench_fanout.py measures that).
        snyk = SnykResource(
            token=TOKEN,
            endpoint=run.url,
            page_limit=args.page_limit,
            requests_per_minute=100_000,
            **({"fanout_workers": args.fanout_workers} if args.fanout_workers else {}),
        )
        with duckdb_settings(args.duckdb_set):
            if not common.collect(
                run,
                report,
                vendor={"snyk": snyk},
                assets=build_assets([snyk_source.SOURCE]),
                selection=["snyk_organizations", TAG],
                tag=TAG,
                expected=records,
                figures=lambda m: _figures(m, args),
                solo=not args.no_solo,
            ):
                return 1

    report["import_seconds"] = round(import_seconds, 2)
    report["services_seconds"] = round(services_seconds, 2)
    report["script_seconds"] = round(time.perf_counter() - script_start, 2)
    return common.finish(report, print_report, args.json_out)


def _figures(m: common.Measurement, args: argparse.Namespace) -> dict:
    md, events = m.md, m.events
    out = {
        "peak_before_run_mb": round(m.baseline_peak, 1),
        "sampled_peak_mb": round(max((r for _, r in m.sampler.samples), default=0.0), 1),
    }
    step_start, step_output = m.pull_window
    handled = events.get("HANDLED_OUTPUT") or events["ASSET_MATERIALIZATION"]
    pull_seconds = m.pull_seconds
    out["pull"] = {
        "seconds": round(pull_seconds, 3),
        "records": md["records"],
        "records_per_s": _rate(md["records"], pull_seconds),
        "http_requests": md.get("http_requests"),
        "http_retries": md.get("http_retries"),
        "http_mb": round(md.get("http_bytes", 0) / MiB, 1),
        "collector_cpu_seconds": round(cpu, 2) if (cpu := m.sampler.cpu_between(step_start, step_output)) else None,
    }
    out["stores"] = {}
    written = stores_written(md)  # the materialization's one `stores` table
    for store in STORES:
        row = written.get(store, {})
        seconds = row.get("seconds")
        out["stores"][store] = {
            "seconds": seconds,
            "records": row.get("records"),
            "mb": round((row.get("bytes") or 0) / MiB, 1),
            "records_per_s": _rate(row.get("records"), seconds),
        }
    envelope = m.window("envelope render")
    envelope_seconds = (envelope[1] - envelope[0]) if envelope else None
    out["envelope"] = {
        "seconds": round(envelope_seconds, 3) if envelope_seconds is not None else None,
        "records_per_s": _rate(md["records"], envelope_seconds),
    }
    out["handle_output_seconds"] = round(handled - step_output, 3)
    # The store phase: fan_out, from the envelope render to the last store's end; and the stores' own span.
    phase = m.window("store phase")
    out["store_phase_seconds"] = round(phase[1] - phase[0], 3) if phase else None
    windows = [w for store in STORES if (w := m.window(f"{store} store"))]
    out["stores_span_seconds"] = round(max(b for _, b in windows) - min(a for a, _ in windows), 3) if windows else None
    out["duckdb_settings"] = args.duckdb_set or []

    # Where the peak happened: the pull from the event log, the envelope and each store from their own clocks.
    phases = [
        ("dagster setup + snyk_organizations", m.t0, step_start),
        ("pull (API -> spool)", step_start, step_output),
    ]
    last_end = step_output
    for name in ["envelope render"] + [f"{store} store" for store in STORES]:
        window = m.window(name)
        if window:
            phases.append((name, *window))
            last_end = max(last_end, window[1])
    phases.append(("after the stores", last_end, m.t1 + 1))
    out["phase_peaks_mb"] = {
        name: (round(p, 1) if (p := m.sampler.peak_between(a, b)) is not None else None) for name, a, b in phases
    }
    return out


# ---------------------------------------------------------------------------------------- reporting


def _print_table(rows: list, left_first: bool) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(
            "  "
            + "  ".join(
                c.ljust(w) if j == 0 and left_first else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))
            )
        )
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))


def print_report(r: dict) -> None:
    print()
    print(
        f"== snyk_issues: {r['records']:,} records (2 orgs, page limit {r['page_limit']}) -> file, S3, PostgreSQL, DuckDB =="
    )
    if r.get("duckdb_settings"):
        print(
            f"WHAT-IF: the DuckDB store's connection ran SET {', '.join(r['duckdb_settings'])} "
            "(the store does not do this today)"
        )
    print(
        f"RSS after imports, right before materialize: {r['baseline_rss_mb']:.1f} MB "
        f"(peak so far {r['peak_before_run_mb']:.1f} MB)"
    )
    rows = [("stage", "seconds", "records/s", "MB moved", "peak RSS MB in phase (sampled)")]
    pull = r["pull"]
    phase = r["phase_peaks_mb"]

    def p(name):
        v = phase.get(name)
        return f"{v:.1f}" if v is not None else "-"

    rows.append(
        (
            "pull (API -> spool)",
            f"{pull['seconds']:.2f}",
            _fmt_rate(pull["records_per_s"]),
            f"{pull['http_mb']:.1f}",
            p("pull (API -> spool)"),
        )
    )
    env = r["envelope"]
    rows.append(
        (
            "envelope render",
            f"{env['seconds']:.2f}" if env["seconds"] is not None else "-",
            _fmt_rate(env["records_per_s"]),
            "",
            p("envelope render"),
        )
    )
    for store, s in r["stores"].items():
        rows.append(
            (
                f"{store} store",
                f"{s['seconds']:.2f}" if s["seconds"] is not None else "-",
                _fmt_rate(s["records_per_s"]),
                f"{s['mb']:.1f}",
                p(f"{store} store"),
            )
        )
    _print_table(rows, left_first=True)
    print(
        "  (store seconds are each store's own timer, as in the asset metadata; the envelope file is rendered "
        "once and shipped by the file and S3 stores)"
    )
    print(f"  HTTP: {pull['http_requests']} requests, {pull['http_retries']} retries")
    print_store_phase(r)
    print(
        f"  peak RSS in the other phases: dagster setup + snyk_organizations {p('dagster setup + snyk_organizations')} MB, "
        f"after the stores {p('after the stores')} MB"
    )
    print("verified counts: " + common.verified_text(r["verified"]))
    if r.get("sandbox_peak_rss_mb"):
        print(f"sandbox process peak RSS (not counted): {r['sandbox_peak_rss_mb']:.1f} MB")
    if r.get("sandbox_cpu_seconds") is not None:
        # Against the pull's wall time: near it, the pull waits on the sandbox, not on the collector.
        print(f"sandbox process CPU: {r['sandbox_cpu_seconds']:.2f} s (serving every request of the run)")
    if r["pull"].get("collector_cpu_seconds") is not None:
        print(f"collector CPU during the pull (this process, every thread): {r['pull']['collector_cpu_seconds']:.2f} s")
    print(
        f"wall time: materialize {r['materialize_seconds']:.2f} s "
        f"({_fmt_rate(_rate(r['records'], r['materialize_seconds']))} records/s end to end); "
        f"script total {r['script_seconds']:.2f} s (imports {r['import_seconds']:.2f} s, "
        f"services {r['services_seconds']:.2f} s)"
    )
    print(f"peak RSS growth during materialize: +{r['peak_rss_mb'] - r['baseline_rss_mb']:.1f} MB over the baseline")
    print(verdict(r["peak_rss_mb"], r["target_mb"]))


def print_store_phase(r: dict) -> None:
    """The store phase against the slowest single store written alone (target: within 1.25x)."""
    phase, span = r.get("store_phase_seconds"), r.get("stores_span_seconds")
    if phase is None:
        return
    print(
        f"store phase (fan_out: envelope render + every store): {phase:.2f} s; "
        f"first store start to last store end: {span:.2f} s"
    )
    solo = r.get("solo_seconds")
    if not solo:
        print("  (single-store times not measured: --no-solo)")
        return
    slowest = max(solo, key=solo.get)
    print(
        "single store alone (same upload, written again afterwards, one store at a time): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in solo.items())
        + f" (sum {sum(solo.values()):.2f} s)"
    )
    ratio = phase / solo[slowest] if solo[slowest] else float("inf")
    print(
        f"store phase / slowest single store ({slowest} {solo[slowest]:.2f} s): {ratio:.2f}x "
        f"(target <= {PHASE_TARGET:.2f}x): {common.ok(ratio <= PHASE_TARGET, 'OVER TARGET')}"
    )
    cpu = r.get("solo_cpu") or {}
    if cpu:
        # What the stores cost in CPU, wherever it is spent (this process, PostgreSQL, moto, DuckDB's threads): no
        # schedule of them on this machine's cores finishes before busy / cores, nor before this process's own CPU
        # (one interpreter: the GIL runs the Python parts of every store one at a time).
        cores = os.cpu_count() or 1
        busy = sum(machine for _own, machine in cpu.values())
        own = sum(own for own, _machine in cpu.values())
        floor = max(solo[slowest], busy / cores)
        print(
            "CPU of each store alone (this process / whole machine): "
            + ", ".join(f"{name} {o:.2f}/{m:.2f} s" for name, (o, m) in cpu.items())
            + f"; floor on {cores} cores: max(slowest {solo[slowest]:.2f} s, busy {busy:.2f} s / {cores}) = "
            f"{floor:.2f} s; this process alone {own:.2f} s; phase / floor {phase / floor:.2f}x"
        )


def compare(args: argparse.Namespace) -> int:
    sizes = [max(2, args.records // 10), args.records]
    reports = []
    start = time.perf_counter()
    for n in sizes:
        child_args = ["--records", str(n), "--page-limit", str(args.page_limit), "--target-mb", str(args.target_mb)]
        child_args += ["--fanout-workers", str(args.fanout_workers)] if args.fanout_workers else []
        if args.no_solo:
            child_args.append("--no-solo")
        for item in args.duckdb_set:
            child_args += ["--duckdb-set", item]
        report = common.child(__file__, child_args, f"{n:,} records", f"{n:,}-record")
        if report is None:
            return 1
        reports.append(report)
    total = time.perf_counter() - start

    print("\n== compare: peak RSS as volume grows (each size in its own process) ==")
    header = ["records", "baseline MB", "peak MB", "growth MB", "wall s", "pull r/s"] + [f"{s} r/s" for s in STORES]
    rows = [header]
    for r in reports:
        rows.append(
            [
                f"{r['records']:,}",
                f"{r['baseline_rss_mb']:.1f}",
                f"{r['peak_rss_mb']:.1f}",
                f"{r['peak_rss_mb'] - r['baseline_rss_mb']:.1f}",
                f"{r['materialize_seconds']:.1f}",
                _fmt_rate(r["pull"]["records_per_s"]),
            ]
            + [_fmt_rate(r["stores"][s]["records_per_s"]) for s in STORES]
        )
    _print_table(rows, left_first=False)
    small, big = reports
    ratio = big["records"] / small["records"]
    print(
        f"peak RSS {small['peak_rss_mb']:.1f} MB at {small['records']:,} -> {big['peak_rss_mb']:.1f} MB at "
        f"{big['records']:,} ({ratio:.0f}x the records, {big['peak_rss_mb'] - small['peak_rss_mb']:+.1f} MB)"
    )
    print(f"compare wall time: {total:.1f} s")
    for r in reports:
        print(f"{r['records']:,} records: " + verdict(r["peak_rss_mb"], r["target_mb"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--records", type=int, default=200_000, help="issues to collect, as 2 orgs x N/2 (default 200000)"
    )
    parser.add_argument("--page-limit", type=int, default=100, help="Snyk REST page size, 10-100 (default 100)")
    parser.add_argument(
        "--fanout-workers",
        type=int,
        help="SNYK_FANOUT_WORKERS: organizations read at once (default: the setting's default, 10)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run N/10 and N records (20,000 and 200,000 by default), each in its own process",
    )
    parser.add_argument(
        "--target-mb", type=float, default=common.DEFAULT_TARGET_MB, help="peak RSS target (default 300)"
    )
    parser.add_argument(
        "--duckdb-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what-if (repeatable): SET NAME = 'VALUE' on the DuckDB store's write connection, "
        "e.g. --duckdb-set memory_limit=64MB --duckdb-set threads=1",
    )
    parser.add_argument(
        "--no-solo",
        action="store_true",
        help="skip writing the upload again to each store alone afterwards (the single-store times)",
    )
    parser.add_argument("--json-out", help=argparse.SUPPRESS)  # used by --compare to collect a child's figures
    args = parser.parse_args(argv)
    if args.records < 2:
        parser.error("--records must be at least 2")
    for item in args.duckdb_set:
        if not re.fullmatch(r"[a-z_]+=[A-Za-z0-9_. ]+", item):
            parser.error(f"--duckdb-set {item!r} must be NAME=VALUE, e.g. memory_limit=64MB")
    return compare(args) if args.compare else run_once(args)


if __name__ == "__main__":
    sys.exit(main())
