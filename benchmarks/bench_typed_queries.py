#!/usr/bin/env python
"""Benchmark: a query over the typed `_latest` views of N Tenable findings joined to their assets, in DuckDB and
PostgreSQL, beside the same query written by hand on `json_data`; and the peak RSS of loading them.

    .venv/bin/python benchmarks/bench_typed_queries.py                          # 1,000,000 findings, 50,000 assets
    .venv/bin/python benchmarks/bench_typed_queries.py --records 100000 --assets 5000 --repeat 1

The query counts findings (and distinct assets) by severity and state, joined to the assets by uuid:
`tenable_vulnerabilities_latest.asset_uuid = tenable_assets_latest.id` against `json_data->...` by hand.

Records come from the sandbox's own Tenable record makers (secmetrics_dagster/sandbox/tenable.py, the shape of
the vulns and assets exports), written straight into a Spool one at a time (no vendor pull, flat memory), then
loaded by the real store write path: `DuckDBStore.write` / `PostgresStore.write` with `snapshot.columns` set to
the dataset's declarations, as the asset factory does, and `unparsed_counts(snapshot)` as write_everywhere does.

Every phase runs in its own fresh process (this script with --phase), so each peak RSS (ru_maxrss or VmHWM,
the larger) is that phase's alone; "RSS before" is the process's RSS right before the measured work (its
imports: the load phases import secmetrics_dagster.stores, hence dagster, as a step process has). The loads of
the findings (and their unparsed count) must stay at or under --target-mb (300 MB). DuckDB queries use a
plain read-only connection (DuckDB's defaults, as a user's); PostgreSQL queries run in the server, so beside
the client's RSS the table shows the server backend's peak RSS (VmHWM: it counts the shared buffers the
backend touched, and not the memory of parallel workers). PostgreSQL tables get a VACUUM ANALYZE (listed, not
part of the write path) before the queries, so neither query pays for hint bits or an autovacuum under it.

PostgreSQL is the one on 127.0.0.1:5432 (user postgres, db test) or whatever secmetrics_dagster_tests/services.py
finds or starts (TEST_POSTGRES_DSN works); a throwaway schema and a temp dir are removed at the end.
Exit status: 1 if a phase failed, a typed and a json_data query disagree on the rows (or the databases disagree
with each other or with the generated tallies), or unparsed_counts failed or found a value that did not parse;
0 otherwise, whether or not the memory target is met (as the other benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import common  # peak_rss_mb, current_rss_mb, scratch_dir; puts the repository on sys.path
from common import DEFAULT_TARGET_MB, MiB, ok

FINDINGS = "tenable_vulnerabilities"
ASSETS = "tenable_assets"
TENANCY = "bench"
SEED = 7

DUCKDB_TYPED = (
    "SELECT v.severity, v.state, count(*) AS findings, count(DISTINCT a.id) AS assets "
    f"FROM {FINDINGS}_latest v JOIN {ASSETS}_latest a ON a.id = v.asset_uuid "
    "GROUP BY v.severity, v.state ORDER BY v.severity, v.state"
)
DUCKDB_JSON = (
    "SELECT v.json_data->>'$.severity' AS severity, v.json_data->>'$.state' AS state, count(*) AS findings, "
    "count(DISTINCT a.json_data->>'$.id') AS assets "
    f"FROM {FINDINGS}_latest v JOIN {ASSETS}_latest a ON a.json_data->>'$.id' = v.json_data->>'$.asset.uuid' "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)
# PostgreSQL: the schema is filled in with psycopg.sql (an Identifier), never pasted as text.
POSTGRES_TYPED = (
    "SELECT v.severity, v.state, count(*) AS findings, count(DISTINCT a.id) AS assets "
    f"FROM {{schema}}.{FINDINGS}_latest v JOIN {{schema}}.{ASSETS}_latest a ON a.id = v.asset_uuid "
    "GROUP BY v.severity, v.state ORDER BY v.severity, v.state"
)
POSTGRES_JSON = (
    "SELECT v.json_data->>'severity' AS severity, v.json_data->>'state' AS state, count(*) AS findings, "
    "count(DISTINCT a.json_data->>'id') AS assets "
    f"FROM {{schema}}.{FINDINGS}_latest v JOIN {{schema}}.{ASSETS}_latest a "
    "ON a.json_data->>'id' = v.json_data->'asset'->>'uuid' GROUP BY 1, 2 ORDER BY 1, 2"
)
QUERIES = {
    ("duckdb", "typed"): DUCKDB_TYPED,
    ("duckdb", "json"): DUCKDB_JSON,
    ("postgres", "typed"): POSTGRES_TYPED,
    ("postgres", "json"): POSTGRES_JSON,
}


# ------------------------------------------------------------------------------------------ phases
# Each runs in a fresh process and returns what the parent prints; `seconds` is the measured work only.


def _snapshot(state: dict, tag: str):
    """The Snapshot a generate phase wrote, with the dataset's declared columns (as the asset factory sets them)."""
    from secmetrics_dagster.collection.context import parse_timestamp
    from secmetrics_dagster.collection.spool import Snapshot
    from secmetrics_dagster.sources.tenable import SOURCE

    s = state["snapshots"][tag]
    snapshot = Snapshot(
        tag=tag,
        tenancy=s["tenancy"],
        upload_id=s["upload_id"],
        timestamp=parse_timestamp(s["timestamp"]),
        records=s["records"],
        spool_path=Path(s["spool_path"]),
        bytes=s["bytes"],
        longest_line=s["longest_line"],
    )
    snapshot.columns = SOURCE.dataset(tag).columns
    return snapshot


