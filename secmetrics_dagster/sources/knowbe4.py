"""KnowBe4: training enrollments, users (active and archived), phishing security tests and their recipients from
the KSAT Reporting API.

Pages are numbered from 1 with `per_page` up to 500 and end with an empty page (a short page followed by records
is asked for again, then counted as http_short_pages); requests are paced under
KnowBe4's documented account-wide burst limit of 4 per second. Recipients are read for several phishing tests at
once (KNOWBE4_FANOUT_WORKERS) under that one pace, and spooled in the tests' order.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Optional
from urllib.parse import urlencode

from ..collection.columns import col
from ..collection.errors import CollectionError, ConfigError, http_status
from ..collection.http import HttpResponse, HttpSession, HttpSettings, normalize_base_url
from ..collection.settings import env_setting
from ..collection.threads import naming, ordered_map
from .base import DatasetSpec, Pull, Source, VendorResource

DEFAULT_ENDPOINT = "https://us.api.knowbe4.com/v1/training/enrollments"  # the seed's default
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 500  # KnowBe4 silently caps per_page here, which would end a larger-paged listing after one page
# The account-wide limit is 4/s. The shipped dagster.yaml runs one step per vendor at a time (pool vendor_knowbe4);
# each asset takes half, so two at once (a raised pool limit) still stay under it.
DEFAULT_REQUESTS_PER_SECOND = 2.0
# Latency, not the pace, is what workers buy back: at 2 requests a second, two workers cover answers of up to a second.
DEFAULT_FANOUT_WORKERS = 2
MAX_FANOUT_WORKERS = 32
_PST_ID = re.compile(r"[0-9]{1,19}")  # KnowBe4 ids are integers; one goes into a URL path


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

    fanout_workers: int = env_setting(
        "KNOWBE4_FANOUT_WORKERS",
        "Phishing tests whose recipients are read at once (1-32; 1: one after another); all of them keep to "
        "KNOWBE4_REQUESTS_PER_SECOND together.",
        DEFAULT_FANOUT_WORKERS,
        low=1,
        high=MAX_FANOUT_WORKERS,
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
            # The burst limit is the account's, whatever the endpoint: a 429 pauses every worker.
            rate_limit_family=lambda method, path: "account",
            pool_size=self.fanout_workers,
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
    """Pages 1, 2, … until one comes back empty; a short page with records after it is asked for again.

    KnowBe4 sends no total and no next link. A page shorter than per_page is normally the last, but a page the API
    answered with a record left out is short too, and page numbers move on past that record: so the listing ends only
    on an empty page (public clients page until one, e.g. JupiterOne/graph-knowbe4 src/ProviderClient.ts,
    forEachPage; the Pagination section of developer.knowbe4.com was not readable here). A short page is held until
    the next one is in: empty, the listing ended there; with records, the short page lost some mid-listing and is
    asked for once more, and if it is still short it is counted (http_short_pages) and warned about, and the pull
    goes on with the page already received after it. That costs one request per listing, the empty page.
    """
    size = pull.resource.page_size
    state = {"page": 1, "seen": set()}

    def url(page: int) -> str:
        return f"{path}?{urlencode({**params, 'page': page, 'per_page': size})}"

    def next_url(response: HttpResponse) -> Optional[str]:
        records = _records(response, path)
        if response.digest in state["seen"]:
            return url(state["page"])  # the previous page served again: ask for this one once more
        state["seen"].add(response.digest)
        if not records:
            return None
        state["page"] += 1
        return url(state["page"])

    held: Optional[tuple[int, list]] = None  # a short page (its number, its records) until the next page is in
    for response in pull.client.iter_pages(url(1), None, next_url):
        records = _records(response, path)
        if held is not None:
            number, short = held
            held = None
            yield _asked_again(pull, path, url(number), short, size) if records else short
        if len(records) < size:
            held = (state["page"], records) if records else None
            continue
        yield records
    if held is not None:  # not reached: the page after a short one either ends the listing or is handled above
        yield held[1]


def _asked_again(pull: Pull, path: str, page_url: str, short: list, size: int) -> list:
    """A short page that records followed, asked for once more: the longer answer, and a count and a warning if
    that is still short of per_page."""
    again = _records(pull.client.request("GET", page_url), path)
    if len(again) >= size:
        return again
    pull.client.retrier.count("short_pages")
    pull.log.warning(
        f"KnowBe4: GET /{page_url} returned {len(again)} records where {size} were asked for (twice; "
        f"{len(short)} the first time), yet the next page has records: KnowBe4 may have left records out of this "
        "page, and they would be missing from this collection (counted as http_short_pages)"
    )
    return again if len(again) >= len(short) else short


def pull_enrollments(pull: Pull) -> None:
    for page in pages(pull, "v1/training/enrollments"):
        pull.spool.extend(page)


def pull_users(pull: Pull) -> None:
    # A user archived between the two listings can appear in both; KnowBe4 offers no single listing of all users.
    for status in ("active", "archived"):
        for page in pages(pull, "v1/users", status=status):
            pull.spool.extend(page)


def pull_phishing_tests(pull: Pull) -> None:
    for page in pages(pull, "v1/phishing/security_tests"):
        pull.spool.extend(page)


def _pst_ids(pull: Pull) -> Iterator[str]:
    for test in pull.inputs["knowbe4_phishing_tests"]:
        raw = test.get("pst_id") if isinstance(test, dict) else None
        pst_id = str(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else ""
        if not _PST_ID.fullmatch(pst_id):
            raise CollectionError(f"KnowBe4: phishing test id {str(raw)[:40]!r} is not a KnowBe4 id (an integer)")
        yield pst_id


def pull_phishing_recipients(pull: Pull) -> None:
    """Every test's recipients, KNOWBE4_FANOUT_WORKERS tests at a time, spooled in the tests' order; the first test
    is read alone, so a refused token is refused once. A failure names its test and ends the pull."""

    def recipients(pst_id: str) -> tuple[str, Optional[list]]:
        try:
            return pst_id, [r for page in pages(pull, f"v1/phishing/security_tests/{pst_id}/recipients") for r in page]
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            return pst_id, None  # deleted since knowbe4_phishing_tests was collected

    failed = naming(lambda pst_id: f"KnowBe4: recipients of phishing test {pst_id}")
    tests = _pst_ids(pull)
    first = next(tests, None)
    answers = itertools.chain(
        ordered_map(recipients, iter([first] if first is not None else []), 1, failed=failed),
        ordered_map(recipients, tests, pull.resource.fanout_workers, name="knowbe4", failed=failed),
    )
    gone = 0
    for pst_id, found in answers:
        if found is None:
            gone += 1
            continue
        for recipient in found:
            if isinstance(recipient, dict):
                recipient["_pst_id"] = int(pst_id)
            pull.spool.write(recipient)
    if gone:
        pull.log.warning(f"KnowBe4: {gone} phishing test(s) no longer exist (404); their recipients were skipped")


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
            columns=(
                col("enrollment_id", "integer", "Enrollment id."),
                col("user.id", "integer", "Enrolled user (join to knowbe4_users.id)."),
                col("user.email", "text", "Enrolled user's email (join to Okta `profile_email`)."),
                col("user.first_name", "text", "Enrolled user's given name."),
                col("user.last_name", "text", "Enrolled user's family name."),
                col("campaign_name", "text", "Training campaign."),
                col("module_name", "text", "Training module or policy."),
                col("content_type", "text", "Store Purchase, Uploaded Policy or Uploaded Course."),
                col("status", "text", "Not Started, In Progress, Passed, Completed or Past Due (overdue)."),
                col("enrollment_date", "timestamp", "When the user was enrolled."),
                col("start_date", "timestamp", "When the user started the module."),
                col(
                    "completion_date",
                    "timestamp",
                    "When the user completed it (NULL: not completed): the training-within-365-days metric.",
                ),
                col("time_spent", "integer", "Seconds spent in the module."),
                col("policy_acknowledged", "boolean", "An uploaded policy was acknowledged."),
            ),
        ),
        DatasetSpec(
            "knowbe4_users",
            "Users",
            "Every user, active and archived (KnowBe4 lists them separately), with phish-prone percentage, "
            "risk score, manager and groups.",
            "GET /v1/users?status=active, then ?status=archived",
            pull=pull_users,
            required_fields=("id", "email", "status"),
            columns=(
                col("id", "integer", "User id (enrollments' and recipients' `user_id`)."),
                col("email", "text", "Email (join to Okta `profile_email`)."),
                col("first_name", "text", "Given name."),
                col("last_name", "text", "Family name."),
                col("status", "text", "active or archived."),
                col("employee_number", "text", "Employee number (HR join key)."),
                col("job_title", "text", "Job title."),
                col("department", "text", "Department."),
                col("location", "text", "Location."),
                col("division", "text", "Division."),
                col("manager_email", "text", "Manager's email."),
                col("phish_prone_percentage", "float", "Phish-prone percentage (0-100)."),
                col("current_risk_score", "float", "KnowBe4 risk score."),
                col("joined_on", "timestamp", "When the user was added to KnowBe4."),
                col("last_sign_in", "timestamp", "Last sign-in to the KnowBe4 training console."),
                col("employee_start_date", "timestamp", "Employment start date."),
                col("archived_at", "timestamp", "When the user was archived (NULL: active)."),
                col("provisioning_managed", "boolean", "Provisioned by user sync (SCIM or Active Directory)."),
                col("groups", "json", "Ids of the KnowBe4 groups the user is in."),
            ),
        ),
        DatasetSpec(
            "knowbe4_phishing_tests",
            "Phishing security tests",
            "Every phishing security test (PST) with its campaign, template, start, duration and the counts of "
            "recipients who opened, clicked, replied, opened an attachment, enabled macros, entered data, "
            "scanned a QR code or reported it.",
            "GET /v1/phishing/security_tests",
            pull=pull_phishing_tests,
            required_fields=("pst_id", "started_at", "status"),
            allow_empty=True,
            columns=(
                col("pst_id", "integer", "Phishing security test id (the recipients' `_pst_id`)."),
                col("campaign_id", "integer", "Phishing campaign the test belongs to."),
                col("name", "text", "Test name."),
                col("status", "text", "Test status (Closed once its duration has passed, ...)."),
                col("started_at", "timestamp", "When the test started: phishing metrics count tests of the last year."),
                col("duration", "integer", "How long the test ran (days)."),
                col("phish_prone_percentage", "float", "Share of recipients who fell for the test."),
                col("template.id", "integer", "Email template id."),
                col("template.name", "text", "Email template."),
                col("landing-page.name", "text", "Landing page."),
                col("groups", "json", "Target groups (group_id, name)."),
                col("categories", "json", "Template categories (category_id, name)."),
                col("scheduled_count", "integer", "Emails scheduled."),
                col("delivered_count", "integer", "Emails delivered."),
                col("opened_count", "integer", "Recipients who opened the email."),
                col("clicked_count", "integer", "Recipients who clicked a link."),
                col("replied_count", "integer", "Recipients who replied."),
                col("attachment_open_count", "integer", "Recipients who opened an attachment."),
                col("macro_enabled_count", "integer", "Recipients who enabled macros."),
                col("data_entered_count", "integer", "Recipients who entered data on the landing page."),
                col("qr_code_scanned_count", "integer", "Recipients who scanned a QR code."),
                col("reported_count", "integer", "Recipients who reported the email (Phish Alert Button)."),
                col("bounced_count", "integer", "Emails that bounced."),
            ),
        ),
        DatasetSpec(
            "knowbe4_phishing_recipients",
            "Phishing test recipients",
            "Per phishing security test, every recipient with when the email was delivered, opened, clicked, "
            "replied to, its attachment opened, macros enabled, data entered, QR code scanned or reported; each "
            "record carries `_pst_id`.",
            "GET /v1/phishing/security_tests/{pst_id}/recipients",
            pull=pull_phishing_recipients,
            deps=("knowbe4_phishing_tests",),
            required_fields=("recipient_id", "user.id", "_pst_id"),
            allow_empty=True,
            columns=(
                col("recipient_id", "integer", "Recipient id (unique within the test)."),
                col("_pst_id", "integer", "Phishing security test (join to knowbe4_phishing_tests.pst_id)."),
                col("user.id", "integer", "Recipient user (join to knowbe4_users.id)."),
                col("user.email", "text", "Recipient's email (join to Okta `profile_email`)."),
                col("user.first_name", "text", "Recipient's given name."),
                col("user.last_name", "text", "Recipient's family name."),
                col("template.name", "text", "Email template the recipient got."),
                col("scheduled_at", "timestamp", "When the email was scheduled."),
                col("delivered_at", "timestamp", "When it was delivered (NULL: not delivered)."),
                col("opened_at", "timestamp", "When the recipient opened it."),
                col("clicked_at", "timestamp", "When the recipient clicked a link: a phishing failure."),
                col("replied_at", "timestamp", "When the recipient replied: a failure."),
                col("attachment_opened_at", "timestamp", "When the recipient opened the attachment: a failure."),
                col("macro_enabled_at", "timestamp", "When the recipient enabled macros: a failure."),
                col("data_entered_at", "timestamp", "When the recipient entered data: a failure."),
                col(
                    "qr_code_scanned", "timestamp", "When the recipient scanned the QR code (a time, despite the name)."
                ),
                col("reported_at", "timestamp", "When the recipient reported the email."),
                col("bounced_at", "timestamp", "When the email bounced."),
            ),
        ),
    ),
    sandbox_env=_sandbox_env,
)
