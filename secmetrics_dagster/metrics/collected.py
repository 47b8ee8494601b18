"""What `{{ ref('<dataset>') }}` reads: the newest upload of each dataset for one tenancy, attached read-only.

The DuckDB store (STORE_DUCKDB) is attached as it is. Without it, the newest file-store envelopes of the datasets
the metrics name are loaded into a scratch DuckDB file first (the same table and ledger layout, through the DuckDB
store's own bulk load), so both cases read one layout and memory stays flat whatever the volume. Every metric gets
its own connection: the collected data attached READ_ONLY, one view per dataset it names, then file access and
configuration locked, so a query can neither change the collected data nor read or write anything else.
"""

from __future__ import annotations

import glob
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

import duckdb

from ..collection.columns import Column
from ..collection.context import RunContext, expand_path, format_timestamp, parse_timestamp, validate_tenancy
from ..collection.errors import ConfigError
from ..collection.spool import Spool
from ..stores.base import retry_locked
from ..stores.duckdb import UPLOADS_TABLE, DuckDBStore, size_bytes
from ..stores.envelope import iter_envelope_records, read_envelope_metadata
from ..stores.typed import duckdb_expression

CATALOG = "collected"
# The columns every ref() relation has besides the dataset's typed columns.
REF_COLUMNS = ("json_data", "_tenancy", "_upload_id", "_upload_timestamp")
_TIME_VARIABLES = re.compile(r"%(UUID|YYYY|MM|DD|hh|mm|ss)")


class CollectedDataError(Exception):
    """The collected data could not be opened or loaded; the message names the store or file."""


@dataclass(frozen=True)
class Upload:
    """The upload a ref() resolved to."""

    tag: str
    upload_id: str
    collected_at: datetime
    records: int
    source: str  # "api" or "backup"

    @property
    def from_backup(self) -> bool:
        return self.source == "backup"

    def as_metadata(self) -> dict:
        return {
            "upload_id": self.upload_id,
            "collected_at": format_timestamp(self.collected_at),
            "records": self.records,
            "backup": self.from_backup,
        }


@dataclass(frozen=True)
class EngineSettings:
    memory_limit: str = "256MB"
    threads: int = 2
    lock_timeout: float = 300.0

    def __post_init__(self) -> None:
        if size_bytes(self.memory_limit) is None:
            raise ConfigError(f"METRICS_DUCKDB_MEMORY_LIMIT={self.memory_limit!r}: use a size such as 256MB or 1GB")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def ref_select(tag: str, columns: Iterable[Column], tenancy: str, upload_id: str) -> str:
    """The SELECT behind one ref(): the upload's records with the dataset's typed columns beside json_data."""
    typed = "".join(
        f', {duckdb_expression(c, "t.json_data")} AS "{c.name}"' for c in columns if c.name not in REF_COLUMNS
    )
    return (
        f"SELECT t.json_data, t.tenancy AS _tenancy, CAST(t.upload_id AS VARCHAR) AS _upload_id, "
        f't.upload_timestamp AS _upload_timestamp{typed} FROM {CATALOG}."{tag}" t '
        f"WHERE t.tenancy = {_literal(tenancy)} AND t.upload_id = {_literal(str(uuid.UUID(upload_id)))}::UUID"
    )


