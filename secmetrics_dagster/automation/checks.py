"""Asset checks on every collection asset, generated from its DatasetSpec: one check step per asset reads
the upload back through the IO manager (streamed from the primary store, a bounded sample, memory flat).

- `records_present`: zero records is an ERROR unless the dataset says empty is normal (`allow_empty`).
- `record_count_stable`: WARN when the count fell by more than COLLECTION_MAX_DROP against the previous upload.
- `required_fields_present`: ERROR when sampled records lack a field metrics rely on (`required_fields`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

import dagster as dg

from ..collection.env import env_number

if TYPE_CHECKING:
    from ..sources.base import DatasetSpec

RECORDS_PRESENT = "records_present"
COUNT_STABLE = "record_count_stable"
FIELDS_PRESENT = "required_fields_present"
DEFAULT_MAX_DROP = 0.5
DEFAULT_SAMPLE = 1000
_MISSING = object()


def max_drop() -> float:
    """COLLECTION_MAX_DROP: the share (0 to 1) by which a record count may fall before the check warns."""
    return env_number("COLLECTION_MAX_DROP", DEFAULT_MAX_DROP, cast=float, low=0, high=1)


def sample_size() -> int:
    return env_number("COLLECTION_CHECK_SAMPLE", DEFAULT_SAMPLE, low=1)


def check_specs(dataset: DatasetSpec) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(dataset.tag)
    empty = "an empty collection is normal here" if dataset.allow_empty else "zero records fails"
    specs = [
        dg.AssetCheckSpec(RECORDS_PRESENT, asset=key, description=f"The collection holds records ({empty})."),
        dg.AssetCheckSpec(
            COUNT_STABLE,
            asset=key,
            description="The record count did not fall by more than COLLECTION_MAX_DROP "
            "(default 50%) against the previous upload.",
        ),
    ]
    if dataset.required_fields:
        fields = ", ".join(f"`{f}`" for f in dataset.required_fields)
        specs.append(
            dg.AssetCheckSpec(
                FIELDS_PRESENT, asset=key, description=f"Every sampled record carries {fields} (what metrics rely on)."
            )
        )
    return specs


def previous_record_count(instance: dg.DagsterInstance, key: dg.AssetKey, upload_id: str) -> Optional[int]:
    """Records of the newest earlier upload (a backup reload repeats an upload id, so it is skipped)."""
    result = instance.fetch_materializations(key, limit=20, ascending=False)
    for record in result.records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        md = {k: v.value for k, v in materialization.metadata.items()}
        if str(md.get("upload_id")) != upload_id and isinstance(md.get("records"), (int, float)):
            return int(md["records"])
    return None


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (`profile.login`, `tags.0.key`), or _MISSING."""
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def evaluate(
    dataset: DatasetSpec,
    records: int,
    upload_id: str,
    source: str,
    previous: Optional[int],
    sample: Iterable[dict],
    *,
    drop: Optional[float] = None,
) -> list[dg.AssetCheckResult]:
    """Every check of the dataset on one upload; `sample` is iterated only for required fields."""
    drop = max_drop() if drop is None else drop
    key = dg.AssetKey(dataset.tag)
    origin = f"{source} upload {upload_id}"
    results = []

    present = records > 0 or dataset.allow_empty
    results.append(
        dg.AssetCheckResult(
            asset_key=key,
            check_name=RECORDS_PRESENT,
            passed=present,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{records} records in {origin}"
                if records
                else f"no records in {origin}"
                + (
                    "; empty is normal for this dataset"
                    if dataset.allow_empty
                    else ": the API returned nothing. Check the token's scope and the vendor console."
                )
            ),
            metadata={"records": records, "allow_empty": dataset.allow_empty},
        )
    )

    if previous:
        share = (previous - records) / previous
        stable = share <= drop
        text = (
            f"{records} records against {previous} in the previous upload "
            f"({'-' if share > 0 else '+'}{abs(share):.0%}; limit -{drop:.0%})"
        )
    else:
        share, stable, text = 0.0, True, f"{records} records; no earlier upload to compare with"
    results.append(
        dg.AssetCheckResult(
            asset_key=key,
            check_name=COUNT_STABLE,
            passed=stable,
            severity=dg.AssetCheckSeverity.WARN,
            description=text
            + (
                ""
                if stable
                else ". A large drop often means lost API permissions or a failed "
                "vendor-side sync; compare with the vendor console."
            ),
            metadata={
                "records": records,
                "previous_records": previous if previous is not None else -1,
                "drop_share": round(max(share, 0.0), 4),
                "max_drop": drop,
            },
        )
    )

    if dataset.required_fields:
        missing = {field: 0 for field in dataset.required_fields}
        examples: dict[str, str] = {}
        sampled = 0
        for record in sample:
            sampled += 1
            for field in dataset.required_fields:
                if lookup(record, field) in (_MISSING, None):
                    missing[field] += 1
                    examples.setdefault(field, str(record.get("id", f"record {sampled}"))[:80])
        lacking = {f: n for f, n in missing.items() if n}
        description = (
            f"all {sampled} sampled records carry {', '.join(dataset.required_fields)}"
            if not lacking
            else "sampled records lack "
            + "; ".join(f"{f} ({n} of {sampled}, e.g. {examples[f]})" for f, n in lacking.items())
            + ". Metrics reading these fields will be wrong: check the API version and the token's scope."
        )
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=FIELDS_PRESENT,
                passed=not lacking,
                severity=dg.AssetCheckSeverity.ERROR,
                description=description,
                metadata={"sampled": sampled, **{f"missing {f}": n for f, n in missing.items()}},
            )
        )
    return results


def build_checks(dataset: DatasetSpec) -> dg.AssetChecksDefinition:
    """The check step of one asset. It runs after the asset in the same run and is skipped with it."""
    key = dg.AssetKey(dataset.tag)

    @dg.multi_asset_check(
        name=f"{dataset.tag}_checks",
        specs=check_specs(dataset),
        ins={"upload": dg.AssetIn(key)},
        description=f"Checks on every upload of {dataset.tag}.",
    )
    def _checks(context, upload):
        event = context.instance.get_latest_materialization_event(key)
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else {}
        previous = previous_record_count(context.instance, key, upload.upload_id)
        stream = iter(upload)
        try:
            sample = list(itertools.islice(stream, sample_size()))
        finally:
            getattr(stream, "close", lambda: None)()  # let the store release its file, cursor or download now
        yield from evaluate(
            dataset, int(upload.records or 0), upload.upload_id, str(md.get("source", "api")), previous, sample
        )

    return _checks


def checks_for(sources: Iterable[Any]) -> list[dg.AssetChecksDefinition]:
    """Checks for every dataset of every Source."""
    return [build_checks(dataset) for source in sources for dataset in source.datasets]
