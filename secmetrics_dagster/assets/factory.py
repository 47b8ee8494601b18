"""The asset factory: a list of Sources becomes Dagster assets that pull into a spool, fall back to the last S3
backup, and hand a Snapshot to the fan-out IO manager. It sits above sources and stores; neither imports it."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import dagster as dg

from ..collection.context import RunContext, expand_path, validate_tenancy
from ..collection.errors import AuthError, CollectionError, ConfigError, MissingCredentialsError
from ..collection.memory import heap_frozen
from ..collection.progress import Progress, reporting
from ..collection.redact import RedactingLog, Redactor
from ..collection.resource import CollectionResource
from ..collection.spool import Snapshot, Spool
from ..sources.base import DatasetSpec, DatasetUnavailable, Pull, Source, VendorResource
from ..stores.backup import backup_age_hours, load_backup
from ..stores.io_manager import IO_MANAGER_KEY, RecordStream, StoresResource
from .freshness import restate_backup_materialization
from .policies import AttemptPlan, attempt_plan, freshness_policy, step_retry_policy, vendor_pool

log = dg.get_dagster_logger("secmetrics.settings")


def _nobody_down() -> list[str]:
    return []


@dataclass
class CollectRequest:
    """One attempt at one dataset: what it pulls with, where it spools, what it may fall back to."""

    source: Source
    dataset: DatasetSpec
    resource: VendorResource
    collection: CollectionResource
    stores: StoresResource
    inputs: Mapping[str, RecordStream]
    log: Any
    redactor: Redactor
    # Where this attempt stands among the step's attempts. Before the last, a failure is raised for Dagster to
    # retry instead of serving the backup, unless the vendor is known to be down.
    plan: AttemptPlan = AttemptPlan(1, 1, None, 0.0)
    # The assets of this vendor this run already served from their backups (asked when an attempt fails).
    known_down: Callable[[], list[str]] = _nobody_down

    @property
    def last_attempt(self) -> bool:
        return self.plan.is_last


@dataclass(frozen=True)
class BackupOutlook:
    """What the fallback would serve if the pull fails for good: `served` True (a backup is there), False (none
    will be, `text` says why) or None (it could not be looked up; it is tried then)."""

    served: Optional[bool]
    text: str


def backup_outlook(request: CollectRequest, tenancy: str) -> BackupOutlook:
    """Whether a backup would be served, and which: the settings first, then one look at the backup object."""
    stores, tag = request.stores, request.dataset.tag
    if not request.collection.fallback_to_backup:
        return BackupOutlook(False, "COLLECTION_FALLBACK=false turns the fallback off")
    if not stores.s3_bucket:
        return BackupOutlook(False, "no S3 backup is configured (STORE_AWS_S3_BUCKET is not set)")
    if not stores.s3_backup:
        return BackupOutlook(False, "STORE_AWS_S3_BACKUP is empty, so no backup copy is kept")
    s3 = stores.s3_store()
    try:
        backup = s3.open_backup(tag, tenancy) if s3 is not None else None
    except Exception as exc:  # noqa: BLE001 - S3 may be down too: the fallback is still tried on the last attempt
        return BackupOutlook(None, f"the backup could not be looked up now: {request.redactor.error(exc)}")
    if backup is None:
        where = s3.uri(expand_path(stores.s3_backup, RunContext(tag, tenancy)).lstrip("/")) if s3 else "S3"
        return BackupOutlook(False, f"there is no backup at {where} yet (none was written for this tenancy)")
    collected = backup.metadata.get("timestamp", "at an unknown time")
    return BackupOutlook(True, f"the S3 backup {backup.uri} collected {collected}")


def retry_message(tag: str, reason: str, plan: AttemptPlan, outlook: BackupOutlook) -> str:
    """What a failed attempt before the last says: which attempt, when the next one starts and what happens
    after the last one (the backup served then, and about when, or why none will be)."""
    text = (
        f"{tag}: attempt {plan.number} of {plan.total} failed ({reason}). Dagster starts attempt {plan.number + 1} "
        f"of {plan.total} in about {plan.next_in or 0:.0f} s."
    )
    when = f"about {plan.last_in:.0f} s from now plus the time the attempts themselves take"
    if outlook.served is False:
        return (
            text + f" If attempt {plan.total} fails too, the step fails and no backup will be served: {outlook.text}."
        )
    if outlook.served is None:
        return text + f" If attempt {plan.total} fails too, the S3 backup is tried then, {when} ({outlook.text})."
    return text + f" If attempt {plan.total} fails too, {outlook.text} is served then, {when}."


def collect(request: CollectRequest) -> Snapshot:
    """Pull into a spool; if the pull fails and a backup exists, serve the backup, honestly labelled.

    Before the step's last attempt a failure is raised for Dagster's RetryPolicy to retry, so a transient outage
    is waited out rather than answered with stale data, and the log says when the next attempt starts and what
    the last one would serve; refused credentials fall back at once, and so does any attempt once another asset
    of the vendor was served from its backup in this run (the vendor is known to be down). Every message that
    leaves here (log lines, metadata, the raised error) has the configured secrets masked, whatever raised it.
    """
    dataset, log, redactor = request.dataset, request.log, request.redactor
    ctx = RunContext(dataset.tag, request.collection.tenancy)  # validates tag and tenancy before anything is written
    spool = Spool(ctx, request.collection.spool_path(), logger=log)
    client = request.resource.client(request.collection.http_settings(), logger=log)
    try:
        pull = Pull(request.resource, client, spool, request.inputs, log)
        progress = Progress(
            dataset.tag,
            log,
            request.collection.progress_seconds,
            records=lambda: spool.count,
            total=lambda: pull.reported_total or spool.expected_total,
            stats=client.stats.as_metadata,
        )
        with client, reporting(progress), heap_frozen():
            dataset.pull(pull)
        snapshot = spool.close()
        if pull.reported_total is not None:
            snapshot.metadata["reported_total"] = pull.reported_total
    except (ConfigError, DatasetUnavailable):
        spool.discard()
        raise
    except Exception as exc:  # noqa: BLE001 - any failed pull may fall back; re-raised (redacted) when it cannot
        spool.discard()
        reason = redactor.error(exc)
        failure = _redacted(exc, reason)
        plan = request.plan
        if not plan.is_last and not isinstance(exc, AuthError):
            outlook = backup_outlook(request, ctx.tenancy)
            down = request.known_down() if outlook.served else []
            if not down:
                log.warning(retry_message(dataset.tag, reason, plan, outlook))
                raise failure from None
            served = "was served from its backup" if len(down) == 1 else "were served from their backups"
            log.warning(
                f"{dataset.tag}: attempt {plan.number} of {plan.total} failed ({reason}). {', '.join(down)} {served} "
                f"in this run, so {request.source.title} is known to be down: serving {outlook.text} now instead of "
                f"waiting for attempts {plan.number + 1}-{plan.total}."
            )
        if not request.collection.fallback_to_backup:
            raise failure from None
        try:
            snapshot = load_backup(
                request.stores, dataset.tag, ctx.tenancy, request.collection.spool_path(), logger=log
            )
        except Exception as backup_exc:  # noqa: BLE001
            log.error(f"{dataset.tag}: the backup could not be read either: {redactor.error(backup_exc)}")
            raise failure from None
        if snapshot is None:
            raise failure from None
        log.warning(
            f"{dataset.tag}: the pull failed ({reason}); serving the last S3 backup {snapshot.backup_location} "
            f"collected {snapshot.timestamp_text} ({backup_age_hours(snapshot)} h ago). Downstream metrics run on "
            "that data; fix the cause and materialize again."
        )
        snapshot.metadata["fallback_reason"] = reason
    snapshot.metadata.update(client.stats.as_metadata())
    snapshot.columns = dataset.columns  # the stores build the typed views from them
    return snapshot


def _redacted(exc: BaseException, message: str) -> Exception:
    """The same kind of error with the redacted message and no chain, so no secret rides along in a cause."""
    status = getattr(exc, "status", None)
    if isinstance(exc, CollectionError):
        try:
            return type(exc)(message, status=status)
        except TypeError:
            pass
    return CollectionError(message, status=status)


def snapshot_metadata(snapshot: Snapshot) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(snapshot.records),
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


SQL_TYPES = {"text": "text", "integer": "bigint", "float": "double", "boolean": "boolean",
             "timestamp": "timestamptz", "json": "json"}  # fmt: skip


def column_schema(dataset: DatasetSpec) -> dg.TableSchema:
    """The `<tag>_latest` view's columns as the UI's Columns tab shows them: the upload columns, the raw record,
    then each declared typed column with its JSON path."""
    base = [
        dg.TableColumn("upload_timestamp", "timestamptz", "When the upload was collected (UTC)."),
        dg.TableColumn("tenancy", "text", "Tenancy of the upload (TENANCY)."),
        dg.TableColumn("upload_id", "text", "The upload (collection run) this row belongs to."),
        dg.TableColumn("json_data", "json", "The record as the vendor's API returned it, with the collection stamps."),
    ]
    typed = [dg.TableColumn(c.name, SQL_TYPES[c.type], c.description, tags={"path": c.path}) for c in dataset.columns]
    return dg.TableSchema(columns=base + typed)


def store_kinds(stores: Optional[StoresResource]) -> set[str]:
    """The storage kinds the UI shows beside the vendor's, from the stores configured when the code loaded."""
    if stores is None:
        return set()
    kinds = {"json"} if stores.file_template else set()
    kinds |= {"s3"} if stores.s3_bucket else set()
    kinds |= {"postgres"} if stores.postgres_host else set()
    kinds |= {"duckdb"} if stores.duckdb_path else set()
    return kinds


