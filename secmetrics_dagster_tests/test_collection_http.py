"""The shared HTTP layer against the sandbox: retries, Retry-After, budgets, errors that name their cause."""

import email.utils
import time

import pytest

from secmetrics_dagster.collection import AuthError, CollectionError, HttpSession, HttpSettings
from secmetrics_dagster.collection.http import normalize_base_url, parse_retry_after, redact_url
from secmetrics_dagster.sandbox import Fault

from .conftest import SANDBOX_TOKEN

FAST = HttpSettings(read_timeout=0.5, connect_timeout=2, max_retries=3, backoff_base=0.01, max_total_wait=10)
ORGS = ("rest/orgs", {"version": "2024-10-15", "limit": 10})


def session(sandbox, settings=FAST, token=SANDBOX_TOKEN, sleeps=None):
    return HttpSession(
        "Snyk",
        sandbox.url,
        settings=settings,
        headers={"Authorization": f"token {token}"},
        auth_hint="Check SNYK_TOKEN",
        secrets=[token],
        sleep=(sleeps.append if sleeps is not None else time.sleep),
    )


@pytest.mark.parametrize("kind", ["429", "500", "503", "timeout", "malformed", "truncated"])
def test_transient_faults_are_retried_and_counted(sandbox, kind):
    sandbox.add_fault(Fault(route="snyk.orgs", kind=kind, times=1, retry_after=0, delay=2.0))
    http = session(sandbox)
    body = http.get_json(*ORGS)
    assert len(body["data"]) == 2
    assert http.stats.requests == 2 and http.stats.retries == 1
    assert http.stats.throttled == (1 if kind == "429" else 0)
    assert http.stats.bytes > 0


def test_retry_after_is_honoured_exactly(sandbox):
    sandbox.add_fault(Fault(route="snyk.orgs", kind="429", times=1, retry_after=7))
    sleeps = []
    http = session(sandbox, sleeps=sleeps)
    http.get_json(*ORGS)
    assert sleeps == [7.0]


def test_backoff_grows_exponentially_with_jitter(sandbox):
    sandbox.add_fault(Fault(route="snyk.orgs", kind="500", times=3))
    sleeps = []
    settings = HttpSettings(max_retries=3, backoff_base=1.0, max_total_wait=100)
    session(sandbox, settings=settings, sleeps=sleeps).get_json(*ORGS)
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0.5 * 2**attempt <= delay <= 2**attempt


def test_persistent_failure_names_endpoint_cause_and_attempts(sandbox):
    sandbox.add_fault(Fault(route="snyk.orgs", kind="500", times=0))
    with pytest.raises(CollectionError) as info:
        session(sandbox).get_json(*ORGS)
    message = str(info.value)
    assert "Snyk: GET" in message and "/rest/orgs" in message
    assert "failed after 4 attempts" in message and "HTTP 500" in message
    assert info.value.status == 500  # callers branch on the status, not on the message


@pytest.mark.parametrize("kind,status", [("404", 404), ("timeout", None), ("malformed", 200)])
def test_errors_carry_the_status_of_the_answer_that_ended_the_pull(sandbox, kind, status):
    sandbox.add_fault(Fault(route="snyk.orgs", kind=kind, times=0, delay=2.0))
    with pytest.raises(CollectionError) as info:
        session(sandbox).get_json(*ORGS)
    assert info.value.status == status


def test_persistent_malformed_json_fails_clearly(sandbox):
    sandbox.add_fault(Fault(route="snyk.orgs", kind="malformed", times=0))
    with pytest.raises(CollectionError, match="malformed JSON"):
        session(sandbox).get_json(*ORGS)


def test_persistent_truncated_body_fails_clearly(sandbox):
    sandbox.add_fault(Fault(route="snyk.orgs", kind="truncated", times=0))
    with pytest.raises(CollectionError, match="body cut short"):
        session(sandbox).get_json(*ORGS)


def test_a_retry_after_beyond_the_wait_budget_fails_at_once(sandbox):
    sandbox.add_fault(Fault(route="snyk.orgs", kind="429", times=0, retry_after=3600))
    sleeps = []
    with pytest.raises(CollectionError, match="retry budget of 10s"):
        session(sandbox, sleeps=sleeps).get_json(*ORGS)
    assert sleeps == []


@pytest.mark.parametrize("kind,status", [("401", 401), ("403", 403)])
def test_auth_failures_are_not_retried_and_say_what_to_check(sandbox, kind, status):
    sandbox.add_fault(Fault(route="snyk.orgs", kind=kind, times=0))
    http = session(sandbox)
    with pytest.raises(AuthError) as info:
        http.get_json(*ORGS)
    assert f"HTTP {status}" in str(info.value) and "Check SNYK_TOKEN" in str(info.value)
    assert info.value.status == status and http.stats.requests == 1


