"""Metric results in every configured store: the tables metric_summary, metric_detail and metric_scorecard in
DuckDB and PostgreSQL (one set of rows per metric, tenancy and day; recomputing a day replaces that day's rows in
one transaction, other days stay), and the seed's envelope with those tags in the file store and S3.

An envelope holds the newest result of every metric of the library, not only those computed this time: rows of
metrics not recomputed are carried over (summaries from their latest materialization, details from the previous
envelope), so a run of one metric never empties the others from the file.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from psycopg import sql

from ..collection.context import RunContext, expand_path
from ..collection.redact import Redactor
from ..collection.spool import Spool
from ..stores.base import Store
from ..stores.duckdb import DuckDBStore, size_bytes
from ..stores.envelope import iter_envelope_records
from ..stores.file import FileStore
from ..stores.io_manager import StoresResource, fan_out
from ..stores.postgres import PostgresStore
from ..stores.s3 import S3Store
from .engine import MetricResult

SUMMARY, DETAIL, SCORECARD = "metric_summary", "metric_detail", "metric_scorecard"
TAGS = (SUMMARY, DETAIL, SCORECARD)
# (column, DuckDB type, PostgreSQL type) of each table, in order.
COLUMNS = {
    SUMMARY: (
        ("datestamp", "DATE", "date"),
        ("tenancy", "VARCHAR", "text"),
        ("metric_id", "VARCHAR", "text"),
        ("title", "VARCHAR", "text"),
        ("category", "VARCHAR", "text"),
        ("type", "VARCHAR", "text"),
        ("weight", "DOUBLE", "double precision"),
        ("indicator", "BOOLEAN", "boolean"),
        ("slo_min", "DOUBLE", "double precision"),
        ("slo", "DOUBLE", "double precision"),
        ("totalok", "DOUBLE", "double precision"),
        ("total", "BIGINT", "bigint"),
        ("score", "DOUBLE", "double precision"),
        ("status", "VARCHAR", "text"),
        ("computed_at", "TIMESTAMPTZ", "timestamptz"),
    ),
    DETAIL: (
        ("datestamp", "DATE", "date"),
        ("tenancy", "VARCHAR", "text"),
        ("metric_id", "VARCHAR", "text"),
        ("resource", "VARCHAR", "text"),
        ("resource_type", "VARCHAR", "text"),
        ("compliance", "DOUBLE", "double precision"),
        ("detail", "VARCHAR", "text"),
    ),
    SCORECARD: (
        ("datestamp", "DATE", "date"),
        ("tenancy", "VARCHAR", "text"),
        ("scope", "VARCHAR", "text"),
        ("score", "DOUBLE", "double precision"),
        ("metrics", "INTEGER", "integer"),
        ("good", "INTEGER", "integer"),
        ("warning", "INTEGER", "integer"),
        ("bad", "INTEGER", "integer"),
    ),
}
KEYS = {SUMMARY: ("datestamp", "tenancy", "metric_id"), SCORECARD: ("datestamp", "tenancy", "scope")}


def names(table: str) -> list[str]:
    return [c[0] for c in COLUMNS[table]]


@dataclass
class Batch:
    """One computation's results for one tenancy and day."""

    tenancy: str
    datestamp: str
    computed_at: datetime
    results: list[MetricResult]
    scorecard: list[dict[str, Any]] = field(default_factory=list)
    # Latest summary rows of the library's metrics not computed this time (for the envelopes).
    other_summaries: list[dict[str, Any]] = field(default_factory=list)
    library_ids: frozenset[str] = frozenset()
    write_scorecard: bool = True

    @property
    def metric_ids(self) -> list[str]:
        return [r.metric.metric_id for r in self.results]

    def summary_rows(self) -> list[dict[str, Any]]:
        return [r.summary_row(self.datestamp, self.tenancy) for r in self.results]

    def detail_rows(self) -> Iterator[dict[str, Any]]:
        for result in self.results:
            if result.detail_path is None or not result.total:
                continue
            with open(result.detail_path, encoding="utf-8") as handle:
                for line in handle:
                    row = json.loads(line)
                    yield {
                        "datestamp": self.datestamp,
                        "tenancy": self.tenancy,
                        "metric_id": result.metric.metric_id,
                        **row,
                    }


