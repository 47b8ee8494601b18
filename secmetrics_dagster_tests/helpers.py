"""Small builders the store and IO-manager tests share."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Optional

import duckdb
import psycopg
from psycopg import sql

from secmetrics_dagster.collection import RunContext, Snapshot, Spool, expand_path


def make_snapshot(
    tmp_path: Path,
    records: Iterable[dict],
    tag: str = "snyk_issues",
    tenancy: str = "acme",
    upload_id: Optional[str] = None,
    timestamp: Optional[datetime] = None,
) -> Snapshot:
    kwargs = {}
    if upload_id:
        kwargs["upload_id"] = upload_id
    if timestamp:
        kwargs["timestamp"] = timestamp
    spool = Spool(RunContext(tag, tenancy, **kwargs), tmp_path / "spool")
    spool.extend(records)
    return spool.close()


def at(hour: int) -> datetime:
    return datetime(2026, 11, 28, hour, 0, 0, tzinfo=UTC)


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


def failure_text(result) -> str:
    """Every step failure's message, causes included, as one string."""
    texts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return "\n".join(texts)


def log_text(instance, result) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))


def materialization_metadata(result, tag: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == tag]
    assert events, f"{tag} was not materialized"
    return {k: v.value for k, v in events[-1].step_materialization_data.materialization.metadata.items()}


def materialized_tags(result) -> set:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def replace(resource, **changes):
    """A copy of a Dagster resource with some fields changed (pydantic's model_copy bypasses Dagster's config)."""
    fields = {name: getattr(resource, name) for name in type(resource).model_fields}
    return type(resource)(**{**fields, **changes})


def module_sandbox(seed: int, token: str = "sandbox-token", **volumes):
    """A module-scoped `sandbox` fixture with the given volumes, and an autouse `_clean` that clears its faults
    and counters around every test. Use: `sandbox, _clean = module_sandbox(5, crowdstrike=VOLUME)`."""
    import pytest

    from secmetrics_dagster.sandbox import Sandbox

    @pytest.fixture(scope="module")
    def sandbox():
        with Sandbox(seed=seed, token=token, **volumes) as box:
            yield box

    @pytest.fixture(autouse=True)
    def _clean(sandbox):
        sandbox.clear_faults()
        sandbox.reset_stats()
        yield
        sandbox.clear_faults()

    return sandbox, _clean


def stored_file(stores, tag: str, tenancy: str = "acme") -> Path:
    """Where the file store wrote `tag` for `tenancy`: the template expanded as the store expands it."""
    return Path(expand_path(stores.file_template, RunContext(tag, tenancy)))


def store_counts(stores, s3_client, pg_conn, tag: str) -> dict:
    """How many records of `tag` (tenancy acme) each of the four stores holds: file, S3 backup, both `_latest` views."""
    file_doc = json.loads(stored_file(stores, tag, "acme").read_text())
    backup = json.loads(s3_client.get_object(Bucket=stores.s3_bucket, Key=f"backup/{tag}/acme.json")["Body"].read())
    return {
        "file": len(file_doc["data"]),
        "s3": len(backup["data"]),
        "postgres": len(pg_rows(pg_conn, stores.postgres_schema, f"{tag}_latest")),
        "duckdb": len(duck_rows(stores.duckdb_path, f"{tag}_latest")),
    }


_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


def moment(text: str) -> datetime:
    """An ISO 8601 timestamp as vendors send it (Z or an offset; none is UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def shifted_timestamps(a, b, shift: timedelta, fixed: Iterable[str] = (), path: str = "") -> list[datetime]:
    """Compare two sandbox payloads generated at clocks `shift` apart: every ISO timestamp of `a` must be moved by
    exactly `shift` in `b` (except under the keys in `fixed`, which must be equal) and every other value must be
    equal. Returns `a`'s timestamps, for range checks."""
    fixed = frozenset(fixed)
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), path
        found = []
        for key in a:
            if key in fixed:
                assert a[key] == b[key], f"{path}.{key}"
            else:
                found += shifted_timestamps(a[key], b[key], shift, fixed, f"{path}.{key}")
        return found
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        return [t for i, (x, y) in enumerate(zip(a, b)) for t in shifted_timestamps(x, y, shift, fixed, f"{path}.{i}")]
    if isinstance(a, str) and _ISO_MOMENT.fullmatch(a):
        assert isinstance(b, str) and moment(b) - moment(a) == shift, f"{path}: {a} -> {b}"
        return [moment(a)]
    assert a == b, f"{path}: {a!r} != {b!r}"
    return []
