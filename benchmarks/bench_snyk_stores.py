#!/usr/bin/env python
"""Benchmark: N Snyk sandbox issues through the real collector into file, S3, PostgreSQL and DuckDB.

Prints records/s for the pull (API -> spool) and for each store, wall time, and the peak RSS of the
process that runs the collection (dagster.materialize runs in this process), against a 300 MB target.

    .venv/bin/python benchmarks/bench_snyk_stores.py                      # 200,000 records
    .venv/bin/python benchmarks/bench_snyk_stores.py --records 20000 --page-limit 50
    .venv/bin/python benchmarks/bench_snyk_stores.py --compare            # 20,000 vs 200,000, one process each

The sandbox runs in its own process (its memory is not counted); so does moto's S3 server. PostgreSQL is the
one on 127.0.0.1:5432 when it answers, else one the test services start. A fresh bucket, a fresh schema
(dropped at the end) and a temp dir (file store, DuckDB, spool; removed at the end) keep runs independent.
Exit status: 0 whether or not the target is met; 1 if the collection failed or a store holds the wrong count.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # secmetrics_dagster_tests.services lives beside the package

# moto accepts any credentials; these keep boto3 from looking anywhere else. Set before boto3 is imported.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
TOKEN = "sandbox-token"
TENANCY = "bench"
TAG = "snyk_issues"
STORES = ("file", "s3", "postgres", "duckdb")  # the order StoresResource.build() writes them in
DEFAULT_TARGET_MB = 300.0
MiB = 1024 * 1024


# ------------------------------------------------------------------------------------------ memory


def peak_rss_mb() -> float:
    """High-water mark of this process's RSS (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb(pid: str | int = "self") -> float:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def proc_hwm_mb(pid: int) -> float | None:
    """VmHWM (peak RSS) of another process, read before it exits."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class RssSampler(threading.Thread):
    """Samples this process's RSS every `interval` s, so the peak can be attributed to a phase afterwards."""

    def __init__(self, interval: float = 0.01):
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), current_rss_mb()))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak_between(self, start: float, end: float) -> float | None:
        values = [rss for ts, rss in self.samples if start <= ts < end]
        return max(values) if values else None


class PhaseClock:
    """Wall-clock start/end of render_envelope and of each store's write, for attributing the RSS samples.

    The wrappers call the original functions unchanged; they only note the time. Removed again by restore().
    """

    def __init__(self):
        from secmetrics_dagster.stores import DuckDBStore, FileStore, PostgresStore, S3Store
        from secmetrics_dagster.stores import io_manager

        self.marks: list[tuple[str, str, float, float]] = []  # (tag, phase, start, end)
        self._undo: list[tuple[object, str, object]] = []
        for cls in (FileStore, S3Store, PostgresStore, DuckDBStore):
            self._wrap(cls, "write", lambda args, name=cls.name: (args[1].tag, f"{name} store"))
        self._wrap(io_manager, "render_envelope", lambda args: (args[0].tag, "envelope render"))

    def _wrap(self, owner, attr, label):
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                self.marks.append((*label(args), start, time.time()))

        self._undo.append((owner, attr, original))
        setattr(owner, attr, wrapper)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def window(self, tag: str, phase: str) -> tuple[float, float] | None:
        found = [(a, b) for t, p, a, b in self.marks if t == tag and p == phase]
        return found[-1] if found else None


def apply_duckdb_settings(settings: list[str]):
    """WHAT-IF only: run `SET name = value` on the DuckDB store's write connection (a candidate fix). Returns an undo."""
    from secmetrics_dagster.stores import DuckDBStore

    original = DuckDBStore.connect

    def connect(self, read_only: bool = False):
        con = original(self, read_only=read_only)
        if not read_only:
            for item in settings:
                name, value = item.split("=", 1)
                con.execute(f"SET {name} = '{value}'")
        return con

    DuckDBStore.connect = connect
    return lambda: setattr(DuckDBStore, "connect", original)


