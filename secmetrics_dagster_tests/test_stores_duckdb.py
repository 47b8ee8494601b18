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
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'snyk_issues' ORDER BY ordinal_position"
    ).fetchall()
    con.close()
    assert columns == [
        ("upload_timestamp", "TIMESTAMP WITH TIME ZONE"),
        ("tenancy", "VARCHAR"),
        ("upload_id", "UUID"),
        ("json_data", "JSON"),
    ]


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


AWKWARD = [
    "tab\there",
    "comma,semi;pipe|",
    'quote " and \\ backslash',
    "line\nfeed and\r\nreturn",
    "\x01\x02\x1f controls",
    "\u2028\u2029 separators",
    "naïve 日本語 😀",
    "",
    '{"not": "nested"}',
    "'single'",
    "# not a comment",
]


def test_every_character_json_allows_survives_the_line_reader(store, tmp_path):
    # The spool is read as one-column CSV with U+0001 as delimiter and quoting off: nothing a record can hold
    # may split a line or a column, and what comes out is exactly what went in.
    records = [{"id": i, "text": text, "nested": {"list": [text, None, True, 1.5]}} for i, text in enumerate(AWKWARD)]
    store.write(make_snapshot(tmp_path, records), None)
    rows = sorted((r for _t, _u, r in duck_rows(store.path, "snyk_issues")), key=lambda r: r["id"])
    assert [(r["text"], r["nested"]) for r in rows] == [(r["text"], r["nested"]) for r in records]


def test_a_record_larger_than_the_default_buffer_loads(store, tmp_path):
    # A single 5 MB record (a huge plugin output) sizes the buffer and memory limit up; the others are small.
    # Without that, DuckDB refuses the line ("maximum line size of 1048576 bytes").
    big = "x" * (5 * 1024 * 1024)
    snapshot = make_snapshot(tmp_path, [{"id": 0}, {"id": 1, "output": big}, {"id": 2}])
    assert snapshot.longest_line > 5 * 1024 * 1024
    store.write(snapshot, None)
    rows = {r["id"]: r for _t, _u, r in duck_rows(store.path, "snyk_issues")}
    assert set(rows) == {0, 1, 2} and rows[1]["output"] == big


def test_reader_buffer_and_memory_follow_the_largest_record_not_the_count():
    from secmetrics_dagster.stores.duckdb import MiB, _reader_sizes, size_bytes

    assert _reader_sizes(1_500, size_bytes("16MB")) == (MiB, 16_000_000)
    assert _reader_sizes(1_500, size_bytes("8MB")) == (MiB, 12 * MiB)
    assert _reader_sizes(1_500, size_bytes("1GB")) == (MiB, 1_000_000_000)
    assert _reader_sizes(5 * MiB, size_bytes("16MB")) == (5 * MiB + 1, 12 * (5 * MiB + 1))
    assert (size_bytes("64MB"), size_bytes("64MiB"), size_bytes("1.5GB")) == (64_000_000, 64 * MiB, 1_500_000_000)


def test_a_line_that_is_not_json_fails_the_load_naming_it(store, tmp_path):
    bad = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    with open(bad.spool_path, "ab") as handle:
        handle.write(b"not json at all\n")
    with pytest.raises(duckdb.Error, match="(?i)json"):
        store.write(bad, None)
