"""PostgreSQL store: a table per tag loaded with COPY, one transaction per upload, and <tag>_latest / <tag>_history
views with the typed columns beside json_data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import psycopg
from psycopg import sql

from ..collection.columns import Column
from ..collection.context import validate_tag
from ..collection.errors import InvalidIdentifierError
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, Timer, UploadRef, check_number, check_text
from .typed import postgres_functions, postgres_views

UPLOADS_TABLE = "secmetrics_uploads"
_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # fullmatch: `$` would let a final newline through
_COPY_CHUNK = 1 << 20
# The JSON escape \u0000: a backslash that is not itself escaped, i.e. after an even run of backslashes (zero or
# more, each pair one literal backslash). In "C:\\u0000dir" the backslash is escaped and u0000 is plain text.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _copy_text(value: str) -> str:
    # COPY's text format treats backslash as an escape; compact JSON has no raw tabs or newlines.
    # jsonb cannot hold U+0000, so that one escape becomes U+FFFD (PostgreSQL would reject the upload); a literal
    # backslash followed by "u0000" is text like any other and is stored as it came.
    if "\\u0000" in value:
        value = _NUL_ESCAPE.sub(lambda found: found.group(1) + "\\ufffd", value)
    return value.replace("\\", "\\\\")


_NUL_ESCAPE_BYTES = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _copy_bytes(lines: bytes) -> bytes:
    """_copy_text for a block of whole spool lines at once (bytes of UTF-8; a line boundary is never a backslash)."""
    if b"\\u0000" in lines:
        lines = _NUL_ESCAPE_BYTES.sub(lambda found: found.group(1) + b"\\ufffd", lines)
    return lines.replace(b"\\", b"\\\\")


def _copy_rows(spool_path: Path, prefix: bytes) -> Iterator[bytes]:
    """COPY text rows (`prefix` + the escaped record + newline) for every spool line, about _COPY_CHUNK bytes at a
    time: each block of whole lines is escaped and prefixed in one pass, no Python code runs per record."""
    with open(spool_path, "rb") as handle:
        while block := handle.read(_COPY_CHUNK):
            if not block.endswith(b"\n"):
                block += handle.readline()  # complete the last line
                if not block.endswith(b"\n"):
                    block += b"\n"  # the file's last line had no newline
            yield prefix + _copy_bytes(block[:-1]).replace(b"\n", b"\n" + prefix) + b"\n"


class PostgresStore(Store):
    name = "postgres"

    def __init__(
        self,
        *,
        host: str,
        port: int = 5432,
        user: Optional[str] = None,
        password: Optional[str] = None,
        dbname: Optional[str] = None,
        schema: str = "public",
        connect_timeout: int = 10,
    ):
        # Every setting is checked here, before any connection: the step fails in a moment, before the pull.
        if not isinstance(schema, str) or not _SCHEMA_RE.fullmatch(schema):
            raise InvalidIdentifierError(
                f"invalid STORE_POSTGRES_SCHEMA {str(schema)[:40]!r}: use 1-63 letters, digits and '_', not starting with a digit"
            )
        check_text("STORE_POSTGRES_HOST", host, what="a host name, an IP address or a socket directory")
        check_number("STORE_POSTGRES_PORT", port, 1, 65535)
        if user:
            check_text("STORE_POSTGRES_USER", user, what="a PostgreSQL role name")
        if dbname:
            check_text("STORE_POSTGRES_DBNAME", dbname, what="a database name")
        if password:
            check_text("STORE_POSTGRES_PASSWORD", password, what="the role's password", secret=True)
        check_number("the PostgreSQL connect timeout", connect_timeout, 1, 3600)
        self.schema = schema
        self._conninfo = {
            k: v
            for k, v in dict(
                host=host,
                port=port,
                user=user,
                password=password,
                dbname=dbname,
                connect_timeout=connect_timeout,
                application_name="secmetrics-dagster",
            ).items()
            if v not in (None, "")
        }

    def describe(self) -> str:
        user = self._conninfo.get("user", "")
        return f"PostgreSQL {user + '@' if user else ''}{self._conninfo['host']}:{self._conninfo.get('port', 5432)}/{self._conninfo.get('dbname', '')} schema {self.schema}"

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(**self._conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            # libpq's message can quote the connection string; keep only its first line, no password in it
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to {self.describe()}: {first}") from None

    def table(self, tag: str) -> sql.Composed:
        return sql.Identifier(self.schema, validate_tag(tag))

    def ensure_schema(self, conn: psycopg.Connection, tag: str, columns: Sequence[Column] = ()) -> None:
        """Create schema, table, uploads ledger and view; serialized because concurrent CREATE ... IF NOT EXISTS can race."""
        schema = sql.Identifier(self.schema)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"secmetrics-ddl:{self.schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (upload_timestamp timestamptz NOT NULL, tenancy text NOT NULL, "
                    "upload_id uuid NOT NULL, json_data jsonb NOT NULL)"
                ).format(self.table(tag))
            )
            conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (upload_id)").format(
                    sql.Identifier(f"{tag}_upload_id_idx"), self.table(tag)
                )
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (tag text NOT NULL, tenancy text NOT NULL, upload_id uuid NOT NULL, "
                    "upload_timestamp timestamptz NOT NULL, records bigint NOT NULL, source text NOT NULL, "
                    "loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tag, tenancy, upload_id))"
                ).format(sql.Identifier(self.schema, UPLOADS_TABLE))
            )
            # The ledger, not the data, decides the newest upload: an upload with zero records is still the newest.
            for statement in postgres_functions(self.schema):
                conn.execute(statement)
            for view, query in postgres_views(
                self.schema, tag, self.table(tag), sql.Identifier(self.schema, UPLOADS_TABLE), columns
            ):
                self.replace_view(conn, view, query)

    @staticmethod
    def replace_view(conn: psycopg.Connection, view: sql.Composable, query: sql.Composable) -> None:
        """CREATE OR REPLACE keeps views that users built on ours; PostgreSQL refuses it when a column went away or
        moved, and then the view is dropped and created again, in the same transaction (readers see old or new)."""
        try:
            with conn.transaction():  # a savepoint: its failure leaves the outer transaction usable
                conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(view, query))
        except (psycopg.errors.InvalidTableDefinition, psycopg.errors.DatatypeMismatch):
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
            except psycopg.errors.DependentObjectsStillExist as exc:
                # Never CASCADE: that would drop the user's own views without a word. Nothing is loaded yet.
                detail = (exc.diag.message_detail or "").strip().replace("\n", "; ")
                raise StoreError(
                    f"the declared columns of {view.as_string(conn)} changed (a column was removed or retyped), so "
                    f"PostgreSQL must drop and recreate that view, but other objects depend on it ({detail}). "
                    "Drop those views, run the collection again (the data is kept), then recreate them."
                ) from None
            conn.execute(sql.SQL("CREATE VIEW {} AS {}").format(view, query))

    def write(self, snapshot: Snapshot, envelope: Optional[Path]) -> StoreResult:
        table = self.table(snapshot.tag)
        copied = 0
        with Timer() as timer:
            with self.connect() as conn:
                self.ensure_schema(conn, snapshot.tag, snapshot.columns)
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"secmetrics:{self.schema}.{snapshot.tag}",)
                    )
                    # Same upload again (a re-run, a backup reload) replaces itself instead of duplicating.
                    conn.execute(sql.SQL("DELETE FROM {} WHERE upload_id = %s").format(table), (snapshot.upload_id,))
                    prefix = f"{snapshot.timestamp_text}\t{_copy_text(snapshot.tenancy)}\t{snapshot.upload_id}\t"
                    with conn.cursor() as cur:
                        with cur.copy(
                            sql.SQL("COPY {} (upload_timestamp, tenancy, upload_id, json_data) FROM STDIN").format(
                                table
                            )
                        ) as copy:
                            for rows in _copy_rows(snapshot.spool_path, prefix.encode("utf-8")):
                                copy.write(rows)
                                copied += len(rows)
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (tag, tenancy, upload_id, upload_timestamp, records, source) "
                            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tag, tenancy, upload_id) DO UPDATE SET "
                            "upload_timestamp = EXCLUDED.upload_timestamp, records = EXCLUDED.records, "
                            "source = EXCLUDED.source, loaded_at = now()"
                        ).format(sql.Identifier(self.schema, UPLOADS_TABLE)),
                        snapshot.ledger_row(),
                    )
        location = f"{self.schema}.{snapshot.tag}"
        return StoreResult(
            self.name,
            location,
            snapshot.records,
            copied,
            timer.seconds,
            extra={"view": f"{self.schema}.{snapshot.tag}_latest"},
        )

    def read(self, ref: UploadRef) -> Iterator[dict]:
        with self.connect() as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}"."{validate_tag(ref.tag)}"',)).fetchone()[
                0
            ]
            if exists is None:
                raise StoreError(f"PostgreSQL store: no table {self.schema}.{ref.tag}")
            with conn.cursor(name="secmetrics_read") as cur:  # server-side cursor: rows arrive in batches
                cur.itersize = 5000
                cur.execute(
                    sql.SQL("SELECT json_data::text FROM {} WHERE upload_id = %s AND tenancy = %s").format(
                        self.table(ref.tag)
                    ),
                    (ref.upload_id, ref.tenancy),
                )
                for (text,) in cur:
                    yield json.loads(text)

    def count(self, ref: UploadRef) -> int:
        with self.connect() as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}"."{validate_tag(ref.tag)}"',)).fetchone()[
                0
            ]
            if exists is None:
                raise StoreError(f"PostgreSQL store: no table {self.schema}.{ref.tag}")
            return conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE upload_id = %s AND tenancy = %s").format(self.table(ref.tag)),
                (ref.upload_id, ref.tenancy),
            ).fetchone()[0]
