"""The metric engine through the metric assets: what ref() resolves to, skipped and failing queries, and a
collected store that no metric query can change. Uploads are written with the stores' own writers."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

import dagster as dg
import duckdb
import pytest

from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.metrics import MetricsResource, build_metrics, load_library
from secmetrics_dagster.stores.duckdb import DuckDBStore
from secmetrics_dagster.stores.envelope import render_envelope
from secmetrics_dagster.stores.file import FileStore
from secmetrics_dagster.stores.io_manager import StoresResource

from .helpers import failure_text, make_snapshot, materialization_metadata

AS_OF = "2026-06-01T12:00:00Z"
ASSET_A = {"id": "a-1", "has_agent": True, "last_seen": "2026-05-30T10:00:00Z"}
ASSET_B = {"id": "a-2", "has_agent": "false", "last_seen": 1780000000}


def metric_file(directory: Path, metric_id: str, queries: Optional[list[str]], **fields) -> Path:
    """A metric definition in the seed's format; `fields` override the defaults."""
    body = {
        "metric_id": metric_id,
        "title": f"Test metric {metric_id}",
        "category": fields.pop("category", "Testing"),
        "type": "control",
        "description": "A metric written by the test.",
        "slo": [0.5, 0.9],
        "weight": 0.5,
        "query": queries,
        **fields,
    }
    path = directory / f"metric_{metric_id}.yml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def library_of(tmp_path: Path, **metrics: list[str]):
    user = tmp_path / "user_metrics"
    user.mkdir(exist_ok=True)
    for metric_id, queries in metrics.items():
        metric_file(user, metric_id, queries)
    empty = tmp_path / "no_shipped"
    empty.mkdir(exist_ok=True)
    return load_library(str(user), shipped=empty)


def write_duckdb(path: Path, tmp_path: Path, records, tag="tenable_assets", tenancy="acme", **kwargs) -> str:
    snapshot = make_snapshot(tmp_path, records, tag=tag, tenancy=tenancy, **kwargs)
    DuckDBStore(str(path)).write(snapshot, None)
    snapshot.discard()
    return snapshot.upload_id


def compute(tmp_path: Path, library, stores: StoresResource, tenancy="acme", as_of=AS_OF, instance=None):
    metrics = build_metrics(library)
    return dg.materialize(
        metrics.assets,
        resources={
            "collection": CollectionResource(tenancy=tenancy, spool_dir=str(tmp_path / "spool")),
            "stores": stores,
            "metrics": MetricsResource(as_of=as_of),
        },
        instance=instance,
        raise_on_error=False,
    )


def detail(db: Path, metric_id: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT resource, resource_type, compliance, detail FROM metric_detail WHERE metric_id = ? ORDER BY 1",
            [metric_id],
        ).fetchall()
    finally:
        con.close()


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def duck_stores(db) -> StoresResource:
    return StoresResource(file_template="", duckdb_path=str(db))


REF_COLUMNS = """
SELECT id AS resource, 'asset' AS resource_type, 1 AS compliance,
       _tenancy || ' ' || _upload_id || ' ' || typeof(has_agent) || ' ' || coalesce(CAST(has_agent AS VARCHAR), 'null')
       || ' ' || typeof(last_seen) || ' ' || strftime(last_seen, '%Y-%m-%d') || ' ' || typeof(json_data)
       || ' ' || typeof(_upload_timestamp) AS detail
FROM {{ ref('tenable_assets') }}
"""


def test_ref_is_the_newest_upload_of_the_tenancy_with_typed_columns_json_data_and_upload_columns(
    tmp_path, db, duck_stores
):
    write_duckdb(db, tmp_path, [{"id": "old"}], timestamp=datetime(2026, 5, 1, tzinfo=UTC))
    newest = write_duckdb(db, tmp_path, [ASSET_A, ASSET_B], timestamp=datetime(2026, 5, 31, tzinfo=UTC))
    write_duckdb(db, tmp_path, [{"id": "other-tenancy"}], tenancy="globex", timestamp=datetime(2026, 6, 1, tzinfo=UTC))
    result = compute(tmp_path, library_of(tmp_path, refs=[REF_COLUMNS]), duck_stores)
    assert result.success, failure_text(result)
    assert [(r[0], r[3]) for r in detail(db, "refs")] == [
        ("a-1", f"acme {newest} BOOLEAN true TIMESTAMP WITH TIME ZONE 2026-05-30 JSON TIMESTAMP WITH TIME ZONE"),
        ("a-2", f"acme {newest} BOOLEAN false TIMESTAMP WITH TIME ZONE 2026-05-28 JSON TIMESTAMP WITH TIME ZONE"),
    ]


