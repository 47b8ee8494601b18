"""The fan-out IO manager: every Snapshot goes to every configured store; inputs stream back from one."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import dagster as dg

from ..collection.env import env_number, secret_env
from ..collection.errors import ConfigError
from ..collection.memory import release_free_memory
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, UploadRef
from .duckdb import DuckDBStore
from .envelope import render_envelope
from .file import FileStore
from .postgres import PostgresStore
from .s3 import MB, S3Store

DEFAULT_FILE_TEMPLATE = "data/source/%TAG/%TENANCY.json"
DEFAULT_BACKUP_TEMPLATE = "backup/%TAG/%TENANCY.json"
# Read preference for downstream inputs: cheapest and most local first.
READ_ORDER = ("file", "duckdb", "postgres", "s3")


def _env(name: str, default: Optional[str] = None) -> Optional[str]:
    value = os.environ.get(name)
    return default if value is None else value


class StoresResource(dg.ConfigurableResource):
    """Where snapshots are written. Each store is on when its STORE_* variable is set (files by default)."""

    file_template: Optional[str] = DEFAULT_FILE_TEMPLATE
    s3_bucket: Optional[str] = None
    s3_key: Optional[str] = None
    s3_backup: Optional[str] = DEFAULT_BACKUP_TEMPLATE
    s3_endpoint_url: Optional[str] = None
    s3_region: Optional[str] = None
    s3_multipart_threshold_mb: int = 64
    postgres_host: Optional[str] = None
    postgres_port: int = 5432
    postgres_user: Optional[str] = None
    postgres_password: Optional[str] = None
    postgres_dbname: Optional[str] = None
    postgres_schema: str = "public"
    duckdb_path: Optional[str] = None
    duckdb_memory_limit: str = "16MB"

    @classmethod
    def from_env(cls) -> StoresResource:
        """Seed variable names. The password enters config only as an EnvVar reference, never its value."""
        return cls(
            file_template=_env("STORE_FILE", DEFAULT_FILE_TEMPLATE) or None,
            s3_bucket=_env("STORE_AWS_S3_BUCKET") or None,
            s3_key=_env("STORE_AWS_S3_KEY") or None,
            s3_backup=_env("STORE_AWS_S3_BACKUP", DEFAULT_BACKUP_TEMPLATE) or None,
            s3_endpoint_url=_env("STORE_AWS_S3_ENDPOINT_URL") or None,
            s3_multipart_threshold_mb=env_number("STORE_AWS_S3_MULTIPART_MB", 64, low=5, high=5 * 1024),
            postgres_host=_env("STORE_POSTGRES_HOST") or None,
            postgres_port=env_number("STORE_POSTGRES_PORT", 5432, low=1, high=65535),
            postgres_user=_env("STORE_POSTGRES_USER") or None,
            postgres_password=secret_env("STORE_POSTGRES_PASSWORD"),
            postgres_dbname=_env("STORE_POSTGRES_DBNAME") or None,
            postgres_schema=_env("STORE_POSTGRES_SCHEMA") or "public",
            duckdb_path=_env("STORE_DUCKDB") or None,
            duckdb_memory_limit=_env("STORE_DUCKDB_MEMORY_LIMIT") or "16MB",
        )

    def s3_store(self) -> Optional[S3Store]:
        if not self.s3_bucket:
            return None
        for variable in ("%UUID", "%YYYY", "%MM", "%DD", "%hh", "%mm", "%ss"):
            if self.s3_backup and variable in self.s3_backup:
                raise ConfigError(
                    f"STORE_AWS_S3_BACKUP={self.s3_backup!r} uses {variable}: the backup is the one last good copy, "
                    "so its key may only use %TAG and %TENANCY"
                )
        return S3Store(
            self.s3_bucket,
            self.s3_key,
            self.s3_backup,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            multipart_threshold=self.s3_multipart_threshold_mb * MB,
        )

    def build(self) -> list[Store]:
        stores: list[Store] = []
        if self.file_template:
            stores.append(FileStore(self.file_template))
        s3 = self.s3_store()
        if s3:
            stores.append(s3)
        if self.postgres_host:
            stores.append(
                PostgresStore(
                    host=self.postgres_host,
                    port=self.postgres_port,
                    user=self.postgres_user,
                    password=self.postgres_password,
                    dbname=self.postgres_dbname,
                    schema=self.postgres_schema,
                )
            )
        if self.duckdb_path:
            stores.append(DuckDBStore(self.duckdb_path, memory_limit=self.duckdb_memory_limit))
        return stores


@dataclass
class FanOutResult:
    results: list[StoreResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def fan_out(snapshot: Snapshot, stores: list[Store], log: Callable[[str], None] = lambda _m: None) -> FanOutResult:
    """Write to every store; one failing does not stop the others."""
    outcome = FanOutResult()
    envelope: Optional[Path] = None
    try:
        if any(store.needs_envelope for store in stores):
            envelope = render_envelope(snapshot)
        for store in stores:
            release_free_memory()  # each store starts from what is in use, not from the pull's high-water mark
            try:
                result = store.write(snapshot, envelope)
            except Exception as exc:  # noqa: BLE001 - isolate each store; reported below
                outcome.failures[store.name] = f"{type(exc).__name__}: {exc}"
                log(f"{snapshot.tag}: {store.describe()} failed: {exc}")
            else:
                outcome.results.append(result)
    finally:
        if envelope is not None:
            envelope.unlink(missing_ok=True)
    return outcome


def store_metadata(snapshot: Snapshot, outcome: FanOutResult) -> dict[str, Any]:
    """Per-store metadata for the UI: where, how many, how big, how long."""
    metadata: dict[str, Any] = {}
    rows = ["| store | where | records | bytes | seconds |", "|---|---|---|---|---|"]
    for r in outcome.results:
        where = r.location if not r.skipped else f"skipped: {r.skipped}"
        rows.append(f"| {r.store} | {where} | {r.records} | {r.bytes} | {r.seconds} |")
        if r.skipped:
            continue
        metadata[f"{r.store}_location"] = dg.MetadataValue.path(r.location) if r.store == "file" else r.location
        metadata[f"{r.store}_records"] = r.records
        metadata[f"{r.store}_bytes"] = r.bytes
        metadata[f"{r.store}_seconds"] = r.seconds
        for key, value in r.extra.items():
            metadata[f"{r.store}_{key}"] = value
    for name, error in outcome.failures.items():
        rows.append(f"| {name} | FAILED: {error} | 0 | 0 | |")
    metadata["stores"] = dg.MetadataValue.md("\n".join(rows))
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
        stores = self.stores.build()
        if not stores:
            obj.discard()
            raise ConfigError(
                "no store is configured: set STORE_FILE, STORE_AWS_S3_BUCKET, STORE_POSTGRES_HOST or STORE_DUCKDB"
            )
        try:
            outcome = fan_out(obj, stores, log=context.log.error)
        finally:
            obj.discard()
        context.add_output_metadata(store_metadata(obj, outcome))
        for r in outcome.results:
            context.log.info(
                f"{obj.tag}: {r.store} -> {r.location or '-'}: "
                f"{'skipped (' + r.skipped + ')' if r.skipped else f'{r.records} records, {r.bytes} bytes, {r.seconds}s'}"
            )
        if outcome.failures:
            written = ", ".join(r.store for r in outcome.results) or "none"
            causes = "; ".join(f"{name} store failed: {error}" for name, error in outcome.failures.items())
            raise StoreError(
                f"{obj.tag} upload {obj.upload_id}: {causes}. Stores written: {written}. "
                "Fix the failing store's STORE_* settings or reachability and materialize again; "
                "the same upload id is replaced, not duplicated."
            )

    def load_input(self, context: dg.InputContext) -> RecordStream:
        asset_key = context.asset_key
        event = context.instance.get_latest_materialization_event(asset_key)
        name = asset_key.to_user_string()
        if event is None or event.asset_materialization is None:
            raise StoreError(f"{name} has not been materialized yet: materialize it before the assets that read it")
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        ref = UploadRef(
            tag=asset_key.path[-1],
            tenancy=str(md.get("tenancy")),
            upload_id=str(md.get("upload_id")),
            locations={s: str(md[f"{s}_location"]) for s in READ_ORDER if f"{s}_location" in md},
        )
        stores = {store.name: store for store in self.stores.build()}
        # S3 objects are skipped for backup snapshots, so the backup object is where their records live.
        if "s3" not in ref.locations and md.get("backup_location"):
            ref.locations["s3"] = str(md["backup_location"])
        candidates = [
            stores[n] for n in READ_ORDER if n in stores and (n in ref.locations or n in ("duckdb", "postgres"))
        ]
        if not candidates:
            raise StoreError(f"{name}: none of the configured stores holds upload {ref.upload_id}")
        store = candidates[0]
        context.log.info(f"{name}: reading upload {ref.upload_id} from the {store.name} store")
        return RecordStream(ref.tag, ref.tenancy, ref.upload_id, md.get("records"), store.name, lambda: store.read(ref))
