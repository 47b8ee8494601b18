"""Metric assets in Dagster: their specs and lineage, the SLO checks, the scorecard, results in every store with
one set of rows per metric, tenancy and day (history over two simulated days), and one broken metric isolated."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from psycopg import sql

from secmetrics_dagster.metrics import build_metrics, load_library
from secmetrics_dagster.metrics.assets import SLO_CHECK
from secmetrics_dagster.stores.io_manager import StoresResource

from .helpers import failure_text, make_snapshot, materialization_metadata
from .test_metrics_engine import compute, metric_file, write_duckdb

# Four assets, three of them with an agent: a metric over them scores 0.75.
ASSETS = [{"id": f"a-{i}", "has_agent": i < 3} for i in range(4)]
AGENT = (
    "SELECT id AS resource, 'asset' AS resource_type, CASE WHEN has_agent THEN 1 ELSE 0 END AS compliance, "
    "'agent ' || has_agent AS detail FROM {{ ref('tenable_assets') }}"
)
ALL_OK = (
    "SELECT id AS resource, 'asset' AS resource_type, 1 AS compliance, '' AS detail FROM {{ ref('tenable_assets') }}"
)
NONE_OK = (
    "SELECT id AS resource, 'asset' AS resource_type, 0 AS compliance, '' AS detail FROM {{ ref('tenable_assets') }}"
)
DAY1, DAY2 = "2026-06-01T06:00:00Z", "2026-06-02T06:00:00Z"


def library(tmp_path: Path, specs: dict[str, dict]):
    directory = tmp_path / "lib"
    directory.mkdir(exist_ok=True)
    for metric_id, fields in specs.items():
        metric_file(directory, metric_id, **{"queries": [AGENT], **fields})
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return load_library(str(directory), shipped=empty)


def check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.event_specific_data.asset_key.path[-1]: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == SLO_CHECK
    }


def rows(db: Path, query: str, *params) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def duck_stores(db) -> StoresResource:
    return StoresResource(file_template="", duckdb_path=str(db))


def test_a_metric_asset_is_keyed_grouped_and_downstream_of_the_datasets_it_references(tmp_path):
    two = "SELECT 1 FROM {{ ref('okta_users') }} JOIN {{ ref('okta_user_factors') }} ON true"
    built = build_metrics(library(tmp_path, {"mfa": {"queries": [two, AGENT], "how": "By counting."}}))
    specs = {spec.key.path[-1]: spec for spec in built.assets[0].specs}
    node = specs["metric_mfa"]
    assert {d.asset_key for d in node.deps} == {
        dg.AssetKey("okta_users"),
        dg.AssetKey("okta_user_factors"),
        dg.AssetKey("tenable_assets"),
    }
    assert node.group_name == "metrics" and node.kinds == {"duckdb"}
    assert (
        "Test metric mfa. A metric written by the test." in node.description and "How: By counting." in node.description
    )
    assert {d.asset_key for d in specs["metric_scorecard"].deps} == {dg.AssetKey("metric_mfa")}
    assert node.automation_condition is not None and node.freshness_policy is not None


@pytest.mark.parametrize(
    ("slo", "passed", "severity"),
    [
        ([0.5, 0.75], True, None),
        ([0.7, 0.8], False, dg.AssetCheckSeverity.WARN),
        ([0.8, 0.9], False, dg.AssetCheckSeverity.ERROR),
    ],
)
def test_the_slo_check_passes_at_target_warns_from_the_minimum_and_errors_below(
    tmp_path, db, duck_stores, slo, passed, severity
):
    write_duckdb(db, tmp_path, ASSETS)
    result = compute(tmp_path, library(tmp_path, {"agent": {"slo": slo}}), duck_stores)
    check = check_results(result)["metric_agent"]
    assert check.passed is passed
    if severity is not None:
        assert check.severity == severity
    assert "score 0.7500 (3 of 4)" in check.description


def test_materialization_metadata_has_the_score_the_slo_and_a_preview_of_failing_resources(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, ASSETS)
    metadata = materialization_metadata(
        compute(tmp_path, library(tmp_path, {"agent": {}}), duck_stores), "metric_agent"
    )
    assert {k: metadata[k] for k in ("score", "totalok", "total", "slo_min", "slo", "status")} == {
        "score": 0.75,
        "totalok": 3.0,
        "total": 4,
        "slo_min": 0.5,
        "slo": 0.9,
        "status": "warning",
    }
    assert "| a-3 | asset | 0 | agent false |" in metadata["failing_resources"]


def test_a_metric_computed_from_a_backup_says_so_in_its_check(tmp_path, db, duck_stores):
    snapshot = make_snapshot(tmp_path, ASSETS, tag="tenable_assets", timestamp=datetime(2026, 5, 30, 6, tzinfo=UTC))
    snapshot.source = "backup"
    from secmetrics_dagster.stores.duckdb import DuckDBStore

    DuckDBStore(str(db)).write(snapshot, None)
    result = compute(tmp_path, library(tmp_path, {"agent": {}}), duck_stores)
    assert "Computed from backup-served input: tenable_assets (collected 2026-05-30T06:00:00Z)" in (
        check_results(result)["metric_agent"].description
    )
    assert materialization_metadata(result, "metric_agent")["uploads"]["tenable_assets"]["backup"] is True


def test_the_scorecard_weights_scores_by_category_and_leaves_indicators_out(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, ASSETS)
    specs = {
        "a": {"category": "One", "weight": 1.0},  # 0.75
        "b": {"category": "One", "weight": 0.5, "queries": [ALL_OK]},  # 1.0
        "c": {"category": "Two", "weight": 0.2, "queries": [NONE_OK]},  # 0.0
        "d": {"category": "Two", "weight": 1.0, "queries": [NONE_OK], "indicator": True},  # 0.0, not weighted
    }
    result = compute(tmp_path, library(tmp_path, specs), duck_stores)
    assert result.success, failure_text(result)
    scorecard = {
        r[0]: r[1:] for r in rows(db, "SELECT scope, score, metrics, good, warning, bad FROM metric_scorecard")
    }
    assert scorecard["overall"][0] == pytest.approx((0.75 * 1 + 1.0 * 0.5 + 0.0 * 0.2) / 1.7)
    assert scorecard["overall"][1:] == (4, 1, 1, 2)
    assert scorecard["One"] == (pytest.approx((0.75 + 0.5) / 1.5), 2, 1, 1, 0)
    assert scorecard["Two"] == (0.0, 2, 0, 0, 2)
    metadata = materialization_metadata(result, "metric_scorecard")
    assert metadata["worst_metrics"] == "d, c, a" and "| One | 83.3% | 2 | 1 | 1 | 0 |" in metadata["scorecard"]


def test_results_reach_every_configured_store(tmp_path, all_stores, pg_conn, s3_client):
    write_duckdb(Path(all_stores.duckdb_path), tmp_path, ASSETS)
    result = compute(tmp_path, library(tmp_path, {"agent": {}}), all_stores, as_of=DAY1)
    assert result.success, failure_text(result)
    schema = all_stores.postgres_schema
    summary = pg_conn.execute(
        sql.SQL("SELECT datestamp::text, tenancy, metric_id, totalok, total, score, status FROM {}").format(
            sql.Identifier(schema, "metric_summary")
        )
    ).fetchall()
    assert summary == [("2026-06-01", "acme", "agent", 3.0, 4, 0.75, "warning")]
    detail = pg_conn.execute(
        sql.SQL("SELECT count(*), sum(compliance) FROM {}").format(sql.Identifier(schema, "metric_detail"))
    ).fetchone()
    assert detail == (4, 3.0)
    assert rows(Path(all_stores.duckdb_path), "SELECT count(*) FROM metric_detail") == [(4,)]
    for tag in ("metric_summary", "metric_detail", "metric_scorecard"):
        document = json.loads(
            Path(all_stores.file_template.replace("%TAG", tag).replace("%TENANCY", "acme")).read_text()
        )
        assert document["metadata"]["tag"] == tag and document["metadata"]["tenancy"] == "acme"
        backup = json.loads(
            s3_client.get_object(Bucket=all_stores.s3_bucket, Key=f"backup/{tag}/acme.json")["Body"].read()
        )
        assert backup == document
    listed = s3_client.list_objects_v2(Bucket=all_stores.s3_bucket, Prefix="data/metric_summary/2026/06/01/")
    assert listed["KeyCount"] == 1


def test_history_keeps_each_day_and_recomputing_a_day_replaces_it(tmp_path, all_stores, pg_conn):
    db = Path(all_stores.duckdb_path)
    lib = library(tmp_path, {"agent": {}})
    instance = dg.DagsterInstance.ephemeral()
    day = {"day1": DAY1, "day2": DAY2, "day2_again": "2026-06-02T18:00:00Z"}
    uploads = {
        "day1": ASSETS,
        "day2": [{"id": "a-0", "has_agent": True}],
        "day2_again": [{"id": "a-0", "has_agent": True}, {"id": "a-9", "has_agent": False}],
    }
    for name, as_of in day.items():
        write_duckdb(db, tmp_path, uploads[name], timestamp=datetime.fromisoformat(as_of.replace("Z", "+00:00")))
        result = compute(tmp_path, lib, all_stores, as_of=as_of, instance=instance)
        assert result.success, failure_text(result)
    expected = [("2026-06-01", 0.75, 4), ("2026-06-02", 0.5, 2)]
    query = "SELECT CAST(datestamp AS VARCHAR), score, total FROM metric_summary ORDER BY 1"
    assert rows(db, query) == expected
    assert rows(db, "SELECT CAST(datestamp AS VARCHAR), count(*) FROM metric_detail GROUP BY 1 ORDER BY 1") == [
        ("2026-06-01", 4),
        ("2026-06-02", 2),
    ]
    assert rows(
        db, "SELECT CAST(datestamp AS VARCHAR), score FROM metric_scorecard WHERE scope = 'overall' ORDER BY 1"
    ) == [
        ("2026-06-01", 0.75),
        ("2026-06-02", 0.5),
    ]
    pg = pg_conn.execute(
        sql.SQL("SELECT datestamp::text, score, total FROM {} ORDER BY 1").format(
            sql.Identifier(all_stores.postgres_schema, "metric_summary")
        )
    ).fetchall()
    assert pg == expected


def test_a_failing_metric_fails_alone_and_the_scorecard_is_still_computed(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, ASSETS)
    specs = {"good": {}, "broken": {"queries": ["SELECT nope FROM {{ ref('tenable_assets') }}"]}}
    result = compute(tmp_path, library(tmp_path, specs), duck_stores)
    assert not result.success and "metric_broken.yml query 1: DuckDB" in failure_text(result)
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {
        "metric_good",
        "metric_scorecard",
    }
    assert rows(db, "SELECT metric_id FROM metric_summary") == [("good",)]


def test_computing_one_metric_keeps_the_others_in_the_file_store_envelopes(tmp_path, db):
    write_duckdb(db, tmp_path, ASSETS)
    stores = StoresResource(file_template=str(tmp_path / "files/%TAG/%TENANCY.json"), duckdb_path=str(db))
    lib = library(tmp_path, {"one": {}, "two": {"queries": [ALL_OK]}})
    instance = dg.DagsterInstance.ephemeral()
    compute(tmp_path, lib, stores, instance=instance)
    metrics = build_metrics(lib)
    from secmetrics_dagster.collection.resource import CollectionResource
    from secmetrics_dagster.metrics import MetricsResource

    subset = dg.materialize(
        metrics.assets,
        selection=["metric_one"],
        resources={"collection": CollectionResource(tenancy="acme"), "stores": stores, "metrics": MetricsResource()},
        instance=instance,
    )
    assert subset.success
    summary = json.loads((tmp_path / "files/metric_summary/acme.json").read_text())["data"]
    detail = json.loads((tmp_path / "files/metric_detail/acme.json").read_text())["data"]
    assert sorted(r["metric_id"] for r in summary) == ["one", "two"]
    assert sorted({r["metric_id"] for r in detail}) == ["one", "two"] and len(detail) == 8


def test_the_scorecard_report_prints_overall_each_category_and_the_three_worst(tmp_path, db, duck_stores):
    from secmetrics_dagster.metrics.report import scorecard_lines

    write_duckdb(db, tmp_path, ASSETS)
    specs = {
        "a": {"category": "One"},
        "b": {"category": "One", "queries": [ALL_OK]},
        "c": {"category": "Two", "queries": [NONE_OK]},
        "d": {"category": "Two", "queries": [ALL_OK]},
    }
    compute(tmp_path, library(tmp_path, specs), duck_stores, as_of=DAY1)
    lines = scorecard_lines(str(db), "acme")
    assert lines[0] == "scorecard 2026-06-01 (tenancy acme):"
    assert [line.split()[0] for line in lines[1:4]] == ["overall", "One", "Two"]
    assert "68.8%  4 metrics: 2 good, 1 warning, 1 bad" in lines[1]
    assert lines[4] == "worst metrics:"
    assert [line.split("  ")[1].strip() for line in lines[5:]] == ["Test metric c", "Test metric a", "Test metric b"]


def test_a_broken_metric_file_fails_the_definition_check_and_the_other_metrics_still_compute(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, ASSETS)
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    (lib_dir / "metric_broken.yml").write_text("metric_id: broken\ntitle: [unclosed\n")
    lib = library(tmp_path, {"fine": {}})
    result = compute(tmp_path, lib, duck_stores)
    assert result.success, failure_text(result)
    checks = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    definitions = checks["metric_definitions_valid"]
    assert definitions.passed is False and "metric_broken.yml: is not valid YAML" in definitions.description
    assert materialization_metadata(result, "metric_fine")["total"] == 4


# The tables' columns, in the order the metrics issue gives them.
TABLE_COLUMNS = {
    "metric_summary": [
        "datestamp",
        "tenancy",
        "metric_id",
        "title",
        "category",
        "type",
        "weight",
        "indicator",
        "slo_min",
        "slo",
        "totalok",
        "total",
        "score",
        "status",
        "computed_at",
    ],
    "metric_detail": ["datestamp", "tenancy", "metric_id", "resource", "resource_type", "compliance", "detail"],
    "metric_scorecard": ["datestamp", "tenancy", "scope", "score", "metrics", "good", "warning", "bad"],
}


def test_the_result_tables_have_the_documented_columns_and_postgresql_holds_the_same_scorecard(
    tmp_path, all_stores, pg_conn
):
    db = Path(all_stores.duckdb_path)
    write_duckdb(db, tmp_path, ASSETS)
    specs = {"a": {"category": "One"}, "b": {"category": "Two", "queries": [NONE_OK]}}
    result = compute(tmp_path, library(tmp_path, specs), all_stores, as_of=DAY1)
    assert result.success, failure_text(result)
    schema = all_stores.postgres_schema
    for table, columns in TABLE_COLUMNS.items():
        assert [r[0] for r in rows(db, f"DESCRIBE {table}")][: len(columns)] == columns, table
        pg_columns = pg_conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
        assert [r[0] for r in pg_columns][: len(columns)] == columns, table
    query = (
        "SELECT datestamp::text, tenancy, scope, round(score::numeric, 6)::float, metrics, good, warning, bad FROM {}"
    )
    pg_scorecard = pg_conn.execute(
        sql.SQL(query + " ORDER BY scope").format(sql.Identifier(schema, "metric_scorecard"))
    ).fetchall()
    duck_scorecard = rows(
        db,
        "SELECT CAST(datestamp AS VARCHAR), tenancy, scope, round(score, 6), metrics, good, warning, bad "
        "FROM metric_scorecard ORDER BY scope",
    )
    assert (
        pg_scorecard
        == duck_scorecard
        == [
            ("2026-06-01", "acme", "One", 0.75, 1, 0, 1, 0),
            ("2026-06-01", "acme", "Two", 0.0, 1, 0, 0, 1),
            ("2026-06-01", "acme", "overall", 0.375, 2, 0, 1, 1),
        ]
    )


def test_the_failing_preview_shows_the_first_20_of_more_failing_resources(tmp_path, db, duck_stores):
    write_duckdb(db, tmp_path, [{"id": f"a-{i:02d}", "has_agent": False} for i in range(30)])
    result = compute(tmp_path, library(tmp_path, {"agent": {}}), duck_stores)
    preview = materialization_metadata(result, "metric_agent")["failing_resources"]
    listed = [line for line in preview.splitlines() if line.startswith("| a-")]
    assert len(listed) == 20
    assert "First 20 failing resource(s) of 30 rows." in preview
    assert rows(db, "SELECT count(*) FROM metric_detail") == [(30,)]  # the table has them all


def test_slo_checks_never_block_a_metric_below_its_minimum_still_feeds_the_scorecard(tmp_path, db, duck_stores):
    lib = library(tmp_path, {"zero": {"queries": [NONE_OK]}})
    built = build_metrics(lib)
    assert [spec.blocking for spec in built.assets[0].check_specs] == [False, False]
    write_duckdb(db, tmp_path, ASSETS)
    result = compute(tmp_path, lib, duck_stores)
    assert check_results(result)["metric_zero"].severity == dg.AssetCheckSeverity.ERROR
    assert result.success, failure_text(result)
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {
        "metric_zero",
        "metric_scorecard",
    }


def test_metric_freshness_follows_the_metrics_groups_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLECTION_FRESHNESS_HOURS_METRICS", "30")
    monkeypatch.setenv("COLLECTION_FRESHNESS_GRACE_HOURS", "6")
    built = build_metrics(library(tmp_path, {"agent": {}}))
    for spec in built.assets[0].specs:
        policy = spec.freshness_policy
        assert (policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()) == (
            timedelta(hours=30),
            timedelta(hours=36),
        ), spec.key