@dataclass
class WriteOutcome:
    written: dict[str, str] = field(default_factory=dict)  # store -> where
    failures: dict[str, str] = field(default_factory=dict)  # store -> error


# ------------------------------------------------------------------------------------------- DuckDB


def write_duckdb(store: DuckDBStore, batch: Batch, memory_limit: str) -> str:
    con = store.connect(memory_limit_bytes=max(store.memory_limit_bytes, size_bytes(memory_limit) or 0))
    try:
        con.execute("BEGIN TRANSACTION")
        for table, columns in COLUMNS.items():
            key = f", PRIMARY KEY ({', '.join(KEYS[table])})" if table in KEYS else ""
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{c} {t}' for c, t, _ in columns)}{key})")
        ids = batch.metric_ids
        if ids:
            marks = ", ".join("?" for _ in ids)
            for table in (SUMMARY, DETAIL):
                con.execute(
                    f"DELETE FROM {table} WHERE datestamp = ?::DATE AND tenancy = ? AND metric_id IN ({marks})",
                    [batch.datestamp, batch.tenancy, *ids],
                )
            rows = batch.summary_rows()
            con.executemany(
                f"INSERT INTO {SUMMARY} VALUES ({', '.join('?' for _ in COLUMNS[SUMMARY])})",
                [[row[c] for c in names(SUMMARY)] for row in rows],
            )
            for result in batch.results:
                if not result.total:
                    continue
                # One bulk read of the metric's spooled rows; no row passes through Python here.
                con.execute(
                    f"INSERT INTO {DETAIL} SELECT ?::DATE, ?, ?, resource, resource_type, compliance, detail "
                    "FROM read_json(?, format = 'newline_delimited', columns = {'resource': 'VARCHAR', "
                    "'resource_type': 'VARCHAR', 'compliance': 'DOUBLE', 'detail': 'VARCHAR'})",
                    [batch.datestamp, batch.tenancy, result.metric.metric_id, str(result.detail_path)],
                )
        if batch.write_scorecard:
            con.execute(
                f"DELETE FROM {SCORECARD} WHERE datestamp = ?::DATE AND tenancy = ?", [batch.datestamp, batch.tenancy]
            )
            con.executemany(
                f"INSERT INTO {SCORECARD} VALUES ({', '.join('?' for _ in COLUMNS[SCORECARD])})",
                [[row[c] for c in names(SCORECARD)] for row in batch.scorecard],
            )
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise
    finally:
        con.close()
    return f"{store.path}::{', '.join(TAGS)}"


# --------------------------------------------------------------------------------------- PostgreSQL


def write_postgres(store: PostgresStore, batch: Batch) -> str:
    schema = store.schema

    def table(name: str) -> sql.Composed:
        return sql.Identifier(schema, name)

    with store.connect() as conn:
        with conn.transaction():
            # The same DDL lock the collection stores take: concurrent CREATE ... IF NOT EXISTS can race.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"secmetrics-ddl:{schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            for name, columns in COLUMNS.items():
                parts = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, _, t in columns]
                if name in KEYS:
                    parts.append(
                        sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, KEYS[name])))
                    )
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table(name), sql.SQL(", ").join(parts))
                )
            conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (datestamp, tenancy, metric_id)").format(
                    sql.Identifier(f"{DETAIL}_day_idx"), table(DETAIL)
                )
            )
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"secmetrics-metrics:{schema}",))
            ids = batch.metric_ids
            if ids:
                for name in (SUMMARY, DETAIL):
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE datestamp = %s AND tenancy = %s AND metric_id = ANY(%s)").format(
                            table(name)
                        ),
                        (batch.datestamp, batch.tenancy, ids),
                    )
                with conn.cursor() as cur:
                    _copy(cur, table(SUMMARY), SUMMARY, batch.summary_rows())
                    _copy(cur, table(DETAIL), DETAIL, batch.detail_rows())
            if batch.write_scorecard:
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE datestamp = %s AND tenancy = %s").format(table(SCORECARD)),
                    (batch.datestamp, batch.tenancy),
                )
                with conn.cursor() as cur:
                    _copy(cur, table(SCORECARD), SCORECARD, batch.scorecard)
    return f"{schema}.{SUMMARY}, {schema}.{DETAIL}, {schema}.{SCORECARD}"