def test_a_wrong_token_is_refused_and_never_echoed(sandbox):
    with pytest.raises(AuthError) as info:
        session(sandbox, token="wrong-token-value-123").get_json(*ORGS)
    assert "Authentication" in str(info.value) and "wrong-token-value-123" not in str(info.value)


def test_repeated_pages_are_dropped_and_counted(sandbox):
    sandbox.add_fault(Fault(route="snyk.issues", kind="repeat", times=1, after=2))
    http = session(sandbox)
    org = http.get_json(*ORGS)["data"][0]["id"]
    ids = []
    for page in http.iter_pages(
        f"rest/orgs/{org}/issues",
        {"version": "2024-10-15", "limit": 10},
        lambda r: ("/rest" + r.json()["links"]["next"]) if r.json()["links"].get("next") else None,
    ):
        ids.extend(item["id"] for item in page.json()["data"])
    assert len(ids) == len(set(ids)) == 57
    assert http.stats.repeated_pages == 1


def test_a_next_link_that_keeps_coming_back_stops_the_pull(sandbox):
    sandbox.add_fault(Fault(route="snyk.issues", kind="repeat", times=0, after=1))
    http = session(sandbox)
    org = http.get_json(*ORGS)["data"][0]["id"]
    with pytest.raises(CollectionError, match="pagination loop"):
        for _ in http.iter_pages(
            f"rest/orgs/{org}/issues",
            {"version": "2024-10-15", "limit": 10},
            lambda r: "/rest" + r.json()["links"]["next"],
        ):
            pass


def test_retry_after_forms_seconds_http_date_and_epoch():
    now = 1_700_000_000.0
    assert parse_retry_after("5", now) == 5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after(str(int(now + 12)), now) == 12  # CrowdStrike's epoch form
    assert parse_retry_after("soon", now) is None


def test_credentials_in_urls_are_masked():
    assert redact_url("https://u:pw@h.example/x?api_key=abc&page=2") == "https://h.example/x?api_key=%2A%2A%2A&page=2"


@pytest.mark.parametrize(
    "value,expected",
    [
        ("api.snyk.io", "https://api.snyk.io/"),
        ("https://api.eu.snyk.io/rest/", "https://api.eu.snyk.io/"),
        ("http://127.0.0.1:8800", "http://127.0.0.1:8800/"),
        ("https://proxy.corp/snyk/v1", "https://proxy.corp/snyk/"),
    ],
)
def test_base_urls_accept_hosts_http_https_and_prefixes(value, expected):
    assert normalize_base_url(value, strip_suffixes=("/rest", "/v1")) == expected


def test_pacing_spaces_requests_to_the_configured_rate(sandbox):
    sleeps = []
    http = session(sandbox, settings=HttpSettings(max_requests_per_second=4), sleeps=sleeps)
    for _ in range(3):
        http.get_json(*ORGS)
    # the fake sleep does not advance the clock, so the slots show as 1/4 s and 2/4 s ahead
    assert len(sleeps) == 2 and 0.15 <= sleeps[0] <= 0.25 and 0.4 <= sleeps[1] <= 0.5


def test_an_epoch_reset_is_measured_from_the_servers_date_not_the_local_clock():
    # The server's clock is an hour behind ours: X-Rate-Limit-Reset (Okta) is 30 s after the server's Date.
    server_now = time.time() - 3600
    headers = {
        "X-Rate-Limit-Reset": str(int(server_now) + 30),
        "Date": email.utils.formatdate(int(server_now), usegmt=True),
    }
    http = HttpSession("Okta", "http://127.0.0.1:9", retry_after_headers=("X-Rate-Limit-Reset", "Retry-After"))
    assert http._retry_after(headers) == 30.0
    # Without a Date the local clock is all there is (the reset looks long past: retry at once).
    assert http._retry_after({"X-Rate-Limit-Reset": headers["X-Rate-Limit-Reset"]}) == 0.0


def test_the_wait_budget_is_per_request_so_a_long_pull_throttled_now_and_then_goes_on(sandbox):
    # Each request waits 6 s (Retry-After) once; the budget is 10 s. Two requests wait 12 s in all and succeed.
    sleeps = []
    http = session(sandbox, sleeps=sleeps)
    for _ in range(2):
        sandbox.add_fault(Fault(route="snyk.orgs", kind="429", times=1, retry_after=6))
        http.get_json(*ORGS)
    assert sleeps == [6.0, 6.0] and http.stats.waited_seconds == 12.0
