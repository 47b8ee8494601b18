"""Stores behind one interface (file, S3, PostgreSQL, DuckDB), the fan-out IO manager and backup reload."""

from .backup import backup_age_hours, load_backup
from .base import Store, StoreError, StoreResult, UploadRef
from .duckdb import DuckDBStore
from .file import FileStore
from .io_manager import IO_MANAGER_KEY, RecordStream, SnapshotIOManager, StoresResource, fan_out, write_everywhere
from .postgres import PostgresStore
from .s3 import S3Store

__all__ = [
    "IO_MANAGER_KEY",
    "DuckDBStore",
    "FileStore",
    "PostgresStore",
    "RecordStream",
    "S3Store",
    "SnapshotIOManager",
    "Store",
    "StoreError",
    "StoreResult",
    "StoresResource",
    "UploadRef",
    "backup_age_hours",
    "fan_out",
    "write_everywhere",
    "load_backup",
]
