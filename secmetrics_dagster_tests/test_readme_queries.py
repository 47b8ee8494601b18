"""The README's example queries, run as written against the demo's DuckDB and against a PostgreSQL store filled
from the same sandbox, must return the rows the README shows."""

import re
from pathlib import Path

import duckdb
import psycopg
import pytest
from psycopg import sql

from secmetrics_dagster.sandbox import Sandbox
from secmetrics_dagster.sources import SNYK, TENABLE
from secmetrics_dagster.sources.snyk import SnykResource
from secmetrics_dagster.sources.tenable import TenableResource
from secmetrics_dagster.stores import StoresResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import failure_text

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries() -> list[tuple[str, list[list[str]]]]:
    """(query, expected rows with the header first) for every sql block followed by a text block."""
    block = re.search(r"<!-- readme-queries:start -->(.*?)<!-- readme-queries:end -->", README.read_text(), re.S)
    assert block, "README.md has no readme-queries block"
    pairs = re.findall(r"```sql\n(.*?)```\s*```text\n(.*?)```", block.group(1), re.S)
    assert len(pairs) >= 2
    return [(q.strip().rstrip(";"), _cells(rows)) for q, rows in pairs]


def _cells(rows: str) -> list[list[str]]:
    # Columns are separated by two or more spaces, so a value may hold single spaces ("Directory Traversal").
    return [re.split(r"\s{2,}", line.strip()) for line in rows.strip().splitlines()]


def as_rows(columns, rows) -> list[list[str]]:
    return [list(columns)] + [[str(v) for v in row] for row in rows]


@pytest.fixture(scope="module")
def pg_store(pg_params, s3_endpoint, tmp_path_factory):
    """PostgreSQL filled with the sandbox's defaults (those of `make demo`) under tenancy `default`."""
    from secmetrics_dagster.collection.resource import CollectionResource

    tmp = tmp_path_factory.mktemp("readme")
    schema = "readme_queries"
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    stores = StoresResource(
        file_template=None,
        s3_bucket=None,
        postgres_host=pg_params["host"],
        postgres_port=int(pg_params.get("port", 5432)),
        postgres_user=pg_params.get("user"),
        postgres_dbname=pg_params.get("dbname"),
        postgres_schema=schema,
    )
    collection = CollectionResource(tenancy="default", spool_dir=str(tmp / "spool"))
    with Sandbox(token=SANDBOX_TOKEN) as box:
        for source, resource in (
            (SNYK, SnykResource(token=SANDBOX_TOKEN, endpoint=box.url)),
            (TENABLE, TenableResource(access_key=SANDBOX_TOKEN, secret_key=SANDBOX_TOKEN, url=box.url,
                                      export_poll_seconds=0.05)),
        ):  # fmt: skip
            result = materialize_source(source, resource, collection, stores)
            assert result.success, failure_text(result)
    yield schema
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def demo_duckdb_rows(workdir, query: str) -> list:
    """What `query` returns in the demo's DuckDB file, as README-style rows (header first)."""
    con = duckdb.connect(str(workdir / "data/database.duckdb"), read_only=True)
    try:
        cursor = con.execute(query)
        return as_rows([d[0] for d in cursor.description], cursor.fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("index", range(3))
def test_the_readme_query_returns_its_rows_in_the_demos_duckdb(demo_run, index):
    workdir, done = demo_run
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    query, expected = readme_queries()[index]
    assert demo_duckdb_rows(workdir, query) == expected


@pytest.mark.parametrize("index", range(3))
def test_the_readme_query_returns_its_rows_in_postgresql(pg_params, pg_store, index):
    query, expected = readme_queries()[index]
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_store)))
        cursor = conn.execute(query)
        got = as_rows([d.name for d in cursor.description], cursor.fetchall())
    assert got == expected


def test_every_readme_query_is_tested():
    assert len(readme_queries()) == 3
    assert README.read_text().count("```sql") == 4  # the fourth, on metric_summary, is tested below


def test_the_readmes_metric_query_returns_its_rows_in_the_demos_duckdb(demo_run):
    workdir, done = demo_run
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = README.read_text()
    found = re.search(r"```sql\n(-- MFA coverage.*?)```.*?```text\n(.*?)```", text, re.S)
    assert found, "the README's metric_summary query and its rows"
    query, expected = found.group(1).strip().rstrip(";"), _cells(found.group(2))
    # The README shows the day its example ran; the demo's rows carry the day the demo ran (its scorecard's).
    day = re.search(r"^scorecard (\d{4}-\d{2}-\d{2}) ", done.stdout, re.M).group(1)
    expected = [expected[0]] + [[day, *row[1:]] for row in expected[1:]]
    assert demo_duckdb_rows(workdir, query) == expected
