"""What the benchmark scripts share: RSS and phase measuring, the sandbox, the stores, one measured run, the checks.

Each bench_*.py keeps only what is its vendor's: the sandbox arguments, the vendor resource, the asset selection,
its report and its own comparisons. One run goes:

    with common.bench(prefix, sandbox_args) as run:  # temp dir, sandbox, moto S3, PostgreSQL, the stores
        if not common.collect(run, report, vendor={...}, assets=..., selection=[...], tag=TAG, expected=N,
                              figures=...):  # dagster.materialize under the RSS sampler, then the counts
            return 1
    return common.finish(report, print_report, args.json_out)

The sandbox and moto's S3 server run in their own processes (their memory is not counted). PostgreSQL is the one
on 127.0.0.1:5432 when it answers, else one secmetrics_dagster_tests/services.py starts. A fresh bucket, a fresh
schema and a temp dir keep runs independent; all three are removed at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
STORES = ("file", "s3", "postgres", "duckdb")  # the order StoresResource.build() writes them in
DEFAULT_TARGET_MB = 300.0
GROWTH_LIMIT = 0.20  # the largest size's peak RSS must stay within 20% of the smallest's
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


def proc_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) another process has used so far (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class RssSampler(threading.Thread):
    """Samples this process's RSS (and its CPU time) every `interval` s, so the peak and the CPU can be attributed
    to a phase afterwards."""

    def __init__(self, interval: float = 0.01):
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.cpu: list[tuple[float, float]] = []  # (wall time, this process's CPU seconds so far)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), current_rss_mb()))
            self.cpu.append((time.time(), time.process_time()))
            self._halt.wait(self.interval)

    def cpu_between(self, start: float, end: float) -> float | None:
        """This process's CPU seconds between two wall times (to the nearest sample), every thread included."""
        inside = [cpu for ts, cpu in self.cpu if start <= ts < end]
        return inside[-1] - inside[0] if len(inside) > 1 else None

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
        from secmetrics_dagster.stores import DuckDBStore, FileStore, PostgresStore, S3Store, io_manager

        self.marks: list[tuple[str, str, float, float]] = []  # (tag, phase, start, end)
        self._undo: list[tuple[object, str, object]] = []
        for cls in (FileStore, S3Store, PostgresStore, DuckDBStore):
            self._wrap(cls, "write", lambda args, name=cls.name: (args[1].tag, f"{name} store"))
        self._wrap(io_manager, "render_envelope", lambda args: (args[0].tag, "envelope render"))
        self._wrap(io_manager, "fan_out", lambda args: (args[0].tag, "store phase"))
        self.kept: dict[str, object] = {}  # tag -> a Snapshot on a hard link of its spool (keep_spools_in)
        self.keep_dir: Path | None = None
        original_write_everywhere = io_manager.write_everywhere

        @functools.wraps(original_write_everywhere)
        def write_everywhere(snapshot, *args, **kwargs):
            if self.keep_dir is not None:
                # A second name for the spool file: write_everywhere discards the spool, the solo runs need it.
                link = self.keep_dir / f"{snapshot.tag}.kept.ndjson"
                link.unlink(missing_ok=True)
                os.link(snapshot.spool_path, link)
                self.kept[snapshot.tag] = dataclasses.replace(snapshot, spool_path=link, lock=None)
            return original_write_everywhere(snapshot, *args, **kwargs)

        self._undo.append((io_manager, "write_everywhere", original_write_everywhere))
        io_manager.write_everywhere = write_everywhere

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


# ----------------------------------------------------------------------------------------- services


def load() -> None:
    """Set AWS_ENV, then import what a run needs (boto3 must see the variables first). Cached after the first call."""
    os.environ.update(AWS_ENV)
    for module in (
        "boto3",
        "dagster",
        "duckdb",
        "psycopg",
        "psycopg.sql",
        "secmetrics_dagster.collection.resource",
        "secmetrics_dagster.stores",
        "secmetrics_dagster_tests.services",
    ):
        importlib.import_module(module)


