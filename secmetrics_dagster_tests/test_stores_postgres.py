"""PostgreSQL store on a real server: COPY in one transaction, idempotent uploads, the _latest view."""

import json

import pytest

from secmetrics_dagster.collection import InvalidIdentifierError
from secmetrics_dagster.stores import PostgresStore, StoreError, UploadRef

from .helpers import at, make_snapshot, pg_rows


@pytest.fixture
def store(pg_store):
    return pg_store


def test_schema_table_and_columns_are_created_as_documented(store, pg_conn, pg_schema, tmp_path):
    store.write(make_snapshot(tmp_path, [{"id": "a"}]), None)
    columns = pg_conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (pg_schema, "snyk_issues"),
    ).fetchall()
    assert columns == [
        ("upload_timestamp", "timestamp with time zone"),
        ("tenancy", "text"),
        ("upload_id", "uuid"),
        ("json_data", "jsonb"),
    ]


def test_records_load_with_their_stamps_and_awkward_characters_intact(store, pg_conn, pg_schema, tmp_path):
    awkward = {"id": "x", "text": 'back\\slash "quote" tab\t newline\n ünï', "nested": {"a": [1, 2.5, None]}}
    snapshot = make_snapshot(tmp_path, [awkward, {"id": "y"}])
    result = store.write(snapshot, None)
    assert result.records == 2 and result.location == f"{pg_schema}.snyk_issues"
    rows = pg_rows(pg_conn, pg_schema, "snyk_issues")
    assert len(rows) == 2
    loaded = rows[0][2]
    assert loaded["text"] == awkward["text"] and loaded["nested"] == awkward["nested"]
    assert loaded["_upload_id"] == snapshot.upload_id and rows[0][1] == snapshot.upload_id


def test_materializing_the_same_upload_again_replaces_it(store, pg_conn, pg_schema, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(3)])
    store.write(snapshot, None)
    store.write(snapshot, None)
    assert len(pg_rows(pg_conn, pg_schema, "snyk_issues")) == 3


def test_latest_view_returns_the_newest_upload_per_tenancy(store, pg_conn, pg_schema, tmp_path):
    store.write(make_snapshot(tmp_path, [{"id": "old"}], tenancy="acme", timestamp=at(1)), None)
    new = make_snapshot(tmp_path, [{"id": "new1"}, {"id": "new2"}], tenancy="acme", timestamp=at(2))
    store.write(new, None)
    other = make_snapshot(tmp_path, [{"id": "other"}], tenancy="globex", timestamp=at(1))
    store.write(other, None)
    # an older upload loaded late must not become "latest"
    store.write(make_snapshot(tmp_path, [{"id": "stale"}], tenancy="acme", timestamp=at(0)), None)
    latest = pg_rows(pg_conn, pg_schema, "snyk_issues_latest")
    assert [(t, r["id"]) for t, _u, r in latest] == [("acme", "new1"), ("acme", "new2"), ("globex", "other")]


def test_an_empty_newest_upload_empties_the_latest_view(store, pg_conn, pg_schema, tmp_path):
    store.write(make_snapshot(tmp_path, [{"id": "a"}], timestamp=at(1)), None)
    store.write(make_snapshot(tmp_path, [], timestamp=at(2)), None)
    assert pg_rows(pg_conn, pg_schema, "snyk_issues_latest") == []


def test_a_load_that_fails_midway_leaves_no_rows_and_the_previous_upload(store, pg_conn, pg_schema, tmp_path):
    good = make_snapshot(tmp_path, [{"id": "good"}], timestamp=at(1))
    store.write(good, None)
    bad = make_snapshot(tmp_path, [{"id": i} for i in range(1000)], timestamp=at(2))
    with open(bad.spool_path, "a") as handle:
        handle.write('{"id": "truncated\n')  # jsonb rejects this line after 1000 good rows were copied
    with pytest.raises(Exception):
        store.write(bad, None)
    rows = pg_rows(pg_conn, pg_schema, "snyk_issues")
    assert [r["id"] for _t, _u, r in rows] == ["good"]
    assert [r["id"] for _t, _u, r in pg_rows(pg_conn, pg_schema, "snyk_issues_latest")] == ["good"]