# ----------------------------------------------------------------------------------------- services


def start_sandbox(workdir: Path, issues_per_org: int, orgs: int) -> tuple[subprocess.Popen, str]:
    port_file = workdir / "sandbox.port"
    log_path = workdir / "sandbox.log"
    cmd = [sys.executable, "-m", "secmetrics_dagster.sandbox", "--port", "0", "--port-file", str(port_file),
           "--token", TOKEN, "--snyk-orgs", str(orgs), "--snyk-issues-per-org", str(issues_per_org),
           "--snyk-projects-per-org", "25", "--snyk-members-per-org", "2"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"the sandbox did not start: {log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(port_file.read_text().strip())}"


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------- one run


def run_once(args: argparse.Namespace) -> int:
    script_start = time.perf_counter()
    os.environ.update(AWS_ENV)

    t = time.perf_counter()
    import boto3
    import dagster as dg
    import duckdb
    import psycopg
    from psycopg import sql

    from secmetrics_dagster.collection.resource import CollectionResource
    from secmetrics_dagster.sources import snyk as snyk_source
    from secmetrics_dagster.sources.snyk import SnykResource
    from secmetrics_dagster.stores import SnapshotIOManager, StoresResource
    from secmetrics_dagster_tests import services
    import_seconds = time.perf_counter() - t

    orgs = 2
    per_org = args.records // orgs
    records = per_org * orgs
    if records != args.records:
        print(f"note: {args.records} records rounded down to {records} (2 orgs x {per_org} issues)")

    workdir = Path(tempfile.mkdtemp(prefix="secmetrics-bench-"))
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    bucket = f"secmetrics-bench-{uuid.uuid4().hex[:12]}"
    sandbox_proc = None
    report: dict = {"records": records, "page_limit": args.page_limit, "target_mb": args.target_mb}
    try:
        t = time.perf_counter()
        sandbox_proc, sandbox_url = start_sandbox(workdir, per_org, orgs)
        with services.s3_server() as s3_url, services.postgres() as pg:
            s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
            s3.create_bucket(Bucket=bucket)
            services_seconds = time.perf_counter() - t
            stores = StoresResource(
                file_template=str(workdir / "data/source/%TAG/%TENANCY.json"),
                s3_bucket=bucket,
                s3_key="data/%TAG/%YYYY/%MM/%DD/%UUID.json",
                s3_backup="backup/%TAG/%TENANCY.json",
                s3_endpoint_url=s3_url,
                postgres_host=pg["host"],
                postgres_port=int(pg.get("port", 5432)),
                postgres_user=pg.get("user"),
                postgres_password=pg.get("password"),
                postgres_dbname=pg.get("dbname"),
                postgres_schema=schema,
                duckdb_path=str(workdir / "data/database.duckdb"),
            )
            collection = CollectionResource(tenancy=TENANCY, spool_dir=str(workdir / "spool"))
            snyk = SnykResource(token=TOKEN, endpoint=sandbox_url, page_limit=args.page_limit)
            resources = {"collection": collection, "stores": stores, "snyk": snyk,
                         "snapshot_io_manager": SnapshotIOManager(stores=stores)}
            instance = dg.DagsterInstance.ephemeral()
            try:
                report.update(_measure(dg, snyk_source, resources, instance, args))
                if report["failed"]:
                    print(report["failure"], file=sys.stderr)
                    return 1
                report["sandbox_peak_rss_mb"] = proc_hwm_mb(sandbox_proc.pid)
                report["verified"] = _verify(stores, s3, pg, schema, records, duckdb, psycopg, sql)
            finally:
                try:
                    with psycopg.connect(**pg, autocommit=True) as conn:
                        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
                except psycopg.Error as exc:
                    print(f"warning: could not drop schema {schema}: {exc}", file=sys.stderr)
                try:
                    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                        for obj in page.get("Contents", []):
                            s3.delete_object(Bucket=bucket, Key=obj["Key"])
                    s3.delete_bucket(Bucket=bucket)
                except Exception as exc:  # noqa: BLE001 - cleanup only
                    print(f"warning: could not delete bucket {bucket}: {exc}", file=sys.stderr)
    finally:
        if sandbox_proc is not None:
            stop_process(sandbox_proc)
        shutil.rmtree(workdir, ignore_errors=True)

    report["import_seconds"] = round(import_seconds, 2)
    report["services_seconds"] = round(services_seconds, 2)
    report["script_seconds"] = round(time.perf_counter() - script_start, 2)
    print_report(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0 if all(v["ok"] for v in report["verified"].values()) else 1


def _measure(dg, snyk_source, resources: dict, instance, args: argparse.Namespace) -> dict:
    clock = PhaseClock()
    undo_settings = apply_duckdb_settings(args.duckdb_set) if args.duckdb_set else None
    try:
        gc.collect()
        baseline_rss = current_rss_mb()
        baseline_peak = peak_rss_mb()
        sampler = RssSampler()
        sampler.start()
        t0 = time.time()
        start = time.perf_counter()
        result = dg.materialize(
            snyk_source.assets, resources=resources, instance=instance, raise_on_error=False,
            selection=["snyk_organizations", TAG],
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        wall = time.perf_counter() - start
        t1 = time.time()
        sampler.stop()
        peak = peak_rss_mb()  # read before anything else allocates
    finally:
        clock.restore()
        if undo_settings:
            undo_settings()

    out = {"failed": not result.success, "baseline_rss_mb": round(baseline_rss, 1),
           "peak_before_run_mb": round(baseline_peak, 1), "peak_rss_mb": round(peak, 1),
           "sampled_peak_mb": round(max((r for _, r in sampler.samples), default=0.0), 1),
           "materialize_seconds": round(wall, 2)}
    if not result.success:
        out["failure"] = "materialization failed:\n" + _failure_text(result)
        return out

    md = _metadata(result, TAG)
    events = _step_events(instance, result.run_id, TAG)
    step_start, step_output = events["STEP_START"], events["STEP_OUTPUT"]
    handled = events.get("HANDLED_OUTPUT") or events["ASSET_MATERIALIZATION"]
    pull_seconds = step_output - step_start
    out["pull"] = {"seconds": round(pull_seconds, 3), "records": md["records"],
                   "records_per_s": _rate(md["records"], pull_seconds),
                   "http_requests": md.get("http_requests"), "http_retries": md.get("http_retries"),
                   "http_mb": round(md.get("http_bytes", 0) / MiB, 1)}
    out["stores"] = {}
    for store in STORES:
        seconds = md.get(f"{store}_seconds")
        out["stores"][store] = {"seconds": seconds, "records": md.get(f"{store}_records"),
                                "mb": round(md.get(f"{store}_bytes", 0) / MiB, 1),
                                "records_per_s": _rate(md.get(f"{store}_records"), seconds)}
    envelope = clock.window(TAG, "envelope render")
    envelope_seconds = (envelope[1] - envelope[0]) if envelope else None
    out["envelope"] = {"seconds": round(envelope_seconds, 3) if envelope_seconds is not None else None,
                       "records_per_s": _rate(md["records"], envelope_seconds)}
    out["handle_output_seconds"] = round(handled - step_output, 3)
    out["duckdb_settings"] = args.duckdb_set or []

    # Where the peak happened: the pull from the event log, the envelope and each store from their own clocks.
    phases = [("dagster setup + snyk_organizations", t0, step_start), ("pull (API -> spool)", step_start, step_output)]
    last_end = step_output
    for name in ["envelope render"] + [f"{store} store" for store in STORES]:
        window = clock.window(TAG, name)
        if window:
            phases.append((name, *window))
            last_end = max(last_end, window[1])
    phases.append(("after the stores", last_end, t1 + 1))
    out["phase_peaks_mb"] = {name: (round(p, 1) if (p := sampler.peak_between(a, b)) is not None else None)
                             for name, a, b in phases}
    return out


def _rate(records, seconds) -> float | None:
    if not records or not seconds:
        return None
    return round(records / seconds)


def _metadata(result, tag: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == tag]
    if not events:
        raise RuntimeError(f"{tag} was not materialized")
    return {k: v.value for k, v in events[-1].step_materialization_data.materialization.metadata.items()}


def _step_events(instance, run_id: str, step_key: str) -> dict[str, float]:
    """Timestamp of the first event of each type for one step."""
    stamps: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.step_key == step_key:
            stamps.setdefault(event.event_type_value, entry.timestamp)
    return stamps


def _failure_text(result) -> str:
    texts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            texts.append(error.message.strip())
            error = error.cause
    return "\n".join(texts) or "(no step failure recorded)"


def _verify(stores, s3, pg: dict, schema: str, expected: int, duckdb, psycopg, sql) -> dict:
    """Count what each store really holds (after the peak was read, so this costs nothing in the figures)."""
    checks = {}
    path = Path(stores.file_template.replace("%TAG", TAG).replace("%TENANCY", TENANCY))
    newlines = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(MiB):
            newlines += chunk.count(b"\n")
    checks["file"] = newlines - 2  # '{"data": [' line, one line per record, the '], "metadata"' line
    head = s3.head_object(Bucket=stores.s3_bucket, Key=f"backup/{TAG}/{TENANCY}.json")
    checks["s3"] = int(head["Metadata"]["records"]) if head["ContentLength"] == path.stat().st_size else -1
    with psycopg.connect(**pg) as conn:
        checks["postgres"] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, TAG))).fetchone()[0]
    con = duckdb.connect(stores.duckdb_path, read_only=True)
    try:
        checks["duckdb"] = con.execute(f'SELECT count(*) FROM "{TAG}"').fetchone()[0]
    finally:
        con.close()
    return {store: {"count": n, "ok": n == expected} for store, n in checks.items()}


