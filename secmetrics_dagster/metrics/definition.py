"""Metric definitions in the seed project's YAML format: one `metric_<metric_id>.yml` per metric, read, checked and
merged into a library (the shipped one, then each METRICS_PATH directory). A bad file is a Problem, never a raise."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

SHIPPED_DIR = Path(__file__).parent / "library"
TYPES = ("control", "risk", "performance")
REQUIRED = ("metric_id", "title", "category", "type", "description", "slo", "weight")
METRIC_ID = re.compile(r"[a-z0-9_]{1,56}")
# `{{ ref('okta_users') }}` (single or double quotes, any spacing) is the one template form a query may use.
REF = re.compile(r"\{\{\s*ref\(\s*(['\"])([^'\"]*)\1\s*\)\s*\}\}")
TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
OVERALL = "overall"  # the scorecard's scope for all categories together


@dataclass(frozen=True)
class Problem:
    """Why one file (or METRICS_PATH entry) could not be used: the file, the key at fault (if one) and the cause."""

    file: str
    key: Optional[str]
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key + ': ' if self.key else ''}{self.message}"


@dataclass(frozen=True)
class MetricDefinition:
    metric_id: str
    title: str
    category: str
    type: str
    description: str
    slo_min: float
    slo: float
    weight: float
    file: str
    how: Optional[str] = None
    enabled: bool = True
    indicator: bool = False
    references: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    queries: Optional[tuple[str, ...]] = None  # None: not yet defined

    @property
    def asset_name(self) -> str:
        return f"metric_{self.metric_id}"

    def described(self) -> dict[str, Any]:
        """What the YAML file says a metric is, as the UI's metadata and the summary table's columns show it."""
        return {
            "title": self.title,
            "category": self.category,
            "type": self.type,
            "weight": self.weight,
            "indicator": self.indicator,
            "slo_min": self.slo_min,
            "slo": self.slo,
        }

    @property
    def file_name(self) -> str:
        return Path(self.file).name

    @property
    def computable(self) -> bool:
        return self.enabled and bool(self.queries)

    def query_refs(self) -> list[list[str]]:
        """The datasets each query names with ref(), in order of appearance."""
        return [[m.group(2) for m in REF.finditer(q)] for q in self.queries or ()]

    @property
    def refs(self) -> list[str]:
        seen: dict[str, None] = {}
        for names in self.query_refs():
            seen.update(dict.fromkeys(names))
        return list(seen)

    def status_of(self, score: Optional[float]) -> str:
        if score is None:
            return "no_data"
        # Scores are sums of floats: 0.95 computed as 19/20 must count as meeting a 0.95 target.
        if score >= self.slo - 1e-9:
            return "good"
        if score >= self.slo_min - 1e-9:
            return "warning"
        return "bad"


class _Invalid(Exception):
    def __init__(self, key: Optional[str], message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def _number(key: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise _Invalid(key, f"{what} must be a number from 0 to 1, got {value!r}")
    if not 0 <= value <= 1:
        raise _Invalid(key, f"{what} must be from 0 to 1, got {value!r}")
    return float(value)


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(key, f"must be non-empty text, got {value!r}")
    return value.strip()


def _flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _Invalid(key, f"must be true or false, got {value!r}")
    return value


def _references(value: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Invalid("references", "must map a framework name to a list of control ids")
    out = {}
    for framework, ids in value.items():
        if ids is None:
            ids = []
        if isinstance(ids, (str, int, float)):
            ids = [ids]
        if not isinstance(ids, list) or not all(isinstance(i, (str, int, float)) for i in ids):
            raise _Invalid("references", f"{framework!r} must list control ids, got {ids!r}")
        out[str(framework)] = tuple(str(i) for i in ids)
    return out


def _queries(value: Any) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise _Invalid("query", "must be a list of SQL strings, or null for a metric not yet defined")
    queries = []
    for i, q in enumerate(value, 1):
        if not isinstance(q, str) or not q.strip():
            raise _Invalid("query", f"query {i} must be SQL text, got {q!r}")
        for m in REF.finditer(q):
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,55}", m.group(2)):
                raise _Invalid("query", f"query {i}: ref({m.group(2)!r}) is not a dataset name")
        leftover = TEMPLATE.search(REF.sub("", q))
        if leftover:
            raise _Invalid(
                "query", f"query {i}: {leftover.group(0)[:60]!r} is not supported; only {{{{ ref('<dataset>') }}}} is"
            )
        queries.append(q)
    return tuple(queries)


def parse_definition(data: Any, file: str) -> MetricDefinition:
    """A checked MetricDefinition from one parsed YAML document; raises _Invalid naming the key."""
    if not isinstance(data, Mapping):
        raise _Invalid(None, "is not a YAML mapping of metric keys")
    for key in REQUIRED:
        if key not in data or data[key] is None:
            raise _Invalid(key, "is required")
    metric_id = data["metric_id"]
    if not isinstance(metric_id, str) or not METRIC_ID.fullmatch(metric_id):
        raise _Invalid("metric_id", f"{metric_id!r} must be 1-56 lowercase letters, digits and '_'")
    if metric_id == "scorecard":
        raise _Invalid("metric_id", "'scorecard' is reserved: metric_scorecard is the scorecard's asset")
    expected = f"metric_{metric_id}.yml"
    if Path(file).name != expected:
        raise _Invalid("metric_id", f"{metric_id!r} does not match the file name (expected {expected})")
    kind = data["type"]
    if kind not in TYPES:
        raise _Invalid("type", f"{kind!r} must be one of {', '.join(TYPES)}")
    slo = data["slo"]
    if not isinstance(slo, list) or len(slo) != 2:
        raise _Invalid("slo", f"must be [minimum, target], got {slo!r}")
    slo_min = _number("slo", slo[0], "the SLO minimum")
    slo_target = _number("slo", slo[1], "the SLO target")
    if slo_min > slo_target:
        raise _Invalid("slo", f"the minimum {slo_min} is above the target {slo_target}")
    category = _text(data, "category")
    if category.lower() == OVERALL:
        raise _Invalid("category", f"{category!r} is reserved for the scorecard's overall score")
    how = data.get("how")
    if how is not None and not isinstance(how, str):
        raise _Invalid("how", f"must be text, got {how!r}")
    return MetricDefinition(
        metric_id=metric_id,
        title=_text(data, "title"),
        category=category,
        type=kind,
        description=_text(data, "description"),
        slo_min=slo_min,
        slo=slo_target,
        weight=_number("weight", data["weight"], "weight"),
        file=file,
        how=how.strip() if isinstance(how, str) and how.strip() else None,
        enabled=_flag(data, "enabled", True),
        indicator=_flag(data, "indicator", False),
        references=_references(data.get("references")),
        queries=_queries(data.get("query")),
    )


def load_file(path: Path) -> MetricDefinition | Problem:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(str(path), None, f"cannot be read: {exc}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        cause = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return Problem(str(path), None, f"is not valid YAML{at}: {cause}")
    try:
        return parse_definition(data, str(path))
    except _Invalid as exc:
        return Problem(str(path), exc.key, exc.message)


@dataclass
class Library:
    """Every metric by id (user files replacing shipped ones), and the problems found while loading."""

    metrics: dict[str, MetricDefinition] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)  # metric_id -> the file it replaced

    @property
    def computable(self) -> list[MetricDefinition]:
        return [m for m in self.metrics.values() if m.computable]

    @property
    def not_computed(self) -> list[MetricDefinition]:
        return [m for m in self.metrics.values() if not m.computable]


def metric_dirs(metrics_path: Optional[str]) -> list[str]:
    return [part for part in (metrics_path or "").split(":") if part.strip()]


def load_library(metrics_path: Optional[str] = None, shipped: Path = SHIPPED_DIR) -> Library:
    """The shipped library, then each METRICS_PATH directory in order: a later file with the same metric_id wins."""
    library = Library()
    sources: list[Iterable[Path]] = [sorted(shipped.glob("metric_*.yml"))]
    for entry in metric_dirs(metrics_path):
        directory = Path(entry).expanduser()
        if not directory.is_dir():
            library.problems.append(Problem(entry, None, "METRICS_PATH names a directory that does not exist"))
            continue
        try:
            sources.append(sorted(directory.glob("metric_*.yml")))
        except OSError as exc:
            library.problems.append(Problem(entry, None, f"METRICS_PATH directory cannot be listed: {exc}"))
    for files in sources:
        seen_here: dict[str, str] = {}
        for path in files:
            loaded = load_file(path)
            if isinstance(loaded, Problem):
                library.problems.append(loaded)
                continue
            if loaded.metric_id in seen_here:
                library.problems.append(
                    Problem(
                        str(path), "metric_id", f"{loaded.metric_id!r} is also defined by {seen_here[loaded.metric_id]}"
                    )
                )
                continue
            seen_here[loaded.metric_id] = str(path)
            previous = library.metrics.get(loaded.metric_id)
            if previous is not None:
                library.replaced[loaded.metric_id] = previous.file
            library.metrics[loaded.metric_id] = loaded
    return library


def problems_markdown(problems: Sequence[Problem]) -> str:
    rows = ["| file | key | problem |", "|---|---|---|"]
    rows += [f"| `{p.file}` | {p.key or ''} | {p.message.replace('|', '/')} |" for p in problems]
    return "\n".join(rows)
