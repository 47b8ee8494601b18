"""The fan-out IO manager: every Snapshot goes to every configured store; inputs stream back from one.

`write_everywhere` is the one "write this snapshot to every store" that the IO manager and the restore job share:
the stores are written at the same time, one failing does not stop the others, and the caller then fails naming
the store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import dagster as dg

from ..collection.errors import ConfigError
from ..collection.memory import release_free_memory
from ..collection.redact import Redactor
from ..collection.settings import SettingsResource, env_setting
from ..collection.spool import Snapshot, SpoolWriteError
from .base import Store, StoreError, StoreResult, UploadRef
from .duckdb import DuckDBStore, unparsed_counts
from .envelope import render_envelope
from .file import FileStore
from .postgres import PostgresStore
from .s3 import MB, S3Store
from .verify import READ_ORDER, upload_ref_from_metadata

IO_MANAGER_KEY = "snapshot_io_manager"
DEFAULT_FILE_TEMPLATE = "data/source/%TAG/%TENANCY.json"
DEFAULT_BACKUP_TEMPLATE = "backup/%TAG/%TENANCY.json"
NO_STORE = "no store is configured: set STORE_FILE, STORE_AWS_S3_BUCKET, STORE_POSTGRES_HOST or STORE_DUCKDB"


# Secrets the store clients take from the environment on their own: boto3's credential chain (the S3 store signs
# with them; AWS_SECURITY_TOKEN is the older name of the session token) and libpq's password variable.
CLIENT_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "PGPASSWORD")


def _resolved(value: Any) -> Optional[str]:
    """A secret field's value: an EnvVar reference (a resource built by from_env, outside a run) resolved."""
    if isinstance(value, dg.EnvVar):
        return os.environ.get(value.env_var_name)
    return value if isinstance(value, str) else None


class StoresResource(SettingsResource):
    """Where snapshots are written. Each store is on when its STORE_* variable is set (files by default).

    The seed's variable names. The password enters config only as an EnvVar reference, never its value.
    """

    settings_title: ClassVar[str] = "Stores"

    file_template: Optional[str] = env_setting(
        "STORE_FILE",
        "JSON envelope path template (`%TAG`, `%TENANCY`, ...); set it empty to write no files.",
        DEFAULT_FILE_TEMPLATE,
        blank_disables=True,
    )
    s3_bucket: Optional[str] = env_setting("STORE_AWS_S3_BUCKET", "S3 bucket; unset writes nothing to S3.")
    s3_key: Optional[str] = env_setting(
        "STORE_AWS_S3_KEY",
        "Key template of the history copy of each upload (e.g. `data/%TAG/%YYYY/%MM/%DD/%UUID.json`).",
    )
    s3_backup: Optional[str] = env_setting(
        "STORE_AWS_S3_BACKUP",
        "Key template of the one last good copy the fallback reloads (`%TAG`, `%TENANCY` only); empty for none.",
        DEFAULT_BACKUP_TEMPLATE,
        blank_disables=True,
    )
    s3_endpoint_url: Optional[str] = env_setting(
        "STORE_AWS_S3_ENDPOINT_URL", "S3-compatible endpoint (MinIO, a local test server); unset is AWS."
    )
    s3_region: Optional[str] = None
    s3_multipart_threshold_mb: int = env_setting(
        "STORE_AWS_S3_MULTIPART_MB", "Uploads at least this large (MB) go up in parts.", 64, low=5, high=5 * 1024
    )
    postgres_host: Optional[str] = env_setting("STORE_POSTGRES_HOST", "PostgreSQL host; unset writes nothing there.")
    postgres_port: int = env_setting("STORE_POSTGRES_PORT", "PostgreSQL port.", 5432, low=1, high=65535)
    postgres_user: Optional[str] = env_setting("STORE_POSTGRES_USER", "PostgreSQL user.")
    postgres_password: Optional[str] = env_setting("STORE_POSTGRES_PASSWORD", "PostgreSQL password.", secret=True)
    postgres_dbname: Optional[str] = env_setting("STORE_POSTGRES_DBNAME", "PostgreSQL database.")
    postgres_schema: str = env_setting("STORE_POSTGRES_SCHEMA", "Schema of the tables and views.", "public")
    duckdb_path: Optional[str] = env_setting("STORE_DUCKDB", "DuckDB database file; unset writes no DuckDB.")
    duckdb_memory_limit: str = env_setting(
        "STORE_DUCKDB_MEMORY_LIMIT", "DuckDB's memory limit while loading (e.g. `16MB`, `1GB`).", "16MB"
    )

    def secret_values(self) -> list[str]:
        """Every secret a store may quote back in an error, for redaction: the declared ones
        (STORE_POSTGRES_PASSWORD, resolved when still an EnvVar reference) and those the store clients read from
        the environment themselves (the AWS keys boto3 signs the S3 store's requests with, libpq's PGPASSWORD)."""
        values = [_resolved(getattr(self, name, None)) for name, setting in self.declared_settings() if setting.secret]
        values += [os.environ.get(name) for name in CLIENT_SECRET_ENV]
        return [value for value in values if isinstance(value, str) and value]

    def _refuse_problems(self) -> None:
        if self.settings_problems:
            raise ConfigError("; ".join(self.settings_problems))

    def _s3(self) -> Optional[S3Store]:
        if not self.s3_bucket:
            return None
        return S3Store(
            self.s3_bucket,
            self.s3_key,
            self.s3_backup,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            multipart_threshold=self.s3_multipart_threshold_mb * MB,
        )

    def _makers(self) -> list[Callable[[], Optional[Store]]]:
        """One constructor per configured store; each checks its own settings before any connection."""
        makers: list[Callable[[], Optional[Store]]] = []
        if self.file_template:
            makers.append(lambda: FileStore(self.file_template))
        if self.s3_bucket:
            makers.append(self._s3)
        if self.postgres_host:
            makers.append(
                lambda: PostgresStore(
                    host=self.postgres_host,
                    port=self.postgres_port,
                    user=self.postgres_user,
                    password=self.postgres_password,
                    dbname=self.postgres_dbname,
                    schema=self.postgres_schema,
                )
            )
        if self.duckdb_path:
            makers.append(lambda: DuckDBStore(self.duckdb_path, memory_limit=self.duckdb_memory_limit))
        return makers

    def s3_store(self) -> Optional[S3Store]:
        self._refuse_problems()
        return self._s3()

    def build(self) -> list[Store]:
        """The configured stores, every setting checked (ConfigError naming the variable), nothing connected."""
        self._refuse_problems()
        return [store for make in self._makers() if (store := make()) is not None]

    def settings_report(self) -> list[str]:
        """Every unusable store setting, each store's own check included, not only the first."""
        found = super().settings_report()
        for make in self._makers():
            try:
                make()
            except ConfigError as exc:
                found.append(str(exc))
        return found


