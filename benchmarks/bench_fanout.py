#!/usr/bin/env python
"""Benchmark: fan-out pulls at the vendor's rate limit, not the latency's.

Two pulls that fan out over parents, against the sandbox in its own process with a fixed latency on every answer:

1. `okta_user_factors`: one request per user (10,000 users by default), paced by the org-wide per-endpoint quota
   the sandbox reports in X-Rate-Limit-* (`--okta-rate-limit` requests per `--okta-rate-window` seconds).
2. `snyk_issues`: every page of every organization's issues (50 organizations by default), paced under the API
   key's limit, which the sandbox enforces with 429 + Retry-After (Snyk's documented 1,620 a minute by default).

For each it prints the wall time of the pull (API -> spool, the upstream listing excluded) against the two floors,
requests x latency / workers and requests / the sandbox's rate limit, the ratio to the larger one (target 1.25x),
and the 429s answered after the first rate-limit window (target 0). `--serial` adds the same pull with one worker.

    .venv/bin/python benchmarks/bench_fanout.py                                  # both parts, 100 ms
    .venv/bin/python benchmarks/bench_fanout.py --part okta --okta-workers 32
    .venv/bin/python benchmarks/bench_fanout.py --serial --okta-users 1000       # the one-worker figures too

Exit status: 0 whether or not a target is met; 1 if a pull failed or spooled the wrong number of records.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import common  # starting the sandbox in its own process
from common import TOKEN

from secmetrics_dagster.collection import RunContext, Spool
from secmetrics_dagster.collection.http import HttpSettings
from secmetrics_dagster.sources import okta as okta_source
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.base import Pull

SETTINGS = HttpSettings(read_timeout=60, max_retries=8, max_total_wait=600)


class Throttles(logging.Handler):
    """When each 429 was answered, from the session's retry warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.times: list[float] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if "HTTP 429" in record.getMessage():
            with self._lock:
                self.times.append(time.monotonic())


def run_pull(resource, pull_fn, tag: str, inputs: dict, workdir: Path) -> dict:
    """One pull into a spool: wall time, records, requests, the 429s and when they came, the limiter's pauses."""
    log = logging.getLogger(f"bench-fanout-{tag}")
    log.propagate = False
    throttles = Throttles()
    log.addHandler(throttles)
    spool = Spool(RunContext(tag, "bench"), workdir / f"spool-{tag}-{time.monotonic_ns()}", logger=log)
    try:
        with resource.client(SETTINGS, logger=log) as http:
            started = time.monotonic()
            pull_fn(Pull(resource, http, spool, inputs, log))
            wall = time.monotonic() - started
            stats, limiter = http.stats, http.limiter
    except BaseException:
        spool.discard()
        raise
    finally:
        log.removeHandler(throttles)
    snapshot = spool.close()
    records = snapshot.records
    snapshot.discard()
    return {
        "wall": wall,
        "records": records,
        "requests": stats.requests,
        "throttled": stats.throttled,
        "throttle_offsets": [t - started for t in throttles.times],
        "pauses": limiter.pauses,
        "paused_seconds": limiter.paused_seconds,
        "holds": limiter.holds,
    }


def listing(resource, pull_fn, tag: str, inputs: dict, workdir: Path) -> list[dict]:
    spool = Spool(RunContext(tag, "bench"), workdir / f"spool-{tag}", stamp=False)
    with resource.client(SETTINGS) as http:
        pull_fn(Pull(resource, http, spool, inputs, logging.getLogger("bench-fanout")))
    snapshot = spool.close()
    records = list(snapshot.iter_records())
    snapshot.discard()
    return records


def report(name: str, run: dict, workers: int, latency: float, limit: int, window: float, usable: float) -> bool:
    """Print one run's figures against its floors; True when it spooled what it should."""
    requests = run["requests"]
    latency_floor = requests * latency / workers
    rate_floor = requests / (limit / window)
    usable_floor = requests / (limit * usable / window)
    floor = max(latency_floor, rate_floor)
    late_429 = [t for t in run["throttle_offsets"] if t >= window]
    print(f"  {name}, {workers} worker(s):")
    print(f"    wall time            {run['wall']:8.1f} s   ({run['records']:,} records, {requests:,} requests)")
    print(f"    floor: latency       {latency_floor:8.1f} s   (requests x {latency * 1000:.0f} ms / {workers})")
    print(f"    floor: rate limit    {rate_floor:8.1f} s   (requests / {limit} per {window:g} s)")
    if usable < 1:
        print(f"    floor: after reserve {usable_floor:8.1f} s   (the {usable:.0%} of the limit the reserve leaves)")
    ratio = run["wall"] / floor
    print(f"    ratio to the larger  {ratio:8.2f} x   target <= 1.25: {common.ok(ratio <= 1.25)}")
    print(
        f"    429s                 {run['throttled']:8d}     after the first window: {len(late_429)}, "
        f"target 0: {common.ok(not late_429)}"
    )
    print(
        f"    limiter              {run['pauses']} pause(s) for the quota, {run['paused_seconds']:.1f} s; "
        f"{run['holds']} hold(s) for a 429"
    )
    return True


