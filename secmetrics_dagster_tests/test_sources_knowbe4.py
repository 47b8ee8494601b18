"""KnowBe4 assets end to end: page/per_page paging, archived users, pacing under 4 requests/s, faults, all four stores."""

import json
import logging
import time

import dagster as dg
import pytest
import requests

from secmetrics_dagster.collection import RunContext, Spool
from secmetrics_dagster.collection.errors import CollectionError, ConfigError
from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.sandbox import Fault, KnowBe4Volume, Sandbox
from secmetrics_dagster.sources import knowbe4 as kb4_source
from secmetrics_dagster.sources.base import Pull
from secmetrics_dagster.sources.knowbe4 import KnowBe4Resource, knowbe4_base_url

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import (
    failure_text,
    log_text,
    materialization_metadata,
    materialized_tags,
    pg_rows,
    store_counts,
    stored_file,
)

TAGS = ["knowbe4_enrollments", "knowbe4_users", "knowbe4_phishing_tests", "knowbe4_phishing_recipients"]
PAGE = 20  # the resource's page size in these tests


def pages_for(records: int) -> int:
    """Requests a page/per_page listing takes: its pages (full ones, maybe a short last one), then the empty one
    that ends it."""
    return -(-records // PAGE) + 1


def pages_counted(records: int) -> int:
    """Requests a listing whose size the caller knows takes (a test's recipients, its scheduled_count): a short page
    that completes the count ends it; only a listing that ends on a full page (or holds nothing) needs the empty
    page after it."""
    return -(-records // PAGE) + (1 if records % PAGE == 0 else 0)


@pytest.fixture
def box():
    with Sandbox(
        seed=3, token=SANDBOX_TOKEN, knowbe4=KnowBe4Volume(users=57, enrollments=123, burst_limit=0)
    ) as sandbox:
        yield sandbox


@pytest.fixture
def kb4(box) -> KnowBe4Resource:
    # Unpaced so the tests are quick; pacing has its own tests.
    return KnowBe4Resource(
        token=SANDBOX_TOKEN, endpoint=f"{box.url}/v1/training/enrollments", page_size=PAGE, requests_per_second=1000
    )


def run(resource, collection, stores, selection=None, **kwargs):
    return materialize_source(kb4_source.SOURCE, resource, collection, stores, selection=selection, **kwargs)


def listing(url, **params):
    records, page = [], 1
    while True:
        body = requests.get(
            url, params={**params, "page": page, "per_page": 500}, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}
        ).json()
        records += body
        if len(body) < 500:
            return records
        page += 1


def sandbox_counts(box) -> dict:
    tests = listing(f"{box.url}/v1/phishing/security_tests")
    per_test = [len(listing(f"{box.url}/v1/phishing/security_tests/{t['pst_id']}/recipients")) for t in tests]
    counts = {
        "knowbe4_enrollments": len(listing(f"{box.url}/v1/training/enrollments")),
        "knowbe4_users": sum(len(listing(f"{box.url}/v1/users", status=s)) for s in ("active", "archived")),
        "knowbe4_phishing_tests": len(tests),
        "knowbe4_phishing_recipients": sum(per_test),
        "recipients_per_test": per_test,
        "active_users": len(listing(f"{box.url}/v1/users", status="active")),
    }
    box.reset_stats()
    return counts


def test_every_knowbe4_asset_lands_in_all_four_stores_with_the_sandbox_counts(
    box, kb4, collection, all_stores, s3_client, pg_conn
):
    expected = sandbox_counts(box)
    assert (expected["knowbe4_enrollments"], expected["knowbe4_users"]) == (123, 57)
    assert expected["knowbe4_phishing_tests"] == 12 and expected["knowbe4_phishing_recipients"] > 12
    result = run(kb4, collection, all_stores)
    assert result.success, failure_text(result)
    for tag in TAGS:
        assert store_counts(all_stores, s3_client, pg_conn, tag) == dict.fromkeys(
            ["file", "s3", "postgres", "duckdb"], expected[tag]
        ), tag
        assert materialization_metadata(result, tag)["records"] == expected[tag]
    # 123 enrollments in pages of 20: six full pages, a short seventh and the empty eighth that ends it; users: 52
    # active (3 pages and the empty one) + 5 archived (1 and the empty one); 12 tests in one page and the empty one,
    # then each test's recipients in their own pages, without the empty page once its scheduled_count is in
    assert box.stats() == {
        "knowbe4.enrollments": 8,
        "knowbe4.users": 6,
        "knowbe4.security_tests": 2,
        "knowbe4.recipients": sum(pages_counted(n) for n in expected["recipients_per_test"]),
    }
    assert sum(pages_counted(n) for n in expected["recipients_per_test"]) < sum(
        pages_for(n) for n in expected["recipients_per_test"]
    )


def test_archived_users_are_collected_with_the_active_ones(box, kb4, collection, all_stores, pg_conn):
    archived = {u["id"] for u in listing(f"{box.url}/v1/users", status="archived")}
    assert archived and not archived & {
        u["id"] for u in listing(f"{box.url}/v1/users")
    }  # the default lists active only
    result = run(kb4, collection, all_stores, selection="knowbe4_users")
    assert result.success, failure_text(result)
    rows = pg_rows(pg_conn, all_stores.postgres_schema, "knowbe4_users_latest")
    assert {row[2]["id"] for row in rows if row[2]["status"] == "archived"} == archived
    assert len({row[2]["id"] for row in rows}) == len(rows) == 57


def test_requests_are_paced_under_the_documented_four_per_second(box):
    """The default pace, checked on the schedule the session keeps, without sleeping through it."""
    resource = KnowBe4Resource(token=SANDBOX_TOKEN, endpoint=box.url, page_size=20)
    sends = []
    http = resource.client(CollectionResource().http_settings(), sleep=lambda s: sends.append(time.monotonic() + s))
    with http:
        pull = Pull(resource, http, spool=None, inputs={}, log=logging.getLogger("test"))
        pages = list(kb4_source.pages(pull, "v1/training/enrollments"))
    assert sum(len(page) for page in pages) == 123 and len(pages) == 7
    assert http.settings.max_requests_per_second == 2.0
    assert len(sends) == 7  # every request after the first waited for its slot (the eighth: the empty page)
    gaps = [b - a for a, b in zip(sends, sends[1:])]
    assert min(gaps) >= 0.5 - 1e-3  # two per second per asset: both KnowBe4 assets together stay at 4/s
    assert http.stats.paced_seconds > 0


def test_the_burst_limit_429_is_waited_out_with_its_retry_after(collection, file_stores):
    # A burst limit of 2 a second against 6 unpaced pages: the sandbox's windows are whole seconds, and 6 requests
    # sent within one second fall in at most two of them, so one window sees a third request and answers 429.
    with Sandbox(seed=3, token=SANDBOX_TOKEN, knowbe4=KnowBe4Volume(users=57, burst_limit=2)) as box:
        greedy = KnowBe4Resource(token=SANDBOX_TOKEN, endpoint=box.url, page_size=10, requests_per_second=1000)
        result = run(greedy, collection, file_stores, selection="knowbe4_users")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "knowbe4_users")
    assert md["records"] == 57 and md["http_throttled"] >= 1 and md["http_waited_seconds"] >= 1