def settings_problems(stores: Optional[StoresResource], collection: Optional[CollectionResource]) -> list[str]:
    """Every unusable store and collection setting of these resources, each naming its variable (secrets masked):
    what every collection step would refuse at its start. Loading the code reports them instead of failing."""
    found: list[str] = []
    if collection is not None:
        found += collection.settings_report()
        try:
            validate_tenancy(collection.tenancy)
        except ConfigError as exc:
            found.append(str(exc))
    if stores is not None:
        found += stores.settings_report()
    redactor = Redactor(stores.secret_values() if stores is not None else [])
    return [redactor.text(problem) for problem in dict.fromkeys(found)]


def describe(
    source: Source, dataset: DatasetSpec, stores: Optional[StoresResource] = None, problems: Sequence[str] = ()
) -> str:
    """A plain first sentence for the catalog row, then what the asset reads and where it is written."""
    required = ", ".join(f"`{name}`" for name in source.required_env) or "none"
    text = (
        f"{source.title}: {dataset.title}. {dataset.description}\n\n"
        f"Endpoint: `{dataset.endpoint}`. Credentials: {required}. Docs: {source.docs_url}\n\n"
    )
    if problems:
        text += (
            "**Not collected until a setting is fixed:** "
            + "; ".join(problems)
            + ". Every run of this asset fails at its start naming the variable; fix it and reload the code "
            "location.\n\n"
        )
    if stores is None:
        return text + f"Written as `{dataset.tag}` to every configured store."
    places = []
    if stores.file_template:
        places.append(f"the JSON envelope `{stores.file_template}`")
    if stores.s3_bucket:
        places.append(
            f"S3 `s3://{stores.s3_bucket}` (history `{stores.s3_key or 'off'}`, backup `{stores.s3_backup or 'off'}`)"
        )
    if stores.postgres_host:
        places.append(f"PostgreSQL `{stores.postgres_schema}.{dataset.tag}` (views `{dataset.tag}_latest`, `_history`)")
    if stores.duckdb_path:
        places.append(f"DuckDB `{stores.duckdb_path}` table `{dataset.tag}` (views `{dataset.tag}_latest`, `_history`)")
    text += "Written to " + ("; ".join(places) if places else "no store (set STORE_FILE or another STORE_*)") + ". "
    if stores.s3_bucket and stores.s3_backup:
        text += "When the API fails, the last S3 backup is served, labelled `source: backup`."
    else:
        text += "No S3 backup is configured, so a failed pull fails (set STORE_AWS_S3_BUCKET for a fallback)."
    return text


