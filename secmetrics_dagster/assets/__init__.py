"""Sources become Dagster assets here: the factory (pull, spool, fallback), and the policies that say how the
collection steps run (retries, pools, freshness) and how a backup-served materialization is recorded."""

from ..stores.io_manager import IO_MANAGER_KEY
from .factory import AssetFactory, CollectRequest, build_assets, collect, describe, snapshot_metadata

__all__ = [
    "IO_MANAGER_KEY",
    "AssetFactory",
    "CollectRequest",
    "build_assets",
    "collect",
    "describe",
    "snapshot_metadata",
]