def _copy(cur, target: sql.Composed, name: str, rows: Iterable[dict[str, Any]]) -> None:
    columns = names(name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


# ----------------------------------------------------------------------------- file store and S3


def _previous_rows(
    tag: str, tenancy: str, file: Optional[FileStore], s3: Optional[S3Store], workdir: Path
) -> Iterator[dict[str, Any]]:
    """The rows of the envelope this write replaces: the file store's, else the S3 backup's."""
    if file is not None:
        path = Path(expand_path(file.template, RunContext(tag, tenancy)))
        if path.is_file():
            with open(path, "rb") as handle:
                yield from iter_envelope_records(handle)
        return
    if s3 is not None:
        backup = s3.fetch_backup(tag, tenancy, workdir)
        if backup is not None:
            try:
                with open(backup.path, "rb") as handle:
                    yield from iter_envelope_records(handle)
            finally:
                backup.path.unlink(missing_ok=True)


def _envelope_rows(
    tag: str, batch: Batch, file: Optional[FileStore], s3: Optional[S3Store], workdir: Path
) -> Iterator[dict[str, Any]]:
    if tag == SCORECARD:
        yield from batch.scorecard
        return
    if tag == SUMMARY:
        yield from batch.summary_rows()
        yield from batch.other_summaries
        return
    yield from batch.detail_rows()
    recomputed = set(batch.metric_ids)
    for row in _previous_rows(tag, batch.tenancy, file, s3, workdir):
        metric_id = row.get("metric_id")
        if metric_id not in recomputed and metric_id in batch.library_ids and row.get("tenancy") == batch.tenancy:
            yield row


def write_envelopes(
    stores: Sequence[Store], batch: Batch, workdir: Path, log: Callable[[str], None], redactor: Redactor
) -> WriteOutcome:
    outcome = WriteOutcome()
    file = next((s for s in stores if isinstance(s, FileStore)), None)
    s3 = next((s for s in stores if isinstance(s, S3Store)), None)
    for tag in TAGS:
        if tag == SCORECARD and not batch.write_scorecard:
            continue
        ctx = RunContext(tag, batch.tenancy, str(uuid.uuid4()), batch.computed_at.replace(microsecond=0))
        with tempfile.TemporaryDirectory(prefix="secmetrics-metrics-", dir=workdir) as tmp:
            try:
                with Spool(ctx, Path(tmp), stamp=False) as spool:
                    spool.extend(_envelope_rows(tag, batch, file, s3, Path(tmp)))
                    snapshot = spool.close()
            except Exception as exc:  # noqa: BLE001 - reported per store below
                for store in stores:
                    outcome.failures[store.name] = redactor.text(f"{tag}: {type(exc).__name__}: {exc}")
                continue
            try:
                fanned = fan_out(snapshot, list(stores), log=log, redactor=redactor)
            finally:
                snapshot.discard()
        for result in fanned.results:
            outcome.written.setdefault(result.store, "")
            outcome.written[result.store] = ", ".join(filter(None, [outcome.written[result.store], result.location]))
        for name, error in fanned.failures.items():
            outcome.failures[name] = f"{tag}: {error}"
    return outcome


def write_results(
    stores: StoresResource, batch: Batch, memory_limit: str, workdir: Path, log: Callable[[str], None]
) -> WriteOutcome:
    """Write to every configured store; one failing does not stop the others (failures are returned)."""
    redactor = Redactor(stores.secret_values())
    built = stores.build()
    outcome = WriteOutcome()
    envelope_stores = [s for s in built if isinstance(s, (FileStore, S3Store))]
    if envelope_stores:
        envelopes = write_envelopes(envelope_stores, batch, workdir, log, redactor)
        outcome.written.update(envelopes.written)
        outcome.failures.update(envelopes.failures)
    for store in built:
        try:
            if isinstance(store, DuckDBStore):
                outcome.written[store.name] = write_duckdb(store, batch, memory_limit)
            elif isinstance(store, PostgresStore):
                outcome.written[store.name] = write_postgres(store, batch)
        except Exception as exc:  # noqa: BLE001 - isolate each store; reported by the caller
            outcome.failures[store.name] = redactor.text(f"{type(exc).__name__}: {exc}")
            log(outcome.failures[store.name])
    return outcome
