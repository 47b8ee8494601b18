"""Store faults of issue 12: literal "\\u0000" text kept by PostgreSQL like by the other stores, identifiers checked
as full matches (a trailing newline is refused everywhere), and every store setting checked when the store is
constructed, before any connection and so before any vendor request."""

from __future__ import annotations

import time

import pytest

from secmetrics_dagster.collection import ConfigError, InvalidIdentifierError, RunContext
from secmetrics_dagster.stores import (
    DuckDBStore,
    FileStore,
    PostgresStore,
    S3Store,
    StoreError,
    StoresResource,
    UploadRef,
)
from secmetrics_dagster.stores.duckdb import size_bytes
from secmetrics_dagster.stores.envelope import render_envelope

from .helpers import duck_rows, envelope, make_snapshot, pg_rows
from .services import free_port

UPLOAD = "0b7d5a0e-3c56-4f0e-9d0c-2f8a1d7e6b11"

# ------------------------------------------------------------------------------ #4 literal \u0000 in PostgreSQL


LITERAL = {
    "id": "literal",
    "path": "C:\\u0000dir",  # a backslash, then the text u0000: JSON "C:\\u0000dir"
    "two": "\\\\u0000",  # two backslashes, then u0000
    "three": "\\\\\\u0000 x",
}


def _loaded(pg_store, pg_conn, pg_schema, tmp_path, record):
    snapshot = make_snapshot(tmp_path, [dict(record)])
    pg_store.write(snapshot, None)
    duck = DuckDBStore(str(tmp_path / "db.duckdb"))
    duck.write(snapshot, None)
    files = FileStore(str(tmp_path / "files/%TAG/%TENANCY.json"))
    location = files.write(snapshot, render_envelope(snapshot)).location
    return {
        "postgres": pg_rows(pg_conn, pg_schema, "snyk_issues")[0][2],
        "duckdb": duck_rows(duck.path, "snyk_issues")[0][2],
        "file": envelope(location)["data"][0],
    }


def test_a_literal_backslash_u0000_is_stored_unchanged_in_postgres_as_in_the_file_and_duckdb(
    pg_store, pg_conn, pg_schema, tmp_path
):
    loaded = _loaded(pg_store, pg_conn, pg_schema, tmp_path, LITERAL)
    for store, record in loaded.items():
        assert {k: record[k] for k in LITERAL} == LITERAL, store


def test_only_a_real_u0000_escape_becomes_a_replacement_character_in_postgres(pg_store, pg_conn, pg_schema, tmp_path):
    record = {"id": "nul", "nul": "x\u0000y", "escaped_then_nul": "\\\u0000"}  # U+0000 itself; a backslash, U+0000
    loaded = _loaded(pg_store, pg_conn, pg_schema, tmp_path, record)
    assert (loaded["postgres"]["nul"], loaded["postgres"]["escaped_then_nul"]) == ("x\ufffdy", "\\\ufffd")
    assert (loaded["file"]["nul"], loaded["duckdb"]["nul"]) == ("x\u0000y", "x\u0000y")


# ------------------------------------------------------------------------------ #8 full matches


def test_a_tenancy_with_a_trailing_newline_is_refused():
    with pytest.raises(InvalidIdentifierError, match="invalid tenancy"):
        RunContext("snyk_issues", "default\n")


def test_a_tag_with_a_trailing_newline_is_refused():
    with pytest.raises(InvalidIdentifierError, match="invalid tag"):
        RunContext("snyk_issues\n", "default")


def test_an_upload_id_is_kept_in_its_one_canonical_form():
    assert RunContext("snyk_issues", "acme", "{" + UPLOAD.upper() + "}").upload_id == UPLOAD
    with pytest.raises(InvalidIdentifierError, match="invalid upload id"):
        RunContext("snyk_issues", "acme", UPLOAD + "\n")


def test_a_postgres_schema_with_a_trailing_newline_is_refused():
    with pytest.raises(InvalidIdentifierError, match="STORE_POSTGRES_SCHEMA"):
        PostgresStore(host="127.0.0.1", schema="public\n")


