"""The scorecard as text for a terminal (`make demo`): overall, per category, and the three worst metrics of the
newest day in a DuckDB store's metric tables."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .definition import OVERALL


def _percent(score) -> str:
    return "   -  " if score is None else f"{score:6.1%}"


def scorecard_lines(duckdb_path: str, tenancy: str = "default", worst: int = 3) -> list[str]:
    if not Path(duckdb_path).exists():
        return [f"no scorecard: {duckdb_path} does not exist"]
    con = duckdb.connect(duckdb_path, read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "metric_scorecard" not in tables:
            return ["no scorecard: the metrics have not been computed (materialize group:metrics)"]
        day = con.execute("SELECT max(datestamp) FROM metric_scorecard WHERE tenancy = ?", [tenancy]).fetchone()[0]
        if day is None:
            return [f"no scorecard for tenancy {tenancy}"]
        scopes = con.execute(
            "SELECT scope, score, metrics, good, warning, bad FROM metric_scorecard WHERE tenancy = ? AND datestamp = ? "
            "ORDER BY scope = ? DESC, scope",
            [tenancy, day, OVERALL],
        ).fetchall()
        lowest = con.execute(
            "SELECT title, score, status FROM metric_summary WHERE tenancy = ? AND score IS NOT NULL AND "
            "(metric_id, datestamp) IN (SELECT metric_id, max(datestamp) FROM metric_summary WHERE tenancy = ? "
            "GROUP BY metric_id) ORDER BY score, weight DESC, metric_id LIMIT ?",
            [tenancy, tenancy, worst],
        ).fetchall()
    finally:
        con.close()
    width = max(len(s[0]) for s in scopes)
    lines = [f"scorecard {day} (tenancy {tenancy}):"]
    for scope, score, metrics, good, warning, bad in scopes:
        lines.append(
            f"  {scope.ljust(width)}  {_percent(score)}  {metrics} metrics: {good} good, {warning} warning, {bad} bad"
        )
    lines.append("worst metrics:")
    title_width = max((len(t) for t, _s, _st in lowest), default=0)
    lines += [f"  {title.ljust(title_width)}  {_percent(score)}  {status}" for title, score, status in lowest]
    return lines
