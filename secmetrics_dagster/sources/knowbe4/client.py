"""KnowBe4 settings, session and paging: numbered pages that end on an empty one, paced under the account's limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Optional
from urllib.parse import urlencode

from ...collection.errors import CollectionError, ConfigError
from ...collection.http import HttpResponse, HttpSession, HttpSettings, normalize_base_url
from ...collection.settings import env_setting
from ..base import Pull, VendorResource, fanout_setting

DEFAULT_ENDPOINT = "https://us.api.knowbe4.com/v1/training/enrollments"  # the seed's default
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 500  # KnowBe4 silently caps per_page here, which would end a larger-paged listing after one page
# The account-wide limit is 4/s. The shipped dagster.yaml runs one step per vendor at a time (pool vendor_knowbe4);
# each asset takes half, so two at once (a raised pool limit) still stay under it.
DEFAULT_REQUESTS_PER_SECOND = 2.0
# Latency, not the pace, is what workers buy back: at 2 requests a second, two workers cover answers of up to a second.
DEFAULT_FANOUT_WORKERS = 2


def knowbe4_base_url(endpoint: str) -> str:
    """The seed's `https://us.api.knowbe4.com/v1/training/enrollments`, a base URL or a bare host → the API root."""
    try:
        return normalize_base_url(endpoint, strip_suffixes=("/v1/training/enrollments", "/v1/users", "/v1"))
    except CollectionError as exc:
        raise ConfigError(
            f"KnowBe4: KNOWBE4_ENDPOINT {endpoint!r} is not usable ({exc}); use your region's API, "
            "e.g. https://eu.api.knowbe4.com"
        ) from None


class KnowBe4Resource(VendorResource):
    """KnowBe4 Reporting API token and endpoint. The token enters config only as an EnvVar reference."""

    settings_title: ClassVar[str] = "KnowBe4"

    token: Optional[str] = env_setting(
        "KNOWBE4_TOKEN",
        "Reporting API token (Account Settings > Account Integrations > API), sent as `Authorization: Bearer …`.",
        required=True,
        secret=True,
    )
    endpoint: str = env_setting(
        "KNOWBE4_ENDPOINT",
        "Your account's Reporting API: the seed's enrollments URL or a base URL; regional "
        "hosts `us`, `eu`, `ca`, `uk`, `de` (`https://eu.api.knowbe4.com`), http or https.",
        DEFAULT_ENDPOINT,
    )
    page_size: int = env_setting(
        "KNOWBE4_PAGE_SIZE", "`per_page` of every listing (1-500).", DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE
    )
    requests_per_second: float = env_setting(
        "KNOWBE4_REQUESTS_PER_SECOND",
        "Pace of each KnowBe4 asset; two may run at once and KnowBe4 allows 4 per second per account.",
        DEFAULT_REQUESTS_PER_SECOND,
        low=0,
    )

    fanout_workers: int = fanout_setting(
        "KNOWBE4_FANOUT_WORKERS",
        DEFAULT_FANOUT_WORKERS,
        "Phishing tests whose recipients are read at once",
        "All of them keep to KNOWBE4_REQUESTS_PER_SECOND together.",
    )

    def validate_settings(self) -> None:
        if self.requests_per_second <= 0:
            raise ConfigError(f"KnowBe4: KNOWBE4_REQUESTS_PER_SECOND must be positive, got {self.requests_per_second}")

    def client(
        self, settings: HttpSettings, logger: Any = None, sleep: Callable[[float], None] = time.sleep
    ) -> HttpSession:
        return HttpSession(
            "KnowBe4",
            knowbe4_base_url(self.endpoint),
            settings=settings.paced(self.requests_per_second),
            headers={"Authorization": f"Bearer {self.token}"},
            auth_hint="Check KNOWBE4_TOKEN (a Reporting API token; the API needs a Platinum or Diamond subscription) "
            "and that KNOWBE4_ENDPOINT is your account's region (us, eu, ca, uk or de)",
            secrets=[self.token or ""],
            logger=logger,
            sleep=sleep,
            # The burst limit is the account's, whatever the endpoint: a 429 pauses every worker.
            rate_limit_family=lambda method, path: "account",
            pool_size=self.fanout_workers,
        )


def pages(pull: Pull, path: str, *, expected: Optional[int] = None, **params: Any) -> Iterator[list]:
    """Pages 1, 2, … until one comes back empty; a short page with records after it is asked for again.

    KnowBe4 sends no total and no next link. A page shorter than per_page is normally the last, but a page the API
    answered with a record left out is short too, and page numbers move on past that record: so the listing ends only
    on an empty page (public clients page until one, e.g. JupiterOne/graph-knowbe4 src/ProviderClient.ts,
    forEachPage; the Pagination section of developer.knowbe4.com was not readable here). A short page is held until
    the next one is in: empty, the listing ended there; with records, the short page lost some mid-listing and is
    asked for once more, and if it is still short it is counted (http_short_pages) and warned about, and the pull
    goes on with the page already received after it. That costs one request per listing, the empty page, unless
    the caller knows how many records the listing holds (`expected`: a phishing test's scheduled_count): a short
    page that brings the records received to that count ends the listing without the empty page.
    """
    size = pull.resource.page_size
    state = {"page": 1, "seen": set(), "received": 0}

    def url(page: int) -> str:
        return f"{path}?{urlencode({**params, 'page': page, 'per_page': size})}"

    def next_url(response: HttpResponse) -> Optional[str]:
        records = response.json_array("KnowBe4", path)
        if response.digest in state["seen"]:
            return url(state["page"])  # the previous page served again: ask for this one once more
        state["seen"].add(response.digest)
        if not records:
            return None
        state["received"] += len(records)
        if expected is not None and len(records) < size and state["received"] >= expected:
            return None  # short, and every record the caller expects is in: the end
        state["page"] += 1
        return url(state["page"])

    held: Optional[tuple[int, list]] = None  # a short page (its number, its records) until the next page is in
    for response in pull.client.iter_pages(url(1), None, next_url):
        records = response.json_array("KnowBe4", path)
        if held is not None:
            number, short = held
            held = None
            yield _asked_again(pull, path, url(number), short, size) if records else short
        if len(records) < size:
            held = (state["page"], records) if records else None
            continue
        yield records
    if held is not None:  # a short last page that completed `expected`
        yield held[1]


def _asked_again(pull: Pull, path: str, page_url: str, short: list, size: int) -> list:
    """A short page that records followed, asked for once more: the longer answer, and a count and a warning if
    that is still short of per_page."""
    again = pull.client.request("GET", page_url).json_array("KnowBe4", path)
    if len(again) >= size:
        return again
    pull.client.retrier.count("short_pages")
    pull.log.warning(
        f"KnowBe4: GET /{page_url} returned {len(again)} records where {size} were asked for (twice; "
        f"{len(short)} the first time), yet the next page has records: KnowBe4 may have left records out of this "
        "page, and they would be missing from this collection (counted as http_short_pages)"
    )
    return again if len(again) >= len(short) else short
