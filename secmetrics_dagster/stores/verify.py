"""Read an upload back from every configured store and compare the records each holds with the upload's count,
so a store that lost rows or was damaged on disk is named by the checks instead of by a metric later."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional

from ..collection.redact import Redactor
from .base import Store, UploadRef

# Read preference for downstream inputs: cheapest and most local first.
READ_ORDER = ("file", "duckdb", "postgres", "s3")
_ERROR_TEXT = 300


def stores_written(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The `stores` table a materialization recorded, as `{store: {"where", "records", "bytes", "seconds"}}`
    (values already unwrapped). The S3 backup object is its own row, `s3 backup`. Materializations recorded
    before the table existed carried flat `<store>_location`/`_records`/`_bytes`/`_seconds` (and `s3_backup`)
    rows instead; those are read the same way, so an older upload can still be loaded and verified."""
    table = metadata.get("stores")
    records = getattr(table, "records", None)
    if records is not None:
        rows = [dict(record.data) for record in records]
        return {str(row.pop("store")): row for row in rows if not str(row.get("where", "")).startswith(_NOT_WRITTEN)}
    written: dict[str, dict[str, Any]] = {}
    for name in READ_ORDER:
        if f"{name}_location" in metadata:
            written[name] = {
                "where": metadata[f"{name}_location"],
                **{k: metadata[f"{name}_{k}"] for k in ("records", "bytes", "seconds") if f"{name}_{k}" in metadata},
            }
    if metadata.get("s3_backup"):
        written["s3 backup"] = {"where": metadata["s3_backup"]}
    return written


_NOT_WRITTEN = ("skipped: ", "FAILED: ")


def upload_ref_from_metadata(tag: str, metadata: Mapping[str, Any]) -> UploadRef:
    """Where the upload a materialization recorded can be found, from that materialization's metadata (values
    already unwrapped: `{key: MetadataValue.value}`): its `stores` table."""
    written = stores_written(metadata)
    ref = UploadRef(
        tag=tag,
        tenancy=str(metadata.get("tenancy")),
        upload_id=str(metadata.get("upload_id")),
        locations={s: str(written[s]["where"]) for s in READ_ORDER if s in written},
    )
    # S3 objects are skipped for backup snapshots, so the backup object is where their records live.
    if "s3" not in ref.locations and metadata.get("backup_location"):
        ref.locations["s3"] = str(metadata["backup_location"])
    # The backup object is written beside the history object; the fallback depends on it, so it is checked too.
    backup = written.get("s3 backup", {}).get("where")
    if backup and str(backup) != ref.locations.get("s3"):
        ref.locations["s3_backup"] = str(backup)
    return ref


@dataclass(frozen=True)
class StoreCount:
    """What one store holds of one upload: its count, or the error reading it back raised."""

    store: str  # "file", "s3", "s3 backup", "postgres", "duckdb"
    where: str
    expected: int
    count: Optional[int] = None
    error: Optional[str] = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "ok" if self.count == self.expected else "count mismatch"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        if self.status == "error":
            return f"{self.store} store ({self.where}) could not be read back: {self.error}"
        if self.status == "count mismatch":
            return f"{self.store} store ({self.where}) holds {self.count} of the {self.expected} records"
        return f"{self.store} {self.count}"


def _count(store: Store, name: str, ref: UploadRef, expected: int, redactor: Redactor) -> StoreCount:
    where = ref.locations.get(store.name) if store.name in ("file", "s3") else None
    where = redactor.text(where or store.describe())  # a connection setting can hold a secret (a URL as host)
    try:
        count = store.count(ref)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding about this store, reported by name
        # Masked before it is cut short, so no part of a secret survives the cut.
        text = " ".join(redactor.text(f"{type(exc).__name__}: {redactor.error(exc)}").split())
        return StoreCount(name, where, expected, error=text[:_ERROR_TEXT])
    return StoreCount(name, where, expected, count=count)


def verify_upload(
    stores: Iterable[Store], ref: UploadRef, expected: int, redactor: Optional[Redactor] = None
) -> list[StoreCount]:
    """The upload's record count in each store (the S3 backup object counted on its own). What a store's error
    says is masked of `redactor`'s secrets (the stores' own: StoresResource.secret_values())."""
    redactor = redactor or Redactor()
    results = []
    for store in stores:
        results.append(_count(store, store.name, ref, expected, redactor))
        if store.name == "s3" and ref.locations.get("s3_backup"):
            backup = replace(ref, locations={**ref.locations, "s3": ref.locations["s3_backup"]})
            results.append(_count(store, "s3 backup", backup, expected, redactor))
    return results
