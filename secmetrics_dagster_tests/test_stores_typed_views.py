"""The typed views end to end: `<tag>_latest` and `<tag>_history` in DuckDB and PostgreSQL carry each declared
column beside json_data, recreated from the declarations at every load; values that do not convert are NULL,
counted in `columns_unparsed` and flagged by the columns_parsed check."""

import dataclasses

import dagster as dg
import duckdb
import pytest
from psycopg import sql

from secmetrics_dagster.collection import HttpSession
from secmetrics_dagster.collection.columns import BASE_COLUMNS, col
from secmetrics_dagster.sources import SOURCES
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.base import DatasetSpec, Source, VendorResource
from secmetrics_dagster.stores.base import StoreError
from secmetrics_dagster.stores.duckdb import DuckDBStore

from .harness import materialize_source
from .helpers import failure_text, make_snapshot, materialization_metadata

ISSUE_COLUMNS = [c.name for c in snyk_source.SOURCE.dataset("snyk_issues").columns]


def _duck(path, query):
    con = duckdb.connect(path, read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_both_databases_show_the_typed_columns_beside_the_raw_record(snyk, collection, all_stores, pg_conn):
    result = materialize_source(snyk_source.SOURCE, snyk, collection, all_stores)
    assert result.success, failure_text(result)
    schema = all_stores.postgres_schema
    pg_columns = [
        r[0]
        for r in pg_conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, "snyk_issues_latest"),
        ).fetchall()
    ]
    assert pg_columns == ["upload_timestamp", "tenancy", "upload_id", "json_data", *ISSUE_COLUMNS]
    duck_columns = [r[0] for r in _duck(all_stores.duckdb_path, "DESCRIBE snyk_issues_latest")]
    assert duck_columns == pg_columns

    query = (
        "SELECT id, attributes_effective_severity_level, attributes_created_at, attributes_risk_score_value, "
        "attributes_ignored FROM {} ORDER BY id"
    )
    pg = pg_conn.execute(sql.SQL(query).format(sql.Identifier(schema, "snyk_issues_latest"))).fetchall()
    duck = _duck(all_stores.duckdb_path, query.format("snyk_issues_latest"))
    assert pg == duck and len(pg) == 114
    raw = pg_conn.execute(
        sql.SQL(
            "SELECT json_data->>'id', json_data->'attributes'->>'effective_severity_level', "
            "(json_data->'attributes'->>'created_at')::timestamptz, (json_data->'attributes'->'risk'->'score'->>'value')::bigint, "
            "(json_data->'attributes'->>'ignored')::boolean FROM {} ORDER BY 1"
        ).format(sql.Identifier(schema, "snyk_issues_latest"))
    ).fetchall()
    assert pg == raw  # the typed column is the raw value, converted


def test_history_keeps_every_upload_and_latest_only_the_newest(snyk, collection, all_stores, pg_conn):
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        assert materialize_source(
            snyk_source.SOURCE, snyk, collection, all_stores, instance=instance, selection="snyk_organizations"
        ).success
    for relation, uploads in (("snyk_organizations_history", 2), ("snyk_organizations_latest", 1)):
        (pg,) = pg_conn.execute(
            sql.SQL("SELECT count(DISTINCT upload_id), count(*) FROM {}").format(
                sql.Identifier(all_stores.postgres_schema, relation)
            )
        ).fetchall()
        (duck,) = _duck(all_stores.duckdb_path, f"SELECT count(DISTINCT upload_id), count(*) FROM {relation}")
        assert pg == duck == (uploads, 2 * uploads)


def test_a_column_declared_later_appears_without_a_migration_and_older_uploads_show_it(
    snyk, collection, all_stores, pg_conn
):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_source(
        snyk_source.SOURCE, snyk, collection, all_stores, instance=instance, selection="snyk_organizations"
    ).success
    orgs = snyk_source.SOURCE.dataset("snyk_organizations")
    wider = dataclasses.replace(orgs, columns=(*orgs.columns, col("type", "text", "JSON:API type.")))
    changed = dataclasses.replace(snyk_source.SOURCE, datasets=(wider, *snyk_source.SOURCE.datasets[1:]))
    assert materialize_source(
        changed, snyk, collection, all_stores, instance=instance, selection="snyk_organizations"
    ).success
    pg = pg_conn.execute(
        sql.SQL("SELECT DISTINCT type FROM {}").format(
            sql.Identifier(all_stores.postgres_schema, "snyk_organizations_history")
        )
    ).fetchall()
    assert pg == [("org",)]  # both uploads, the older one included, read the new column from its json_data
    assert _duck(all_stores.duckdb_path, "SELECT DISTINCT type FROM snyk_organizations_history") == [("org",)]