def test_an_auth_failure_fails_naming_the_variable(box, collection, file_stores):
    bad = KnowBe4Resource(token="revoked-kb4-token", endpoint=box.url, requests_per_second=1000)
    result = run(bad, collection, file_stores, selection="knowbe4_enrollments")
    assert not result.success
    text = failure_text(result)
    assert "HTTP 401" in text and "KNOWBE4_TOKEN" in text and "KNOWBE4_ENDPOINT" in text
    assert "revoked-kb4-token" not in text
    assert "knowbe4_enrollments" not in materialized_tags(result)


def test_a_malformed_page_is_retried_and_the_records_are_exact(box, kb4, collection, file_stores):
    box.add_fault(Fault(route="knowbe4.enrollments", kind="malformed", times=1, after=2))
    result = run(kb4, collection, file_stores, selection="knowbe4_enrollments")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "knowbe4_enrollments")
    assert md["records"] == 123 and md["http_retries"] == 1


def test_a_page_served_twice_is_asked_for_again_not_skipped(box, kb4, collection, file_stores):
    box.add_fault(Fault(route="knowbe4.enrollments", kind="repeat", times=1, after=2))
    result = run(kb4, collection, file_stores, selection="knowbe4_enrollments")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "knowbe4_enrollments")
    assert md["records"] == 123 and md["http_repeated_pages"] == 1