def code_reference(dataset: DatasetSpec) -> dg.CodeReferencesMetadataValue:
    """The pull function's file and line: the UI links the asset to the vendor module, not to the factory."""
    pull = inspect.unwrap(dataset.pull)
    try:
        path, line = inspect.getsourcefile(pull), inspect.getsourcelines(pull)[1]
    except (OSError, TypeError):  # a pull built at run time (a closure over an endpoint) points at its module
        module = inspect.getmodule(pull)
        path, line = (inspect.getsourcefile(module) if module else None), 1
    with warnings.catch_warnings():  # code references are a beta API in Dagster 1.13; its warning is noise here
        warnings.simplefilter("ignore", dg.BetaWarning)
        references = [dg.LocalFileCodeReference(file_path=path, line_number=line)] if path else []
        return dg.CodeReferencesMetadataValue(code_references=references)


def served_from_backup_in_run(
    context: Any, source: Source, dataset: DatasetSpec, inputs: Mapping[str, RecordStream]
) -> list[str]:
    """The assets of this vendor that this very run served from a backup: the vendor is known to be down. The
    inputs first (at hand), then each other asset of the source, from its latest materialization."""
    down = [name for name, stream in inputs.items() if stream.source == "backup" and stream.run_id == context.run_id]
    for tag in source.tags:
        if tag == dataset.tag or tag in down:
            continue
        event = context.instance.get_latest_materialization_event(dg.AssetKey(tag))
        materialization = event.asset_materialization if event is not None else None
        if materialization is None or event.run_id != context.run_id:
            continue
        origin = materialization.metadata.get("source")
        if getattr(origin, "value", origin) == "backup":
            down.append(tag)
    return down