def test_metric_metadata_names_the_uploads_it_read(tmp_path, db, duck_stores):
    upload = write_duckdb(db, tmp_path, [ASSET_A], timestamp=datetime(2026, 5, 31, 6, tzinfo=UTC))
    result = compute(tmp_path, library_of(tmp_path, refs=[REF_COLUMNS]), duck_stores)
    uploads = materialization_metadata(result, "metric_refs")["uploads"]
    assert uploads == {
        "tenable_assets": {"upload_id": upload, "collected_at": "2026-05-31T06:00:00Z", "records": 1, "backup": False}
    }


def test_a_query_over_a_dataset_without_data_is_skipped_with_a_warning_naming_it(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [ASSET_A])
    other = "SELECT id AS resource, 'x' AS resource_type, 1 AS compliance, '' AS detail FROM {{ ref('okta_users') }}"
    result = compute(tmp_path, library_of(tmp_path, partial=[REF_COLUMNS, other]), duck_stores)
    assert result.success, failure_text(result)
    metadata = materialization_metadata(result, "metric_partial")
    assert metadata["total"] == 1 and "query 2 skipped: okta_users has no data for tenancy acme" in str(
        metadata["warnings"]
    )


def test_a_metric_whose_queries_all_lack_data_has_no_score_and_status_no_data(tmp_path, db, duck_stores):
    result = compute(tmp_path, library_of(tmp_path, empty=[REF_COLUMNS]), duck_stores)
    assert result.success, failure_text(result)
    metadata = materialization_metadata(result, "metric_empty")
    assert metadata["status"] == "no_data" and metadata["score"] is None and metadata["total"] == 0


def test_an_unknown_ref_fails_that_metric_naming_the_file_and_the_name(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [ASSET_A])
    bad = "SELECT 1 AS resource, 'x' AS resource_type, 1 AS compliance, '' AS detail FROM {{ ref('no_such_data') }}"
    result = compute(tmp_path, library_of(tmp_path, good=[REF_COLUMNS], unknown=[bad]), duck_stores)
    assert not result.success
    assert "metric_unknown.yml: ref('no_such_data') names no collected dataset" in failure_text(result)
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"metric_good", "metric_scorecard"}


def test_a_query_duckdb_rejects_fails_that_metric_with_duckdbs_message_and_the_file_name(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [ASSET_A])
    broken = "SELECT no_such_column AS resource FROM {{ ref('tenable_assets') }}"
    result = compute(tmp_path, library_of(tmp_path, broken=[broken]), duck_stores)
    text = failure_text(result)
    assert "metric_broken.yml query 1: DuckDB: Binder Error" in text and "no_such_column" in text


def test_a_query_result_without_the_four_columns_fails_naming_them(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [ASSET_A])
    result = compute(
        tmp_path, library_of(tmp_path, cols=["SELECT id AS resource FROM {{ ref('tenable_assets') }}"]), duck_stores
    )
    assert "metric_cols.yml query 1: the result lacks the column(s) resource_type, compliance, detail" in failure_text(
        result
    )


@pytest.mark.parametrize("value", ["1.5", "-0.1", "'yes'"])
def test_a_compliance_outside_0_to_1_fails_the_metric(tmp_path, db, duck_stores, value):
    write_duckdb(db, tmp_path, [ASSET_A])
    query = f"SELECT id AS resource, 'x' AS resource_type, {value} AS compliance, '' AS detail FROM {{{{ ref('tenable_assets') }}}}"
    result = compute(tmp_path, library_of(tmp_path, range=[query]), duck_stores)
    assert "compliance must be a number from 0 to 1" in failure_text(result)


