"""DuckDB store: the same table layout and <tag>_latest / <tag>_history views (typed columns beside json_data),
bulk-loaded straight from the spool file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import duckdb

from ..collection.context import validate_tag
from ..collection.errors import ConfigError
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, Timer, UploadRef, check_number, check_text, retry_locked
from .typed import duckdb_unparsed_sql, duckdb_view_statements

UPLOADS_TABLE = "secmetrics_uploads"
MiB = 1024 * 1024
# The spool holds one compact JSON document per line. JSON cannot contain a raw control character (json.dumps
# escapes U+0000..U+001F), so read as a one-column CSV whose delimiter is U+0001, with quoting and escaping off,
# every line is exactly one record. DuckDB's CSV reader takes a buffer size, its JSON reader does not (it always
# allocates 32 MiB and needed a 64 MB memory limit): sized to the longest record, with a 16 MB limit, the load's
# peak RSS fell from +105 MB to +63 MB for 100k Tenable findings, and it does not grow with the record count.


def _reader_sizes(longest_line: int, memory_limit_bytes: int) -> tuple[int, int]:
    """(buffer and max line size, memory limit) for a spool whose longest line has `longest_line` bytes.

    At least 1 MiB; the memory limit stays the configured one unless the reader needs more (twelve buffers:
    measured, eight are not always enough) for a multi-megabyte record. Memory follows the largest record,
    never the number of records.
    """
    buffer = max(MiB, longest_line + 1)
    return buffer, max(memory_limit_bytes, 12 * buffer)


def _lines_of(buffer: int) -> str:
    return (
        f"read_csv(?, columns = {{'line': 'VARCHAR'}}, delim = chr(1), quote = '', escape = '', header = false, "
        f"auto_detect = false, new_line = '\\n', max_line_size = {buffer}, buffer_size = {buffer})"
    )


# Measured with 1M sandbox Tenable findings (benchmarks/bench_typed_queries.py): 24 MB counts them, 16 MB does not.
UNPARSED_MEMORY_BYTES = 32 * 1000 * 1000


def unparsed_counts(snapshot: Snapshot, memory_limit_bytes: int = UNPARSED_MEMORY_BYTES) -> dict[str, int]:
    """Per typed column of the snapshot's dataset: values present in the records that do not convert to its type
    (a vendor that changed a field's type). Read from the spool by an in-memory DuckDB, with the store's
    memory bounds, whatever stores are configured."""
    buffer, limit = _reader_sizes(snapshot.longest_line, memory_limit_bytes)
    query = duckdb_unparsed_sql(snapshot.columns, "s", f"(SELECT line AS json_data FROM {_lines_of(buffer)})")
    if query is None or not snapshot.records:
        return {}
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{limit // 1024}KiB'")
        con.execute("SET threads = 1")
        row = con.execute(query, [str(snapshot.spool_path)]).fetchone()
        names = [c.name for c in snapshot.columns if c.type not in ("text", "json")]
    finally:
        con.close()
    return {name: int(count) for name, count in zip(names, row, strict=True) if count}


def size_bytes(text: str) -> Optional[int]:
    """'64MB' -> 64,000,000 and '64MiB' -> 67,108,864, as DuckDB reads them; None for anything else."""
    # No surrounding whitespace: "16MB\n" (a copied newline) is refused like any other malformed value.
    found = re.fullmatch(r"(\d+(?:\.\d+)?) ?([KMG])(i?)B", text, re.I) if isinstance(text, str) else None
    if found is None:
        return None
    number, prefix, binary = found.groups()
    power = "KMG".index(prefix.upper()) + 1
    return int(float(number) * (1024 if binary else 1000) ** power)


def _ident(name: str) -> str:
    return '"' + validate_tag(name) + '"'


def _is_lock_conflict(exc: BaseException) -> bool:
    # Another process (a parallel Dagster step) has the file open for writing.
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class DuckDBStore(Store):
    name = "duckdb"

    def __init__(self, path: str, lock_timeout: float = 300.0, memory_limit: str = "16MB", threads: int = 1):
        # Every setting is checked here, before any file is opened: the step fails in a moment, before the pull.
        check_text("STORE_DUCKDB", path, what="the path of a DuckDB database file")
        if path.endswith(("/", os.sep)) or Path(path).is_dir():
            raise ConfigError(f"STORE_DUCKDB={path!r} is a directory: give the path of a database file in it")
        limit = size_bytes(memory_limit)
        if limit is None:
            raise ConfigError(f"STORE_DUCKDB_MEMORY_LIMIT={memory_limit!r}: use a size such as 16MB or 1GB")
        check_number("the DuckDB thread count", threads, 1, 1024)
        self.path = path
        self.lock_timeout = lock_timeout
        self.memory_limit_bytes = limit
        self.threads = threads

    def describe(self) -> str:
        return f"DuckDB {self.path}"

    def connect(self, read_only: bool = False, memory_limit_bytes: Optional[int] = None) -> duckdb.DuckDBPyConnection:
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = retry_locked(lambda: duckdb.connect(self.path, read_only=read_only), _is_lock_conflict, self.lock_timeout)
        # DuckDB's default memory limit is 80% of RAM, and a bulk insert keeps what it inserts in memory
        # up to that limit; a small limit (with one thread, which it needs to stay inside it) keeps the
        # collector's memory flat as volume grows, at almost no cost in load time.
        con.execute(f"SET memory_limit = '{(memory_limit_bytes or self.memory_limit_bytes) // 1024}KiB'")
        con.execute(f"SET threads = {int(self.threads)}")
        return con

    def write(self, snapshot: Snapshot, envelope: Optional[Path]) -> StoreResult:
        tag = _ident(snapshot.tag)
        buffer, limit = _reader_sizes(snapshot.longest_line, self.memory_limit_bytes)
        with Timer() as timer:
            con = self.connect(memory_limit_bytes=limit)
            try:
                con.execute("BEGIN TRANSACTION")
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {tag} (upload_timestamp TIMESTAMPTZ NOT NULL, "
                    "tenancy VARCHAR NOT NULL, upload_id UUID NOT NULL, json_data JSON NOT NULL)"
                )
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {UPLOADS_TABLE} (tag VARCHAR NOT NULL, tenancy VARCHAR NOT NULL, "
                    "upload_id UUID NOT NULL, upload_timestamp TIMESTAMPTZ NOT NULL, records BIGINT NOT NULL, "
                    "source VARCHAR NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp, "
                    "PRIMARY KEY (tag, tenancy, upload_id))"
                )
                con.execute(f"DELETE FROM {tag} WHERE upload_id = ?", [snapshot.upload_id])
                # One bulk statement: DuckDB reads the NDJSON spool itself, no row passes through Python;
                # the cast to JSON validates every line.
                con.execute(
                    f"INSERT INTO {tag} SELECT ?::TIMESTAMPTZ, ?, ?::UUID, line::JSON FROM {_lines_of(buffer)}",
                    [snapshot.timestamp, snapshot.tenancy, snapshot.upload_id, str(snapshot.spool_path)],
                )
                con.execute(
                    f"INSERT OR REPLACE INTO {UPLOADS_TABLE} (tag, tenancy, upload_id, upload_timestamp, records, source, loaded_at) "
                    "VALUES (?, ?, ?::UUID, ?, ?, ?, current_timestamp)",
                    list(snapshot.ledger_row()),
                )
                # The views are recreated from the dataset's declared columns at every load: a new or changed
                # column needs no migration, and older uploads show NULL in it.
                for statement in duckdb_view_statements(tag, snapshot.tag, UPLOADS_TABLE, snapshot.columns):
                    con.execute(statement)
                loaded = con.execute(
                    f"SELECT count(*) FROM {tag} WHERE upload_id = ?", [snapshot.upload_id]
                ).fetchone()[0]
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
        return StoreResult(
            self.name,
            f"{self.path}::{snapshot.tag}",
            snapshot.records,
            snapshot.spool_path.stat().st_size,
            timer.seconds,
            extra={"view": f"{snapshot.tag}_latest"},
        )

    def count(self, ref: UploadRef) -> int:
        """The upload's rows, with every column of them read: a count(*) alone is answered from row-group
        metadata, so a block of json_data overwritten on disk would go unnoticed; reading it fails its checksum."""
        if not Path(self.path).exists():
            raise StoreError(f"DuckDB store: {self.path} does not exist")
        con = self.connect(read_only=True)
        try:
            rows, _size, _oldest = con.execute(
                f"SELECT count(*), sum(strlen(json_data)), min(upload_timestamp) FROM {_ident(ref.tag)} "
                "WHERE upload_id = ?::UUID AND tenancy = ?",
                [ref.upload_id, ref.tenancy],
            ).fetchone()
            return int(rows)
        except duckdb.CatalogException as exc:
            raise StoreError(f"DuckDB store: {exc}") from None
        finally:
            con.close()

    def read(self, ref: UploadRef) -> Iterator[dict]:
        if not Path(self.path).exists():
            raise StoreError(f"DuckDB store: {self.path} does not exist")
        con = self.connect(read_only=True)
        try:
            cursor = con.execute(
                f"SELECT json_data FROM {_ident(ref.tag)} WHERE upload_id = ?::UUID AND tenancy = ?",
                [ref.upload_id, ref.tenancy],
            )
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
