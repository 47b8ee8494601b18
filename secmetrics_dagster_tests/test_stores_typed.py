"""Typed column extraction: DuckDB and PostgreSQL give the same value for every form a vendor sends, NULL for
what does not convert, and never an error."""

import json
from datetime import UTC, datetime

import duckdb
import pytest
from psycopg import sql

from secmetrics_dagster.collection.columns import col, snake_case
from secmetrics_dagster.stores.typed import (
    duckdb_expression,
    duckdb_unparsed_sql,
    postgres_expression,
    postgres_functions,
)

WHEN = datetime(2024, 4, 15, 18, 36, 29, tzinfo=UTC)
EPOCH = 1713206189  # WHEN as epoch seconds

CASES = [  # (column type, JSON value, expected)
    ("timestamp", "2024-04-15T18:36:29Z", WHEN),
    ("timestamp", "2024-04-15T18:36:29", WHEN),  # no zone: UTC
    ("timestamp", "2024-04-15T20:36:29+02:00", WHEN),
    ("timestamp", "2024-04-15 18:36:29.000+00:00", WHEN),
    ("timestamp", EPOCH, WHEN),
    ("timestamp", str(EPOCH * 1000), WHEN),  # milliseconds
    ("timestamp", "2024-13-45T00:00:00Z", None),  # looks like a date, is not
    ("timestamp", "N/A", None),
    ("timestamp", "no_information", None),
    ("timestamp", "yesterday", None),  # both databases read this word as a moment; a vendor's text must not be
    ("timestamp", "now", None),
    ("timestamp", "epoch", None),
    ("integer", 42, 42),
    ("integer", "42", 42),
    ("integer", 12.5, None),
    ("integer", "lots", None),
    ("float", 7.5, 7.5),
    ("float", "1e3", 1000.0),
    ("float", "x", None),
    ("boolean", True, True),
    ("boolean", "false", False),
    ("boolean", "TRUE", True),
    ("boolean", "yes", None),
    ("text", "plain", "plain"),
    ("text", 5, "5"),
]


def _duck(column, records):
    con = duckdb.connect()
    con.execute("CREATE TABLE t (json_data JSON)")
    con.executemany("INSERT INTO t VALUES (?::JSON)", [[json.dumps(r)] for r in records])
    return con, [row[0] for row in con.execute(f"SELECT {duckdb_expression(column)} FROM t").fetchall()]


def _pg(pg_conn, schema, column, records):
    pg_conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for statement in postgres_functions(schema):
        pg_conn.execute(statement)
    table = sql.Identifier(schema, "t")
    pg_conn.execute(sql.SQL("CREATE TABLE {} (json_data jsonb)").format(table))
    for record in records:
        pg_conn.execute(sql.SQL("INSERT INTO {} VALUES (%s::jsonb)").format(table), [json.dumps(record)])
    query = sql.SQL("SELECT {} FROM {} t").format(postgres_expression(schema, column), table)
    return [row[0] for row in pg_conn.execute(query).fetchall()]


@pytest.mark.parametrize(("kind", "value", "expected"), CASES)
def test_both_databases_convert_each_vendor_form_alike(pg_conn, pg_schema, kind, value, expected):
    column = col("v.x", kind, "a value")
    records = [{"v": {"x": value}}]
    _, duck = _duck(column, records)
    assert duck == [expected]
    assert _pg(pg_conn, pg_schema, column, records) == [expected]


def test_a_missing_path_or_a_json_null_is_null_not_an_error(pg_conn, pg_schema):
    column = col("profile.last_login", "timestamp", "x")
    records = [{}, {"profile": None}, {"profile": {"last_login": None}}, {"profile": "text"}]
    _, duck = _duck(column, records)
    assert duck == [None] * 4
    assert _pg(pg_conn, pg_schema, column, records) == [None] * 4


def test_array_elements_and_odd_keys_are_addressed_by_the_path(pg_conn, pg_schema):
    column = col("tags.1.key", "text", "x")
    records = [{"tags": [{"key": "a"}, {"key": "b"}]}, {"tags": []}]
    assert _duck(column, records)[1] == ["b", None]
    assert _pg(pg_conn, pg_schema, column, records) == ["b", None]


def test_unparsed_values_are_counted_per_column_and_absent_ones_are_not():
    stamp, number = col("a", "timestamp", "x"), col("n", "integer", "x")
    # A JSON null is absent, like a missing field; the text "null" is a value that does not convert.
    records = [{"a": "2024-13-45", "n": "12"}, {"a": None, "n": 12.5}, {}, {"a": "2024-01-01", "n": "x"}]
    records += [{"a": [None], "n": "null"}, {"a": {"b": None}, "n": None}]
    con, _ = _duck(stamp, records)
    assert con.execute(duckdb_unparsed_sql([stamp, number], "t")).fetchone() == (3, 3)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("profile.login", "profile_login"),
        ("lastLogin", "last_login"),
        ("cve.remediation_level", "cve_remediation_level"),
        ("signInActivity.lastSignInDateTime", "sign_in_activity_last_sign_in_date_time"),
        ("isMFARegistered", "is_mfa_registered"),
        ("_user_id", "_user_id"),
        ("tags.0.key", "tags_0_key"),
    ],
)
def test_a_column_is_named_by_the_snake_case_of_its_path(path, name):
    assert snake_case(path) == name == col(path, "text", "x").name