def part_okta(args: argparse.Namespace, url: str, workdir: Path) -> bool:
    def resource(workers: int):
        return okta_source.OktaResource(
            domain=url, token=TOKEN, fanout_workers=workers, rate_limit_reserve=args.okta_reserve
        )

    users = listing(resource(1), okta_source.pull_users, "okta_users", {}, workdir)
    asked = [u for u in users if u["status"] != "DEPROVISIONED"]
    print(
        f"\nOkta factors: {len(users):,} users ({len(asked):,} asked; DEPROVISIONED hold none), "
        f"{args.okta_rate_limit} requests per {args.okta_rate_window} s per endpoint, reserve {args.okta_reserve:g}%"
    )
    good = True
    for workers in ([1] if args.serial else []) + [args.okta_workers]:
        chosen = users if workers > 1 or not args.serial_users else users[: args.serial_users]
        run = run_pull(
            resource(workers), okta_source.pull_user_factors, "okta_user_factors", {"okta_users": chosen}, workdir
        )
        label = "okta_user_factors" + ("" if chosen is users else f" (first {len(chosen):,} users)")
        good &= report(
            label,
            run,
            workers,
            args.latency_ms / 1000,
            args.okta_rate_limit,
            args.okta_rate_window,
            1 - args.okta_reserve / 100,
        )
        if chosen is not users:
            per_request = run["wall"] / max(1, run["requests"])
            print(f"    serial, all {len(asked):,} users at this pace: about {per_request * len(asked):.0f} s")
    return good


def part_snyk(args: argparse.Namespace, url: str, workdir: Path) -> bool:
    def resource(workers: int):
        return snyk_source.SnykResource(
            token=TOKEN, endpoint=url, fanout_workers=workers, requests_per_minute=args.snyk_pace
        )

    orgs = listing(resource(1), snyk_source.pull_organizations, "snyk_organizations", {}, workdir)
    print(
        f"\nSnyk issues: {len(orgs)} organizations x {args.snyk_issues:,} issues (pages of 100), sandbox limit "
        f"{args.snyk_rate_limit} per {args.snyk_rate_window} s per key, paced at {args.snyk_pace:g} a minute"
    )
    good = True
    for workers in ([1] if args.serial else []) + [args.snyk_workers]:
        run = run_pull(resource(workers), snyk_source.pull_issues, "snyk_issues", {"snyk_organizations": orgs}, workdir)
        expected = len(orgs) * args.snyk_issues
        if run["records"] != expected:
            print(f"  snyk_issues spooled {run['records']:,} records, expected {expected:,}")
            good = False
        good &= report(
            "snyk_issues", run, workers, args.latency_ms / 1000, args.snyk_rate_limit, args.snyk_rate_window, 1.0
        )
    return good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("okta", "snyk", "both"), default="both")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="sandbox latency on every answer")
    parser.add_argument("--serial", action="store_true", help="also run each pull with one worker")
    parser.add_argument(
        "--serial-users", type=int, default=0, help="the serial Okta run reads only this many users (0: all)"
    )
    parser.add_argument("--okta-users", type=int, default=10_000)
    parser.add_argument("--okta-workers", type=int, default=32)
    parser.add_argument("--okta-rate-limit", type=int, default=1500, help="requests per window per endpoint")
    parser.add_argument("--okta-rate-window", type=int, default=10, help="seconds (Okta's own is 60)")
    parser.add_argument("--okta-reserve", type=float, default=5.0, help="OKTA_RATE_LIMIT_RESERVE, percent")
    parser.add_argument("--snyk-orgs", type=int, default=50)
    parser.add_argument("--snyk-issues", type=int, default=4000, help="issues per organization")
    parser.add_argument("--snyk-workers", type=int, default=snyk_source.DEFAULT_FANOUT_WORKERS)
    parser.add_argument("--snyk-rate-limit", type=int, default=1620, help="requests per window per API key")
    parser.add_argument("--snyk-rate-window", type=int, default=60, help="seconds")
    parser.add_argument(
        "--snyk-pace", type=float, default=snyk_source.DEFAULT_REQUESTS_PER_MINUTE, help="SNYK_REQUESTS_PER_MINUTE"
    )
    args = parser.parse_args(argv)

    sandbox_args = [
        "--latency-ms",
        str(args.latency_ms),
        "--okta-users",
        str(args.okta_users),
        "--okta-groups",
        "1",
        "--okta-rate-limit",
        str(args.okta_rate_limit),
        "--okta-rate-window",
        str(args.okta_rate_window),
        "--snyk-orgs",
        str(args.snyk_orgs),
        "--snyk-issues-per-org",
        str(args.snyk_issues),
        "--snyk-rate-limit",
        str(args.snyk_rate_limit),
        "--snyk-rate-window",
        str(args.snyk_rate_window),
    ]
    print(f"bench_fanout: sandbox latency {args.latency_ms:g} ms; {' '.join(sys.argv[1:]) or 'defaults'}")
    with tempfile.TemporaryDirectory(prefix="secmetrics-bench-fanout-") as scratch:
        workdir = Path(scratch)
        with common.sandbox(workdir, sandbox_args) as (_proc, url):
            good = True
            if args.part in ("okta", "both"):
                good &= part_okta(args, url, workdir)
            if args.part in ("snyk", "both"):
                good &= part_snyk(args, url, workdir)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