class ChangedResource(VendorResource):
    def client(self, settings, logger=None):
        return HttpSession("Changed", "http://127.0.0.1:9/", settings=settings, logger=logger)


def _changed_vendor_pull(pull):
    # `seen` was a timestamp and `score` a number; the vendor now sends other things for two of the records.
    pull.spool.extend(
        [
            {"id": "a", "seen": "2026-11-30T10:00:00Z", "score": 5},
            {"id": "b", "seen": "yesterday", "score": "high"},
            {"id": "c", "seen": "2026-13-40", "score": 7},
            {"id": "d"},
        ]
    )


CHANGED = Source(
    group="changed",
    title="Changed tool",
    docs_url="https://example.invalid/docs",
    resource=ChangedResource,
    datasets=(
        DatasetSpec(
            "changed_things",
            "Things",
            "Four things.",
            "GET /things",
            pull=_changed_vendor_pull,
            columns=(
                col("id", "text", "Id."),
                col("seen", "timestamp", "When seen."),
                col("score", "integer", "Score."),
            ),
        ),
    ),
    sandbox_env=lambda url, token: {},
)


def test_values_that_do_not_convert_are_null_counted_and_flagged(collection, all_stores, pg_conn):
    from .harness import source_assets

    result = materialize_source(
        CHANGED, ChangedResource(), collection, all_stores, assets=source_assets(CHANGED, checks=True)
    )
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "changed_things")
    assert md["columns_unparsed"] == {"seen": 2, "score": 1}
    rows = _duck(all_stores.duckdb_path, "SELECT id, seen IS NULL, score FROM changed_things_latest ORDER BY id")
    assert rows == [("a", False, 5), ("b", True, None), ("c", True, 7), ("d", True, None)]
    pg = pg_conn.execute(
        sql.SQL("SELECT id, seen IS NULL, score FROM {} ORDER BY id").format(
            sql.Identifier(all_stores.postgres_schema, "changed_things_latest")
        )
    ).fetchall()
    assert pg == rows
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "columns_parsed"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "seen (2)" in check.description and "score (1)" in check.description


