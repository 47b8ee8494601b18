"""The one Definitions: every source's assets, their resources and the fan-out IO manager."""

from __future__ import annotations

import dagster as dg

from .collection.resource import CollectionResource
from .sources import SOURCES
from .sources.base import IO_MANAGER_KEY
from .stores.io_manager import SnapshotIOManager, StoresResource


def build_resources() -> dict:
    stores = StoresResource.from_env()
    return {
        "collection": CollectionResource.from_env(),
        "stores": stores,
        IO_MANAGER_KEY: SnapshotIOManager(stores=stores),
        **{source.SOURCE.resource_key: source.RESOURCE.from_env() for source in SOURCES},
    }


all_assets = [a for source in SOURCES for a in source.assets]

collect_all_job = dg.define_asset_job(
    "collect_all", selection=dg.AssetSelection.all(),
    description="Collect every configured source into every configured store.",
)

defs = dg.Definitions(
    assets=all_assets,
    jobs=[collect_all_job],
    resources=build_resources(),
)