def _generate(state: dict, tag: str) -> dict:
    """Write the records into a Spool one at a time; the spool file outlives this process for the next phases.

    Findings of one asset are contiguous (finding i is on asset i * assets // records), as in the sandbox's
    vulns export, so the expected rows (findings and distinct assets per severity and state) are tallied with
    one asset's groups in memory at a time.
    """
    from secmetrics_dagster.collection.context import RunContext
    from secmetrics_dagster.collection.spool import Spool
    from secmetrics_dagster.sandbox.tenable import make_asset, make_vulnerability

    records, assets = state["records"], state["assets"]
    findings: dict[tuple[str, str], int] = {}
    distinct: dict[tuple[str, str], int] = {}
    spool = Spool(RunContext(tag, TENANCY), Path(state["workdir"]) / "spool" / tag)
    before = common.current_rss_mb()
    start = time.perf_counter()
    with spool:
        if tag == ASSETS:
            for i in range(assets):
                spool.write(make_asset(SEED, i))
        else:
            current, groups = -1, set()
            for i in range(records):
                asset = i * assets // records
                if asset != current:
                    for group in groups:
                        distinct[group] = distinct.get(group, 0) + 1
                    current, groups = asset, set()
                record = make_vulnerability(SEED, i, asset)
                group = (record["severity"], record["state"])
                findings[group] = findings.get(group, 0) + 1
                groups.add(group)
                spool.write(record)
            for group in groups:
                distinct[group] = distinct.get(group, 0) + 1
        snapshot = spool.close()
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "rss_before_mb": before,
        "records": snapshot.records,
        "snapshot": {
            "tenancy": snapshot.tenancy,
            "upload_id": snapshot.upload_id,
            "timestamp": snapshot.timestamp_text,
            "records": snapshot.records,
            "spool_path": str(snapshot.spool_path),
            "bytes": snapshot.bytes,
            "longest_line": snapshot.longest_line,
        },
        "note": f"spool {snapshot.bytes / MiB:,.0f} MiB",
    }
    if tag == FINDINGS:
        out["expected"] = sorted([s, st, n, distinct[(s, st)]] for (s, st), n in findings.items())
    return out


def _postgres_store(state: dict):
    from secmetrics_dagster.stores.postgres import PostgresStore

    pg = state["pg"]
    # No password here: the parent hands one (TEST_POSTGRES_DSN's) to the children as PGPASSWORD, never in a file.
    return PostgresStore(
        host=pg.get("host", "127.0.0.1"),
        port=int(pg.get("port", 5432)),
        user=pg.get("user"),
        dbname=pg.get("dbname"),
        schema=state["schema"],
    )