def test_a_null_compliance_counts_as_not_compliant(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [ASSET_A, ASSET_B])
    query = (
        "SELECT id AS resource, 'x' AS resource_type, CASE WHEN id = 'a-1' THEN 1 END AS compliance, '' AS detail "
        "FROM {{ ref('tenable_assets') }}"
    )
    result = compute(tmp_path, library_of(tmp_path, nulls=[query]), duck_stores)
    metadata = materialization_metadata(result, "metric_nulls")
    assert (metadata["score"], metadata["total"], metadata["null_compliance_rows"]) == (0.5, 2, 1)


def test_a_query_of_two_statements_is_refused(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [ASSET_A])
    query = REF_COLUMNS + "; SELECT 1"
    result = compute(tmp_path, library_of(tmp_path, two=[query]), duck_stores)
    assert "metric_two.yml query 1: holds 2 SQL statements; a query is exactly one SELECT" in failure_text(result)


HOSTILE = {
    "drop_view": "DROP TABLE tenable_assets",
    "drop_table": "DROP TABLE collected.tenable_assets",
    "delete": "DELETE FROM collected.tenable_assets",
    "ledger": "UPDATE collected.secmetrics_uploads SET records = 0",
    "attach": "ATTACH '{db}' AS writable",
    "copy": "COPY (SELECT * FROM tenable_assets) TO '{out}'",
    "settings": "SET enable_external_access = true",
}


def _hostile_library(tmp_path: Path, db: Path):
    # Each naming the dataset, so its view exists in the metric's connection.
    queries = {
        name: [f"{sql.format(db=db, out=tmp_path / 'stolen.csv')} -- {{{{ ref('tenable_assets') }}}}"]
        for name, sql in HOSTILE.items()
    }
    return library_of(tmp_path, **queries)


def test_a_hostile_query_fails_and_leaves_the_duckdb_store_unchanged(tmp_path, db, duck_stores):
    upload = write_duckdb(db, tmp_path, [ASSET_A, ASSET_B])
    result = compute(tmp_path, _hostile_library(tmp_path, db), duck_stores)
    text = failure_text(result)
    for name in HOSTILE:
        assert f"metric_{name}.yml query 1:" in text
    assert "read-only" in text and "locked" in text and "disabled by configuration" in text
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*), min(upload_id::VARCHAR) FROM tenable_assets").fetchone() == (2, upload)
        assert con.execute("SELECT records FROM secmetrics_uploads").fetchall() == [(2,)]
    finally:
        con.close()
    assert not (tmp_path / "stolen.csv").exists()


AROUND_REF = {
    # Every one a SELECT that DuckDB would run: each would read the other tenancy's and the older upload's rows.
    "catalog": "SELECT id AS resource, 'a' AS resource_type, 1 AS compliance, tenancy AS detail "
    "FROM collected.tenable_assets",
    "qualified": "SELECT id AS resource, 'a' AS resource_type, 1 AS compliance, tenancy AS detail "
    "FROM collected.main.tenable_assets",
    "subquery": "SELECT id AS resource, 'a' AS resource_type, 1 AS compliance, '' AS detail "
    "FROM {{ ref('tenable_assets') }} WHERE id IN (SELECT id FROM collected.tenable_assets)",
    "query_table": "SELECT id AS resource, 'a' AS resource_type, 1 AS compliance, tenancy AS detail "
    "FROM query_table('collected.tenable_assets')",
}


