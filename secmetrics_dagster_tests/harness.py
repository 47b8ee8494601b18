"""The one way the tests materialize a source: its assets (and checks), its resource, the collection settings and
the chosen stores, through the real IO manager. File store only unless a test asks for more."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import dagster as dg

from secmetrics_dagster.assets import build_assets
from secmetrics_dagster.automation.checks import checks_for
from secmetrics_dagster.sources.base import Source
from secmetrics_dagster.stores import IO_MANAGER_KEY, SnapshotIOManager, StoresResource


def source_assets(*sources: Source, checks: bool = False) -> list:
    """The assets of these sources as the definitions build them, with their checks when asked."""
    built: list = build_assets(sources)
    if checks:
        built += checks_for(sources)
    return built


def resources_for(
    sources: Source | Sequence[Source], vendor: Any, collection: Any, stores: StoresResource, **extra: Any
) -> dict:
    """collection, stores, the fan-out IO manager and each source's resource under its key. `vendor` is one
    resource (one source) or a dict of resource key -> resource."""
    sources = [sources] if isinstance(sources, Source) else list(sources)
    vendors = vendor if isinstance(vendor, dict) else {sources[0].resource_key: vendor}
    return {
        "collection": collection,
        "stores": stores,
        IO_MANAGER_KEY: SnapshotIOManager(stores=stores),
        **vendors,
        **extra,
    }


def materialize_source(
    source: Source | Sequence[Source],
    vendor: Any,
    collection: Any,
    stores: StoresResource,
    *,
    selection: Optional[Any] = None,
    instance: Optional[dg.DagsterInstance] = None,
    checks: bool = False,
    assets: Optional[Iterable] = None,
    resources: Optional[dict] = None,
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    """Materialize a source's assets (or `selection` of them) in-process; failures are returned, not raised."""
    sources = [source] if isinstance(source, Source) else list(source)
    return dg.materialize(
        list(assets) if assets is not None else source_assets(*sources, checks=checks),
        resources={**resources_for(sources, vendor, collection, stores), **(resources or {})},
        instance=instance,
        raise_on_error=False,
        selection=selection,
        **kwargs,
    )


def pull_records(resource, pull_fn, tag: str, inputs, directory, settings, log=None) -> list[dict]:
    """The records one pull function spools, in spool order, without Dagster (unstamped, so two runs compare
    equal); the spool is discarded whatever happens."""
    import logging

    from secmetrics_dagster.collection import RunContext, Spool
    from secmetrics_dagster.sources.base import Pull

    spool = Spool(RunContext(tag, "acme"), directory, stamp=False)
    try:
        with resource.client(settings) as http:
            pull_fn(Pull(resource, http, spool, inputs, log or logging.getLogger(f"{tag}-test")))
    except BaseException:
        spool.discard()
        raise
    snapshot = spool.close()
    records = list(snapshot.iter_records())
    snapshot.discard()
    return records