def _load(state: dict, store_name: str, tag: str) -> dict:
    from secmetrics_dagster.collection.memory import release_free_memory
    from secmetrics_dagster.stores.duckdb import DuckDBStore
    from secmetrics_dagster.stores.io_manager import StoresResource

    snapshot = _snapshot(state, tag)
    if store_name == "duckdb":
        # A deployment's default memory limit (STORE_DUCKDB_MEMORY_LIMIT), as StoresResource.build() passes it.
        store = DuckDBStore(
            state["duckdb_path"], memory_limit=StoresResource.model_fields["duckdb_memory_limit"].default
        )
    else:
        store = _postgres_store(state)
    release_free_memory()  # as fan_out does before each store
    before = common.current_rss_mb()
    start = time.perf_counter()
    result = store.write(snapshot, None)
    seconds = time.perf_counter() - start
    if result.records != snapshot.records:
        raise RuntimeError(f"{store.describe()} loaded {result.records} of {snapshot.records} {tag} records")
    if store_name == "duckdb":
        note = f"database file {Path(state['duckdb_path']).stat().st_size / MiB:,.0f} MiB"
    else:
        note = result.location
    return {"seconds": seconds, "rss_before_mb": before, "records": snapshot.records, "note": note}


def _unparsed(state: dict, tag: str) -> dict:
    from secmetrics_dagster.stores.duckdb import unparsed_counts

    snapshot = _snapshot(state, tag)
    before = common.current_rss_mb()
    start = time.perf_counter()
    try:
        counts, error = unparsed_counts(snapshot), None
    except Exception as exc:  # noqa: BLE001 - write_everywhere logs this and loads anyway; here it is a finding
        counts, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rss_before_mb": before,
        "records": snapshot.records,
        "unparsed": counts,
        "error": error,
        "note": f"FAILED {error}" if error else f"unparsed {counts or 'none'}",
    }


def _postgres_connect(state: dict):
    import psycopg

    return psycopg.connect(**state["pg"], autocommit=True)


def _vacuum(state: dict) -> dict:
    from psycopg import sql

    with _postgres_connect(state) as conn:
        before = common.current_rss_mb()
        start = time.perf_counter()
        for tag in (ASSETS, FINDINGS):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(state["schema"], tag)))
        seconds = time.perf_counter() - start
        sizes = {
            tag: conn.execute(
                "SELECT pg_total_relation_size(%s::regclass)", (f'"{state["schema"]}"."{tag}"',)
            ).fetchone()[0]
            for tag in (ASSETS, FINDINGS)
        }
    note = ", ".join(f"{tag} {size / MiB:,.0f} MiB" for tag, size in sizes.items())
    return {"seconds": seconds, "rss_before_mb": before, "note": f"table sizes: {note}"}


def _query(state: dict, database: str, kind: str) -> dict:
    """Run one query `repeat` times on one connection; the best time, the first, and the rows."""
    text = QUERIES[(database, kind)]
    times: list[float] = []
    server_peak = None
    if database == "duckdb":
        import duckdb

        con = duckdb.connect(state["duckdb_path"], read_only=True)
        try:
            before = common.current_rss_mb()
            for _ in range(state["repeat"]):
                start = time.perf_counter()
                rows = con.execute(text).fetchall()
                times.append(time.perf_counter() - start)
        finally:
            con.close()
    else:
        from psycopg import sql

        query = sql.SQL(text).format(schema=sql.Identifier(state["schema"]))
        with _postgres_connect(state) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            before = common.current_rss_mb()
            for _ in range(state["repeat"]):
                start = time.perf_counter()
                rows = conn.execute(query).fetchall()
                times.append(time.perf_counter() - start)
            server_peak = common.proc_hwm_mb(backend)  # read while the backend lives
    first = f"first {times[0]:.2f} s, " if len(times) > 1 else ""
    return {
        "seconds": min(times),
        "rss_before_mb": before,
        "records": state["records"],
        "server_peak_mb": server_peak,
        "rows": sorted([str(r[0]), str(r[1]), int(r[2]), int(r[3])] for r in rows),
        "note": f"{first}{len(rows)} rows",
    }


def run_phase(name: str, state: dict) -> dict:
    kind, _, arg = name.partition(":")
    if kind == "generate":
        out = _generate(state, arg)
    elif kind == "load":
        store, _, tag = arg.partition(":")
        out = _load(state, store, tag)
    elif kind == "unparsed":
        out = _unparsed(state, arg)
    elif kind == "vacuum":
        out = _vacuum(state)
    elif kind == "query":
        database, _, which = arg.partition(":")
        out = _query(state, database, which)
    else:
        raise SystemExit(f"unknown phase {name!r}")
    # ru_maxrss is updated lazily by the kernel; VmHWM is exact when read. Either may be the larger.
    out["peak_rss_mb"] = max(common.peak_rss_mb(), common.proc_hwm_mb(os.getpid()) or 0.0)
    return out


