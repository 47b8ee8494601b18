"""KnowBe4: training enrollments and users (active and archived) from the KSAT Reporting API.

Pages are numbered from 1 with `per_page` up to 500 and end with a short page; requests are paced under
KnowBe4's documented account-wide burst limit of 4 per second.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Optional
from urllib.parse import urlencode

from ..collection.errors import CollectionError, ConfigError
from ..collection.http import HttpResponse, HttpSession, HttpSettings, normalize_base_url
from ..collection.settings import env_setting
from .base import DatasetSpec, Pull, Source, VendorResource

DEFAULT_ENDPOINT = "https://us.api.knowbe4.com/v1/training/enrollments"  # the seed's default
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 500  # KnowBe4 silently caps per_page here, which would end a larger-paged listing after one page
# The account-wide limit is 4/s and the two KnowBe4 assets may run at the same time: each takes half.
DEFAULT_REQUESTS_PER_SECOND = 2.0


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
        "Pace of each KnowBe4 asset; the two may run at once and KnowBe4 allows 4 per second per account.",
        DEFAULT_REQUESTS_PER_SECOND,
        low=0,
    )

    def validate_settings(self) -> None:
        if self.requests_per_second <= 0:
            raise ConfigError(f"KnowBe4: KNOWBE4_REQUESTS_PER_SECOND must be positive, got {self.requests_per_second}")

    def client(
        self, settings: HttpSettings, logger: Any = None, sleep: Callable[[float], None] = time.sleep
    ) -> HttpSession:
        rate = min(filter(None, (settings.max_requests_per_second, self.requests_per_second)))
        return HttpSession(
            "KnowBe4",
            knowbe4_base_url(self.endpoint),
            settings=dataclasses.replace(settings, max_requests_per_second=rate),
            headers={"Authorization": f"Bearer {self.token}"},
            auth_hint="Check KNOWBE4_TOKEN (a Reporting API token; the API needs a Platinum or Diamond subscription) "
            "and that KNOWBE4_ENDPOINT is your account's region (us, eu, ca, uk or de)",
            secrets=[self.token or ""],
            logger=logger,
            sleep=sleep,
        )


def _records(response: HttpResponse, path: str) -> list:
    body = response.json()
    if not isinstance(body, list):
        raise CollectionError(
            f"KnowBe4: GET /{path} answered with {type(body).__name__} where KnowBe4 sends a JSON "
            "array; a proxy or an API change is in the way"
        )
    return body


def pages(pull: Pull, path: str, **params: Any) -> Iterator[list]:
    """Pages 1, 2, … until one comes back shorter than per_page."""
    size = pull.resource.page_size
    state = {"page": 1, "seen": set()}

    def url(page: int) -> str:
        return f"{path}?{urlencode({**params, 'page': page, 'per_page': size})}"

    def next_url(response: HttpResponse) -> Optional[str]:
        records = _records(response, path)
        if response.digest in state["seen"]:
            return url(state["page"])  # the previous page served again: ask for this one once more
        state["seen"].add(response.digest)
        if len(records) < size:
            return None
        state["page"] += 1
        return url(state["page"])

    for response in pull.client.iter_pages(url(1), None, next_url):
        yield _records(response, path)


def pull_enrollments(pull: Pull) -> None:
    for page in pages(pull, "v1/training/enrollments"):
        pull.spool.extend(page)


def pull_users(pull: Pull) -> None:
    # A user archived between the two listings can appear in both; KnowBe4 offers no single listing of all users.
    for status in ("active", "archived"):
        for page in pages(pull, "v1/users", status=status):
            pull.spool.extend(page)


def _sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks): the seed's URL form."""
    return {"KNOWBE4_TOKEN": token, "KNOWBE4_ENDPOINT": f"{url}/v1/training/enrollments"}


SOURCE = Source(
    group="knowbe4",
    title="KnowBe4",
    docs_url="https://developer.knowbe4.com/rest/reporting",
    resource=KnowBe4Resource,
    datasets=(
        DatasetSpec(
            "knowbe4_enrollments",
            "Training enrollments",
            "Every training enrollment: user, campaign, module, status, enrollment/start/completion dates, "
            "time spent (archived users' included).",
            "GET /v1/training/enrollments",
            pull=pull_enrollments,
            required_fields=("enrollment_id", "status", "user.id"),
            allow_empty=True,
        ),
        DatasetSpec(
            "knowbe4_users",
            "Users",
            "Every user, active and archived (KnowBe4 lists them separately), with phish-prone percentage, "
            "risk score, manager and groups.",
            "GET /v1/users?status=active, then ?status=archived",
            pull=pull_users,
            required_fields=("id", "email", "status"),
        ),
    ),
    sandbox_env=_sandbox_env,
)
