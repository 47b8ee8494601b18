"""The Dagster instance the top-level dagster.yaml names (`instance_class`): PostgreSQL storage when DAGSTER_PG_HOST
is set, SQLite under the instance's own directory otherwise.

So one file serves `dagster dev` from the repository root with nothing set (Dagster then reads ./dagster.yaml and
keeps the instance in a temporary directory; dagster/_cli/utils.py, _get_temporary_instance), `make dev` (DAGSTER_HOME
is data/dagster_home) and production (DAGSTER_PG_* set). Dagster asks the instance class for its default storages
with the instance's directory (InstanceRef.from_dir calls `config_defaults(base_dir)`), which a `storage:` entry in
the file never sees; the file therefore has no `storage:` entry and the choice is made here, once, where the
instance reference is built (the webserver and the daemon get that reference and reuse the choice).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional

import yaml
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData

PG_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
_PG_CLASSES = {
    "storage": "DagsterPostgresStorage",
    "run_storage": "PostgresRunStorage",
    "event_log_storage": "PostgresEventLogStorage",
    "schedule_storage": "PostgresScheduleStorage",
}


def postgres_config(env: Optional[Mapping[str, str]] = None) -> Optional[dict[str, Any]]:
    """dagster-postgres's `postgres_db` config reading DAGSTER_PG_* at load time; None without DAGSTER_PG_HOST.

    Values stay `env:` references, so the password never enters the instance reference Dagster passes to its
    webserver and daemon on their command lines.
    """
    env = os.environ if env is None else env
    if not env.get("DAGSTER_PG_HOST"):
        return None
    missing = [name for name in ("DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB") if not env.get(name)]
    if missing:
        raise ValueError(
            f"DAGSTER_PG_HOST is set, so the Dagster instance is PostgreSQL, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; set all of {', '.join(PG_VARS)} (the password may be "
            "empty), or unset DAGSTER_PG_HOST for a local SQLite instance"
        )
    db: dict[str, Any] = {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        # SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3, whose event writes fail in dagster-postgres.
        "scheme": "postgresql+psycopg2",
    }
    if "DAGSTER_PG_PASSWORD" in env:
        db["password"] = {"env": "DAGSTER_PG_PASSWORD"}
    return {"postgres_db": db}


class SecmetricsInstance(DagsterInstance):
    """A DagsterInstance whose default storage follows the environment (see the module docstring)."""

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, Optional[ConfigurableClassData]]:
        defaults = dict(InstanceRef.config_defaults(base_dir))
        config = postgres_config()
        if config is not None:
            config_yaml = yaml.dump(config, default_flow_style=False)
            for key, class_name in _PG_CLASSES.items():
                defaults[key] = ConfigurableClassData("dagster_postgres", class_name, config_yaml)
        return defaults