class CollectedData:
    """The collected data of one tenancy for one computation. `uploads` maps each dataset that has data to the
    upload its ref() reads; `connect(tags)` gives a locked, read-only connection for one metric."""

    def __init__(
        self,
        database: Path,
        tenancy: str,
        columns: Mapping[str, Iterable[Column]],
        settings: EngineSettings,
        workdir: Path,
        as_of: datetime,
        source_of: Callable[[str, str], Optional[str]] = lambda _tag, _upload: None,
        unreadable: Optional[Mapping[str, str]] = None,
    ):
        self.database = database
        self.tenancy = validate_tenancy(tenancy)
        self.columns = {tag: tuple(cols) for tag, cols in columns.items()}
        self.settings = settings
        self.workdir = workdir
        self.as_of = as_of
        self.uploads: dict[str, Upload] = {}
        # Datasets whose stored data could not be read (the file store's envelope is damaged): why, per tag.
        self.unreadable: dict[str, str] = dict(unreadable or {})
        if database.exists():
            self.uploads = self._newest_uploads(source_of)

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        spill = self.workdir / "spill"
        spill.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET memory_limit = '{size_bytes(self.settings.memory_limit) // 1024}KiB'")
        con.execute(f"SET threads = {int(self.settings.threads)}")
        con.execute(f"SET temp_directory = {_literal(str(spill))}")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET TimeZone = 'UTC'")
        # Another process may be loading the store right now (DuckDB allows one writer): wait for it.
        retry_locked(
            lambda: con.execute(f"ATTACH {_literal(str(self.database))} AS {CATALOG} (READ_ONLY)"),
            _is_locked,
            self.settings.lock_timeout,
        )
        return con

    def _newest_uploads(self, source_of: Callable[[str, str], Optional[str]]) -> dict[str, Upload]:
        try:
            con = self._open()
        except duckdb.Error as exc:
            raise CollectedDataError(f"cannot open the DuckDB store {self.database}: {exc}") from None
        try:
            tables = {
                row[0]
                for row in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main'",
                    [CATALOG],
                ).fetchall()
            }
            if UPLOADS_TABLE not in tables:
                return {}
            rows = con.execute(
                f"SELECT tag, arg_max(upload_id, (upload_timestamp, loaded_at))::VARCHAR, "
                "max(upload_timestamp), arg_max(records, (upload_timestamp, loaded_at)), "
                f"arg_max(source, (upload_timestamp, loaded_at)) FROM {CATALOG}.{UPLOADS_TABLE} "
                "WHERE tenancy = ? GROUP BY tag",
                [self.tenancy],
            ).fetchall()
        finally:
            con.close()
        uploads = {}
        for tag, upload_id, collected_at, records, source in rows:
            if tag not in tables:
                continue
            # The ledger knows a backup reload; the file store's envelopes do not, Dagster's metadata does.
            source = source_of(tag, upload_id) or source or "api"
            uploads[tag] = Upload(tag, upload_id, collected_at, int(records), source)
        return uploads

    def connect(self, tags: Iterable[str]) -> duckdb.DuckDBPyConnection:
        """A fresh connection for one metric: a view per dataset named `tags` (those with data), the macros
        metrics_now() and metrics_today() at the computation's time, then nothing but reading allowed."""
        con = self._open()
        try:
            for tag in tags:
                upload = self.uploads[tag]
                con.execute(
                    f'CREATE TEMP VIEW "{tag}" AS '
                    + ref_select(tag, self.columns.get(tag, ()), self.tenancy, upload.upload_id)
                )
            stamp = _literal(self.as_of.strftime("%Y-%m-%d %H:%M:%S.%f+00"))
            con.execute(f"CREATE TEMP MACRO metrics_now() AS CAST({stamp} AS TIMESTAMPTZ)")
            con.execute(
                f"CREATE TEMP MACRO metrics_today() AS CAST(timezone('UTC', CAST({stamp} AS TIMESTAMPTZ)) AS DATE)"
            )
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con


# ------------------------------------------------------------------------------------- file store


def newest_envelope(template: str, tag: str, tenancy: str) -> Optional[Path]:
    """The file-store envelope of tag/tenancy; with %UUID or a date in STORE_FILE, the newest by its metadata."""
    path = expand_path(template, RunContext(tag, tenancy))
    if not _TIME_VARIABLES.search(template):
        return Path(path) if Path(path).is_file() else None
    pattern = glob.escape(expand_path(_TIME_VARIABLES.sub("\0", template), RunContext(tag, tenancy))).replace("\0", "*")
    newest, newest_time = None, None
    for candidate in glob.glob(pattern):
        try:
            with open(candidate, "rb") as handle:
                stamp = parse_timestamp(str(read_envelope_metadata(handle)["timestamp"]))
        except (OSError, ValueError, KeyError):
            continue
        if newest_time is None or stamp > newest_time:
            newest, newest_time = Path(candidate), stamp
    return newest


def load_file_store(template: str, tags: Iterable[str], tenancy: str, workdir: Path) -> tuple[Path, dict[str, str]]:
    """A scratch DuckDB database holding the newest envelope of each tag, in the DuckDB store's layout, and the
    tags whose envelope could not be read (with why): only the metrics that read those fail."""
    database = workdir / "collected.duckdb"
    store = DuckDBStore(str(database))
    unreadable: dict[str, str] = {}
    for tag in tags:
        path = newest_envelope(template, tag, tenancy)
        if path is None:
            continue
        try:
            with open(path, "rb") as handle:
                metadata = read_envelope_metadata(handle)
            ctx = RunContext(tag, tenancy, str(metadata["upload_id"]), parse_timestamp(str(metadata["timestamp"])))
            with Spool(ctx, workdir / "spool", stamp=False) as spool:
                with open(path, "rb") as handle:
                    spool.extend(iter_envelope_records(handle))
                if isinstance(metadata.get("records"), int):
                    spool.expect(metadata["records"])
                snapshot = spool.close()
        except Exception as exc:  # noqa: BLE001 - any unreadable envelope is reported with its path
            unreadable[tag] = f"file store: {path} could not be read as an envelope of {tag}: {exc}"
            continue
        try:
            store.write(snapshot, None)
        finally:
            snapshot.discard()
    return database, unreadable
