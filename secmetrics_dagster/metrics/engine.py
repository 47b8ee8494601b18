"""The metric engine: each metric's queries run over the collected data, their rows validated, counted and
spooled, and the scores rolled up into the scorecard. No Dagster here: the assets and the benchmark both call it.

Scoring, as the seed project scores: a metric's score is the sum of `compliance` over its rows divided by the
number of rows; `good` at or above the SLO target, `warning` at or above the minimum, else `bad`, and `no_data`
when no query returned a row. Category and overall scores are weight-averaged over non-indicator metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

import duckdb

from .collected import CollectedData, Upload
from .definition import OVERALL, REF, MetricDefinition

RESULT_COLUMNS = ("resource", "resource_type", "compliance", "detail")
PREVIEW_ROWS = 20
FETCH_ROWS = 10_000


class MetricError(Exception):
    """A metric that could not be computed; the message names its file and the cause."""


@dataclass
class MetricResult:
    metric: MetricDefinition
    computed_at: datetime
    totalok: float = 0.0
    total: int = 0
    uploads: dict[str, Upload] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failing: list[tuple] = field(default_factory=list)  # first PREVIEW_ROWS rows with compliance < 1
    null_compliance: int = 0
    detail_path: Optional[Path] = None  # NDJSON of this metric's rows (resource, resource_type, compliance, detail)

    @property
    def score(self) -> Optional[float]:
        return self.totalok / self.total if self.total else None

    @property
    def status(self) -> str:
        return self.metric.status_of(self.score)

    @property
    def backup_inputs(self) -> list[Upload]:
        return [u for u in self.uploads.values() if u.from_backup]

    def summary_row(self, datestamp: str, tenancy: str) -> dict[str, Any]:
        m = self.metric
        return {
            "datestamp": datestamp,
            "tenancy": tenancy,
            "metric_id": m.metric_id,
            **m.described(),
            "totalok": self.totalok,
            "total": self.total,
            "score": self.score,
            "status": self.status,
            "computed_at": self.computed_at.isoformat(),
        }


def render(query: str) -> str:
    """`{{ ref('okta_users') }}` becomes the view named after the dataset (created per metric connection)."""
    return REF.sub(lambda m: f'"{m.group(2)}"', query)


def _compliance(value: Any, where: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
        if math.isfinite(number) and 0.0 <= number <= 1.0:
            return number
    raise MetricError(f"{where} returned compliance {value!r}: compliance must be a number from 0 to 1")


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def run_metric(
    metric: MetricDefinition,
    collected: CollectedData,
    known: Iterable[str],
    computed_at: datetime,
    detail_path: Path,
) -> MetricResult:
    """Compute one metric; raises MetricError naming the file. Its rows go to `detail_path` as NDJSON."""
    name = metric.file_name
    known = set(known)
    unknown = [r for r in metric.refs if r not in known]
    if unknown:
        raise MetricError(
            f"{name}: ref({unknown[0]!r}) names no collected dataset; known datasets: {', '.join(sorted(known))}"
        )
    broken = [r for r in metric.refs if r in collected.unreadable]
    if broken:
        raise MetricError(f"{name}: {collected.unreadable[broken[0]]}")
    result = MetricResult(metric, computed_at, detail_path=detail_path)
    per_query = metric.query_refs()
    runnable: list[tuple[int, str]] = []
    for number, (query, refs) in enumerate(zip(metric.queries or (), per_query), 1):
        missing = [r for r in dict.fromkeys(refs) if r not in collected.uploads]
        if missing:
            result.warnings.append(
                f"{name}: query {number} skipped: {', '.join(missing)} has no data for tenancy "
                f"{collected.tenancy} yet (collect it, then compute the metric again)"
            )
            continue
        runnable.append((number, query))
        for r in refs:
            result.uploads[r] = collected.uploads[r]
    with open(detail_path, "w", encoding="utf-8") as out:
        if not runnable:
            return result
        for number, query in runnable:
            con = collected.connect(dict.fromkeys(per_query[number - 1]))
            try:
                _run_query(con, render(query), f"{name} query {number}", result, out)
            finally:
                con.close()
    return result


# Table functions a metric query may use; any other (query_table(), query(), read_*()) could reach the attached
# store around ref(), or files (those are off anyway: enable_external_access = false).
TABLE_FUNCTIONS = frozenset({"unnest", "range", "generate_series", "json_each", "json_tree"})


def _table_references(node: Any, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(kind, name) of every table and table function a parsed query (json_serialize_sql) reads."""
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE":
            parts = (node.get("catalog_name") or "", node.get("schema_name") or "", node.get("table_name") or "")
            out.append(("table", ".".join(p for p in parts if p)))
        elif node.get("type") == "TABLE_FUNCTION":
            function = node.get("function") or {}
            out.append(("function", str(function.get("function_name") or "")))
        for value in node.values():
            _table_references(value, out)
    elif isinstance(node, list):
        for value in node:
            _table_references(value, out)
    return out


