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

from ...collection.errors import CollectionError, http_status
from ...collection.threads import fan_out
from ..base import Pull, StatedCounts
from ..catalog import declare_source
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


SOURCE = declare_source(__name__, "datasets.yaml", KnowBe4Resource, sandbox_env=_sandbox_env)
