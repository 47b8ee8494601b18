"""What a source declares about itself, and the factory that turns that into Dagster assets with fallback."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import dagster as dg

from ..automation.freshness import restate_backup_materialization
from ..automation.policies import freshness_policy, is_last_attempt, step_retry_policy, vendor_pool
from ..collection.context import RunContext
from ..collection.errors import AuthError, ConfigError, MissingCredentialsError
from ..collection.http import HttpSession, HttpSettings
from ..collection.resource import CollectionResource
from ..collection.spool import Snapshot, Spool
from ..stores.backup import backup_age_hours, load_backup
from ..stores.io_manager import RecordStream, StoresResource

IO_MANAGER_KEY = "snapshot_io_manager"
_BUILT_KEYS: set[dg.AssetKey] = set()  # every collection asset this process has defined


@dataclass(frozen=True)
class EnvVarDoc:
    name: str
    description: str
    default: Optional[str] = None
    required: bool = False
    secret: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """One asset of a source: its tag (asset key, file name, table name) and what it holds."""

    tag: str
    title: str
    description: str
    endpoint: str
    deps: tuple[str, ...] = ()
    # For asset checks: dotted paths every record must carry (what metrics rely on), and whether an
    # empty collection is normal for this dataset.
    required_fields: tuple[str, ...] = ()
    allow_empty: bool = False


@dataclass(frozen=True)
class SourceSpec:
    """A vendor, described once: this feeds asset descriptions in the UI and the README's collector table."""

    group: str
    title: str
    docs_url: str
    resource_key: str
    env_vars: tuple[EnvVarDoc, ...]
    datasets: tuple[DatasetSpec, ...]

    @property
    def required_env(self) -> list[str]:
        return [v.name for v in self.env_vars if v.required]

    def dataset(self, tag: str) -> DatasetSpec:
        return next(d for d in self.datasets if d.tag == tag)


class VendorResource(dg.ConfigurableResource):
    """Base for a vendor's credentials and endpoint; it builds the HTTP session the pull uses."""

    def missing_env(self) -> list[str]:
        raise NotImplementedError

    def session(self, settings: HttpSettings, logger: Any = None) -> HttpSession:
        raise NotImplementedError


@dataclass
class Pull:
    """Everything a pull function gets: the vendor resource, its HTTP session, the spool, upstream inputs."""

    resource: Any
    http: HttpSession
    spool: Spool
    inputs: Mapping[str, RecordStream]
    log: Any


PullFn = Callable[[Pull], None]


class DatasetUnavailable(Exception):
    """A pull's verdict that this tenant cannot have the dataset (not licensed, not permitted): the asset is skipped.

    Not a failure and no backup is served: an ever-older backup would hide a licence or permission change,
    while a skip leaves the asset visibly unmaterialized (and stale to freshness) with the reason in the log.
    """


def _missing_credentials(context: dg.AssetExecutionContext, source: SourceSpec, missing: list[str]) -> None:
    """Skip with a warning inside a wider run; fail loudly when the run asked for nothing but this source."""
    selection = set(context.run.asset_selection or ())
    own = {dg.AssetKey(d.tag) for d in source.datasets}
    # A run's job is already cut down to its selection, so "everything" is every collection asset built.
    if selection and selection <= own and selection != _BUILT_KEYS:
        raise dg.Failure(description=str(MissingCredentialsError(source.title, missing)), allow_retries=False)
    context.log.warning(
        f"{source.title}: {context.asset_key.to_user_string()} skipped, missing environment variable(s) "
        f"{', '.join(missing)}. Set them to collect it; the other sources in this run are not affected."
    )


def collect(
    context: Any,
    source: SourceSpec,
    dataset: DatasetSpec,
    pull: PullFn,
    resource: VendorResource,
    collection: CollectionResource,
    stores: StoresResource,
    inputs: Mapping[str, RecordStream],
    last_attempt: bool = True,
) -> Snapshot:
    """Pull into a spool; if the pull fails and a backup exists, serve the backup, honestly labelled.

    Before the step's last attempt a failure is raised for Dagster's RetryPolicy to retry, so a transient
    outage is waited out rather than answered with stale data; refused credentials fall back at once.
    """
    ctx = RunContext(dataset.tag, collection.tenancy)  # validates tag and tenancy before anything is written
    spool = Spool(ctx, collection.spool_path())
    http = resource.session(collection.http_settings(), logger=context.log)
    try:
        with http:
            pull(Pull(resource, http, spool, inputs, context.log))
        snapshot = spool.close()
    except (ConfigError, DatasetUnavailable):
        spool.discard()
        raise
    except Exception as exc:  # noqa: BLE001 - any failed pull may fall back; re-raised when it cannot
        spool.discard()
        if not last_attempt and not isinstance(exc, AuthError):
            context.log.warning(
                f"{dataset.tag}: attempt {context.retry_number + 1} failed ({exc}); the step is "
                "retried before the S3 backup is served."
            )
            raise
        if not collection.fallback_to_backup:
            raise
        try:
            snapshot = load_backup(stores, dataset.tag, ctx.tenancy, collection.spool_path())
        except Exception as backup_exc:  # noqa: BLE001
            context.log.error(f"{dataset.tag}: the backup could not be read either: {backup_exc}")
            raise exc from None
        if snapshot is None:
            raise
        context.log.warning(
            f"{dataset.tag}: the pull failed ({exc}); serving the last S3 backup {snapshot.backup_location} "
            f"collected {snapshot.timestamp_text} ({backup_age_hours(snapshot)} h ago). Downstream metrics run on that "
            "data; fix the cause and materialize again."
        )
        snapshot.metadata["fallback_reason"] = str(exc)
    snapshot.metadata.update(http.stats.as_metadata())
    return snapshot


