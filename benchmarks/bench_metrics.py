#!/usr/bin/env python
"""Benchmark: the metric step over large collections. The shipped vulnerability-posture metric
(vm_hosts_exploitable_patchable) over 1,000,000 Tenable findings and 50,000 assets, and MFA coverage
(im_mfa_okta) over 100,000 Okta users and 150,000 factors: seconds and peak RSS of each.

    .venv/bin/python benchmarks/bench_metrics.py                       # the sizes above
    .venv/bin/python benchmarks/bench_metrics.py --scale 0.1           # a tenth of them

The data is generated straight into a DuckDB store (the DuckDB store's table and ledger layout, the records as
the vendors' exports shape them, JSON built by DuckDB itself: no vendor pull, no Python loop). Each metric then
runs in a fresh process (this script with --phase), through what the metric asset's step does besides Dagster's
bookkeeping: open the store read-only, run the metric's queries over the typed ref() relations, spool and count
the rows, and write metric_summary / metric_detail / metric_scorecard to the store in one transaction. Its peak
RSS (ru_maxrss) is that process's alone, imports included; "RSS before" is the process right before the work.

Targets (the metrics issue): each under 60 s and 500 MB peak RSS on this 2-core machine. Exit status 1 if a phase
failed or a metric's row count disagrees with the generated data; 0 otherwise, met or not (as the other
benchmarks), with the verdict printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import common  # peak_rss_mb, current_rss_mb; puts the repository on sys.path
from common import MiB

TENANCY = "bench"
TARGET_SECONDS = 60.0
TARGET_MB = 500.0
SIZES = {"findings": 1_000_000, "assets": 50_000, "users": 100_000, "factors": 150_000}
METRICS = {
    "vm_hosts_exploitable_patchable": ("tenable_assets", "tenable_vulnerabilities"),
    "im_mfa_okta": ("okta_users", "okta_user_factors"),
}

# The records, shaped as Tenable's vulns and assets exports and Okta's users and factors listings are (the
# fields the metrics and the typed columns read, plus padding of a realistic size).
GENERATE = {
    "tenable_assets": """
        SELECT json_object(
          'id', 'asset-' || i, 'has_agent', i % 3 <> 0, 'hostnames', [ 'host-' || i ], 'fqdns', [ 'host-' || i || '.corp.example' ],
          'ipv4s', [ '10.' || (i // 65536) || '.' || ((i // 256) % 256) || '.' || (i % 256) ],
          'last_seen', strftime(now() - to_days(CAST(i % 45 AS INTEGER)), '%Y-%m-%dT%H:%M:%S.000Z'),
          'terminated_at', NULL, 'deleted_at', NULL, 'operating_systems', [ 'Microsoft Windows Server 2022' ],
          'sources', [ json_object('name', 'NESSUS_SCAN', 'first_seen', '2024-01-01T00:00:00Z') ]) AS record
        FROM range({assets}) t(i)""",
    "tenable_vulnerabilities": """
        SELECT json_object(
          'finding_id', 'finding-' || i,
          'asset', json_object('uuid', 'asset-' || (i % {assets}), 'hostname', 'host-' || (i % {assets}),
                               'ipv4', '10.0.0.1', 'operating_system', [ 'Microsoft Windows Server 2022' ]),
          'plugin', json_object('id', 10000 + i % 5000, 'name', 'Plugin ' || (i % 5000), 'family', 'Windows',
                                'has_patch', i % 4 <> 0, 'exploit_available', CASE WHEN i % 9 = 0 THEN true END,
                                'cvss3_base_score', (i % 100) / 10.0, 'cve', [ 'CVE-2024-' || (i % 9000) ],
                                'description', repeat('x', 200)),
          'port', json_object('port', 443, 'protocol', 'TCP'),
          'severity', ['info', 'low', 'medium', 'high', 'critical'][1 + i % 5], 'severity_id', i % 5,
          'state', ['OPEN', 'OPEN', 'REOPENED', 'FIXED'][1 + (i // 5) % 4],
          'first_found', '2024-06-01T00:00:00Z', 'last_found', '2024-09-01T00:00:00Z',
          'output', repeat('y', 150)) AS record
        FROM range({findings}) t(i)""",
    "okta_users": """
        SELECT json_object(
          'id', 'user-' || i, 'status', CASE WHEN i % 20 = 0 THEN 'SUSPENDED' ELSE 'ACTIVE' END,
          'created', '2023-01-01T00:00:00.000Z', 'lastLogin', '2026-11-01T00:00:00.000Z',
          'profile', json_object('login', 'user' || i || '@acme.example', 'email', 'user' || i || '@acme.example',
                                 'firstName', 'First', 'lastName', 'Last', 'department', 'Dept ' || (i % 40)),
          'credentials', json_object('provider', json_object('type', 'OKTA', 'name', 'OKTA'))) AS record
        FROM range({users}) t(i)""",
    "okta_user_factors": """
        SELECT json_object(
          'id', 'factor-' || i, '_user_id', 'user-' || ((i * 7919) % ({users} * 4 // 5)),
          'factorType', ['push', 'sms', 'token:software:totp', 'webauthn', 'signed_nonce'][1 + i % 5],
          'provider', 'OKTA', 'status', CASE WHEN i % 10 = 0 THEN 'PENDING_ACTIVATION' ELSE 'ACTIVE' END,
          'created', '2024-01-01T00:00:00.000Z', 'profile', json_object('deviceType', 'SmartPhone_IPhone')) AS record
        FROM range({factors}) t(i)""",
}
# What each metric's row count must be, from the generated data itself.
EXPECTED_ROWS = {
    "vm_hosts_exploitable_patchable": "SELECT count(*) FROM tenable_assets_latest WHERE last_seen >= now() - INTERVAL 30 DAY",
    "im_mfa_okta": "SELECT count(*) FROM okta_users_latest WHERE status = 'ACTIVE'",
}


def generate(db: Path, sizes: dict[str, int]) -> dict[str, float]:
    """The four datasets as one upload each in the DuckDB store's layout, with the store's views."""
    import duckdb

    from secmetrics_dagster.sources import SOURCES
    from secmetrics_dagster.stores.duckdb import UPLOADS_TABLE
    from secmetrics_dagster.stores.typed import duckdb_view_statements

    columns = {d.tag: d.columns for s in SOURCES for d in s.datasets}
    seconds = {}
    con = duckdb.connect(str(db))
    try:
        con.execute(
            f"CREATE TABLE {UPLOADS_TABLE} (tag VARCHAR, tenancy VARCHAR, upload_id UUID, upload_timestamp TIMESTAMPTZ, "
            "records BIGINT, source VARCHAR, loaded_at TIMESTAMPTZ DEFAULT current_timestamp)"
        )
        for tag, select in GENERATE.items():
            started = time.perf_counter()
            upload_id = str(uuid.uuid4())
            con.execute(
                f'CREATE TABLE "{tag}" AS SELECT now() AS upload_timestamp, ? AS tenancy, ?::UUID AS upload_id, '
                f"CAST(record AS JSON) AS json_data FROM ({select.format(**sizes)})",
                [TENANCY, upload_id],
            )
            count = con.execute(f'SELECT count(*) FROM "{tag}"').fetchone()[0]
            con.execute(
                f"INSERT INTO {UPLOADS_TABLE} VALUES (?, ?, ?::UUID, now(), ?, 'api', now())",
                [tag, TENANCY, upload_id, count],
            )
            for statement in duckdb_view_statements(f'"{tag}"', tag, UPLOADS_TABLE, columns[tag]):
                con.execute(statement)
            seconds[tag] = round(time.perf_counter() - started, 1)
    finally:
        con.close()
    return seconds


def run_phase(db: Path, metric_id: str) -> dict:
    """One metric the way the step computes it, in this (fresh) process; figures as JSON on stdout."""
    from datetime import UTC, datetime

    from secmetrics_dagster.metrics.collected import CollectedData, EngineSettings
    from secmetrics_dagster.metrics.definition import load_library
    from secmetrics_dagster.metrics.engine import run_metric, scorecard_rows, scored_from_summary
    from secmetrics_dagster.metrics.results import Batch, write_results
    from secmetrics_dagster.sources import SOURCES
    from secmetrics_dagster.stores.io_manager import StoresResource

    metric = load_library(None).metrics[metric_id]
    columns = {d.tag: d.columns for s in SOURCES for d in s.datasets}
    rss_before = common.current_rss_mb()
    started = time.perf_counter()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        collected = CollectedData(db, TENANCY, columns, EngineSettings(), Path(tmp), now)
        result = run_metric(metric, collected, columns, now, Path(tmp) / f"{metric_id}.ndjson")
        computed = time.perf_counter() - started
        day = now.date().isoformat()
        summary = result.summary_row(day, TENANCY)
        batch = Batch(TENANCY, day, now, [result], scorecard_rows([scored_from_summary(summary)], day, TENANCY))
        outcome = write_results(StoresResource(file_template="", duckdb_path=str(db)), batch, "256MB", Path(tmp), print)
    return {
        "metric": metric_id,
        "rows": result.total,
        "score": round(result.score or 0, 4),
        "compute_s": round(computed, 2),
        "seconds": round(time.perf_counter() - started, 2),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "failures": outcome.failures,
        "warnings": result.warnings,
    }


def expected_rows(db: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return {m: con.execute(q).fetchone()[0] for m, q in EXPECTED_ROWS.items()}
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (default 1: the issue's sizes)")
    parser.add_argument("--phase", choices=["generate", *sorted(METRICS)], help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = {k: max(1, int(v * args.scale)) for k, v in SIZES.items()}
    if args.phase == "generate":
        generated = generate(Path(args.db), sizes)
        print(json.dumps({"seconds": generated, "expected": expected_rows(Path(args.db))}))
        return 0
    if args.phase:
        print(json.dumps(run_phase(Path(args.db), args.phase)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        db = Path(tmp) / "store.duckdb"
        print(f"generating {sizes} into a DuckDB store ...", flush=True)
        # Its own process too: a child's ru_maxrss starts from its parent's at the fork, so the parent stays small.
        done = subprocess.run(
            [sys.executable, __file__, "--phase", "generate", "--db", str(db), "--scale", str(args.scale)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"generating failed:\n{done.stderr[-3000:]}")
            return 1
        generation = json.loads(done.stdout.strip().splitlines()[-1])
        expected = generation["expected"]
        print(f"  generated in {generation['seconds']} s; store {db.stat().st_size / MiB:.0f} MiB", flush=True)
        failed = False
        print(
            f"{'metric':34} {'rows':>9} {'score':>7} {'query s':>8} {'step s':>7} {'RSS before':>10} {'peak RSS':>9}  verdict"
        )
        for metric_id in METRICS:
            done = subprocess.run(
                [sys.executable, __file__, "--phase", metric_id, "--db", str(db)], capture_output=True, text=True
            )
            if done.returncode != 0:
                print(f"{metric_id}: the phase failed:\n{done.stderr[-3000:]}")
                failed = True
                continue
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            met = figures["seconds"] < TARGET_SECONDS and figures["peak_rss_mb"] < TARGET_MB
            rows_ok = figures["rows"] == expected[metric_id] and not figures["failures"]
            failed |= not rows_ok
            verdict = ("met" if met else f"MISSED ({TARGET_SECONDS:.0f} s, {TARGET_MB:.0f} MB)") + (
                "" if rows_ok else f"; rows expected {expected[metric_id]}, stores {figures['failures']}"
            )
            print(
                f"{metric_id:34} {figures['rows']:>9} {figures['score']:>7} {figures['compute_s']:>8} "
                f"{figures['seconds']:>7} {figures['rss_before_mb']:>8} MB {figures['peak_rss_mb']:>6} MB  {verdict}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
