"""KnowBe4: training enrollments, users (active and archived), phishing security tests and their recipients from
the KSAT Reporting API.

Pages are numbered from 1 with `per_page` up to 500 and end with an empty page (a short page followed by records
is asked for again, then counted as http_short_pages), a test's recipients on the page that completes its
scheduled_count; requests are paced under
KnowBe4's documented account-wide burst limit of 4 per second. Recipients are read for several phishing tests at
once (KNOWBE4_FANOUT_WORKERS) under that one pace, and spooled in the tests' order.

The package: client.py (settings, session, paging); the pulls and the declaration are here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Optional

from ...collection.columns import col
from ...collection.errors import CollectionError, http_status
from ...collection.threads import fan_out
from ..base import DatasetSpec, Pull, Source, StatedCounts
from .client import KnowBe4Resource, knowbe4_base_url, pages

__all__ = ["SOURCE", "KnowBe4Resource", "knowbe4_base_url", "pages"]

_PST_ID = re.compile(r"[0-9]{1,19}")  # KnowBe4 ids are integers; one goes into a URL path


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


def _tests(pull: Pull) -> Iterator[tuple[str, Optional[int]]]:
    """(pst_id, scheduled_count) of every collected phishing test; the id goes into a URL path: checked whole."""
    valid = "a KnowBe4 id (an integer)"
    for pst_id, test in pull.checked_ids("knowbe4_phishing_tests", "pst_id", _PST_ID, "phishing test", valid):
        scheduled = test.get("scheduled_count")
        yield pst_id, (scheduled if isinstance(scheduled, int) and not isinstance(scheduled, bool) else None)


def pull_phishing_recipients(pull: Pull) -> None:
    """Every test's recipients, KNOWBE4_FANOUT_WORKERS tests at a time, spooled in the tests' order; the first test
    is read alone, so a refused token is refused once. A failure names its test and ends the pull.

    A test's `scheduled_count` is the emails it scheduled, one per recipient (the PST schema of
    slacker775/knowbe4-kmsat-api config/jane/open-api.yaml; the demisto/content KnowBe4KMSAT samples list as many
    recipients as scheduled): the recipients listed are compared with it, a test that differs is warned about by
    name, and the total is reported to record_count_stable (as Okta's usersCount is). It also ends a test's
    listing once that many recipients are in, without asking for the empty page after them."""

    def recipients(test: tuple[str, Optional[int]]) -> Optional[list]:
        try:
            path = f"v1/phishing/security_tests/{test[0]}/recipients"
            return [r for page in pages(pull, path, expected=test[1]) for r in page]
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            return None  # deleted since knowbe4_phishing_tests was collected

    describe = lambda test: f"KnowBe4: recipients of phishing test {test[0]}"  # noqa: E731
    answers = fan_out(recipients, _tests(pull), pull.resource.fanout_workers, name="knowbe4", describe=describe)
    counts = StatedCounts("phishing test(s)", "recipients", "scheduled_count", "their scheduled_count")
    gone = 0
    for (pst_id, scheduled), found in answers:
        if found is None:
            gone += 1
            continue
        counts.add(pst_id, scheduled, len(found))
        for recipient in found:
            if isinstance(recipient, dict):
                recipient["_pst_id"] = int(pst_id)
            pull.spool.write(recipient)
    if gone:
        pull.log.warning(f"KnowBe4: {gone} phishing test(s) no longer exist (404); their recipients were skipped")
    counts.report(pull, "KnowBe4", "Recipients may have been left out of the listing")


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
