"""Small builders the store and IO-manager tests share."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

import duckdb
import psycopg
from psycopg import sql

from secmetrics_dagster.collection import RunContext, Snapshot, Spool


def make_snapshot(tmp_path: Path, records: Iterable[dict], tag: str = "snyk_issues", tenancy: str = "acme",
                  upload_id: Optional[str] = None, timestamp: Optional[datetime] = None) -> Snapshot:
    kwargs = {}
    if upload_id:
        kwargs["upload_id"] = upload_id
    if timestamp:
        kwargs["timestamp"] = timestamp
    spool = Spool(RunContext(tag, tenancy, **kwargs), tmp_path / "spool")
    spool.extend(records)
    return spool.close()


def at(hour: int) -> datetime:
    return datetime(2026, 11, 28, hour, 0, 0, tzinfo=timezone.utc)


def pg_rows(conn: psycopg.Connection, schema: str, relation: str, where: str = "") -> list[tuple]:
    query = sql.SQL("SELECT tenancy, upload_id::text, json_data FROM {} " + where + " ORDER BY 1, 2, json_data->>'id'")
    return conn.execute(query.format(sql.Identifier(schema, relation))).fetchall()


def duck_rows(path: str, relation: str) -> list[tuple]:
    con = duckdb.connect(path, read_only=True)
    try:
        rows = con.execute(f'SELECT tenancy, upload_id::VARCHAR, json_data FROM "{relation}" ORDER BY 1, 2').fetchall()
    finally:
        con.close()
    return [(t, u, json.loads(j)) for t, u, j in rows]


def envelope(path: Path) -> dict:
    return json.loads(Path(path).read_text())
