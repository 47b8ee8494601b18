"""Asset checks on every collection asset, generated from its DatasetSpec: one check step per asset counts
the upload in every configured store and reads a bounded sample back through the IO manager (streamed from
the cheapest store, memory flat).

- `records_present`: zero records is an ERROR unless the dataset says empty is normal (`allow_empty`), and so
  is any configured store that does not hold exactly the upload's records (lost rows, a damaged file).
- `record_count_stable`: WARN when the count fell by more than the dataset's `max_drop` (else
  COLLECTION_MAX_DROP) against the previous upload, or when the pull saw short pages (`http_short_pages`).
- `required_fields_present`: ERROR when sampled records lack a field metrics rely on (`required_fields`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import dagster as dg

from ..collection.env import env_number
from ..collection.redact import Redactor
from ..stores.verify import StoreCount, upload_ref_from_metadata, verify_upload

if TYPE_CHECKING:
    from ..sources.base import DatasetSpec

RECORDS_PRESENT = "records_present"
COUNT_STABLE = "record_count_stable"
FIELDS_PRESENT = "required_fields_present"
COLUMNS_PARSED = "columns_parsed"
FROM_API = "collected_from_api"
DEFAULT_MAX_DROP = 0.5
DEFAULT_SAMPLE = 1000
_MISSING = object()


def max_drop() -> float:
    """COLLECTION_MAX_DROP: the share (0 to 1) by which a record count may fall before the check warns."""
    return env_number("COLLECTION_MAX_DROP", DEFAULT_MAX_DROP, cast=float, low=0, high=1)


def sample_size() -> int:
    return env_number("COLLECTION_CHECK_SAMPLE", DEFAULT_SAMPLE, low=1)


def dataset_max_drop(dataset: DatasetSpec) -> Optional[float]:
    """The dataset's own limit (a parent such as organizations may not lose a third unnoticed); None: the default."""
    value = getattr(dataset, "max_drop", None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{dataset.tag}: max_drop must be a share from 0 to 1 (or None), got {value!r}")
    return float(value)


def _drop_text(dataset: DatasetSpec) -> str:
    own = dataset_max_drop(dataset)
    if own is None:
        return "COLLECTION_MAX_DROP (default 50%)"
    return f"{own:.0%} (this dataset's limit)"


def check_specs(dataset: DatasetSpec) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(dataset.tag)
    empty = "an empty collection is normal here" if dataset.allow_empty else "zero records fails"
    specs = [
        dg.AssetCheckSpec(
            RECORDS_PRESENT,
            asset=key,
            description=f"The collection holds records ({empty}), and every configured store holds all of them.",
        ),
        dg.AssetCheckSpec(
            COUNT_STABLE,
            asset=key,
            description=f"The record count did not fall by more than {_drop_text(dataset)} against the previous "
            "upload, and no page came back shorter than asked for.",
        ),
    ]
    if dataset.required_fields:
        fields = ", ".join(f"`{f}`" for f in dataset.required_fields)
        specs.append(
            dg.AssetCheckSpec(
                FIELDS_PRESENT, asset=key, description=f"Every sampled record carries {fields} (what metrics rely on)."
            )
        )
    if typed_columns(dataset):
        specs.append(
            dg.AssetCheckSpec(
                COLUMNS_PARSED,
                asset=key,
                description="Every value of a typed column converts to its declared type (WARN names the columns "
                "the vendor now sends otherwise; those values are NULL in the views; WARN too when they could not "
                "be counted).",
            )
        )
    specs.append(
        dg.AssetCheckSpec(
            FROM_API,
            asset=key,
            description="The latest data came from the vendor's API, not from the S3 backup (WARN while a backup "
            "is served, with its age and the reason).",
        )
    )
    return specs


def typed_columns(dataset: DatasetSpec) -> list[str]:
    """The declared columns whose values are converted (text and json are taken as they come)."""
    return [c.name for c in dataset.columns if c.type not in ("text", "json")]


def columns_parsed(dataset: DatasetSpec, metadata: Mapping[str, Any]) -> dg.AssetCheckResult:
    """WARN naming the typed columns whose values did not convert, or saying that they could not be counted."""
    key = dg.AssetKey(dataset.tag)
    error = metadata.get("columns_unparsed_error")
    if error:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=COLUMNS_PARSED,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"the values of the {len(typed_columns(dataset))} typed columns that do not convert could "
            f"not be counted ({error}), so whether the vendor changed a field's type is unknown for this upload. "
            "The stores were written; materialize again, and if it persists see the step log.",
            metadata={"columns_unparsed_error": str(error)},
        )
    unparsed = metadata.get("columns_unparsed") or {}
    unparsed = {k: int(v) for k, v in unparsed.items()} if isinstance(unparsed, dict) else {}
    text = (
        f"all values of the {len(typed_columns(dataset))} typed columns converted"
        if not unparsed
        else "values that do not convert (NULL in the views): "
        + ", ".join(f"{name} ({count})" for name, count in sorted(unparsed.items()))
        + ". The vendor changed these fields' type: check the API version, then the column declaration."
    )
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=COLUMNS_PARSED,
        passed=not unparsed,
        severity=dg.AssetCheckSeverity.WARN,
        description=text,
        metadata={"columns_unparsed": dg.MetadataValue.json(unparsed)},
    )