class AssetFactory:
    """Builds every source's assets; knows the full set so a run can tell "everything" from "this source only"."""

    def __init__(
        self,
        sources: Sequence[Source],
        stores: Optional[StoresResource] = None,
        owners: Sequence[str] = (),
        op_tags: Optional[Mapping[str, Mapping[str, str]]] = None,
        collection: Optional[CollectionResource] = None,
        vendors: Optional[Mapping[str, VendorResource]] = None,
    ):
        self.sources = list(sources)
        self.op_tags = dict(op_tags or {})  # per vendor group: the executor's step tags (a Celery queue)
        self.stores = stores  # as configured when the code loaded: descriptions and kinds say where data goes
        self.owners = list(owners)
        self.all_keys = frozenset(dg.AssetKey(tag) for source in self.sources for tag in source.tags)
        # Checked when the code loads, as far as Dagster allows without failing the code location: each problem is
        # logged and shown on every asset; the steps refuse to start on it (and check again, whatever they get).
        self.problems = settings_problems(stores, collection)
        for problem in self.problems:
            log.error(
                f"settings: {problem}. Every collection step fails at its start until this is fixed; the code "
                "location stays up: fix the variable and reload it."
            )
        # A vendor's own settings (as loaded, `vendors` by resource key) stop that vendor's assets only.
        self.vendor_problems: dict[str, list[str]] = {}
        for source in self.sources:
            resource = (vendors or {}).get(source.resource_key)
            if resource is None:
                continue
            redactor = Redactor(resource.secret_values())
            found = [redactor.text(problem) for problem in dict.fromkeys(resource.settings_report())]
            self.vendor_problems[source.group] = found
            for problem in found:
                log.error(
                    f"settings: {problem}. Every {source.title} step fails at its start until this is fixed; the "
                    "other vendors are collected and the code location stays up: fix the variable and reload it."
                )

    def assets(self) -> list[dg.AssetsDefinition]:
        return [self._asset(source, dataset) for source in self.sources for dataset in source.datasets]

    def _missing_credentials(self, context: Any, source: Source, missing: list[str]) -> None:
        """Skip with a warning inside a wider run; fail loudly when the run asked for nothing but this source."""
        selection = set(context.run.asset_selection or ())
        own = {dg.AssetKey(tag) for tag in source.tags}
        # A run's job is already cut down to its selection, so "everything" is every collection asset built.
        if selection and selection <= own and selection != self.all_keys:
            raise dg.Failure(description=str(MissingCredentialsError(source.title, missing)), allow_retries=False)
        context.log.warning(
            f"{source.title}: {context.asset_key.to_user_string()} skipped, missing environment variable(s) "
            f"{', '.join(missing)}. Set them to collect it; the other sources in this run are not affected."
        )

    def _asset(self, source: Source, dataset: DatasetSpec) -> dg.AssetsDefinition:
        retry_policy = step_retry_policy()
        factory = self

        @dg.asset(
            name=dataset.tag,
            group_name=source.group,
            description=describe(
                source, dataset, self.stores, [*self.problems, *self.vendor_problems.get(source.group, ())]
            ),
            io_manager_key=IO_MANAGER_KEY,
            ins={dep: dg.AssetIn(key=dg.AssetKey(dep)) for dep in dataset.deps},
            required_resource_keys={"collection", "stores", source.resource_key},
            output_required=False,
            kinds={source.group, *store_kinds(self.stores)},
            owners=self.owners or None,
            tags={"vendor": source.group},
            metadata={
                "vendor": source.title,
                "endpoint": dataset.endpoint,
                "docs": dg.MetadataValue.url(source.docs_url),
                "credentials": ", ".join(source.required_env) or "none",
                "dagster/column_schema": column_schema(dataset),
                "dagster/code_references": code_reference(dataset),
            },
            freshness_policy=freshness_policy(source.group),
            retry_policy=retry_policy,
            pool=vendor_pool(source.group),
            op_tags=self.op_tags.get(source.group),
        )
        def _asset(context, **inputs):  # no annotations: Dagster inspects them and they are strings here
            resource: VendorResource = getattr(context.resources, source.resource_key)
            missing = resource.missing_env()
            if missing:
                factory._missing_credentials(context, source, missing)
                return
            stores: StoresResource = context.resources.stores
            collection: CollectionResource = context.resources.collection
            # The vendor's secrets and every secret the stores use (the PostgreSQL password, the AWS keys).
            redactor = Redactor([*resource.secret_values(), *stores.secret_values()])
            try:  # every setting checked before any vendor request: a bad one fails in a second, without retries
                for settings in (resource, collection, stores):
                    settings.check_settings()
                stores.build()  # tag and tenancy: collect() checks them first, before the spool or any request
            except ConfigError as exc:
                raise dg.Failure(description=redactor.text(f"{dataset.tag}: {exc}"), allow_retries=False) from None
            log = RedactingLog(context.log, redactor)
            request = CollectRequest(
                source,
                dataset,
                resource,
                collection,
                stores,
                inputs,
                log,
                redactor,
                plan=attempt_plan(retry_policy, context.retry_number),
                known_down=lambda: served_from_backup_in_run(context, source, dataset, inputs),
            )
            try:
                snapshot = collect(request)
            except DatasetUnavailable as exc:
                log.warning(f"{source.title}: {dataset.tag} skipped: {exc}. The other assets are not affected.")
                yield dg.AssetObservation(asset_key=dg.AssetKey(dataset.tag), metadata={"skipped": redactor.text(exc)})
                return
            except (AuthError, ConfigError) as exc:
                # Waiting does not fix refused credentials or a bad setting: fail now, without step retries.
                raise dg.Failure(description=redactor.error(exc), allow_retries=False) from None
            yield dg.Output(snapshot, metadata=snapshot_metadata(snapshot))
            if snapshot.source == "backup":
                restate_backup_materialization(context, dg.AssetKey(dataset.tag), snapshot.timestamp)

        return _asset


def build_assets(
    sources: Iterable[Source],
    stores: Optional[StoresResource] = None,
    owners: Sequence[str] = (),
    op_tags: Optional[Mapping[str, Mapping[str, str]]] = None,
    collection: Optional[CollectionResource] = None,
    vendors: Optional[Mapping[str, VendorResource]] = None,
) -> list[dg.AssetsDefinition]:
    """The assets of these sources (what `definitions.py` and the tests call); `op_tags` per vendor group. The
    `stores`, `collection` and vendor resources (`vendors`, by resource key) the code loaded with are checked now,
    each problem shown on the assets it stops."""
    return AssetFactory(list(sources), stores, owners, op_tags, collection, vendors).assets()