def test_records_stream_back_by_upload(store, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(7)])
    store.write(snapshot, None)
    ref = UploadRef("snyk_issues", "acme", snapshot.upload_id)
    assert sorted(r["id"] for r in store.read(ref)) == list(range(7))


@pytest.mark.parametrize("schema", ["x; DROP TABLE y", "../etc", "", "a" * 300, 'quote"d'])
def test_hostile_schema_names_are_refused_before_any_sql(schema):
    with pytest.raises(InvalidIdentifierError, match="STORE_POSTGRES_SCHEMA"):
        PostgresStore(host="127.0.0.1", schema=schema)


def test_an_unreachable_server_is_named_without_the_password(tmp_path):
    from .services import free_port

    store = PostgresStore(
        host="127.0.0.1", port=free_port(), user="u", password="s3cr3t-pw", dbname="d", connect_timeout=2
    )
    with pytest.raises(StoreError) as info:
        store.write(make_snapshot(tmp_path, [{"id": 1}]), None)
    assert "cannot connect to PostgreSQL u@127.0.0.1" in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)


def test_a_vendor_record_with_a_lone_surrogate_loads_into_postgres_and_duckdb(store, pg_conn, pg_schema, tmp_path):
    from secmetrics_dagster.stores import DuckDBStore

    from .helpers import duck_rows

    record = json.loads('{"id": "s", "name": "a\\ud800b", "nul": "x\\u0000y"}')
    snapshot = make_snapshot(tmp_path, [record])
    store.write(snapshot, None)
    duck = DuckDBStore(str(tmp_path / "db.duckdb"))
    duck.write(snapshot, None)
    for loaded in (pg_rows(pg_conn, pg_schema, "snyk_issues")[0][2], duck_rows(duck.path, "snyk_issues")[0][2]):
        assert loaded["name"] == "a\ufffdb" and loaded["id"] == "s"


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_copy_rows_escape_and_prefix_every_line_as_one_line_at_a_time_would(tmp_path, monkeypatch, block):
    from secmetrics_dagster.stores import postgres

    lines = ['{"a":"back\\\\slash"}', '{"b":"\\u0000 and C:\\\\u0000dir"}', '{"c":"ünï \\\\\\u0000"}', "{}"]
    spool = tmp_path / "spool.ndjson"
    spool.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    monkeypatch.setattr(postgres, "_COPY_CHUNK", block)
    prefix = "2026-01-02T03:04:05Z\tacme\tid\t"
    expected = "".join(prefix + postgres._copy_text(line) + "\n" for line in lines).encode("utf-8")
    assert b"".join(postgres._copy_rows(spool, prefix.encode("utf-8"))) == expected
    spool.write_bytes(("\n".join(lines)).encode("utf-8"))  # a last line without its newline
    assert b"".join(postgres._copy_rows(spool, prefix.encode("utf-8"))) == expected


def test_records_spanning_several_copy_blocks_all_load_whole_and_in_order(store, pg_conn, pg_schema, tmp_path):
    records = [{"id": i, "path": "C:\\dir\\" + "x" * 700, "n": "\u0000"} for i in range(3000)]  # ~2.3 MB, 3 blocks
    snapshot = make_snapshot(tmp_path, records)
    result = store.write(snapshot, None)
    assert result.records == 3000 and result.bytes > 2 * (1 << 20)
    rows = pg_conn.execute(
        f"SELECT json_data FROM \"{pg_schema}\".snyk_issues ORDER BY (json_data->>'id')::int"
    ).fetchall()
    assert [r[0]["id"] for r in rows] == list(range(3000))
    assert all(r[0]["path"] == records[0]["path"] and r[0]["n"] == "\ufffd" for r in rows)