def provenance(dataset: DatasetSpec, metadata: Mapping[str, Any]) -> list[dg.AssetCheckResult]:
    """columns_parsed and collected_from_api, from what the materialization recorded."""
    key = dg.AssetKey(dataset.tag)
    results = []
    if typed_columns(dataset):
        results.append(columns_parsed(dataset, metadata))
    backup = metadata.get("source") == "backup"
    if backup:
        text = (
            f"served from the S3 backup {metadata.get('backup_location', '')} collected "
            f"{metadata.get('backup_collected_at', '?')} ({metadata.get('backup_age_hours', '?')} h old) because the "
            f"pull failed: {metadata.get('fallback_reason', 'see the step log')}. Fix the cause and materialize again."
        )
    else:
        text = "collected from the API"
    results.append(
        dg.AssetCheckResult(
            asset_key=key,
            check_name=FROM_API,
            passed=not backup,
            severity=dg.AssetCheckSeverity.WARN,
            description=text,
            metadata={"source": str(metadata.get("source", "api"))},
        )
    )
    return results


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
    stores: Sequence[StoreCount] = (),
    short_pages: int = 0,
    reported_total: Optional[int] = None,
) -> list[dg.AssetCheckResult]:
    """Every check of the dataset on one upload; `sample` is iterated only for required fields.

    `stores` is what each configured store holds of the upload, `short_pages` the pull's http_short_pages.
    """
    if drop is None:
        drop = dataset_max_drop(dataset)
    drop = max_drop() if drop is None else drop
    key = dg.AssetKey(dataset.tag)
    origin = f"{source} upload {upload_id}"
    results = []

    present = records > 0 or dataset.allow_empty
    failing = [c for c in stores if not c.ok]
    description = (
        f"{records} records in {origin}"
        if records
        else f"no records in {origin}"
        + (
            "; empty is normal for this dataset"
            if dataset.allow_empty
            else ": the API returned nothing. Check the token's scope and the vendor console."
        )
    )
    if failing:
        description += (
            ". Not every store holds the upload: "
            + "; ".join(c.describe() for c in failing)
            + ". Metrics reading that store get wrong data until it is repaired: repair it (a damaged database "
            "file is moved aside and rebuilt) and materialize again; the same upload id is replaced, not duplicated."
        )
    elif stores:
        description += " (" + ", ".join(c.describe() for c in stores) + ")"
    store_metadata: dict[str, Any] = {}
    for c in stores:
        label = c.store.replace(" ", "_")
        store_metadata[f"{label}_count"] = c.count if c.count is not None else -1
        store_metadata[f"{label}_status"] = c.status
    results.append(
        dg.AssetCheckResult(
            asset_key=key,
            check_name=RECORDS_PRESENT,
            passed=present and not failing,
            severity=dg.AssetCheckSeverity.ERROR,
            description=description,
            metadata={
                "records": records,
                "allow_empty": dataset.allow_empty,
                **store_metadata,
                **({"failing_stores": ", ".join(c.store for c in failing)} if failing else {}),
            },
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
    if not stable:
        text += (
            ". A large drop often means lost API permissions or a failed vendor-side sync; compare with the "
            "vendor console."
        )
    short_pages = int(short_pages or 0)
    if short_pages > 0:
        text += (
            f". {short_pages} page(s) came back shorter than the page size asked for yet had a next page, twice "
            "in a row (http_short_pages): the vendor may have left records out, and they are missing from this "
            "upload. Materialize again; if it persists, compare the count with the vendor console."
        )
    # A total the vendor documents as eventually consistent (Graph's @odata.count, Okta's group stats): a
    # difference warns instead of failing the pull, which a count that lags by one would do every day.
    counted = reported_total is None or reported_total == records
    if not counted:
        text += (
            f". The API reported {reported_total} records but {records} arrived (reported_total): its count may "
            "lag, or records were left out; if it persists, compare with the vendor console."
        )
    results.append(
        dg.AssetCheckResult(
            asset_key=key,
            check_name=COUNT_STABLE,
            passed=stable and short_pages == 0 and counted,
            severity=dg.AssetCheckSeverity.WARN,
            description=text,
            metadata={
                "records": records,
                "previous_records": previous if previous is not None else -1,
                "drop_share": round(max(share, 0.0), 4),
                "max_drop": drop,
                "short_pages": short_pages,
                "reported_total": reported_total if reported_total is not None else -1,
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
        required_resource_keys={"stores"},
        description=f"Checks on every upload of {dataset.tag}.",
    )
    def _checks(context, upload):
        event = context.instance.get_latest_materialization_event(key)
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else {}
        previous = previous_record_count(context.instance, key, upload.upload_id)
        records = int(upload.records or 0)
        # Every configured store, read back from the data itself; the sample below comes from the cheapest (the
        # IO manager's stream, which masks the stores' secrets in any error reading it, as this count does).
        stores = context.resources.stores
        ref = upload_ref_from_metadata(dataset.tag, md)
        counts = verify_upload(stores.build(), ref, records, Redactor(stores.secret_values()))
        stream = iter(upload)
        try:
            sample = list(itertools.islice(stream, sample_size()))
        finally:
            getattr(stream, "close", lambda: None)()  # let the store release its file, cursor or download now
        short = md.get("http_short_pages")
        yield from evaluate(
            dataset,
            records,
            upload.upload_id,
            str(md.get("source", "api")),
            previous,
            sample,
            stores=counts,
            short_pages=int(short) if isinstance(short, (int, float)) else 0,
            reported_total=int(md["reported_total"]) if isinstance(md.get("reported_total"), (int, float)) else None,
        )
        yield from provenance(dataset, md)

    return _checks


def checks_for(sources: Iterable[Any]) -> list[dg.AssetChecksDefinition]:
    """Checks for every dataset of every Source."""
    return [build_checks(dataset) for source in sources for dataset in source.datasets]