@dataclass
class FanOutResult:
    results: list[StoreResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    # Typed column -> values present that did not convert (the vendor changed the field's type).
    unparsed: dict[str, int] = field(default_factory=dict)
    # Why they could not be counted, when they could not (redacted): `unparsed` then says nothing.
    unparsed_error: Optional[str] = None

    def raise_for_failures(self, snapshot: Snapshot, what_to_do: str) -> None:
        """Fail naming every store that failed and every store that was written."""
        if not self.failures:
            return
        written = ", ".join(r.store for r in self.results) or "none"
        causes = "; ".join(f"{name} store failed: {error}" for name, error in self.failures.items())
        raise StoreError(
            f"{snapshot.tag} upload {snapshot.upload_id}: {causes}. Stores written: {written}. {what_to_do}; "
            "the same upload id is replaced, not duplicated."
        )


def _write_one(store: Store, snapshot: Snapshot, envelope: Optional[Path], slot: list) -> None:
    """One store's write, its result or its exception put in `slot` (run in that store's own thread)."""
    try:
        slot.append(store.write(snapshot, envelope))
    except BaseException as exc:  # noqa: BLE001 - handed to fan_out, which isolates or re-raises it
        slot.append(exc)


def fan_out(
    snapshot: Snapshot,
    stores: list[Store],
    log: Callable[[str], None] = lambda _m: None,
    redactor: Optional[Redactor] = None,
) -> FanOutResult:
    """Write to every store at once, a thread per store; one failing does not stop the others.

    Each store opens its own connection or client in its write, and each write is atomic on its own (a renamed
    file, a completed S3 upload, one committed transaction), so running them side by side changes nothing a reader
    can see. The stores that load from the spool (the databases) start first; the envelope is rendered once while
    they load, then shared by the stores that ship it (file, S3), which start when it is ready. An envelope that
    cannot be written (a full spool disk) fails those stores only.
    Results, failures and log lines come out in the stores' order, whichever finished first; store errors are
    redacted of secrets. The log lines are written here, in the caller's thread, after every writer is done.

    An interrupt (Dagster's run termination) reaches the caller's thread while it waits: it propagates at once and
    the writers, daemon threads, finish or fail atomically on their own (a store cannot be cut short from outside).
    """
    redactor = redactor or Redactor()
    outcome = FanOutResult()
    envelope: Optional[Path] = None
    slots: list[list] = [[] for _ in stores]
    writers: list[threading.Thread] = []

    def start(index: int) -> None:
        if len(stores) == 1:  # one store: written in this thread
            _write_one(stores[index], snapshot, envelope, slots[index])
            return
        writer = threading.Thread(
            target=_write_one,
            args=(stores[index], snapshot, envelope, slots[index]),
            name=f"secmetrics-{stores[index].name}-store",
            daemon=True,
        )
        writer.start()
        writers.append(writer)

    try:
        release_free_memory()  # the stores start from what is in use, not from the pull's high-water mark
        shipping = [i for i, store in enumerate(stores) if store.needs_envelope]
        # The databases load from the spool: they start at once, and the envelope is rendered while they load.
        for index in range(len(stores)):
            if index not in shipping:
                start(index)
        if shipping:
            try:
                envelope = render_envelope(snapshot)
            except SpoolWriteError as exc:  # the spool disk is full: the stores that ship the envelope fail
                for index in shipping:
                    slots[index].append(exc)
            else:
                for index in shipping:
                    start(index)
        for writer in writers:
            writer.join()
        for store, slot in zip(stores, slots):
            done = slot[0] if slot else RuntimeError("the store's writer ended without a result")
            if isinstance(done, StoreResult):
                outcome.results.append(done)
            elif isinstance(done, Exception):
                outcome.failures[store.name] = redactor.text(f"{type(done).__name__}: {done}")
                log(redactor.text(f"{snapshot.tag}: {store.describe()} failed: {done}"))
            else:
                raise done  # not an error of the store (SystemExit and the like): as it was raised
    finally:
        if envelope is not None:
            envelope.unlink(missing_ok=True)
    return outcome


def write_everywhere(snapshot: Snapshot, stores: StoresResource, log: Callable[[str], None]) -> FanOutResult:
    """Write the snapshot to every configured store, then discard its spool. The one write path of the IO manager
    and the restore job: they record `store_metadata(...)` and then call `raise_for_failures`."""
    redactor = Redactor(stores.secret_values())
    try:
        targets = stores.build()
        if not targets:
            raise ConfigError(NO_STORE)
        # The typed columns are counted from the spool while the stores are written (its own in-memory DuckDB).
        counted: list = []

        def count() -> None:
            try:
                counted.append(unparsed_counts(snapshot))
            except Exception as exc:  # noqa: BLE001 - counting is advice for the check; it never fails a load
                counted.append(exc)

        counter = threading.Thread(target=count, name="secmetrics-unparsed-counts", daemon=True)
        counter.start()
        try:
            outcome = fan_out(snapshot, targets, log=log, redactor=redactor)
        finally:
            counter.join()  # the spool is discarded below: not while it is being read
        if isinstance(counted[0], Exception):
            outcome.unparsed_error = redactor.text(f"{type(counted[0]).__name__}: {counted[0]}")
            log(f"{snapshot.tag}: the typed columns' values that do not convert could not be counted: "
                f"{outcome.unparsed_error}")  # fmt: skip
        else:
            outcome.unparsed = counted[0]
        return outcome
    finally:
        snapshot.discard()


STORES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("store", "text", "file, s3, s3 backup, postgres or duckdb."),
        dg.TableColumn("where", "text", "The file, object or table written (or why the store was skipped/failed)."),
        dg.TableColumn("records", "int"),
        dg.TableColumn("bytes", "int"),
        dg.TableColumn("seconds", "float"),
    ]
)


