"""What a source declares about itself: its datasets, its resource (settings declared once), its pulls and how
the sandbox stands in for it. A source yields records page by page and knows nothing about storage, Dagster's
assets or automation: the asset factory (`secmetrics_dagster.assets`) turns a `Source` into assets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from ..collection.columns import BASE_COLUMNS, Column
from ..collection.errors import CollectionError
from ..collection.http import HttpSettings
from ..collection.settings import Setting, SettingsResource, env_setting
from ..collection.spool import Spool


class ClientStats(Protocol):
    """Counters of a pull's client (requests, retries, throttling...), shown as materialization metadata."""

    def as_metadata(self) -> dict[str, Any]: ...


class Client(Protocol):
    """What a pull talks to: an HttpSession, a falconpy wrapper, a DNS/RDAP client, boto3 clients."""

    stats: ClientStats

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...


MAX_FANOUT_WORKERS = 32


def fanout_setting(env: str, default: int, what: str, together: str) -> Any:
    """The `fanout_workers` field of a vendor that reads children of several parents at once (`fan_out`): 1 to
    MAX_FANOUT_WORKERS, documented as `what` ("Users' factors ... read at once"), the bounds, then `together`
    (how the workers share the vendor's rate limit)."""
    doc = f"{what} (1-{MAX_FANOUT_WORKERS}; 1: one after another). {together}"
    return env_setting(env, doc, default, low=1, high=MAX_FANOUT_WORKERS)


class VendorResource(SettingsResource):
    """A vendor's credentials, endpoint and paging, each field declared once with `env_setting`."""

    def client(self, settings: HttpSettings, logger: Any = None) -> Client:
        raise NotImplementedError

    def secret_values(self) -> list[str]:
        """The resolved values of the secret settings, for redaction; empty where unset."""
        values = []
        for name, setting in self.declared_settings():
            value = getattr(self, name, None)
            if setting.secret and isinstance(value, str) and value:
                values.append(value)
        return values