# ---------------------------------------------------------------------------------------- reporting


def _fmt_rate(value) -> str:
    return f"{value:,.0f}" if value else "-"


def verdict(peak: float, target: float) -> str:
    return f"peak RSS {peak:.1f} MB (target < {target:.0f} MB): {'OK' if peak < target else 'OVER TARGET'}"


def print_report(r: dict) -> None:
    print()
    print(f"== snyk_issues: {r['records']:,} records (2 orgs, page limit {r['page_limit']}) -> file, S3, PostgreSQL, DuckDB ==")
    if r.get("duckdb_settings"):
        print(f"WHAT-IF: the DuckDB store's connection ran SET {', '.join(r['duckdb_settings'])} "
              "(the store does not do this today)")
    print(f"RSS after imports, right before materialize: {r['baseline_rss_mb']:.1f} MB "
          f"(peak so far {r['peak_before_run_mb']:.1f} MB)")
    rows = [("stage", "seconds", "records/s", "MB moved", "peak RSS MB in phase (sampled)")]
    pull = r["pull"]
    phase = r["phase_peaks_mb"]

    def p(name):
        v = phase.get(name)
        return f"{v:.1f}" if v is not None else "-"

    rows.append(("pull (API -> spool)", f"{pull['seconds']:.2f}", _fmt_rate(pull["records_per_s"]),
                 f"{pull['http_mb']:.1f}", p("pull (API -> spool)")))
    env = r["envelope"]
    rows.append(("envelope render", f"{env['seconds']:.2f}" if env["seconds"] is not None else "-",
                 _fmt_rate(env["records_per_s"]), "", p("envelope render")))
    for store, s in r["stores"].items():
        rows.append((f"{store} store", f"{s['seconds']:.2f}" if s["seconds"] is not None else "-",
                     _fmt_rate(s["records_per_s"]), f"{s['mb']:.1f}", p(f"{store} store")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print("  (store seconds are each store's own timer, as in the asset metadata; the envelope file is rendered "
          "once and shipped by the file and S3 stores)")
    print(f"  HTTP: {pull['http_requests']} requests, {pull['http_retries']} retries")
    print(f"  peak RSS in the other phases: dagster setup + snyk_organizations {p('dagster setup + snyk_organizations')} MB, "
          f"after the stores {p('after the stores')} MB")
    print(f"verified counts: " + ", ".join(f"{k} {v['count']:,}{'' if v['ok'] else ' MISMATCH'}"
                                             for k, v in r["verified"].items()))
    if r.get("sandbox_peak_rss_mb"):
        print(f"sandbox process peak RSS (not counted): {r['sandbox_peak_rss_mb']:.1f} MB")
    print(f"wall time: materialize {r['materialize_seconds']:.2f} s "
          f"({_fmt_rate(_rate(r['records'], r['materialize_seconds']))} records/s end to end); "
          f"script total {r['script_seconds']:.2f} s (imports {r['import_seconds']:.2f} s, "
          f"services {r['services_seconds']:.2f} s)")
    print(f"peak RSS growth during materialize: +{r['peak_rss_mb'] - r['baseline_rss_mb']:.1f} MB over the baseline")
    print(verdict(r["peak_rss_mb"], r["target_mb"]))


def compare(args: argparse.Namespace) -> int:
    sizes = [max(2, args.records // 10), args.records]
    reports = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="secmetrics-bench-compare-") as tmp:
        for n in sizes:
            out = Path(tmp) / f"{n}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--records", str(n), "--page-limit",
                   str(args.page_limit), "--target-mb", str(args.target_mb), "--json-out", str(out)]
            for item in args.duckdb_set:
                cmd += ["--duckdb-set", item]
            print(f"\n>>> {n:,} records in a fresh process", flush=True)
            rc = subprocess.call(cmd)
            if rc != 0 or not out.exists():
                print(f"the {n:,}-record run failed (exit {rc})", file=sys.stderr)
                return 1
            reports.append(json.loads(out.read_text()))
    total = time.perf_counter() - start

    print("\n== compare: peak RSS as volume grows (each size in its own process) ==")
    header = ["records", "baseline MB", "peak MB", "growth MB", "wall s", "pull r/s"] + [f"{s} r/s" for s in STORES]
    rows = [header]
    for r in reports:
        rows.append([f"{r['records']:,}", f"{r['baseline_rss_mb']:.1f}", f"{r['peak_rss_mb']:.1f}",
                     f"{r['peak_rss_mb'] - r['baseline_rss_mb']:.1f}", f"{r['materialize_seconds']:.1f}",
                     _fmt_rate(r["pull"]["records_per_s"])] + [_fmt_rate(r["stores"][s]["records_per_s"]) for s in STORES])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    small, big = reports
    ratio = big["records"] / small["records"]
    print(f"peak RSS {small['peak_rss_mb']:.1f} MB at {small['records']:,} -> {big['peak_rss_mb']:.1f} MB at "
          f"{big['records']:,} ({ratio:.0f}x the records, {big['peak_rss_mb'] - small['peak_rss_mb']:+.1f} MB)")
    print(f"compare wall time: {total:.1f} s")
    for r in reports:
        print(f"{r['records']:,} records: " + verdict(r["peak_rss_mb"], r["target_mb"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="issues to collect, as 2 orgs x N/2 (default 200000)")
    parser.add_argument("--page-limit", type=int, default=100, help="Snyk REST page size, 10-100 (default 100)")
    parser.add_argument("--compare", action="store_true",
                        help="run N/10 and N records (20,000 and 200,000 by default), each in its own process")
    parser.add_argument("--target-mb", type=float, default=DEFAULT_TARGET_MB, help="peak RSS target (default 300)")
    parser.add_argument("--duckdb-set", action="append", default=[], metavar="NAME=VALUE",
                        help="what-if (repeatable): SET NAME = 'VALUE' on the DuckDB store's write connection, "
                             "e.g. --duckdb-set memory_limit=64MB --duckdb-set threads=1")
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