def _only_through_ref(con: duckdb.DuckDBPyConnection, sql: str, where: str) -> None:
    """A SELECT reads collected data only through ref(): the store is attached (read-only) for the views behind
    ref(), and a name qualified with its catalog or schema would see every tenancy and every older upload."""
    try:
        parsed = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except (duckdb.Error, TypeError, ValueError) as exc:
        raise MetricError(f"{where}: DuckDB could not parse the query: {exc}") from None
    if parsed.get("error"):
        raise MetricError(f"{where}: DuckDB could not parse the query: {parsed.get('error_message', '')}")
    for kind, name in _table_references(parsed.get("statements"), []):
        if kind == "table" and "." in name:
            raise MetricError(
                f"{where}: reads {name} directly; a metric query reads collected data only through "
                "{{ ref('<dataset>') }} (the newest upload of the tenancy being computed)"
            )
        if kind == "function" and name.lower() not in TABLE_FUNCTIONS:
            raise MetricError(
                f"{where}: calls the table function {name}(); a metric query may use "
                f"{', '.join(sorted(TABLE_FUNCTIONS))} and reads collected data only through {{{{ ref('<dataset>') }}}}"
            )


def _run_query(con: duckdb.DuckDBPyConnection, sql: str, where: str, result: MetricResult, out) -> None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise MetricError(f"{where}: DuckDB rejected the query: {exc}") from None
    if len(statements) != 1:
        raise MetricError(f"{where}: holds {len(statements)} SQL statements; a query is exactly one SELECT")
    if statements[0].type == duckdb.StatementType.SELECT:
        _only_through_ref(con, sql, where)
    try:
        cursor = con.execute(sql)
        names = [d[0].lower() for d in cursor.description or ()]
        missing = [c for c in RESULT_COLUMNS if c not in names]
        if missing:
            raise MetricError(
                f"{where}: the result lacks the column(s) {', '.join(missing)}; a metric query returns "
                "resource, resource_type, compliance (0 to 1) and detail"
            )
        positions = [names.index(c) for c in RESULT_COLUMNS]
        while True:
            rows = cursor.fetchmany(FETCH_ROWS)
            if not rows:
                break
            for row in rows:
                resource, kind, compliance, detail = (row[i] for i in positions)
                value = _compliance(compliance, f"{where} (resource {resource!r})")
                if value is None:
                    result.null_compliance += 1  # counted as not compliant, as the seed's sum/count does
                    value = 0.0
                record = (_text(resource), _text(kind), value, _text(detail))
                out.write(json.dumps(dict(zip(RESULT_COLUMNS, record)), ensure_ascii=False) + "\n")
                result.totalok += value
                result.total += 1
                if value < 1 and len(result.failing) < PREVIEW_ROWS:
                    result.failing.append(record)
    except duckdb.Error as exc:
        raise MetricError(f"{where}: DuckDB: {exc}") from None


# ------------------------------------------------------------------------------------------- scorecard


@dataclass(frozen=True)
class Scored:
    """What the scorecard needs of one metric's latest result."""

    metric_id: str
    title: str
    category: str
    weight: float
    indicator: bool
    score: Optional[float]
    status: str
    datestamp: str


def weighted(scored: Sequence[Scored]) -> Optional[float]:
    counted = [s for s in scored if not s.indicator and s.score is not None]
    total_weight = sum(s.weight for s in counted)
    if not counted or total_weight <= 0:
        return None
    return sum(s.weight * s.score for s in counted) / total_weight


def scorecard_rows(scored: Iterable[Scored], datestamp: str, tenancy: str) -> list[dict[str, Any]]:
    """One row for `overall`, then one per category (sorted): score, number of scored metrics, good/warning/bad."""
    with_data = [s for s in scored if s.score is not None]
    scopes: dict[str, list[Scored]] = {OVERALL: with_data}
    for s in sorted(with_data, key=lambda s: s.category):
        scopes.setdefault(s.category, []).append(s)
    rows = []
    for scope, members in scopes.items():
        rows.append(
            {
                "datestamp": datestamp,
                "tenancy": tenancy,
                "scope": scope,
                "score": weighted(members),
                "metrics": len(members),
                "good": sum(1 for s in members if s.status == "good"),
                "warning": sum(1 for s in members if s.status == "warning"),
                "bad": sum(1 for s in members if s.status == "bad"),
            }
        )
    return rows


def worst(scored: Iterable[Scored], count: int = 3) -> list[Scored]:
    """The lowest-scoring metrics with data (indicators included: they are still shown to people)."""
    return sorted((s for s in scored if s.score is not None), key=lambda s: (s.score, -s.weight, s.metric_id))[:count]


def scored_from_summary(row: Mapping[str, Any]) -> Scored:
    return Scored(
        metric_id=str(row["metric_id"]),
        title=str(row["title"]),
        category=str(row["category"]),
        weight=float(row["weight"]),
        indicator=bool(row["indicator"]),
        score=None if row.get("score") is None else float(row["score"]),
        status=str(row["status"]),
        datestamp=str(row["datestamp"]),
    )
