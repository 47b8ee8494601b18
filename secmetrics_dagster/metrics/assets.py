"""Metrics as Dagster assets: one asset per metric (`metric_<metric_id>`, downstream of the datasets its queries
name), an SLO check each, the `metric_scorecard` asset with the library's definition check, and the automation
that computes them once their datasets have been collected.

All of them are one subsettable multi-asset, so one step computes whatever is selected: a metric whose query
fails fails alone (the others and the scorecard are still recorded, then the step fails naming it), and the
scorecard never goes missing because one metric broke. They run in their own run after collection (automation
condition, see `after_datasets_update`), not inside the collection run, where a vendor without a backup would
skip every metric downstream of it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import dagster as dg

from ..assets.policies import freshness_policy
from ..collection.columns import Column
from ..collection.context import format_timestamp
from ..sources import SOURCES
from ..sources.base import Source
from ..stores.io_manager import StoresResource
from .collected import CollectedData, CollectedDataError, load_file_store
from .definition import Library, MetricDefinition, load_library, problems_markdown
from .engine import MetricError, MetricResult, Scored, run_metric, scorecard_rows, scored_from_summary, worst
from .resource import MetricsResource
from .results import Batch, write_results

GROUP = "metrics"
SCORECARD = "metric_scorecard"
SLO_CHECK = "slo_met"
DEFINITIONS_CHECK = "metric_definitions_valid"
RESOURCE_KEY = "metrics"
SENSOR = "metrics_after_collection"
KIND_TAG = "secmetrics/kind"
SUMMARY_KEYS = ("title", "category", "type", "weight", "indicator", "slo_min", "slo", "totalok", "total", "score",
                "status", "computed_at", "datestamp", "tenancy")  # fmt: skip


def after_datasets_update() -> dg.AutomationCondition:
    """Like `eager()`, but a dataset that was never collected does not hold the metric back (its queries are
    skipped with a warning): run once any dataset updated, when none of them is still being collected."""
    return (
        (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("after its datasets update")


def with_asset() -> dg.AutomationCondition:
    """A check runs whenever its asset does."""
    return dg.AutomationCondition.any_deps_updated().with_label("with its asset")


def dataset_columns(sources: Sequence[Source]) -> dict[str, tuple[Column, ...]]:
    return {d.tag: d.columns for s in sources for d in s.datasets}


def describe_metric(m: MetricDefinition) -> str:
    parts = [f"{m.title}. {m.description}"]
    if m.how:
        parts.append(f"How: {m.how}")
    parts.append(
        f"Category: {m.category}; type: {m.type}; SLO: minimum {m.slo_min:g}, target {m.slo:g}; weight {m.weight:g}"
        + ("; indicator (left out of weighted scores)" if m.indicator else "")
        + "."
    )
    if m.references:
        parts.append("References: " + "; ".join(f"{k} {', '.join(v)}" for k, v in m.references.items()) + ".")
    parts.append(f"Defined in `{m.file}`.")
    return "\n\n".join(parts)


def _static_metadata(m: MetricDefinition, known: set[str]) -> dict[str, Any]:
    queries = "\n\n".join(f"```sql\n{q.strip()}\n```" for q in m.queries or ())
    return {
        **m.described(),
        "references": {k: list(v) for k, v in m.references.items()},
        "datasets": ", ".join(r for r in m.refs if r in known) or "none",
        "definition": dg.MetadataValue.path(m.file),
        "queries": dg.MetadataValue.md(queries),
    }


def _failing_markdown(result: MetricResult) -> str:
    if not result.failing:
        return "No failing resources." if result.total else "No rows: nothing to score."
    rows = ["| resource | resource_type | compliance | detail |", "|---|---|---|---|"]
    for resource, kind, compliance, detail in result.failing:
        cells = [str(v if v is not None else "").replace("|", "/").replace("\n", " ") for v in (resource, kind)]
        rows.append(f"| {cells[0]} | {cells[1]} | {compliance:g} | {str(detail or '').replace('|', '/')[:200]} |")
    shown = len(result.failing)
    rows.append(f"\nFirst {shown} failing resource(s) of {result.total} rows." if shown else "")
    return "\n".join(rows)


def _score_value(score: Optional[float]) -> dg.MetadataValue:
    return dg.MetadataValue.null() if score is None else dg.MetadataValue.float(round(score, 6))


def metric_metadata(result: MetricResult, datestamp: str, tenancy: str) -> dict[str, Any]:
    m = result.metric
    metadata: dict[str, Any] = {
        "score": _score_value(result.score),
        "totalok": dg.MetadataValue.float(round(result.totalok, 6)),
        "total": dg.MetadataValue.int(result.total),
        "slo_min": m.slo_min,
        "slo": m.slo,
        "status": result.status,
        "title": m.title,
        "category": m.category,
        "type": m.type,
        "weight": m.weight,
        "indicator": m.indicator,
        "tenancy": tenancy,
        "datestamp": datestamp,
        "computed_at": result.computed_at.isoformat(),
        "uploads": {tag: upload.as_metadata() for tag, upload in result.uploads.items()},
        "backup_inputs": ", ".join(u.tag for u in result.backup_inputs) or "none",
        "failing_resources": dg.MetadataValue.md(_failing_markdown(result)),
        "dagster/row_count": dg.MetadataValue.int(result.total),
    }
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings))
    if result.null_compliance:
        metadata["null_compliance_rows"] = result.null_compliance
    return metadata


def slo_check(result: MetricResult) -> dg.AssetCheckResult:
    m, score, status = result.metric, result.score, result.status
    if status == "no_data":
        text = "no rows to score: every query was skipped or returned nothing"
    else:
        text = f"score {score:.4f} ({result.totalok:g} of {result.total}); SLO minimum {m.slo_min:g}, target {m.slo:g}"
    backups = result.backup_inputs
    if backups:
        text += ". Computed from backup-served input: " + ", ".join(
            f"{u.tag} (collected {format_timestamp(u.collected_at)})" for u in backups
        )
    severity = dg.AssetCheckSeverity.ERROR if status == "bad" else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=m.asset_name,
        check_name=SLO_CHECK,
        passed=status == "good",
        severity=severity,
        description=text,
        metadata={"score": _score_value(score), "status": status, "slo_min": m.slo_min, "slo": m.slo},
    )


def scorecard_markdown(rows: Sequence[dict[str, Any]], worst_three: Sequence[Scored]) -> str:
    lines = ["| scope | score | metrics | good | warning | bad |", "|---|---|---|---|---|---|"]
    for row in rows:
        score = "-" if row["score"] is None else f"{row['score']:.1%}"
        lines.append(
            f"| {row['scope']} | {score} | {row['metrics']} | {row['good']} | {row['warning']} | {row['bad']} |"
        )
    if worst_three:
        lines += ["", "Worst metrics: " + "; ".join(f"{s.title} ({s.score:.1%}, {s.status})" for s in worst_three)]
    return "\n".join(lines)


@dataclass
class MetricAssets:
    library: Library
    assets: list[dg.AssetsDefinition]
    sensors: list[dg.SensorDefinition]


class _Computation:
    """One step: what was selected, computed over the collected data of one tenancy, written everywhere."""

    def __init__(self, context, library: Library, columns: Mapping[str, tuple[Column, ...]]):
        self.context = context
        self.library = library
        self.columns = columns
        self.metrics: MetricsResource = getattr(context.resources, RESOURCE_KEY)
        self.stores: StoresResource = context.resources.stores
        self.tenancy = context.resources.collection.tenancy
        self.as_of = self.metrics.clock()
        self.datestamp = self.as_of.date().isoformat()
        selected = context.selected_asset_keys
        self.todo = [m for m in library.computable if dg.AssetKey(m.asset_name) in selected]
        self.scorecard = dg.AssetKey(SCORECARD) in selected
        self._sources: dict[str, Optional[dict]] = {}

    def _latest_metadata(self, key: str) -> Optional[dict[str, Any]]:
        event = self.context.instance.get_latest_materialization_event(dg.AssetKey(key))
        if event is None or event.asset_materialization is None:
            return None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    def source_of(self, tag: str, upload_id: str) -> Optional[str]:
        """`backup` when Dagster recorded this very upload as served from the S3 backup."""
        if tag not in self._sources:
            self._sources[tag] = self._latest_metadata(tag)
        md = self._sources[tag]
        if md and str(md.get("upload_id")) == str(upload_id) and md.get("source") in ("api", "backup"):
            return str(md["source"])
        return None

    def database(self, work: Path) -> tuple[Path, dict[str, str]]:
        if self.stores.duckdb_path:
            return Path(self.stores.duckdb_path), {}
        if self.stores.file_template:
            tags = {r for m in self.todo for r in m.refs if r in self.columns}
            return load_file_store(self.stores.file_template, sorted(tags), self.tenancy, work)
        raise dg.Failure(
            description="metrics read the DuckDB store (STORE_DUCKDB) or, without it, the file store (STORE_FILE); "
            "neither is configured. Set STORE_DUCKDB (or STORE_FILE) and collect again.",
            allow_retries=False,
        )

    def compute(self, work: Path) -> tuple[list[MetricResult], dict[str, str]]:
        log = self.context.log
        try:
            database, unreadable = self.database(work)
            collected = CollectedData(
                database,
                self.tenancy,
                self.columns,
                self.metrics.engine_settings(),
                work,
                self.as_of,
                source_of=self.source_of,
                unreadable=unreadable,
            )
        except CollectedDataError as exc:
            raise dg.Failure(description=f"metrics: {exc}", allow_retries=False) from None
        results, errors = [], {}
        for metric in self.todo:
            try:
                result = run_metric(metric, collected, self.columns, self.as_of, work / f"{metric.metric_id}.ndjson")
            except MetricError as exc:
                errors[metric.asset_name] = str(exc)
                log.error(f"{metric.asset_name}: {exc}")
                continue
            for warning in result.warnings:
                log.warning(f"{metric.asset_name}: {warning}")
            score = "no data" if result.score is None else f"{result.score:.4f}"
            log.info(f"{metric.asset_name}: {score} ({result.total} rows, {result.status})")
            results.append(result)
        return results, errors

    def latest_scored(self, results: Sequence[MetricResult]) -> tuple[list[Scored], list[dict[str, Any]]]:
        """Scores of every computable metric: this step's, else its latest materialization (same tenancy)."""
        fresh = {r.metric.metric_id: r for r in results}
        scored, others = [], []
        for metric in self.library.computable:
            if metric.metric_id in fresh:
                scored.append(scored_from_summary(fresh[metric.metric_id].summary_row(self.datestamp, self.tenancy)))
                continue
            md = self._latest_metadata(metric.asset_name)
            if not md or md.get("tenancy") != self.tenancy or "status" not in md:
                continue
            row = {"metric_id": metric.metric_id, **{k: md.get(k) for k in SUMMARY_KEYS}}
            # The library decides title, weight and category today; the score is the one last computed.
            row.update(title=metric.title, category=metric.category, weight=metric.weight, indicator=metric.indicator)
            scored.append(scored_from_summary(row))
            others.append(row)
        return scored, others

    def run(self) -> Iterator[Any]:
        context = self.context
        checks = context.selected_asset_check_keys
        with tempfile.TemporaryDirectory(prefix="secmetrics-metrics-") as tmp:
            work = Path(tmp)
            results, errors = self.compute(work) if self.todo else ([], {})
            scored, others = self.latest_scored(results)
            rows = scorecard_rows(scored, self.datestamp, self.tenancy)
            batch = Batch(
                tenancy=self.tenancy,
                datestamp=self.datestamp,
                computed_at=self.as_of,
                results=results,
                scorecard=rows,
                other_summaries=others,
                library_ids=frozenset(m.metric_id for m in self.library.computable),
                write_scorecard=self.scorecard,
            )
            outcome = write_results(self.stores, batch, self.metrics.memory_limit, work, context.log.error)
        if outcome.failures:
            causes = "; ".join(f"{name} store failed: {error}" for name, error in outcome.failures.items())
            written = ", ".join(outcome.written) or "none"
            raise dg.Failure(
                description=f"metrics: {causes}. Stores written: {written}. Fix the store and materialize the "
                "metrics again; the same day's rows are replaced, not duplicated.",
                allow_retries=False,
            )
        where = {f"{name}_location": location for name, location in outcome.written.items()}
        for result in results:
            key = result.metric.asset_name
            yield dg.MaterializeResult(
                asset_key=key, metadata={**metric_metadata(result, self.datestamp, self.tenancy), **where}
            )
            if dg.AssetCheckKey(dg.AssetKey(key), SLO_CHECK) in checks:
                yield slo_check(result)
        if self.scorecard:
            worst_three = worst(scored)
            overall = rows[0]
            yield dg.MaterializeResult(
                asset_key=SCORECARD,
                metadata={
                    "score": _score_value(overall["score"]),
                    "metrics": overall["metrics"],
                    "good": overall["good"],
                    "warning": overall["warning"],
                    "bad": overall["bad"],
                    "tenancy": self.tenancy,
                    "datestamp": self.datestamp,
                    "scorecard": dg.MetadataValue.md(scorecard_markdown(rows, worst_three)),
                    "worst_metrics": ", ".join(s.metric_id for s in worst_three) or "none",
                    "earlier_results": ", ".join(s.metric_id for s in scored if s.datestamp != self.datestamp)
                    or "none",
                    **where,
                },
            )
        if dg.AssetCheckKey(dg.AssetKey(SCORECARD), DEFINITIONS_CHECK) in checks:
            yield definitions_check(self.library)
        if errors:
            raise dg.Failure(
                description="metric(s) failed: " + "; ".join(errors.values()),
                metadata={"failed": ", ".join(errors)},
                allow_retries=False,
            )