def test_unparsed_values_are_counted_on_real_sized_records_within_the_memory_bound(tmp_path):
    # Sandbox Tenable findings carry dozens of typed columns each; counting them must fit DuckDB's small limit.
    from secmetrics_dagster.collection import RunContext, Spool
    from secmetrics_dagster.sandbox.tenable import make_vulnerability
    from secmetrics_dagster.sources import TENABLE
    from secmetrics_dagster.stores.duckdb import unparsed_counts

    spool = Spool(RunContext("tenable_vulnerabilities", "acme"), tmp_path / "spool")
    for i in range(2000):
        record = make_vulnerability(7, i, i // 50)
        if i % 500 == 0:
            record["first_found"] = "last tuesday"  # the vendor changed a timestamp into text
        spool.write(record)
    snapshot = spool.close()
    snapshot.columns = TENABLE.dataset("tenable_vulnerabilities").columns
    try:
        assert unparsed_counts(snapshot) == {"first_found": 4}
    finally:
        snapshot.discard()


# ------------------------------------------------------------------------------ every dataset, both databases

PG_TYPES = {
    "text": "text",
    "integer": "bigint",
    "float": "double precision",
    "boolean": "boolean",
    "timestamp": "timestamp with time zone",
    "json": "jsonb",
}
DUCK_TYPES = {
    "text": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "json": "JSON",
}
DATASETS = [d for s in SOURCES for d in s.datasets]


def test_every_dataset_declares_described_columns_covering_its_required_fields():
    assert len(DATASETS) == 30
    for dataset in DATASETS:
        assert len(dataset.columns) >= 5, dataset.tag
        assert all(c.description.strip() for c in dataset.columns), dataset.tag
        # the fields the checks require of every record (its identity) are typed columns too
        assert set(dataset.required_fields) <= {c.path for c in dataset.columns}, dataset.tag


def test_both_databases_type_every_declared_column_of_every_dataset_in_latest_and_history(
    tmp_path, pg_store, pg_schema, pg_conn
):
    pg = pg_store
    duck = DuckDBStore(str(tmp_path / "db.duckdb"))
    for dataset in DATASETS:
        snapshot = make_snapshot(tmp_path / dataset.tag, [{"unrelated": 1}], tag=dataset.tag)
        snapshot.columns = dataset.columns
        pg.write(snapshot, None)
        duck.write(snapshot, None)
        snapshot.discard()
    con = duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True)
    try:
        for dataset in DATASETS:
            expected = [(c.name, c.type) for c in dataset.columns]
            for view in (f"{dataset.tag}_latest", f"{dataset.tag}_history"):
                pg_columns = pg_conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (pg_schema, view),
                ).fetchall()
                assert [n for n, _t in pg_columns[:4]] == list(BASE_COLUMNS), view
                assert pg_columns[4:] == [(n, PG_TYPES[t]) for n, t in expected], view
                duck_columns = [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{view}"').fetchall()]
                assert [n for n, _t in duck_columns[:4]] == list(BASE_COLUMNS), view
                assert duck_columns[4:] == [(n, DUCK_TYPES[t]) for n, t in expected], view
                # a record without any declared path reads NULL in every typed column, never an error
                names = ", ".join(f'"{n}"' for n, _t in expected)
                assert con.execute(f'SELECT {names} FROM "{view}"').fetchall() == [(None,) * len(expected)], view
    finally:
        con.close()


def _write(store, tmp_path, name, columns):
    snapshot = make_snapshot(tmp_path / name, [{"id": "a", "score": "7", "seen": "2026-11-30T10:00:00Z"}])
    snapshot.columns = columns
    try:
        return store.write(snapshot, None)
    finally:
        snapshot.discard()


def _view_columns(pg_conn, schema, view):
    return pg_conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (schema, view),
    ).fetchall()[4:]


def test_a_removed_or_retyped_column_recreates_the_postgres_views(tmp_path, pg_store, pg_schema, pg_conn):
    store = pg_store
    _write(
        store,
        tmp_path,
        "one",
        (col("id", "text", "Id."), col("score", "integer", "S."), col("seen", "timestamp", "W.")),
    )
    # CREATE OR REPLACE VIEW refuses both changes; the view is dropped and created again
    _write(store, tmp_path, "two", (col("id", "text", "Id."), col("score", "text", "S.")))
    for view in ("snyk_issues_latest", "snyk_issues_history"):
        assert _view_columns(pg_conn, pg_schema, view) == [("id", "text"), ("score", "text")]
    rows = pg_conn.execute(
        sql.SQL("SELECT id, score FROM {} ORDER BY id").format(sql.Identifier(pg_schema, "snyk_issues_history"))
    ).fetchall()
    assert rows == [("a", "7"), ("a", "7")]  # both uploads, under the new declaration


def test_a_user_view_on_ours_is_never_dropped_and_the_error_says_what_to_do(tmp_path, pg_store, pg_schema, pg_conn):
    store = pg_store
    _write(store, tmp_path, "one", (col("id", "text", "Id."), col("score", "integer", "S.")))
    mine = sql.Identifier(pg_schema, "my_scores")
    pg_conn.execute(
        sql.SQL("CREATE VIEW {} AS SELECT id, score FROM {}").format(
            mine, sql.Identifier(pg_schema, "snyk_issues_latest")
        )
    )
    with pytest.raises(StoreError) as raised:
        _write(store, tmp_path, "two", (col("id", "text", "Id."),))
    message = str(raised.value)
    assert "snyk_issues_latest" in message and "my_scores" in message and "Drop those views" in message
    assert pg_conn.execute(sql.SQL("SELECT id, score FROM {}").format(mine)).fetchall() == [("a", 7)]
    uploads = pg_conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg_schema, "snyk_issues"))
    ).fetchone()
    assert uploads == (1,)  # the refused load wrote nothing; the first upload is kept