def test_a_duckdb_memory_limit_with_a_trailing_newline_is_refused(tmp_path):
    assert size_bytes("16MB\n") is None and size_bytes("16MB") == 16_000_000
    with pytest.raises(ConfigError, match="STORE_DUCKDB_MEMORY_LIMIT"):
        DuckDBStore(str(tmp_path / "db.duckdb"), memory_limit="16MB\n")


@pytest.mark.parametrize(
    "variable,build",
    [
        ("STORE_FILE", lambda tmp: FileStore(str(tmp / "%TAG/%TENANCY.json") + "\n")),
        ("STORE_DUCKDB", lambda tmp: DuckDBStore(str(tmp / "db.duckdb") + "\n")),
        ("STORE_AWS_S3_KEY", lambda tmp: S3Store("bucket", "data/%TAG/%UUID.json\n")),
        ("STORE_AWS_S3_BACKUP", lambda tmp: S3Store("bucket", None, "backup/%TAG/%TENANCY.json\n")),
        ("STORE_AWS_S3_BUCKET", lambda tmp: S3Store("bucket\n")),
    ],
)
def test_path_templates_and_names_with_a_trailing_newline_are_refused(tmp_path, variable, build):
    with pytest.raises(ConfigError, match=f"{variable}=.* contains a line break"):
        build(tmp_path)


# ------------------------------------------------------------------------------ #9 settings checked at construction

BAD_SETTINGS = [
    ("STORE_POSTGRES_SCHEMA", lambda tmp: PostgresStore(host="127.0.0.1", schema="public; drop")),
    ("STORE_POSTGRES_PORT", lambda tmp: PostgresStore(host="127.0.0.1", port=0)),
    ("STORE_POSTGRES_HOST", lambda tmp: PostgresStore(host=" ")),
    ("STORE_POSTGRES_USER", lambda tmp: PostgresStore(host="127.0.0.1", user="dbuser\r\n")),
    ("STORE_DUCKDB_MEMORY_LIMIT", lambda tmp: DuckDBStore(str(tmp / "db.duckdb"), memory_limit="lots")),
    ("STORE_DUCKDB", lambda tmp: DuckDBStore(str(tmp))),
    ("STORE_AWS_S3_BACKUP", lambda tmp: S3Store("bucket", None, "backup/%UUID.json")),
    ("STORE_AWS_S3_BACKUP", lambda tmp: S3Store("bucket", None, "backup/latest.json")),
    ("STORE_AWS_S3_BUCKET", lambda tmp: S3Store("s3://bucket/data")),
    ("STORE_AWS_S3_ENDPOINT_URL", lambda tmp: S3Store("bucket", endpoint_url="localhost:9000")),
    ("STORE_FILE", lambda tmp: FileStore("")),
    ("STORE_FILE", lambda tmp: FileStore(str(tmp / "all.json"))),
]


@pytest.mark.parametrize("variable,build", BAD_SETTINGS, ids=[f"{v}-{i}" for i, (v, _b) in enumerate(BAD_SETTINGS)])
def test_a_bad_store_setting_is_refused_when_the_store_is_built_naming_the_variable(tmp_path, variable, build):
    started = time.monotonic()
    with pytest.raises(ConfigError, match=variable):
        build(tmp_path)
    assert time.monotonic() - started < 1  # nothing was connected to or waited for


def test_a_password_with_a_newline_is_refused_without_showing_it():
    with pytest.raises(ConfigError) as info:
        PostgresStore(host="127.0.0.1", user="u", password="s3cr3t-pw\n")
    assert "STORE_POSTGRES_PASSWORD" in str(info.value) and "s3cr3t-pw" not in str(info.value)