def test_a_record_left_out_of_a_mid_listing_page_once_is_recovered_by_asking_for_the_page_again(
    box, kb4, collection, file_stores
):
    # The sandbox's "short" fault leaves the last record out of the third page; page numbers move on past it.
    box.add_fault(Fault(route="knowbe4.enrollments", kind="short", times=1, after=2))
    result = run(kb4, collection, file_stores, selection="knowbe4_enrollments")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "knowbe4_enrollments")
    stored = json.loads(stored_file(file_stores, "knowbe4_enrollments").read_text())["data"]
    assert md["records"] == len({r["enrollment_id"] for r in stored}) == 123  # none lost, none twice
    assert md["http_short_pages"] == 0
    # pages 1-3, page 4 (records: page 3 lost one), page 3 again, pages 5-7 and the empty eighth
    assert box.stats() == {"knowbe4.enrollments": 9}


def test_a_page_short_twice_mid_listing_is_counted_warned_and_record_count_stable_warns(
    box, kb4, collection, file_stores
):
    # The third page short, the fourth whole (it shows the listing went on), the third short again when asked again.
    box.add_fault(Fault(route="knowbe4.enrollments", kind="short", times=1, after=2))
    box.add_fault(Fault(route="knowbe4.enrollments", kind="short", times=1, after=4))
    instance = dg.DagsterInstance.ephemeral()
    result = run(kb4, collection, file_stores, selection="knowbe4_enrollments", checks=True, instance=instance)
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "knowbe4_enrollments")
    assert md["records"] == 122 and md["http_short_pages"] == 1  # the rest of the listing is still collected
    warning = next(line for line in log_text(instance, result).splitlines() if "were asked for" in line)
    assert "returned 19 records where 20 were asked for" in warning and "page=3" in warning
    stable = next(e for e in result.get_asset_check_evaluations() if e.check_name == "record_count_stable")
    assert not stable.passed and stable.severity == dg.AssetCheckSeverity.WARN
    assert stable.metadata["short_pages"].value == 1 and "1 page(s) came back shorter" in stable.description


def test_a_short_last_page_ends_the_listing_after_one_empty_page(box, kb4, tmp_path):
    with kb4.client(CollectionResource().http_settings()) as http:
        pull = Pull(kb4, http, spool=None, inputs={}, log=logging.getLogger("kb4"))
        pages = list(kb4_source.pages(pull, "v1/users", status="archived"))
    assert [len(page) for page in pages] == [5] and http.stats.short_pages == 0
    assert box.stats() == {"knowbe4.users": 2}  # page 1 (5 of 20) and the empty page 2; page 1 not asked again


@pytest.mark.parametrize(
    "endpoint, base",
    [
        ("https://us.api.knowbe4.com/v1/training/enrollments", "https://us.api.knowbe4.com/"),
        ("https://eu.api.knowbe4.com", "https://eu.api.knowbe4.com/"),
        ("de.api.knowbe4.com/v1/", "https://de.api.knowbe4.com/"),
        ("http://127.0.0.1:8800/v1/users", "http://127.0.0.1:8800/"),
    ],
)
def test_knowbe4_endpoint_takes_the_seed_url_a_base_url_or_a_regional_host(endpoint, base):
    assert knowbe4_base_url(endpoint) == base


def test_a_page_size_knowbe4_would_silently_cap_is_refused():
    with pytest.raises(ConfigError, match="KNOWBE4_PAGE_SIZE must be between 1 and 500"):
        KnowBe4Resource(token="t", page_size=1000).check_settings()


def test_recipients_of_every_phishing_test_carry_its_pst_id_and_the_documented_results(
    box, kb4, collection, file_stores
):
    tests = listing(f"{box.url}/v1/phishing/security_tests")
    sent = {
        (t["pst_id"], r["recipient_id"])
        for t in tests
        for r in listing(f"{box.url}/v1/phishing/security_tests/{t['pst_id']}/recipients")
    }
    result = run(kb4, collection, file_stores, selection=["knowbe4_phishing_tests", "knowbe4_phishing_recipients"])
    assert result.success, failure_text(result)
    recipients = json.loads(stored_file(file_stores, "knowbe4_phishing_recipients").read_text())["data"]
    assert sorted((r["_pst_id"], r["recipient_id"]) for r in recipients) == sorted(sent)
    assert all(r["_pst_id"] == r["pst_id"] for r in recipients)
    documented = {"delivered_at", "opened_at", "clicked_at", "replied_at", "attachment_opened_at", "macro_enabled_at"}
    documented |= {"data_entered_at", "qr_code_scanned", "reported_at", "user"}
    assert all(documented <= set(r) and {"id", "email"} <= set(r["user"]) for r in recipients)


