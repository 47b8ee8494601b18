"""secmetrics-dagster: security tools' raw data as Dagster assets, stored as JSON files, in S3, PostgreSQL and DuckDB.

`defs` is built on first access (PEP 562), so a process that only needs a submodule — the webserver and the
daemon import secmetrics_dagster.instance, the instance class dagster.yaml names — neither pays for building
the definitions nor fails to start when a setting is wrong; the code location then shows the error instead.
"""

from __future__ import annotations

__all__ = ["defs"]


def __getattr__(name: str):
    if name == "defs":
        from .definitions import defs

        globals()["defs"] = defs
        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # inspect.getmembers (Dagster's module discovery for `-m secmetrics_dagster`) lists what dir() returns.
    return sorted(set(globals()) | {"defs"})