def snapshot_metadata(snapshot: Snapshot) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "records": dg.MetadataValue.int(snapshot.records),
        "source": snapshot.source,
        "tenancy": snapshot.tenancy,
        "upload_id": snapshot.upload_id,
        "collected_at": dg.MetadataValue.timestamp(snapshot.timestamp),
    }
    if snapshot.expected_total is not None:
        metadata["expected_total"] = snapshot.expected_total
    if snapshot.source == "backup":
        metadata["backup_location"] = snapshot.backup_location
        metadata["backup_collected_at"] = snapshot.timestamp_text
        metadata["backup_age_hours"] = backup_age_hours(snapshot)
    metadata.update(snapshot.metadata)
    return metadata


def describe(source: SourceSpec, dataset: DatasetSpec) -> str:
    required = ", ".join(f"`{v.name}`" for v in source.env_vars if v.required) or "none"
    return (
        f"**{source.title}: {dataset.title}.** {dataset.description}\n\n"
        f"Endpoint: `{dataset.endpoint}`. Credentials: {required}. Docs: {source.docs_url}\n\n"
        f"Written as the `{dataset.tag}` envelope to every configured store (file, S3 + backup, "
        f"PostgreSQL/DuckDB table `{dataset.tag}` and view `{dataset.tag}_latest`). Falls back to the last S3 "
        "backup when the API fails; metadata `source` says which."
    )


def build_assets(source: SourceSpec, pulls: Mapping[str, PullFn]) -> list[dg.AssetsDefinition]:
    missing_pulls = {d.tag for d in source.datasets} ^ set(pulls)
    if missing_pulls:
        raise ValueError(f"{source.group}: datasets and pull functions differ: {sorted(missing_pulls)}")
    _BUILT_KEYS.update(dg.AssetKey(d.tag) for d in source.datasets)
    return [_build_asset(source, dataset, pulls[dataset.tag]) for dataset in source.datasets]


def _build_asset(source: SourceSpec, dataset: DatasetSpec, pull: PullFn) -> dg.AssetsDefinition:
    retry_policy = step_retry_policy()

    @dg.asset(
        name=dataset.tag,
        group_name=source.group,
        description=describe(source, dataset),
        io_manager_key=IO_MANAGER_KEY,
        ins={dep: dg.AssetIn(key=dg.AssetKey(dep)) for dep in dataset.deps},
        required_resource_keys={"collection", "stores", source.resource_key},
        output_required=False,
        kinds={source.group},
        tags={"vendor": source.group},
        metadata={
            "vendor": source.title,
            "endpoint": dataset.endpoint,
            "docs": dg.MetadataValue.url(source.docs_url),
            "credentials": ", ".join(source.required_env) or "none",
        },
        freshness_policy=freshness_policy(source.group),
        retry_policy=retry_policy,
        pool=vendor_pool(source.group),
    )
    def _asset(context, **inputs):  # no annotations: Dagster inspects them and they are strings here
        resource: VendorResource = getattr(context.resources, source.resource_key)
        missing = resource.missing_env()
        if missing:
            _missing_credentials(context, source, missing)
            return
        try:
            snapshot = collect(
                context,
                source,
                dataset,
                pull,
                resource,
                context.resources.collection,
                context.resources.stores,
                inputs,
                last_attempt=is_last_attempt(context, retry_policy),
            )
        except DatasetUnavailable as exc:
            context.log.warning(f"{source.title}: {dataset.tag} skipped: {exc}. The other assets are not affected.")
            yield dg.AssetObservation(asset_key=dg.AssetKey(dataset.tag), metadata={"skipped": str(exc)})
            return
        except (AuthError, ConfigError) as exc:
            # Waiting does not fix refused credentials or a bad setting: fail now, without step retries.
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        yield dg.Output(snapshot, metadata=snapshot_metadata(snapshot))
        if snapshot.source == "backup":
            restate_backup_materialization(context, dg.AssetKey(dataset.tag), snapshot.timestamp)

    return _asset