def test_good_settings_build_every_store_without_connecting_to_it(tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"
    stores = StoresResource(
        file_template=str(tmp_path / "data/%TAG/%TENANCY.json"),
        s3_bucket="security-data-bucket",
        s3_key="data/%TAG/%YYYY/%MM/%DD/%UUID.json",
        s3_endpoint_url=nobody,
        postgres_host="127.0.0.1",
        postgres_port=free_port(),
        postgres_schema="metrics",
        duckdb_path=str(tmp_path / "data/database.duckdb"),
        duckdb_memory_limit="64MiB",
    ).build()
    assert [s.name for s in stores] == ["file", "s3", "postgres", "duckdb"]
    assert not (tmp_path / "data").exists()  # nothing created, nothing opened


def test_stores_resource_build_fails_on_a_bad_setting_before_any_store_is_used(tmp_path):
    with pytest.raises(ConfigError, match="STORE_POSTGRES_SCHEMA"):
        StoresResource(file_template=str(tmp_path / "%TAG.json"), postgres_host="h", postgres_schema="a b").build()


def test_count_reads_the_upload_back_in_every_store(tmp_path, pg_store, bucket, s3_endpoint):
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(5)])
    files = FileStore(str(tmp_path / "files/%TAG/%TENANCY.json"))
    s3 = S3Store(bucket, "data/%TAG/%UUID.json", "backup/%TAG/%TENANCY.json", endpoint_url=s3_endpoint)
    duck = DuckDBStore(str(tmp_path / "db.duckdb"))
    body = render_envelope(snapshot)
    locations = {"file": files.write(snapshot, body).location, "s3": s3.write(snapshot, body).location}
    pg_store.write(snapshot, None)
    duck.write(snapshot, None)
    ref = UploadRef("snyk_issues", "acme", snapshot.upload_id, locations)
    assert [store.count(ref) for store in (files, s3, pg_store, duck)] == [5, 5, 5, 5]
    other = UploadRef("snyk_issues", "acme", UPLOAD, locations)
    assert [store.count(other) for store in (pg_store, duck)] == [0, 0]


def test_an_s3_object_replaced_by_a_later_upload_is_not_counted_as_this_one(tmp_path, bucket, s3_endpoint):
    s3 = S3Store(bucket, None, "backup/%TAG/%TENANCY.json", endpoint_url=s3_endpoint)
    first = make_snapshot(tmp_path, [{"id": 1}])
    location = s3.write(first, render_envelope(first)).location
    later = make_snapshot(tmp_path, [{"id": 2}, {"id": 3}])
    s3.write(later, render_envelope(later))
    with pytest.raises(StoreError, match=f"now holds upload {later.upload_id}, not {first.upload_id}"):
        s3.count(UploadRef("snyk_issues", "acme", first.upload_id, {"s3": location}))
    assert s3.count(UploadRef("snyk_issues", "acme", later.upload_id, {"s3": location})) == 2


def test_an_s3_backup_without_object_metadata_is_counted_by_reading_it(tmp_path, bucket, s3_endpoint, s3_client):
    # The original collectors wrote single-line envelopes with no object metadata.
    body = b'{"data": [{"a": 1}, {"b": [1, 2]}, {"c": {"d": null}}], "metadata": {"upload_id": "u"}}'
    s3_client.put_object(Bucket=bucket, Key="backup/snyk_issues/acme.json", Body=body)
    s3 = S3Store(bucket, None, "backup/%TAG/%TENANCY.json", endpoint_url=s3_endpoint)
    ref = UploadRef("snyk_issues", "acme", UPLOAD, {"s3": f"s3://{bucket}/backup/snyk_issues/acme.json"})
    assert s3.count(ref) == 3


def test_a_cut_envelope_file_fails_its_count_naming_the_file(tmp_path):
    files = FileStore(str(tmp_path / "files/%TAG/%TENANCY.json"))
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(50)])
    location = files.write(snapshot, render_envelope(snapshot)).location
    with open(location, "r+b") as handle:
        handle.truncate(handle.seek(0, 2) // 2)
    with pytest.raises(StoreError, match=f"file store: {location} cannot be read back"):
        files.count(UploadRef("snyk_issues", "acme", snapshot.upload_id, {"file": location}))