def test_a_phishing_test_id_that_is_not_an_integer_never_reaches_a_url(box, kb4, tmp_path):
    spool = Spool(RunContext("knowbe4_phishing_recipients", "acme"), tmp_path / "spool")
    with kb4.client(CollectionResource().http_settings()) as http:
        pull = Pull(
            kb4, http, spool, {"knowbe4_phishing_tests": [{"pst_id": "16000/../../users"}]}, logging.getLogger()
        )
        with pytest.raises(CollectionError, match="is not a KnowBe4 id"):
            kb4_source.pull_phishing_recipients(pull)
    spool.discard()
    assert box.stats() == {}


def test_recipients_of_a_test_deleted_since_the_listing_are_skipped_with_a_warning(box, kb4, tmp_path, caplog):
    [newest] = listing(f"{box.url}/v1/phishing/security_tests")[:1]
    spool = Spool(RunContext("knowbe4_phishing_recipients", "acme"), tmp_path / "spool")
    with kb4.client(CollectionResource().http_settings()) as http:
        pull = Pull(kb4, http, spool, {"knowbe4_phishing_tests": [{"pst_id": 99}, newest]}, logging.getLogger("kb4"))
        with caplog.at_level(logging.WARNING, logger="kb4"):
            kb4_source.pull_phishing_recipients(pull)
    snapshot = spool.close()
    assert snapshot.records == len(listing(f"{box.url}/v1/phishing/security_tests/{newest['pst_id']}/recipients"))
    assert "1 phishing test(s) no longer exist (404)" in caplog.text
    snapshot.discard()


def _recipients_pull(box, kb4, tmp_path, tests, caplog):
    spool = Spool(RunContext("knowbe4_phishing_recipients", "acme"), tmp_path / "spool")
    with kb4.client(CollectionResource().http_settings()) as http:
        pull = Pull(kb4, http, spool, {"knowbe4_phishing_tests": tests}, logging.getLogger("kb4"))
        with caplog.at_level(logging.INFO, logger="kb4"):
            kb4_source.pull_phishing_recipients(pull)
    snapshot = spool.close()
    snapshot.discard()
    return pull, snapshot.records


def test_recipients_are_compared_with_each_tests_scheduled_count_and_the_total_reported(box, kb4, tmp_path, caplog):
    tests = listing(f"{box.url}/v1/phishing/security_tests")[:3]
    pull, records = _recipients_pull(box, kb4, tmp_path, tests, caplog)
    assert records == sum(t["scheduled_count"] for t in tests) == pull.reported_total
    assert "scheduled_count" not in caplog.text


def test_a_test_listing_fewer_recipients_than_it_scheduled_is_warned_about_by_name(box, kb4, tmp_path, caplog):
    first, second = listing(f"{box.url}/v1/phishing/security_tests")[:2]
    claimed = {**second, "scheduled_count": second["scheduled_count"] + 3}
    pull, records = _recipients_pull(box, kb4, tmp_path, [first, claimed], caplog)
    assert pull.reported_total == records + 3  # record_count_stable then warns naming both counts
    assert (
        f"1 phishing test(s) list another number of recipients than their scheduled_count: {second['pst_id']} "
        f"({second['scheduled_count']} listed, scheduled_count {second['scheduled_count'] + 3})"
    ) in caplog.text


def test_tests_without_a_scheduled_count_are_not_compared(box, kb4, tmp_path, caplog):
    [first] = listing(f"{box.url}/v1/phishing/security_tests")[:1]
    uncounted = {k: v for k, v in first.items() if k != "scheduled_count"}
    pull, records = _recipients_pull(box, kb4, tmp_path, [uncounted], caplog)
    assert records == first["scheduled_count"] and pull.reported_total is None
    assert "1 phishing test(s) carry no scheduled_count" in caplog.text


def test_a_short_recipients_page_before_the_scheduled_count_is_in_does_not_end_the_listing(box, kb4, tmp_path, caplog):
    [test] = [t for t in listing(f"{box.url}/v1/phishing/security_tests") if t["scheduled_count"] > 2 * PAGE][:1]
    box.add_fault(Fault(route="knowbe4.recipients", kind="short", times=1))
    pull, records = _recipients_pull(box, kb4, tmp_path, [test], caplog)
    assert records == test["scheduled_count"] == pull.reported_total  # the page was asked for again, nothing lost
    assert "scheduled_count" not in caplog.text