# ------------------------------------------------------------------------------------------ parent


def phases(records: int, assets: int) -> list[tuple[str, str, bool]]:
    """(phase, label, bound): `bound` marks the phases of the 1M load whose peak RSS the target applies to."""
    n, a = f"{records:,}", f"{assets:,}"
    return [
        (f"generate:{ASSETS}", f"generate {a} assets -> spool", False),
        (f"generate:{FINDINGS}", f"generate {n} findings -> spool", False),
        (f"load:duckdb:{ASSETS}", f"DuckDB load {a} assets", False),
        (f"load:duckdb:{FINDINGS}", f"DuckDB load {n} findings", True),
        (f"load:postgres:{ASSETS}", f"PostgreSQL load {a} assets", False),
        (f"load:postgres:{FINDINGS}", f"PostgreSQL load {n} findings", True),
        (f"unparsed:{ASSETS}", f"unparsed_counts {a} assets", False),
        (f"unparsed:{FINDINGS}", f"unparsed_counts {n} findings", True),
        ("vacuum", "PostgreSQL VACUUM ANALYZE (not the write path)", False),
        ("query:duckdb:typed", "DuckDB query, typed _latest columns", False),
        ("query:duckdb:json", "DuckDB query, json_data by hand", False),
        ("query:postgres:typed", "PostgreSQL query, typed _latest columns", False),
        ("query:postgres:json", "PostgreSQL query, json_data by hand", False),
    ]


def run_child(name: str, state_path: Path, env: dict) -> dict | None:
    out = state_path.with_name(f"phase-{uuid.uuid4().hex[:8]}.json")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        name,
        "--state",
        str(state_path),
        "--out",
        str(out),
    ]
    rc = subprocess.call(cmd, env=env)
    if rc != 0 or not out.exists():
        print(f"phase {name} failed (exit {rc}); see its error above", file=sys.stderr)
        return None
    result = json.loads(out.read_text())
    out.unlink()
    return result


def _mb(value) -> str:
    return "-" if value is None else f"{value:,.1f}"


