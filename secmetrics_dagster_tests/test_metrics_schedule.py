"""Metrics after collection: the daily schedule's run collects, then the metrics' automation condition requests
every metric whose datasets it updated (and the scorecard) in a run of their own; and the CLI recomputes the
metrics group from what is stored, without calling any vendor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from secmetrics_dagster.assets import build_assets
from secmetrics_dagster.automation.schedules import collection_schedule
from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.metrics import MetricsResource, build_metrics
from secmetrics_dagster.sandbox import Sandbox
from secmetrics_dagster.sources import SOURCES
from secmetrics_dagster.stores.io_manager import IO_MANAGER_KEY, SnapshotIOManager, StoresResource

from .conftest import SANDBOX_TOKEN
from .test_metrics_engine import write_duckdb

SCHEDULED = ("domains", "aws")  # the sources given credentials; every other one is left out by the schedule


def summary(db: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {r[0]: r[1:] for r in con.execute("SELECT metric_id, status, total FROM metric_summary").fetchall()}
    finally:
        con.close()


@pytest.fixture
def scheduled_env(monkeypatch):
    for source in SOURCES:
        for setting in source.env_vars:
            monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv("COLLECTION_SOURCES", raising=False)
    with Sandbox(seed=7, token=SANDBOX_TOKEN) as box:
        for source in SOURCES:
            if source.group in SCHEDULED:
                for name, value in source.sandbox_env(box.url, SANDBOX_TOKEN).items():
                    monkeypatch.setenv(name, value)
        yield box


def test_the_daily_schedules_run_is_followed_by_the_metrics_of_the_datasets_it_collected(tmp_path, scheduled_env):
    db = tmp_path / "store.duckdb"
    stores = StoresResource(file_template=str(tmp_path / "files/%TAG/%TENANCY.json"), duckdb_path=str(db))
    metrics = build_metrics()
    job = dg.define_asset_job("collect_all", selection=dg.AssetSelection.all())
    defs = dg.Definitions(
        assets=[*build_assets(SOURCES), *metrics.assets],
        jobs=[job],
        schedules=[collection_schedule(job)],
        sensors=metrics.sensors,
        resources={
            "collection": CollectionResource(tenancy="acme", spool_dir=str(tmp_path / "spool")),
            "stores": stores,
            IO_MANAGER_KEY: SnapshotIOManager(stores=stores),
            "metrics": MetricsResource(),
            **{s.resource_key: s.resource.from_env() for s in SOURCES},
        },
    )
    assert defs.get_sensor_def("metrics_after_collection").default_status == dg.DefaultSensorStatus.RUNNING
    instance = dg.DagsterInstance.ephemeral()
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance)  # the sensor ticks all day long
    assert before.total_requested == 0

    schedule = defs.get_schedule_def("daily_collection")
    request = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests[0]
    collected = defs.resolve_job_def("collect_all").execute_in_process(
        instance=instance, asset_selection=list(request.asset_selection), raise_on_error=False
    )
    assert collected.success
    assert not any(k.path[-1].startswith("metric_") for k in request.asset_selection)

    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
    requested = {r.key for r in after.results if r.true_subset.size}
    metric_keys = {k for k in requested if isinstance(k, dg.AssetKey)}
    collected_tags = {k.path[-1] for k in request.asset_selection}
    expected = {dg.AssetKey(m.asset_name) for m in metrics.library.computable if set(m.refs) & collected_tags} | {
        dg.AssetKey("metric_scorecard")
    }
    assert metric_keys == expected
    assert dg.AssetCheckKey(dg.AssetKey("metric_ns_domains_spf"), "slo_met") in requested

    computed = dg.materialize(
        metrics.assets,
        selection=sorted(metric_keys, key=str),
        instance=instance,
        resources={"collection": defs.resources["collection"], "stores": stores, "metrics": MetricsResource()},
    )
    assert computed.success
    assert {f"metric_{m}" for m in summary(db)} == {k.path[-1] for k in metric_keys} - {"metric_scorecard"}


def test_the_cli_recomputes_the_metrics_group_from_what_is_stored(tmp_path):
    db = tmp_path / "store.duckdb"
    domains = [
        {"domain": "a.example", "valid": True, "dns": {"exists": True, "spf": ["v=spf1 -all"]}},
        {"domain": "b.example", "valid": True, "dns": {"exists": True, "spf": []}},
    ]
    write_duckdb(db, tmp_path, domains, tag="domains")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORE_", "DAGSTER_", "METRICS_"))}
    for source in SOURCES:
        for setting in source.env_vars:
            env.pop(setting.env, None)
    env.update(STORE_DUCKDB=str(db), STORE_FILE="", TENANCY="acme", DAGSTER_HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "secmetrics_dagster",
            "--select",
            "group:metrics",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = summary(db)
    assert results["ns_domains_spf"] == ("bad", 2)
    assert results["im_mfa_okta"] == ("no_data", 0)