def test_a_query_reads_collected_data_only_through_ref_never_other_tenancies_or_uploads(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [{"id": "old"}], timestamp=datetime(2026, 5, 1, tzinfo=UTC))
    write_duckdb(db, tmp_path, [{"id": "theirs"}], tenancy="other")
    write_duckdb(db, tmp_path, [ASSET_A])
    queries = {name: [sql + " -- {{ ref('tenable_assets') }}"] for name, sql in AROUND_REF.items()}
    result = compute(tmp_path, library_of(tmp_path, refs=[REF_COLUMNS], **queries), duck_stores)
    text = failure_text(result)
    for name in ("catalog", "qualified", "subquery"):
        assert f"metric_{name}.yml query 1: reads collected" in text and "only through {{ ref('<dataset>') }}" in text
    assert "metric_query_table.yml query 1: calls the table function query_table()" in text
    assert materialization_metadata(result, "metric_refs")["total"] == 1  # ref(): acme's newest upload only
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized.isdisjoint(f"metric_{name}" for name in AROUND_REF)


def test_metrics_read_the_newest_file_store_envelope_when_no_duckdb_store_is_set(tmp_path):
    template = str(tmp_path / "files/%TAG/%TENANCY/%UUID.json")
    store = FileStore(template)
    newest = None
    for when, rows in (
        (datetime(2026, 5, 31, tzinfo=UTC), [ASSET_A, ASSET_B]),
        (datetime(2026, 5, 1, tzinfo=UTC), [{"id": "old"}]),
    ):
        snapshot = make_snapshot(tmp_path, rows, tag="tenable_assets", timestamp=when)
        envelope = render_envelope(snapshot)
        store.write(snapshot, envelope)
        envelope.unlink()
        newest = newest or snapshot.upload_id
    stores = StoresResource(file_template=template)
    result = compute(tmp_path, library_of(tmp_path, refs=[REF_COLUMNS]), stores)
    assert result.success, failure_text(result)
    metadata = materialization_metadata(result, "metric_refs")
    assert metadata["total"] == 2 and metadata["uploads"]["tenable_assets"]["upload_id"] == newest


def test_a_hostile_query_over_file_store_data_leaves_the_envelopes_unchanged(tmp_path):
    template = str(tmp_path / "files/%TAG/%TENANCY.json")
    snapshot = make_snapshot(tmp_path, [ASSET_A], tag="tenable_assets")
    envelope = render_envelope(snapshot)
    FileStore(template).write(snapshot, envelope)
    stored = tmp_path / "files/tenable_assets/acme.json"
    before = stored.read_bytes()
    queries = {"copy": [f"COPY (SELECT 1) TO '{stored}' -- {{{{ ref('tenable_assets') }}}}"]}
    result = compute(tmp_path, library_of(tmp_path, **queries), StoresResource(file_template=template))
    assert "disabled by configuration" in failure_text(result)
    assert stored.read_bytes() == before


def test_metrics_now_and_metrics_today_are_the_computations_clock(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [ASSET_A])
    query = textwrap.dedent(
        """
        SELECT strftime(metrics_now(), '%Y-%m-%dT%H:%M:%S') AS resource, CAST(metrics_today() AS VARCHAR) AS detail,
               'clock' AS resource_type, 1 AS compliance
        FROM {{ ref('tenable_assets') }}
        """
    )
    compute(tmp_path, library_of(tmp_path, clock=[query]), duck_stores, as_of="2026-03-04T23:30:00Z")
    assert detail(db, "clock") == [("2026-03-04T23:30:00", "clock", 1.0, "2026-03-04")]


def test_a_damaged_envelope_fails_only_the_metrics_that_read_it(tmp_path):
    template = str(tmp_path / "files/%TAG/%TENANCY.json")
    snapshot = make_snapshot(tmp_path, [ASSET_A], tag="tenable_assets")
    envelope = render_envelope(snapshot)
    FileStore(template).write(snapshot, envelope)
    damaged = tmp_path / "files/domains/acme.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"data": [{"domain": "a.example"}, ')
    domains = "SELECT domain AS resource, 'd' AS resource_type, 1 AS compliance, '' AS detail FROM {{ ref('domains') }}"
    result = compute(
        tmp_path, library_of(tmp_path, refs=[REF_COLUMNS], dns=[domains]), StoresResource(file_template=template)
    )
    assert f"metric_dns.yml: file store: {damaged} could not be read as an envelope of domains" in failure_text(result)
    assert materialization_metadata(result, "metric_refs")["total"] == 1
