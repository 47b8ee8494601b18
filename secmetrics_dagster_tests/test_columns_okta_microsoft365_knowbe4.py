"""The typed columns declared for Okta, Microsoft 365 and KnowBe4 read what the sandbox's records hold: every
column finds a value in the collected records and every value converts to the declared type, through the same SQL
the DuckDB views use."""

import json

import duckdb
import pytest

from secmetrics_dagster.sandbox import Sandbox
from secmetrics_dagster.sources import knowbe4, microsoft365, okta
from secmetrics_dagster.stores.typed import duckdb_path, duckdb_unparsed_sql

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import failure_text, stored_file

SOURCES = [okta.SOURCE, microsoft365.SOURCE, knowbe4.SOURCE]


def collected(source, monkeypatch, collection, file_stores) -> dict[str, list[dict]]:
    """Every dataset of `source` collected from the demo's sandbox (seed 42, default volumes), by tag."""
    with Sandbox(seed=42, token=SANDBOX_TOKEN) as box:
        for name, value in source.sandbox_env(box.url, SANDBOX_TOKEN).items():
            monkeypatch.setenv(name, value)
        # KnowBe4 paces itself to 2 requests a second; unpaced here, pacing has its own tests.
        fast = {"requests_per_second": 1000} if "requests_per_second" in source.resource.model_fields else {}
        result = materialize_source(source, source.resource.from_env(**fast), collection, file_stores)
    assert result.success, failure_text(result)
    return {tag: json.loads(stored_file(file_stores, tag).read_text())["data"] for tag in source.tags}


@pytest.mark.parametrize("source", SOURCES, ids=[s.group for s in SOURCES])
def test_every_declared_column_finds_values_of_its_type_in_the_sandbox_records(
    source, monkeypatch, collection, file_stores
):
    data = collected(source, monkeypatch, collection, file_stores)
    con = duckdb.connect()
    for dataset in source.datasets:
        assert dataset.columns, f"{dataset.tag} declares no columns"
        records = data[dataset.tag]
        assert records, dataset.tag
        con.execute("CREATE OR REPLACE TABLE t (json_data JSON)")
        con.executemany("INSERT INTO t VALUES (?)", [[json.dumps(r)] for r in records])
        for column in dataset.columns:
            path = duckdb_path(column)
            present = con.execute(
                f"SELECT count(*) FILTER (WHERE json_type(json_extract(json_data, {path})) <> 'NULL') FROM t"
            ).fetchone()[0]
            assert present > 0, f"{dataset.tag}.{column.name}: no record has a value at {column.path!r}"
        unparsed_sql = duckdb_unparsed_sql(dataset.columns, "t")
        if unparsed_sql:
            row = con.execute(unparsed_sql).fetchone()
            names = [c.name for c in dataset.columns if c.type not in ("text", "json")]
            unparsed = {name: n for name, n in zip(names, row) if n}
            assert not unparsed, f"{dataset.tag}: values that do not convert to the declared type: {unparsed}"