def print_report(args: argparse.Namespace, results: list[tuple[str, str, bool, dict]], checks: list[tuple[str, bool]]):
    print(
        f"\nTyped views benchmark: {args.records:,} tenable_vulnerabilities, {args.assets:,} tenable_assets "
        f"(queries: best of {args.repeat}); each phase in its own process"
    )
    header = (
        f"{'phase':<48} {'seconds':>8} {'records/s':>11} {'peak RSS MB':>11} {'RSS before':>10} {'server MB':>9}  note"
    )
    print(header)
    print("-" * len(header))
    for _name, label, _bound, r in results:
        done = r.get("records") and r["seconds"] and not r.get("error")
        rate = f"{r['records'] / r['seconds']:,.0f}" if done else "-"
        print(
            f"{label:<48} {r['seconds']:>8.2f} {rate:>11} {_mb(r['peak_rss_mb']):>11} {_mb(r['rss_before_mb']):>10} "
            f"{_mb(r.get('server_peak_mb')):>9}  {r.get('note', '')}"
        )
    by_name = {name: r for name, _label, _bound, r in results}
    print("\nQuery, typed vs json_data (best seconds; peak RSS of the querying process / PostgreSQL backend):")
    for database, title in (("duckdb", "DuckDB"), ("postgres", "PostgreSQL")):
        typed, raw = by_name.get(f"query:{database}:typed"), by_name.get(f"query:{database}:json")
        if typed and raw:
            server = database == "postgres"
            mem_t = typed["server_peak_mb"] if server else typed["peak_rss_mb"]
            mem_j = raw["server_peak_mb"] if server else raw["peak_rss_mb"]
            ratio = typed["seconds"] / raw["seconds"] if raw["seconds"] else float("nan")
            print(
                f"  {title:<11} typed {typed['seconds']:7.2f} s {_mb(mem_t):>7} MB   json_data {raw['seconds']:7.2f} s "
                f"{_mb(mem_j):>7} MB   typed/json_data {ratio:.2f}x"
            )
    rows = (by_name.get("query:duckdb:typed") or {}).get("rows")
    if rows:  # DuckDB's typed rows; the checks below say whether the other three queries returned the same
        print("\nRows (severity, state, findings, assets):")
        for row in rows:
            print(f"  {row[0]:<9} {row[1]:<9} {row[2]:>10,} {row[3]:>8,}")
    print("\nChecks:")
    for text, passed in checks:
        print(f"  {text}: {ok(passed, 'FAILED')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="tenable_vulnerabilities findings")
    parser.add_argument("--assets", type=int, default=50_000, help="tenable_assets the findings spread over")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each query; the best time is shown")
    parser.add_argument("--target-mb", type=float, default=DEFAULT_TARGET_MB, help="peak RSS bound of the loads")
    parser.add_argument("--json-out", help="also write the figures here as JSON")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: one phase, in a child process
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        state = json.loads(Path(args.state).read_text())
        Path(args.out).write_text(json.dumps(run_phase(args.phase, state)))
        return 0
    if args.records < 1 or args.assets < 1 or args.repeat < 1:
        parser.error("--records, --assets and --repeat must be at least 1")

    import psycopg
    from psycopg import sql

    from secmetrics_dagster_tests import services

    schema = f"bench_typed_{uuid.uuid4().hex[:12]}"
    results: list[tuple[str, str, bool, dict]] = []
    failed = False
    with common.scratch_dir("secmetrics-bench-typed-") as workdir, services.postgres() as pg:
        env = dict(os.environ)
        pg = dict(pg)
        if pg.get("password"):
            env["PGPASSWORD"] = str(pg.pop("password"))  # to the children by environment, not in the state file
        state = {
            "workdir": str(workdir),
            "duckdb_path": str(workdir / "bench.duckdb"),
            "pg": pg,
            "schema": schema,
            "records": args.records,
            "assets": args.assets,
            "repeat": args.repeat,
            "snapshots": {},
        }
        state_path = workdir / "state.json"
        try:
            for name, label, bound in phases(args.records, args.assets):
                state_path.write_text(json.dumps(state))
                print(f">>> {label}", flush=True)
                result = run_child(name, state_path, env)
                if result is None:
                    failed = True
                    break
                if name.startswith("generate:"):
                    state["snapshots"][name.partition(":")[2]] = result.pop("snapshot")
                results.append((name, label, bound, result))
        finally:
            try:
                with psycopg.connect(**pg, password=env.get("PGPASSWORD"), autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            except psycopg.Error as exc:
                print(f"warning: could not drop schema {schema}: {exc}", file=sys.stderr)

    checks: list[tuple[str, bool]] = []
    by_name = {name: r for name, _label, _bound, r in results}
    # The memory target is reported, not enforced (as in the other benchmarks): it does not change the exit status.
    for _name, label, bound, r in results:
        if bound and r.get("error"):
            checks.append((f"{label}: peak RSS (it failed: no figure)", False))
        elif bound:
            peak = r["peak_rss_mb"]
            checks.append((f"{label}: peak RSS {peak:.1f} MB <= {args.target_mb:.0f} MB", peak <= args.target_mb))
    rows = {f"{d}:{k}": by_name[f"query:{d}:{k}"]["rows"] for d, k in QUERIES if f"query:{d}:{k}" in by_name}
    agree = True
    for database, title in (("duckdb", "DuckDB"), ("postgres", "PostgreSQL")):
        typed, raw = rows.get(f"{database}:typed"), rows.get(f"{database}:json")
        if typed is not None and raw is not None:
            same = typed == raw
            agree &= same
            checks.append((f"{title}: typed and json_data queries return the same rows", same))
    if "duckdb:typed" in rows and "postgres:typed" in rows:
        same = rows["duckdb:typed"] == rows["postgres:typed"]
        agree &= same
        checks.append(("DuckDB and PostgreSQL return the same rows", same))
    expected = by_name.get(f"generate:{FINDINGS}", {}).get("expected")
    if expected is not None and "duckdb:typed" in rows:
        same = rows["duckdb:typed"] == expected
        agree &= same
        checks.append(("the rows match the tallies counted while generating", same))
    for tag in (ASSETS, FINDINGS):
        r = by_name.get(f"unparsed:{tag}")
        if r is not None:
            clean = r["error"] is None and not r["unparsed"]
            agree &= clean
            checks.append((f"unparsed_counts of {tag} ran and found every typed column parsed", clean))
    print_report(args, results, checks)
    if failed:
        print("\nA phase failed: the figures above are incomplete.", file=sys.stderr)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"records": args.records, "assets": args.assets, "phases": by_name}, indent=2)
        )
    return 1 if failed or not agree else 0


if __name__ == "__main__":
    sys.exit(main())
