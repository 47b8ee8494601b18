"""secmetrics-dagster: security tools' raw data as Dagster assets, stored as JSON files, in S3, PostgreSQL and DuckDB."""

from .definitions import defs

__all__ = ["defs"]
