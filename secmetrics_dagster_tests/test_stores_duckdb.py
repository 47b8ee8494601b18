"""DuckDB store: bulk load from the spool, idempotent uploads, the _latest view, all-or-nothing."""

import duckdb
import pytest

from secmetrics_dagster.stores import DuckDBStore, UploadRef

from .helpers import at, duck_rows, make_snapshot


@pytest.fixture
def store(tmp_path):
    return DuckDBStore(str(tmp_path / "db/database.duckdb"))


def test_table_has_the_documented_columns(store, tmp_path):
    store.write(make_snapshot(tmp_path, [{"id": 1}]), None)
    con = duckdb.connect(store.path, read_only=True)
    columns = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_name = 'snyk_issues' ORDER BY ordinal_position").fetchall()
    con.close()
    assert columns == [("upload_timestamp", "TIMESTAMP WITH TIME ZONE"), ("tenancy", "VARCHAR"),
                       ("upload_id", "UUID"), ("json_data", "JSON")]


def test_records_load_in_bulk_with_stamps(store, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": i, "text": 'q"\\'} for i in range(100)])
    result = store.write(snapshot, None)
    rows = duck_rows(store.path, "snyk_issues")
    assert result.records == 100 and len(rows) == 100
    assert rows[0][2]["_upload_id"] == snapshot.upload_id and rows[0][2]["text"] == 'q"\\'


def test_the_same_upload_again_replaces_it(store, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(4)])
    store.write(snapshot, None)
    store.write(snapshot, None)
    assert len(duck_rows(store.path, "snyk_issues")) == 4


def test_latest_view_returns_the_newest_upload_per_tenancy(store, tmp_path):
    store.write(make_snapshot(tmp_path, [{"id": "old"}], timestamp=at(1)), None)
    store.write(make_snapshot(tmp_path, [{"id": "new"}], timestamp=at(3)), None)
    store.write(make_snapshot(tmp_path, [{"id": "g"}], tenancy="globex", timestamp=at(2)), None)
    store.write(make_snapshot(tmp_path, [{"id": "late-but-old"}], timestamp=at(0)), None)
    latest = duck_rows(store.path, "snyk_issues_latest")
    assert [(t, r["id"]) for t, _u, r in latest] == [("acme", "new"), ("globex", "g")]


def test_a_failed_load_rolls_back_to_the_previous_upload(store, tmp_path):
    store.write(make_snapshot(tmp_path, [{"id": "good"}], timestamp=at(1)), None)
    bad = make_snapshot(tmp_path, [{"id": i} for i in range(50)], timestamp=at(2))
    with open(bad.spool_path, "a") as handle:
        handle.write('{"id": "cut')
    with pytest.raises(duckdb.Error):
        store.write(bad, None)
    assert [r["id"] for _t, _u, r in duck_rows(store.path, "snyk_issues")] == ["good"]
    assert [r["id"] for _t, _u, r in duck_rows(store.path, "snyk_issues_latest")] == ["good"]


def test_records_stream_back_by_upload(store, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(12)])
    store.write(snapshot, None)
    assert sorted(r["id"] for r in store.read(UploadRef("snyk_issues", "acme", snapshot.upload_id))) == list(range(12))