def definitions_check(library: Library) -> dg.AssetCheckResult:
    problems = library.problems
    text = (
        f"{len(problems)} metric file(s) could not be used: " + "; ".join(str(p) for p in problems)
        if problems
        else f"every metric file loaded ({len(library.metrics)} metrics)"
    )
    return dg.AssetCheckResult(
        asset_key=SCORECARD,
        check_name=DEFINITIONS_CHECK,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=text,
        metadata={
            "problems": dg.MetadataValue.md(problems_markdown(problems) if problems else "none"),
            "metrics": len(library.metrics),
            "not_computed": ", ".join(m.metric_id for m in library.not_computed) or "none",
            "replaced_by_user_files": ", ".join(library.replaced) or "none",
        },
    )


def build_metrics(
    library: Optional[Library] = None, sources: Sequence[Source] = SOURCES, owners: Iterable[str] = ()
) -> MetricAssets:
    """The metric multi-asset and its automation sensor. Loading never raises for a metric file: problems become
    the failed `metric_definitions_valid` check (and are listed in the scorecard's description)."""
    if library is None:
        library = load_library(MetricsResource.from_env().path)
    columns = dataset_columns(sources)
    known = set(columns)
    owners = list(owners) or None
    policy = freshness_policy(GROUP)
    metrics = library.computable
    specs = [
        dg.AssetSpec(
            key=m.asset_name,
            deps=[dg.AssetKey(r) for r in m.refs if r in known],
            description=describe_metric(m),
            metadata=_static_metadata(m, known),
            group_name=GROUP,
            kinds={"duckdb"},
            tags={"category": _tag_value(m.category), "type": m.type},
            owners=owners,
            skippable=True,
            automation_condition=after_datasets_update(),
            freshness_policy=policy,
        )
        for m in metrics
    ]
    problems = "".join(f"\n- {p}" for p in library.problems)
    specs.append(
        dg.AssetSpec(
            key=SCORECARD,
            deps=[dg.AssetKey(m.asset_name) for m in metrics],
            description="Posture scorecard: the overall and per-category weighted scores of the latest result of "
            "every metric (indicators left out of the scores), with counts of good, warning and bad metrics."
            + (f"\n\nMetric files that could not be used:{problems}" if problems else ""),
            group_name=GROUP,
            kinds={"duckdb"},
            owners=owners,
            skippable=True,
            automation_condition=after_datasets_update(),
            freshness_policy=policy,
        )
    )
    check_specs = [
        dg.AssetCheckSpec(
            SLO_CHECK,
            asset=m.asset_name,
            description=f"Score at or above the target {m.slo:g} (WARN from the minimum {m.slo_min:g}, ERROR below).",
            blocking=False,
            automation_condition=with_asset(),
        )
        for m in metrics
    ]
    check_specs.append(
        dg.AssetCheckSpec(
            DEFINITIONS_CHECK,
            asset=SCORECARD,
            description="Every metric_*.yml file (shipped and METRICS_PATH) is valid: YAML, required keys, SLO and "
            "weight from 0 to 1.",
            blocking=False,
            automation_condition=with_asset(),
        )
    )

    @dg.multi_asset(
        name="metrics",
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        required_resource_keys={"collection", "stores", RESOURCE_KEY},
        description="Compute the selected metrics over the newest collected data (DuckDB), write them to every "
        "store, then the scorecard.",
    )
    def _metrics(context):
        yield from _Computation(context, library, columns).run()

    sensor = dg.AutomationConditionSensorDefinition(
        SENSOR,
        target=dg.AssetSelection.groups(GROUP),
        default_status=dg.DefaultSensorStatus.RUNNING,
        run_tags={KIND_TAG: "metrics"},
        description="Computes the metrics (and the scorecard) once the datasets they read have been collected, in a "
        "run of their own after the collection run.",
    )
    return MetricAssets(library=library, assets=[_metrics], sensors=[sensor])


def _tag_value(text: str) -> str:
    """Dagster tag values are at most 63 characters of letters, digits, `-`, `_` and `.`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:63] or "none"
