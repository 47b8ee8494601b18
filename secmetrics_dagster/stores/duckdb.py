"""DuckDB store: the same table layout and <tag>_latest view, bulk-loaded straight from the spool file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Optional

import duckdb

from ..collection.context import validate_tag
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, Timer, UploadRef, retry_locked

UPLOADS_TABLE = "secmetrics_uploads"


def _ident(name: str) -> str:
    return '"' + validate_tag(name) + '"'


def _is_lock_conflict(exc: BaseException) -> bool:
    # Another process (a parallel Dagster step) has the file open for writing.
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class DuckDBStore(Store):
    name = "duckdb"

    def __init__(self, path: str, lock_timeout: float = 300.0, memory_limit: str = "64MB", threads: int = 1):
        self.path = path
        self.lock_timeout = lock_timeout
        self.memory_limit = memory_limit
        self.threads = threads

    def describe(self) -> str:
        return f"DuckDB {self.path}"

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = retry_locked(lambda: duckdb.connect(self.path, read_only=read_only), _is_lock_conflict, self.lock_timeout)
        # DuckDB's default memory limit is 80% of RAM, and a bulk insert keeps what it inserts in memory
        # up to that limit; a small limit (with one thread, which it needs to stay inside it) keeps the
        # collector's memory flat as volume grows, at almost no cost in load time.
        con.execute(f"SET memory_limit = '{self.memory_limit}'")
        con.execute(f"SET threads = {int(self.threads)}")
        return con

    def write(self, snapshot: Snapshot, envelope: Optional[Path]) -> StoreResult:
        tag = _ident(snapshot.tag)
        view = _ident(f"{snapshot.tag}_latest")
        with Timer() as timer:
            con = self.connect()
            try:
                con.execute("BEGIN TRANSACTION")
                con.execute(f"CREATE TABLE IF NOT EXISTS {tag} (upload_timestamp TIMESTAMPTZ NOT NULL, "
                            "tenancy VARCHAR NOT NULL, upload_id UUID NOT NULL, json_data JSON NOT NULL)")
                con.execute(f"CREATE TABLE IF NOT EXISTS {UPLOADS_TABLE} (tag VARCHAR NOT NULL, tenancy VARCHAR NOT NULL, "
                            "upload_id UUID NOT NULL, upload_timestamp TIMESTAMPTZ NOT NULL, records BIGINT NOT NULL, "
                            "source VARCHAR NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp, "
                            "PRIMARY KEY (tag, tenancy, upload_id))")
                con.execute(f"DELETE FROM {tag} WHERE upload_id = ?", [snapshot.upload_id])
                # One bulk statement: DuckDB reads the NDJSON spool itself, no row passes through Python.
                con.execute(f"INSERT INTO {tag} SELECT ?::TIMESTAMPTZ, ?, ?::UUID, json FROM read_ndjson_objects(?)",
                            [snapshot.timestamp, snapshot.tenancy, snapshot.upload_id, str(snapshot.spool_path)])
                con.execute(f"INSERT OR REPLACE INTO {UPLOADS_TABLE} (tag, tenancy, upload_id, upload_timestamp, records, source, loaded_at) "
                            "VALUES (?, ?, ?::UUID, ?, ?, ?, current_timestamp)",
                            [snapshot.tag, snapshot.tenancy, snapshot.upload_id, snapshot.timestamp, snapshot.records, snapshot.source])
                con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT t.* FROM {tag} t JOIN ("
                            f"SELECT tenancy, arg_max(upload_id, (upload_timestamp, loaded_at)) AS upload_id FROM {UPLOADS_TABLE} "
                            f"WHERE tag = '{snapshot.tag}' GROUP BY tenancy) latest "
                            "ON t.tenancy = latest.tenancy AND t.upload_id = latest.upload_id")
                loaded = con.execute(f"SELECT count(*) FROM {tag} WHERE upload_id = ?", [snapshot.upload_id]).fetchone()[0]
                if loaded != snapshot.records:
                    raise StoreError(f"loaded {loaded} rows but the snapshot has {snapshot.records}; rolled back")
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                raise
            finally:
                con.close()
        return StoreResult(self.name, f"{self.path}::{snapshot.tag}", snapshot.records,
                           snapshot.spool_path.stat().st_size, timer.seconds, extra={"view": f"{snapshot.tag}_latest"})

    def read(self, ref: UploadRef) -> Iterator[dict]:
        if not Path(self.path).exists():
            raise StoreError(f"DuckDB store: {self.path} does not exist")
        con = self.connect(read_only=True)
        try:
            cursor = con.execute(f"SELECT json_data FROM {_ident(ref.tag)} WHERE upload_id = ?::UUID AND tenancy = ?",
                                 [ref.upload_id, ref.tenancy])
            while True:
                rows = cursor.fetchmany(5000)
                if not rows:
                    break
                for (text,) in rows:
                    yield json.loads(text)
        except duckdb.CatalogException as exc:
            raise StoreError(f"DuckDB store: {exc}") from None
        finally:
            con.close()