@dataclass
class Pull:
    """Everything a pull function gets: the vendor resource, its client, the spool, upstream inputs, the log."""

    resource: Any
    client: Any
    spool: Spool
    inputs: Mapping[str, Iterable[dict]]
    log: Any
    # A total the vendor reports but documents as eventually consistent: recorded and compared by the checks
    # (a WARN), where spool.expect() would fail the pull on any difference.
    reported_total: Optional[int] = None

    def report_total(self, count: int) -> None:
        self.reported_total = (self.reported_total or 0) + int(count)

    def checked_ids(
        self, tag: str, key: str, pattern: re.Pattern[str], what: str, valid: str, records: Optional[Iterable] = None
    ) -> Iterator[tuple[str, Any]]:
        """(id, record) of each record of the upstream dataset `tag` (or of `records`, the listing `tag`), in order,
        its `key` (a string or an integer, never a bool) checked whole against `pattern` first: it goes into a URL.
        Anything else fails the pull, e.g. "Okta: user id '…' in okta_users is not a valid Okta id"."""
        vendor = getattr(self.resource, "settings_title", "") or "The vendor"
        for record in self.inputs[tag] if records is None else records:
            raw = record.get(key) if isinstance(record, dict) else None
            value = str(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else ""
            if not pattern.fullmatch(value):
                shown = "" if raw is None else str(raw)
                raise CollectionError(f"{vendor}: {what} id {shown[:40]!r} in {tag} is not {valid}")
            yield value, record


class StatedCounts:
    """Children listed per parent, compared with the count each parent states (Okta's usersCount of a group,
    KnowBe4's scheduled_count of a phishing test). `report` then gives record_count_stable the stated total, and
    names in a warning the parents that differ; if any parent states no count, nothing is compared."""

    def __init__(self, parents: str, children: str, stated_as: str, stated_in: str):
        # e.g. "group(s)", "members", "usersCount", "okta_groups' usersCount (expand=stats)"
        self.parents, self.children, self.stated_as, self.stated_in = parents, children, stated_as, stated_in
        self.expected, self.uncounted, self.differing = 0, 0, []

    def add(self, parent_id: str, stated: Optional[int], listed: int) -> None:
        if stated is None:
            self.uncounted += 1
            return
        self.expected += stated
        if stated != listed:
            self.differing.append(f"{parent_id} ({listed} listed, {self.stated_as} {stated})")

    def report(self, pull: Pull, vendor: str, why: str) -> None:
        if self.uncounted:
            pull.log.info(
                f"{vendor}: {self.uncounted} {self.parents} carry no {self.stated_as}; {self.children} not compared"
            )
            return
        pull.report_total(self.expected)
        if self.differing:
            more = " ..." if len(self.differing) > 10 else ""
            pull.log.warning(
                f"{vendor}: {len(self.differing)} {self.parents} list another number of {self.children} than "
                f"{self.stated_in}: {', '.join(self.differing[:10])}{more}. {why}; compared by record_count_stable"
            )


PullFn = Callable[[Pull], None]
# What every view already has beside the declared columns.
RESERVED_COLUMNS = frozenset({"upload_timestamp", "tenancy", "upload_id", "json_data"})


@dataclass(frozen=True)
class DatasetSpec:
    """One asset of a source: its tag (asset key, file name, table name), what it holds and how it is pulled."""

    tag: str
    title: str
    description: str
    endpoint: str
    pull: Optional[PullFn] = None
    deps: tuple[str, ...] = ()
    # For asset checks: dotted paths every record must carry (what metrics rely on), whether an empty collection
    # is normal for this dataset, and how far its count may fall against the previous upload before the check
    # warns (None: COLLECTION_MAX_DROP).
    required_fields: tuple[str, ...] = ()
    allow_empty: bool = False
    max_drop: Optional[float] = None
    # Typed columns of the `<tag>_latest` / `<tag>_history` views and of the UI's Columns tab.
    columns: tuple[Column, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        clashes = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(BASE_COLUMNS)))
        if clashes:
            raise ValueError(f"{self.tag}: column name(s) declared twice or reserved: {', '.join(clashes)}")


@dataclass(frozen=True)
class Source:
    """A vendor, declared once: this feeds its assets, checks, resource, the README tables and the sandbox wiring."""

    group: str
    title: str
    docs_url: str
    resource: type[VendorResource]
    datasets: tuple[DatasetSpec, ...]
    # (sandbox base URL, sandbox token) -> the variables that point this source at the bundled sandbox.
    sandbox_env: Callable[[str, str], dict[str, str]]

    def __post_init__(self) -> None:
        unpulled = [d.tag for d in self.datasets if d.pull is None]
        if unpulled:
            raise ValueError(f"{self.group}: datasets without a pull function: {', '.join(unpulled)}")
        tags = [d.tag for d in self.datasets]
        if len(tags) != len(set(tags)):
            raise ValueError(f"{self.group}: a dataset tag is declared twice: {tags}")

    @property
    def resource_key(self) -> str:
        return self.group

    @property
    def env_vars(self) -> list[Setting]:
        return [setting for _name, setting in self.resource.declared_settings()]

    @property
    def required_env(self) -> list[str]:
        return [s.env for s in self.env_vars if s.required]

    @property
    def tags(self) -> list[str]:
        return [d.tag for d in self.datasets]

    def dataset(self, tag: str) -> DatasetSpec:
        return next(d for d in self.datasets if d.tag == tag)


class DatasetUnavailable(Exception):
    """A pull's verdict that this tenant cannot have the dataset (not licensed, not permitted): the asset is skipped.

    Not a failure and no backup is served: an ever-older backup would hide a licence or permission change,
    while a skip leaves the asset visibly unmaterialized (and stale to freshness) with the reason in the log.
    """
