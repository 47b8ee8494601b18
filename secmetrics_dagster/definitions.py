"""The one Definitions: every source's assets and checks, their resources and the fan-out IO manager, the
collection, restore and retention jobs, the daily schedule and the alert and restore sensors, and the metric
library's assets (computed after collection by their automation sensor)."""

from __future__ import annotations

import dagster as dg

from .assets import build_assets
from .assets.policies import owners
from .automation import celery
from .automation.checks import checks_for
from .automation.restore import KIND_TAG, restore_job
from .automation.schedules import collection_schedule, purge_job, retention_schedule
from .automation.sensors import SENSORS
from .collection.env import env_number
from .collection.resource import CollectionResource
from .metrics import RESOURCE_KEY as METRICS_KEY
from .metrics import MetricsResource, build_metrics
from .sources import SOURCES
from .stores.io_manager import IO_MANAGER_KEY, SnapshotIOManager, StoresResource


def build_resources() -> dict:
    # A bad store or collection value does not fail loading: it is reported (build_assets logs it and shows it
    # on every asset) and every collection step refuses to start on it, naming the variable.
    stores = StoresResource.from_env(report_problems=True)
    return {
        "collection": CollectionResource.from_env(report_problems=True),
        "stores": stores,
        IO_MANAGER_KEY: SnapshotIOManager(stores=stores),
        METRICS_KEY: MetricsResource.from_env(),
        **vendor_resources(),
    }


def vendor_resources() -> dict:
    """Each vendor's settings as loaded: a bad value is reported (on that vendor's assets, in the log) and refused
    by that vendor's steps at their start, naming the variable; it never fails loading, nor stops other vendors."""
    return {source.resource_key: source.resource.from_env(report_problems=True) for source in SOURCES}


PRELOADED_SDKS = ("falconpy", "tenable.io")
# What every step process imports before its step starts, measured in a forked step's sys.modules: the instance's
# storage (SQLAlchemy, alembic, the SQLite and PostgreSQL storages, the compute log manager; about 2 s of CPU a
# step on this 2-core machine) and the stores' clients. A name the installed release lacks is skipped by the
# forkserver, so a Dagster upgrade that moves one costs speed, never a run.
PRELOADED_INFRASTRUCTURE = (
    "dagster._core.instance.factory",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.storage.root",
    "dagster._core.storage.migration.utils",
    "dagster._daemon",
    "dagster_postgres",
    "upath",
    "duckdb",
    "psycopg",
    "boto3",
    "botocore.session",
)
PRELOADED_MODULES = ("secmetrics_dagster.definitions", *PRELOADED_SDKS, *PRELOADED_INFRASTRUCTURE)


def collection_executor() -> dg.ExecutorDefinition:
    """COLLECTION_EXECUTOR=celery: steps on Celery workers (automation/celery.py).

    Otherwise: steps in parallel, each in its own process forked from a server that has already built these
    definitions and imported the vendor SDKs, so a step starts in a fraction of a second instead of rebuilding
    everything (the preload names secmetrics_dagster.definitions: the package alone imports nothing, its `defs`
    is lazy) or importing the instance's storage and the stores' clients. The project imports falconpy and
    pyTenable only in their pulls, so the webserver, the daemon and the code server never load them. Collection
    waits on vendor APIs, not the CPU, so COLLECTION_PARALLEL_STEPS (default 8) exceeds the core count; pools still
    keep each vendor to its own limit."""
    if celery.executor_name() == "celery":
        return celery.celery_executor()
    return dg.multiprocess_executor.configured(
        {
            "max_concurrent": env_number("COLLECTION_PARALLEL_STEPS", 8, low=1),
            "start_method": {"forkserver": {"preload_modules": list(PRELOADED_MODULES)}},
        }
    )


all_assets = build_assets(
    SOURCES,
    StoresResource.from_env(report_problems=True),
    owners(),
    op_tags=celery.op_tags(),
    collection=CollectionResource.from_env(report_problems=True),
    vendors=vendor_resources(),
)
all_checks = checks_for(SOURCES)
metrics = build_metrics(owners=owners())

collect_all_job = dg.define_asset_job(
    "collect_all",
    selection=dg.AssetSelection.all(),
    description="Collect every configured source into every configured store.",
    # dagster.yaml allows one run with this tag at a time: a hung collection never overlaps the next day's.
    tags={KIND_TAG: "collection"},
)

defs = dg.Definitions(
    assets=[*all_assets, *metrics.assets],
    asset_checks=all_checks,
    jobs=[collect_all_job, restore_job, purge_job],
    schedules=[collection_schedule(collect_all_job), retention_schedule()],
    sensors=[*SENSORS, *metrics.sensors],
    resources=build_resources(),
    executor=collection_executor(),
)
