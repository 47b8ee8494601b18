"""What the UI shows of a collection asset: Dagster's standard metadata, storage kinds, owners, code references,
columns, and a description that says where the data really goes."""

import dagster as dg

from secmetrics_dagster.assets import build_assets
from secmetrics_dagster.assets.policies import owners
from secmetrics_dagster.sources import SOURCES
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.stores import StoresResource
from secmetrics_dagster.stores.verify import stores_written

from .harness import materialize_source
from .helpers import failure_text, materialization_metadata


def spec_of(assets, tag):
    asset = next(a for a in assets if dg.AssetKey(tag) in a.keys)
    return asset.specs_by_key[dg.AssetKey(tag)]


def test_every_asset_lists_its_typed_columns_for_the_columns_tab():
    for source in SOURCES:
        for asset in build_assets([source]):
            for key, spec in asset.specs_by_key.items():
                schema = spec.metadata["dagster/column_schema"]
                names = [c.name for c in schema.columns]
                assert names[:4] == ["upload_timestamp", "tenancy", "upload_id", "json_data"], key
                declared = source.dataset(key.path[-1]).columns
                assert names[4:] == [c.name for c in declared], key
                assert all(c.description for c in schema.columns), key


def test_kinds_show_the_vendor_and_the_configured_stores():
    stores = StoresResource(file_template="x/%TAG.json", s3_bucket="b", postgres_host="db", duckdb_path="d.duckdb")
    spec = spec_of(build_assets([snyk_source.SOURCE], stores), "snyk_issues")
    assert spec.kinds == {"snyk", "json", "s3", "postgres", "duckdb"}
    spec = spec_of(build_assets([snyk_source.SOURCE], StoresResource(file_template="x/%TAG.json")), "snyk_issues")
    assert spec.kinds == {"snyk", "json"}


def test_the_description_starts_plain_and_says_whether_a_backup_can_be_served():
    files_only = spec_of(build_assets([snyk_source.SOURCE], StoresResource()), "snyk_issues").description
    assert files_only.startswith("Snyk: Issues. Every issue") and "**" not in files_only.split("\n")[0]
    assert "No S3 backup is configured" in files_only
    with_s3 = spec_of(build_assets([snyk_source.SOURCE], StoresResource(s3_bucket="bkt")), "snyk_issues").description
    assert "s3://bkt" in with_s3 and "the last S3 backup is served" in with_s3


def test_the_code_reference_points_at_the_vendor_module():
    spec = spec_of(build_assets([snyk_source.SOURCE]), "snyk_issues")
    (reference,) = spec.metadata["dagster/code_references"].code_references
    assert reference.file_path.endswith("sources/snyk.py") and reference.line_number > 1


def test_owners_come_from_collection_owners_and_a_bad_entry_is_left_out(monkeypatch):
    monkeypatch.setenv("COLLECTION_OWNERS", "team:security, not an owner ,alice@example.com")
    assert owners() == ["team:security", "alice@example.com"]
    spec = spec_of(build_assets([snyk_source.SOURCE], owners=owners()), "snyk_issues")
    assert spec.owners == ["team:security", "alice@example.com"]


def test_a_materialization_reports_row_count_uri_and_table_name(snyk, collection, all_stores):
    result = materialize_source(snyk_source.SOURCE, snyk, collection, all_stores, selection="snyk_organizations")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "snyk_organizations")
    assert md["dagster/row_count"] == md["records"] == 2
    assert md["dagster/uri"] == stores_written(md)["s3"]["where"]
    assert md["dagster/table_name"] == f"{all_stores.postgres_schema}.snyk_organizations"


def test_with_only_files_the_uri_is_the_file(snyk, collection, file_stores):
    result = materialize_source(snyk_source.SOURCE, snyk, collection, file_stores, selection="snyk_organizations")
    md = materialization_metadata(result, "snyk_organizations")
    assert md["dagster/uri"] == stores_written(md)["file"]["where"] and "dagster/table_name" not in md


def test_the_stores_table_is_the_only_per_store_metadata_and_has_five_narrow_columns(snyk, collection, all_stores):
    result = materialize_source(snyk_source.SOURCE, snyk, collection, all_stores, selection="snyk_organizations")
    md = materialization_metadata(result, "snyk_organizations")
    flat = [k for k in md if k.split("_")[0] in ("file", "s3", "postgres", "duckdb")]
    assert flat == []
    assert [c.name for c in md["stores"].schema.columns] == ["store", "where", "records", "bytes", "seconds"]
    assert [r.data["store"] for r in md["stores"].records] == ["file", "s3", "s3 backup", "postgres", "duckdb"]
