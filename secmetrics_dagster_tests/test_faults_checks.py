"""The checks verify the upload in every configured store (a damaged DuckDB file, rows missing in PostgreSQL),
name the store that fails, take the count-drop limit per dataset and surface short pages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import dagster as dg
import duckdb
import pytest

from secmetrics_dagster.automation import checks
from secmetrics_dagster.automation.checks import checks_for
from secmetrics_dagster.collection import HttpSession
from secmetrics_dagster.collection.columns import col
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.base import DatasetSpec, Source, VendorResource
from secmetrics_dagster.stores import FileStore, SnapshotIOManager, StoresResource, UploadRef, io_manager
from secmetrics_dagster.stores.envelope import render_envelope
from secmetrics_dagster.stores.verify import StoreCount, upload_ref_from_metadata, verify_upload

from .harness import materialize_source, source_assets
from .helpers import failure_text, log_text, make_snapshot, materialization_metadata

# DuckDB's file: a 4 KiB main header and two 4 KiB database headers, then 256 KiB blocks, each starting with the
# 8-byte checksum of the rest (duckdb/duckdb src/include/duckdb/common/storage.hpp: FILE_HEADER_SIZE,
# BLOCK_ALLOC_SIZE, BLOCK_HEADER_SIZE; src/include/duckdb/storage/storage_info.hpp: MainHeader, DatabaseHeader).
DUCKDB_HEADERS = 3 * 4096
DUCKDB_BLOCK = 262144


@dataclass(frozen=True)
class Dataset(DatasetSpec):
    """A DatasetSpec with the per-dataset limit the integrator adds (`max_drop`)."""

    max_drop: Optional[float] = None


def _resources(snyk, collection, stores):
    return {
        "collection": collection,
        "stores": stores,
        "snyk": snyk,
        "snapshot_io_manager": SnapshotIOManager(stores=stores),
    }


def _collect(instance, snyk, collection, stores, selection):
    result = dg.materialize(
        source_assets(snyk_source.SOURCE),
        instance=instance,
        selection=selection,
        raise_on_error=False,
        resources=_resources(snyk, collection, stores),
    )
    assert result.success, failure_text(result)
    return result


def _check(instance, snyk, collection, stores, tag) -> dict:
    """Run only the check step of `tag` (the asset itself is not materialized again)."""
    # A multi-asset check runs whole: every check of the step is selected.
    names = [spec.name for spec in checks.check_specs(snyk_source.SOURCE.dataset(tag))]
    result = dg.materialize(
        [*source_assets(snyk_source.SOURCE), *checks_for([snyk_source.SOURCE])],
        instance=instance,
        selection=dg.AssetSelection.checks(*(dg.AssetCheckKey(dg.AssetKey(tag), n) for n in names)),
        raise_on_error=False,
        resources=_resources(snyk, collection, stores),
    )
    assert result.success, failure_text(result)
    evaluations = {
        e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
        for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    assert set(evaluations) == set(names)
    return evaluations


def _overwrite_block_holding(path: str, marker: bytes) -> None:
    data = Path(path).read_bytes()
    at = data.find(marker, DUCKDB_HEADERS)
    assert at > 0, "the marker is not in the file"
    start = DUCKDB_HEADERS + (at - DUCKDB_HEADERS) // DUCKDB_BLOCK * DUCKDB_BLOCK
    with open(path, "r+b") as handle:
        handle.seek(start + 8)  # the stored checksum stays; the block no longer matches it
        handle.write(b"\xa5" * (DUCKDB_BLOCK - 8))


def test_a_damaged_duckdb_block_fails_records_present_naming_duckdb(snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    result = _collect(instance, snyk, collection, all_stores, "key:snyk_organizations or key:snyk_issues")
    upload = materialization_metadata(result, "snyk_issues")["upload_id"]
    _overwrite_block_holding(all_stores.duckdb_path, upload.encode())
    evaluations = _check(instance, snyk, collection, all_stores, "snyk_issues")
    present = evaluations[checks.RECORDS_PRESENT]
    assert not present.passed and present.severity == dg.AssetCheckSeverity.ERROR
    assert "duckdb store" in present.description and "Corrupt database file" in present.description
    statuses = {k: v.value for k, v in present.metadata.items() if k.endswith("_status")}
    assert statuses == {
        "file_status": "ok",
        "s3_status": "ok",
        "s3_backup_status": "ok",
        "postgres_status": "ok",
        "duckdb_status": "error",
    }
    assert present.metadata["failing_stores"].value == "duckdb"
    # The sampled read comes from the cheapest store (the file), which is whole.
    assert evaluations[checks.FIELDS_PRESENT].passed


def test_rows_missing_in_postgres_fail_records_present_naming_postgres(snyk, collection, all_stores, pg_conn):
    instance = dg.DagsterInstance.ephemeral()
    result = _collect(instance, snyk, collection, all_stores, "key:snyk_organizations")
    upload = materialization_metadata(result, "snyk_organizations")["upload_id"]
    pg_conn.execute(
        f'DELETE FROM "{all_stores.postgres_schema}".snyk_organizations WHERE ctid IN '
        f'(SELECT ctid FROM "{all_stores.postgres_schema}".snyk_organizations WHERE upload_id = %s LIMIT 1)',
        (upload,),
    )
    present = _check(instance, snyk, collection, all_stores, "snyk_organizations")[checks.RECORDS_PRESENT]
    assert not present.passed and present.severity == dg.AssetCheckSeverity.ERROR
    assert "postgres store" in present.description and "holds 1 of the 2 records" in present.description
    assert present.metadata["postgres_count"].value == 1 and present.metadata["duckdb_status"].value == "ok"


def test_short_pages_in_the_materialization_fail_record_count_stable_with_a_warning(snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    _collect(instance, snyk, collection, all_stores, "key:snyk_organizations")
    # The same upload, as a pull that counted short pages would have recorded it (http_short_pages from HttpStats).
    event = instance.get_latest_materialization_event(dg.AssetKey("snyk_organizations"))
    metadata = dict(event.asset_materialization.metadata)
    metadata["http_short_pages"] = dg.MetadataValue.int(2)
    instance.report_runless_asset_event(dg.AssetMaterialization("snyk_organizations", metadata=metadata))
    evaluations = _check(instance, snyk, collection, all_stores, "snyk_organizations")
    stable = evaluations[checks.COUNT_STABLE]
    assert not stable.passed and stable.severity == dg.AssetCheckSeverity.WARN
    assert "2 page(s) came back shorter" in stable.description and stable.metadata["short_pages"].value == 2
    assert evaluations[checks.RECORDS_PRESENT].passed


def test_the_count_drop_limit_is_the_datasets_own_when_it_has_one(monkeypatch):
    monkeypatch.delenv("COLLECTION_MAX_DROP", raising=False)
    organizations = Dataset("snyk_organizations", "Organizations", "Orgs.", "GET /rest/orgs", max_drop=0.1)
    # A third of the organizations gone: within the default 50%, beyond this dataset's 10%.
    result = {r.check_name: r for r in checks.evaluate(organizations, 2, "u-2", "api", 3, [])}[checks.COUNT_STABLE]
    assert not result.passed and result.metadata["max_drop"].value == 0.1
    assert "limit -10%" in result.description
    default = Dataset("snyk_issues", "Issues", "Issues.", "GET /rest/orgs/{id}/issues")
    assert {r.check_name: r for r in checks.evaluate(default, 2, "u-2", "api", 3, [])}[checks.COUNT_STABLE].passed


def test_the_check_description_names_the_datasets_limit():
    specs = checks.check_specs(Dataset("snyk_organizations", "Orgs", "Orgs.", "GET /rest/orgs", max_drop=0.1))
    assert "10% (this dataset's limit)" in next(s for s in specs if s.name == checks.COUNT_STABLE).description


def test_a_max_drop_outside_zero_to_one_is_refused_when_the_checks_are_built():
    with pytest.raises(ValueError, match="snyk_organizations: max_drop must be a share from 0 to 1"):
        checks.check_specs(Dataset("snyk_organizations", "Orgs", "Orgs.", "GET /rest/orgs", max_drop=30))


def test_an_upload_ref_is_read_from_materialization_metadata():
    rows = [
        ("file", "/data/snyk_issues/acme.json"),
        ("s3", "s3://b/data/snyk_issues/u-1.json"),
        ("s3 backup", "s3://b/backup/snyk_issues/acme.json"),
        ("postgres", "public.snyk_issues"),
        ("duckdb", "skipped: not configured"),
    ]
    table = dg.MetadataValue.table(
        [dg.TableRecord({"store": n, "where": w, "records": 3, "bytes": 9, "seconds": 0.1}) for n, w in rows]
    )
    md = {"tenancy": "acme", "upload_id": "u-1", "stores": table}
    ref = upload_ref_from_metadata("snyk_issues", md)
    assert (ref.tag, ref.tenancy, ref.upload_id) == ("snyk_issues", "acme", "u-1")
    assert ref.locations == {
        "file": "/data/snyk_issues/acme.json",
        "postgres": "public.snyk_issues",
        "s3": "s3://b/data/snyk_issues/u-1.json",
        "s3_backup": "s3://b/backup/snyk_issues/acme.json",
    }
    # A snapshot served from the backup has no S3 upload of its own: its records are in the backup object.
    served = upload_ref_from_metadata(
        "snyk_issues", {"tenancy": "acme", "upload_id": "u", "backup_location": "s3://b/k"}
    )
    assert served.locations == {"s3": "s3://b/k"}


def test_an_upload_ref_is_read_from_the_flat_rows_of_a_materialization_recorded_before_the_stores_table():
    md = {
        "tenancy": "acme",
        "upload_id": "u-1",
        "file_location": "/data/snyk_issues/acme.json",
        "s3_location": "s3://b/data/snyk_issues/u-1.json",
        "s3_backup": "s3://b/backup/snyk_issues/acme.json",
        "postgres_location": "public.snyk_issues",
    }
    assert upload_ref_from_metadata("snyk_issues", md).locations == {
        "file": "/data/snyk_issues/acme.json",
        "postgres": "public.snyk_issues",
        "s3": "s3://b/data/snyk_issues/u-1.json",
        "s3_backup": "s3://b/backup/snyk_issues/acme.json",
    }


def test_each_store_is_reported_ok_mismatched_or_failing_with_its_message(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    files = FileStore(str(tmp_path / "%TAG/%TENANCY.json"))
    location = files.write(snapshot, render_envelope(snapshot)).location
    ref = UploadRef("snyk_issues", "acme", snapshot.upload_id, {"file": location})
    assert [c.status for c in verify_upload([files], ref, 2)] == ["ok"]
    assert [c.status for c in verify_upload([files], ref, 3)] == ["count mismatch"]
    missing = verify_upload([files], UploadRef("snyk_issues", "acme", snapshot.upload_id, {}), 2)[0]
    assert missing.status == "error" and "StoreError: file store: no file" in missing.error
    assert StoreCount("file", location, 3, count=2).describe().endswith("holds 2 of the 3 records")


class TypedResource(VendorResource):
    def client(self, settings, logger=None):
        return HttpSession("Typed", "http://127.0.0.1:9/", settings=settings, logger=logger)


TYPED = Source(
    group="typed",
    title="Typed tool",
    docs_url="https://example.invalid/docs",
    resource=TypedResource,
    datasets=(
        DatasetSpec(
            "typed_things", "Things", "Two things.", "GET /things",
            pull=lambda pull: pull.spool.extend([{"id": "a", "score": 5}, {"id": "b", "score": "high"}]),
            columns=(col("id", "text", "Id."), col("score", "integer", "Score.")),
        ),
    ),
    sandbox_env=lambda url, token: {},
)  # fmt: skip


def test_typed_columns_that_could_not_be_counted_are_reported_and_warned_about(monkeypatch, collection, tmp_path):
    def out_of_memory(snapshot):
        # What DuckDB raises when the in-memory count does not fit its memory limit (here quoting a secret too).
        raise duckdb.OutOfMemoryException(
            "Out of Memory Error: could not allocate block of size 1.0 MiB (31.9 MiB/32.0 MiB used); pw-canary-3c1d"
        )

    monkeypatch.setattr(io_manager, "unparsed_counts", out_of_memory)
    stores = StoresResource(file_template=str(tmp_path / "data/%TAG/%TENANCY.json"), postgres_password="pw-canary-3c1d")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_source(TYPED, TypedResource(), collection, stores, instance=instance, checks=True)
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "typed_things")
    assert "columns_unparsed" not in md  # not an empty count that reads as "all converted"
    assert md["columns_unparsed_error"].startswith("OutOfMemoryException: Out of Memory Error")
    assert "pw-canary" not in md["columns_unparsed_error"] and "***" in md["columns_unparsed_error"]
    [parsed] = [c for c in result.get_asset_check_evaluations() if c.check_name == checks.COLUMNS_PARSED]
    assert not parsed.passed and parsed.severity == dg.AssetCheckSeverity.WARN
    assert "could not be counted (OutOfMemoryException: Out of Memory Error" in parsed.description
    assert "could not be counted" in log_text(instance, result)