def _store_rows(outcome: FanOutResult) -> list[dict[str, Any]]:
    """One row per object written: the S3 history and backup objects are two rows (`s3`, `s3 backup`); with the
    history off the backup is the `s3` row."""
    rows: list[dict[str, Any]] = []
    for r in outcome.results:
        if r.skipped:
            rows.append({"store": r.store, "where": f"skipped: {r.skipped}", "records": 0, "bytes": 0, "seconds": 0.0})
            continue
        numbers = {"records": r.records, "bytes": r.bytes, "seconds": float(r.seconds)}
        rows.append({"store": r.store, "where": str(r.location), **numbers})
        backup = r.extra.get("backup") if r.store == "s3" else None
        if backup and str(backup) != str(r.location):  # the history object is the `s3` row
            rows.append({"store": "s3 backup", "where": str(backup), **numbers})
    for name, error in outcome.failures.items():
        rows.append({"store": name, "where": f"FAILED: {error}", "records": 0, "bytes": 0, "seconds": 0.0})
    return rows


def store_metadata(snapshot: Snapshot, outcome: FanOutResult) -> dict[str, Any]:
    """Per-store metadata for the UI: one `stores` table (where, how many, how big, how long), which the code
    reads back too (`stores_written`), plus Dagster's standard `dagster/uri` and `dagster/table_name`."""
    rows = _store_rows(outcome)
    metadata: dict[str, Any] = {
        "stores": dg.MetadataValue.table([dg.TableRecord(row) for row in rows], schema=STORES_SCHEMA),
    }
    # A count that could not be made says so (the columns_parsed check warns), rather than an empty count.
    if outcome.unparsed_error is not None:
        metadata["columns_unparsed_error"] = outcome.unparsed_error
    else:
        metadata["columns_unparsed"] = dg.MetadataValue.json(outcome.unparsed)
    # Dagster's standard keys: where the data is (the S3 history object, else the file) and its table.
    written = {r.store: r for r in outcome.results if not r.skipped}
    uri = written["s3"].extra.get("history") if "s3" in written else None
    uri = uri or (written["file"].location if "file" in written else None)
    if uri:
        metadata["dagster/uri"] = str(uri)
    table = written.get("postgres") or written.get("duckdb")
    if table is not None:
        metadata["dagster/table_name"] = table.location.split("::")[-1]
    return metadata