def start_sandbox(workdir: Path, extra_args: list[str], token: str = TOKEN) -> tuple[subprocess.Popen, str]:
    """Start `python -m secmetrics_dagster.sandbox` with the vendor's arguments; returns the process and its URL."""
    port_file = workdir / f"sandbox-{uuid.uuid4().hex[:6]}.port"
    log_path = workdir / "sandbox.log"
    cmd = [
        sys.executable,
        "-m",
        "secmetrics_dagster.sandbox",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--token",
        token,
        *extra_args,
    ]
    with open(log_path, "ab") as log:
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


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def sandbox(workdir: Path, extra_args: list[str]) -> Iterator[tuple[subprocess.Popen, str]]:
    proc, url = start_sandbox(workdir, extra_args)
    try:
        yield proc, url
    finally:
        stop_process(proc)


@dataclass
class StoreSetup:
    resource: object  # the StoresResource
    s3: object  # boto3 S3 client on moto
    pg: dict  # libpq keyword arguments
    schema: str
    bucket: str
    enabled: tuple[str, ...]


_STORE_SWITCH = {"file": "file_template", "s3": "s3_bucket", "postgres": "postgres_host", "duckdb": "duckdb_path"}


@contextmanager
def store_setup(workdir: Path, enabled=STORES, **options) -> Iterator[StoreSetup]:
    """S3 (moto) and PostgreSQL, a fresh bucket and schema, and a StoresResource writing the `enabled` stores.

    `options` go to StoresResource as they are (e.g. duckdb_memory_limit). The schema and bucket are removed after.
    """
    import boto3
    import psycopg
    from psycopg import sql

    from secmetrics_dagster.stores import StoresResource
    from secmetrics_dagster_tests import services

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    bucket = f"secmetrics-bench-{uuid.uuid4().hex[:12]}"
    with services.s3_server() as s3_url, services.postgres() as pg:
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        config = dict(
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
        for store in STORES:
            if store not in enabled:
                config[_STORE_SWITCH[store]] = None  # the store is off
        try:
            yield StoreSetup(StoresResource(**config, **options), s3, pg, schema, bucket, tuple(enabled))
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


@dataclass
class Bench:
    workdir: Path
    sandbox: subprocess.Popen
    url: str  # the sandbox's
    stores: StoreSetup


@contextmanager
def bench(prefix: str, sandbox_args: list[str], enabled=STORES, **store_options) -> Iterator[Bench]:
    """A temp dir, the sandbox started with `sandbox_args`, and store_setup(); all undone in reverse at the end."""
    load()
    with (
        scratch_dir(prefix) as workdir,
        sandbox(workdir, sandbox_args) as (proc, url),
        store_setup(workdir, enabled, **store_options) as stores,
    ):
        yield Bench(workdir, proc, url, stores)


# ------------------------------------------------------------------------------------------- one run


@dataclass
class Measurement:
    """One dagster.materialize under the RSS sampler and the phase clock; the figures are read from it afterwards."""

    tag: str
    result: object
    instance: object
    baseline_rss: float  # MB, right before materialize
    baseline_peak: float  # MB, the peak so far
    peak: float  # MB, the process's peak right after materialize
    wall: float  # s
    t0: float  # time.time() around materialize
    t1: float
    sampler: RssSampler
    clock: PhaseClock

    @property
    def failed(self) -> bool:
        return not self.result.success

    @functools.cached_property
    def md(self) -> dict:
        return _metadata(self.result, self.tag)

    @functools.cached_property
    def events(self) -> dict[str, float]:
        return _step_events(self.instance, self.result.run_id, self.tag)

    @property
    def pull_window(self) -> tuple[float, float]:
        """The pull (API -> spool): the asset step's start to its output, from Dagster's event log."""
        return self.events["STEP_START"], self.events["STEP_OUTPUT"]

    @property
    def pull_seconds(self) -> float:
        start, end = self.pull_window
        return end - start

    def window(self, phase: str) -> tuple[float, float] | None:
        return self.clock.window(self.tag, phase)

    def phase_peak(self, phase: str) -> float | None:
        """Sampled peak RSS (MB, unrounded) while a PhaseClock phase ('envelope render', 'file store', ...) ran."""
        window = self.window(phase)
        return self.sampler.peak_between(*window) if window else None


def measure(assets, selection: list[str], tag: str, resources: dict, keep_dir: Path | None = None) -> Measurement:
    import dagster as dg

    instance = dg.DagsterInstance.ephemeral()
    clock = PhaseClock()  # timing-only wrappers around the envelope render and each store's write
    clock.keep_dir = keep_dir
    try:
        gc.collect()
        baseline_rss = current_rss_mb()
        baseline_peak = peak_rss_mb()
        sampler = RssSampler()
        sampler.start()
        t0 = time.time()
        start = time.perf_counter()
        result = dg.materialize(
            assets,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            selection=selection,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        wall = time.perf_counter() - start
        t1 = time.time()
        sampler.stop()
        peak = peak_rss_mb()  # read before anything else allocates
    finally:
        clock.restore()
    return Measurement(tag, result, instance, baseline_rss, baseline_peak, peak, wall, t0, t1, sampler, clock)


def collect(
    run: Bench,
    report: dict,
    *,
    vendor: dict,
    assets,
    selection: list[str],
    tag: str,
    expected: int,
    figures: Callable[[Measurement], dict],
    solo: bool = False,
) -> bool:
    """Materialize `selection` with the vendor's resources (plus collection, stores, IO manager) and fill `report`:
    the RSS figures, then figures(measurement), the sandbox's peak and the verified counts. False if it failed.

    With `solo`, afterwards (outside every figure above) `tag`'s upload is written again to each store alone, one
    after another, from a hard link of its spool: report["solo_seconds"] is each single store's own wall time."""
    from secmetrics_dagster.collection.resource import CollectionResource
    from secmetrics_dagster.stores import SnapshotIOManager

    stores = run.stores.resource
    resources = {
        "collection": CollectionResource(tenancy=TENANCY, spool_dir=str(run.workdir / "spool")),
        "stores": stores,
        "snapshot_io_manager": SnapshotIOManager(stores=stores),
        **vendor,
    }
    keep_dir = None
    if solo:
        keep_dir = run.workdir / "kept"
        keep_dir.mkdir(exist_ok=True)
    m = measure(assets, selection, tag, resources, keep_dir)
    report.update(
        {
            "failed": m.failed,
            "baseline_rss_mb": round(m.baseline_rss, 1),
            "peak_rss_mb": round(m.peak, 1),
            "materialize_seconds": round(m.wall, 2),
        }
    )
    if m.failed:
        print("materialization failed:\n" + _failure_text(m.result), file=sys.stderr)
        return False
    report.update(figures(m))
    report["sandbox_peak_rss_mb"] = proc_hwm_mb(run.sandbox.pid)
    report["sandbox_cpu_seconds"] = proc_cpu_seconds(run.sandbox.pid)
    if solo and tag in m.clock.kept:
        report["solo_cpu"] = {}
        report["solo_seconds"] = solo_store_seconds(stores, m.clock.kept[tag], report["solo_cpu"])
    report["verified"] = verify(run.stores, tag, expected)
    return True


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat: all but idle and iowait), so
    the CPU a store costs in PostgreSQL's, moto's or DuckDB's threads counts too; 0 where /proc is missing."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def solo_store_seconds(stores, snapshot, cpu: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Each configured store's wall time writing `snapshot` alone (the same upload id: each replaces its own copy),
    one store after another, the envelope rendered once beforehand as fan_out does; `cpu` gets each store's
    (this process's CPU s, the whole machine's busy CPU s)."""
    from secmetrics_dagster.collection.memory import release_free_memory
    from secmetrics_dagster.stores.envelope import render_envelope

    seconds: dict[str, float] = {}
    targets = stores.build()
    envelope = render_envelope(snapshot) if any(s.needs_envelope for s in targets) else None
    try:
        for store in targets:
            release_free_memory()
            busy = machine_busy_seconds()
            own = time.process_time()
            start = time.perf_counter()
            store.write(snapshot, envelope)
            seconds[store.name] = round(time.perf_counter() - start, 3)
            cpu[store.name] = (round(time.process_time() - own, 3), round(machine_busy_seconds() - busy, 3))
    finally:
        if envelope is not None:
            envelope.unlink(missing_ok=True)
        snapshot.spool_path.unlink(missing_ok=True)
    return seconds


def verify(setup: StoreSetup, tag: str, expected: int) -> dict:
    """Count what each enabled store really holds (after the peak was read, so this costs nothing in the figures)."""
    import duckdb
    import psycopg
    from psycopg import sql

    stores = setup.resource
    checks = {}
    path = (
        Path(stores.file_template.replace("%TAG", tag).replace("%TENANCY", TENANCY)) if stores.file_template else None
    )
    if "file" in setup.enabled:
        newlines = 0
        with open(path, "rb") as handle:
            while chunk := handle.read(MiB):
                newlines += chunk.count(b"\n")
        checks["file"] = newlines - 2  # '{"data": [' line, one line per record, the '], "metadata"' line
    if "s3" in setup.enabled:
        head = setup.s3.head_object(Bucket=stores.s3_bucket, Key=f"backup/{tag}/{TENANCY}.json")
        same_file = path is None or head["ContentLength"] == path.stat().st_size  # the file store's envelope, shipped
        checks["s3"] = int(head["Metadata"]["records"]) if same_file else -1
    if "postgres" in setup.enabled:
        with psycopg.connect(**setup.pg) as conn:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(setup.schema, tag))
            checks["postgres"] = conn.execute(query).fetchone()[0]
    if "duckdb" in setup.enabled:
        con = duckdb.connect(stores.duckdb_path, read_only=True)
        try:
            checks["duckdb"] = con.execute(f'SELECT count(*) FROM "{tag}"').fetchone()[0]
        finally:
            con.close()
    return {store: {"count": n, "ok": n == expected} for store, n in checks.items()}


def finish(report: dict, print_report: Callable[[dict], None], json_out: str | None) -> int:
    """Print the report, write it as JSON for a parent --compare, and exit 1 if a store holds the wrong count."""
    print_report(report)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))
    return 0 if all(v["ok"] for v in report["verified"].values()) else 1


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


# ---------------------------------------------------------------------------------------- reporting


def _fmt_rate(value) -> str:
    return f"{value:,.0f}" if value else "-"


def ok(passed: bool, failed: str = "OVER TARGET") -> str:
    return "OK" if passed else failed


def verdict(peak: float, target: float) -> str:
    return f"peak RSS {peak:.1f} MB (target < {target:.0f} MB): {ok(peak < target)}"


def verified_text(verified: dict) -> str:
    return ", ".join(f"{k} {v['count']:,}{'' if v['ok'] else ' MISMATCH'}" for k, v in verified.items())


def child(script: str, args: list[str], banner: str, what: str) -> dict | None:
    """Run `script` again in a fresh process with `args` (one size) and return its JSON report; None if it failed."""
    with tempfile.TemporaryDirectory(prefix="secmetrics-bench-child-") as tmp:
        out = Path(tmp) / "report.json"
        print(f"\n>>> {banner} in a fresh process", flush=True)
        rc = subprocess.call([sys.executable, str(Path(script).resolve()), *args, "--json-out", str(out)])
        if rc != 0 or not out.exists():
            print(f"the {what} run failed (exit {rc})", file=sys.stderr)
            return None
        return json.loads(out.read_text())


@dataclass
class SizeCheck:
    """The smallest and the largest size's reports: peak RSS under the target, and no more than 20% growth."""

    small: dict
    big: dict
    growth: float  # fraction of the small peak
    peak_ok: str  # 'OK' or 'OVER TARGET'
    growth_ok: str


def size_check(reports: list[dict], target_mb: float = DEFAULT_TARGET_MB, limit: float = GROWTH_LIMIT) -> SizeCheck:
    small, big = reports[0], reports[-1]
    growth = (big["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"]
    return SizeCheck(small, big, growth, ok(big["peak_rss_mb"] < target_mb), ok(abs(growth) <= limit))
