"""How each Falcon collection is walked: host ids by offset, Spotlight by its `after` cursor with a watermark to
resume from when the cursor expires, and agent ids in batches for Zero Trust assessments."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Optional

from ...collection.errors import CollectionError
from ..base import Pull
from .api import DEVICES, SPOTLIGHT, VENDOR, Endpoint, FalconApiError, body_list, pagination

if TYPE_CHECKING:
    from .client import FalconClient

# The seed collector's filter: vulnerabilities with a CVE seen in the last 14 days.
DEFAULT_SPOTLIGHT_FILTER = "cve.id:!['']+last_seen_within:'14'"
SPOTLIGHT_FACETS = ("cve", "host_info", "remediation")
SPOTLIGHT_SORT = "created_timestamp|asc"  # immutable and range-filterable: the watermark a restart resumes from
CURSOR_RESTARTS_WITHOUT_PROGRESS = 3
REPEATED_PAGES_ALLOWED = 3
_AID = re.compile(r"[0-9a-fA-F]{32}")

# Falcon refuses an aged-out `after` cursor with HTTP 404 and this message in errors[] (the answer quoted in
# https://github.com/elastic/integrations/issues/19206; the failure reported in
# https://github.com/elastic/integrations/issues/14670). No source shows another status for it, so no other is
# taken for expiry.
_CURSOR_EXPIRED = re.compile(r"search context expired|'after' key no longer valid", re.IGNORECASE)


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unless_short(
    pull: Pull,
    client: FalconClient,
    endpoint: Endpoint,
    params: dict[str, Any],
    body: dict,
    *,
    limit: int,
    records: Callable[[dict], int],
    more: Callable[[dict], bool],
) -> dict:
    """The answer to use for one page: a page with fewer than `limit` records after which `more` are to come is
    asked for once more, and the longer answer used; still short, it is counted (http_short_pages) and warned
    about. Falcon's page is a window on the results and its pointer moves past whatever the page left out, so a
    record missing from a page in the middle would be lost for good (the same rule as HttpSession.iter_pages with
    a page_size, for the listings falconpy calls)."""
    first = records(body)
    if first >= limit or not more(body):
        return body
    again = client.call(endpoint, **params)
    count = records(again)
    if count < limit and more(again):
        client.retrier.count("short_pages")
        pull.log.warning(
            f"{VENDOR}: {endpoint.method} {endpoint.path} returned {count} records where {limit} were asked for "
            f"(twice; {first} the first time), yet more are to come: Falcon may have left records out of this page, "
            "and they would be missing from this collection (counted as http_short_pages)"
        )
    return again if count >= first else body


def host_id_batches(pull: Pull, client: FalconClient) -> Iterator[list[str]]:
    """Host ids, page by page, each id once, in batches for the details call.

    The scroll query's `offset` is a pointer: absent on the first call, then meta.pagination.offset of the previous
    answer (falconpy's hosts.py, query_devices_by_filter_scroll); done once `total` ids are in or a page is empty.
    It "expires after 2 minutes" (same docstring): the ids of a page are fetched in detail before the next page.
    A page shorter than `limit` before `total` ids are in is asked for again (unless_short); the count is checked
    against `total` when the pull ends (spool.expect).
    """
    resource = pull.resource
    seen: set[str] = set()
    pointer: Optional[str] = None
    total, repeats = None, 0

    def ids_of(body: dict) -> list[str]:
        return [i for i in body_list(body, DEVICES) if isinstance(i, str)]

    def more(body: dict) -> bool:
        """A pointer, and fewer ids than the total even with this page's."""
        after = pagination(body).get("offset")
        reported = pagination(body).get("total")
        expected = reported if isinstance(reported, int) else total
        return bool(after) and isinstance(expected, int) and len(seen | set(ids_of(body))) < expected

    while True:
        params: dict[str, Any] = {"limit": resource.hosts_limit}
        if pointer:
            params["offset"] = pointer
        body = client.call(DEVICES, **params)
        reported = pagination(body).get("total")
        if total is None:
            if not isinstance(reported, int):
                raise CollectionError(f"{VENDOR}: {DEVICES.path} answered without meta.pagination.total")
            total = reported
            pull.spool.expect(total)
        body = unless_short(
            pull,
            client,
            DEVICES,
            params,
            body,
            limit=resource.hosts_limit,
            records=lambda b: len(ids_of(b)),
            more=more,
        )
        ids = ids_of(body)
        reported = pagination(body).get("total")
        new = [i for i in dict.fromkeys(ids) if i not in seen]
        if ids and not new:
            # A page we already had (a replay): ask for the same pointer again.
            repeats += 1
            client.retrier.count("repeated_pages")
            if repeats > REPEATED_PAGES_ALLOWED:
                raise CollectionError(
                    f"{VENDOR}: {DEVICES.path} keeps answering with hosts already received; the pull stopped "
                    "rather than loop."
                )
            pull.log.warning(f"{VENDOR}: {DEVICES.path} served only hosts already received; asking again")
            continue
        repeats = 0
        seen.update(new)
        yield from chunks(new, resource.details_batch)
        pointer = pagination(body).get("offset")
        if not ids or not isinstance(pointer, str) or not pointer:
            return
        if len(seen) >= (reported if isinstance(reported, int) else total):
            return


def agent_id_batches(pull: Pull, size: int) -> Iterator[list[str]]:
    """The agent ids of the upstream `crowdstrike_hosts`, in batches; each is checked, it goes into a query string."""
    batch: list[str] = []
    for aid, _host in pull.checked_ids("crowdstrike_hosts", "device_id", _AID, "host", "a Falcon agent id"):
        batch.append(aid)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _parse_time(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class CursorExpired(Exception):
    pass


def cursor_expired(error: FalconApiError) -> bool:
    return error.status == 404 and any(_CURSOR_EXPIRED.search(m) for m in error.messages)


class _Watermark:
    """The last created_timestamp handed out and the ids handed out at that instant: where a restart resumes."""

    def __init__(self) -> None:
        self.moment: Optional[datetime] = None
        self.text = ""
        self.ids: set[Any] = set()

    def fresh(self, page: list) -> tuple[list[dict], int]:
        """The records of a page not handed out yet, and how many lay before the watermark (out of order)."""
        fresh, out_of_order = [], 0
        for record in page:
            if not isinstance(record, dict):
                raise CollectionError(f"{VENDOR}: {SPOTLIGHT.path} returned a non-object vulnerability")
            created = _parse_time(record.get("created_timestamp"))
            if created is None:
                raise CollectionError(
                    f"{VENDOR}: vulnerability {str(record.get('id'))[:80]} has no valid "
                    "created_timestamp; the pull cannot keep its place without it."
                )
            if self.moment is not None and created < self.moment:
                out_of_order += 1  # sorted ascending, so handed out already (a replayed page) or unsorted
                continue
            if self.moment is not None and created == self.moment and record.get("id") in self.ids:
                continue  # the instant a restart resumes from: handed out before it
            if self.moment is None or created > self.moment:
                self.moment, self.text, self.ids = created, record["created_timestamp"], set()
            self.ids.add(record.get("id"))
            fresh.append(record)
        return fresh, out_of_order


def _spotlight_records(body: dict) -> int:
    return len(body_list(body, SPOTLIGHT))


def _spotlight_more(served: int, body: dict) -> bool:
    """An `after` cursor, and fewer records than the query's total even with this page's, `served` the records of
    its pages before this one (new findings may raise the total while a pull runs)."""
    total = pagination(body).get("total")
    return bool(pagination(body).get("after")) and (
        not isinstance(total, int) or served + _spotlight_records(body) < total
    )


def vulnerability_pages(pull: Pull, client: FalconClient) -> Iterator[list[dict]]:
    """Spotlight pages, sorted by created_timestamp, each record once: when the `after` cursor expires, the query
    starts again from the last created_timestamp handed out (>=), skipping the records already handed out at it."""
    resource = pull.resource
    base_filter = resource.spotlight_filter.strip() or DEFAULT_SPOTLIGHT_FILTER
    mark = _Watermark()
    fruitless_restarts = 0
    while True:
        query = base_filter if mark.moment is None else f"({base_filter})+created_timestamp:>='{mark.text}'"
        after: Optional[str] = None
        handed_out = 0
        served = 0  # records this query's pages held, before the current one
        try:
            while True:
                params: dict[str, Any] = {
                    "filter": query,
                    "limit": resource.spotlight_limit,
                    "sort": SPOTLIGHT_SORT,
                    "facet": list(SPOTLIGHT_FACETS),
                }
                if after:
                    params["after"] = after
                try:
                    body = client.call(SPOTLIGHT, **params)
                    # A short page before the end is asked for again with the same cursor: no source says whether
                    # Falcon answers a reused `after` with the same page; an expired one is handled like any other.
                    body = unless_short(
                        pull,
                        client,
                        SPOTLIGHT,
                        params,
                        body,
                        limit=resource.spotlight_limit,
                        records=_spotlight_records,
                        more=functools.partial(_spotlight_more, served),
                    )
                except FalconApiError as exc:
                    if after and cursor_expired(exc):
                        raise CursorExpired(str(exc)) from None
                    raise
                page = body_list(body, SPOTLIGHT)
                served += len(page)
                total = pagination(body).get("total")
                if mark.moment is None and after is None and isinstance(total, int):
                    # meta.pagination.total of the whole query (the combined endpoint's pagination block: limit,
                    # total, after): the progress lines' percentage and a WARN when fewer arrive. Soft, because new
                    # findings can match the filter while a long pull runs.
                    pull.report_total(total)
                fresh, out_of_order = mark.fresh(page)
                if out_of_order and fresh:
                    raise CollectionError(
                        f"{VENDOR}: {SPOTLIGHT.path} did not return vulnerabilities in "
                        "created_timestamp order; the pull stopped rather than risk gaps or duplicates."
                    )
                if out_of_order:
                    client.retrier.count("repeated_pages")
                    pull.log.warning(f"{VENDOR}: {SPOTLIGHT.path} served a page already received; skipped it")
                handed_out += len(fresh)
                yield fresh
                after = pagination(body).get("after") or None
                if not after or not page:
                    return
        except CursorExpired as expired:
            fruitless_restarts = 0 if handed_out else fruitless_restarts + 1
            if fruitless_restarts > CURSOR_RESTARTS_WITHOUT_PROGRESS:
                raise CollectionError(
                    f"{VENDOR}: the Spotlight cursor keeps expiring before a page arrives "
                    f"({expired}). Lower FALCON_SPOTLIGHT_LIMIT or try again later."
                ) from None
            pull.log.warning(
                f"{VENDOR}: the Spotlight `after` cursor expired ({expired}); resuming from "
                f"created_timestamp {mark.text or '(start)'} with {pull.spool.count} records kept"
            )