@dataclass
class RecordStream:
    """An upstream upload, streamed from a store each time it is iterated."""

    tag: str
    tenancy: str
    upload_id: str
    records: Optional[int]
    store: str
    _open: Callable[[], Iterator[dict]] = field(repr=False)
    # Where the upload came from (`api` or `backup`) and the run that materialized it.
    source: str = "api"
    run_id: Optional[str] = None

    def __iter__(self) -> Iterator[dict]:
        return self._open()


class SnapshotIOManager(dg.ConfigurableIOManager):
    """Writes each Snapshot to file, S3, PostgreSQL and DuckDB, as configured; reads inputs back as streams."""

    stores: StoresResource

    def handle_output(self, context: dg.OutputContext, obj: Optional[Snapshot]) -> None:
        if obj is None:
            return
        if not isinstance(obj, Snapshot):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a Snapshot, got {type(obj).__name__}")
        outcome = write_everywhere(obj, self.stores, context.log.error)
        context.add_output_metadata(store_metadata(obj, outcome))
        for r in outcome.results:
            done = f"skipped ({r.skipped})" if r.skipped else f"{r.records} records, {r.bytes} bytes, {r.seconds}s"
            context.log.info(f"{obj.tag}: {r.store} -> {r.location or '-'}: {done}")
        outcome.raise_for_failures(
            obj, "Fix the failing store's STORE_* settings or reachability and materialize again"
        )

    def load_input(self, context: dg.InputContext) -> RecordStream:
        """The upstream upload as a stream from the cheapest store holding it. Every error, here or while the
        stream is read (in the pull or the check step), leaves with the stores' secrets masked and no chain."""
        redactor = Redactor(self.stores.secret_values())
        failure: Optional[StoreError] = None
        try:
            return self._load_input(context, redactor)
        except Exception as exc:  # noqa: BLE001 - re-raised below, redacted
            failure = StoreError(redactor.error(exc))
        raise failure  # outside the except block: no __context__ carries the original message along

    def _load_input(self, context: dg.InputContext, redactor: Redactor) -> RecordStream:
        asset_key = context.asset_key
        event = context.instance.get_latest_materialization_event(asset_key)
        name = asset_key.to_user_string()
        if event is None or event.asset_materialization is None:
            raise StoreError(f"{name} has not been materialized yet: materialize it before the assets that read it")
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        ref = upload_ref_from_metadata(asset_key.path[-1], md)
        stores = {store.name: store for store in self.stores.build()}
        candidates = [
            stores[n] for n in READ_ORDER if n in stores and (n in ref.locations or n in ("duckdb", "postgres"))
        ]
        if not candidates:
            raise StoreError(f"{name}: none of the configured stores holds upload {ref.upload_id}")
        store = candidates[0]
        context.log.info(f"{name}: reading upload {ref.upload_id} from the {store.name} store")
        return RecordStream(
            ref.tag,
            ref.tenancy,
            ref.upload_id,
            md.get("records"),
            store.name,
            lambda: read_redacted(store, ref, redactor, name),
            source=str(md.get("source", "api")),
            run_id=event.run_id,
        )


def read_redacted(store: Store, ref: UploadRef, redactor: Redactor, name: str) -> Iterator[dict]:
    """The store's records of the upload; a failure to read them is a StoreError naming the store, with every
    secret masked and no chain (a driver's message can quote a connection string)."""
    failure: Optional[StoreError] = None
    try:
        yield from store.read(ref)
        return
    except Exception as exc:  # noqa: BLE001 - re-raised below, redacted
        failure = StoreError(
            f"{name}: upload {ref.upload_id} could not be read back from the {store.name} store: "
            f"{type(exc).__name__}: {redactor.error(exc)}"
        )
    raise failure
