"""The KnowBe4 sandbox speaks the Reporting API: Bearer keys, page/per_page arrays, statuses, the burst limit."""

from datetime import UTC, datetime, timedelta

import requests

from secmetrics_dagster.sandbox import Fault, KnowBe4Volume, OktaVolume, Sandbox
from secmetrics_dagster.sandbox.okta import STATUSES

HEADERS = {"Authorization": "Bearer sandbox-token"}


def test_pages_count_from_one_and_per_page_is_capped_at_500():
    with Sandbox(knowbe4=KnowBe4Volume(users=10, enrollments=620, burst_limit=0)) as box:
        url = f"{box.url}/v1/training/enrollments"
        first = requests.get(url, params={"page": 1, "per_page": 1000}, headers=HEADERS).json()
        second = requests.get(url, params={"page": 2, "per_page": 1000}, headers=HEADERS).json()
        zero = requests.get(url, params={"page": 0}, headers=HEADERS)
    assert (len(first), len(second)) == (500, 120) and zero.status_code == 400
    assert {"enrollment_id", "status", "user", "module_name", "completion_date"} <= set(first[0])


def test_users_are_listed_as_active_by_default_and_archived_on_request():
    with Sandbox(knowbe4=KnowBe4Volume(users=40, burst_limit=0)) as box:
        url = f"{box.url}/v1/users"
        default = requests.get(url, params={"per_page": 500}, headers=HEADERS).json()
        archived = requests.get(url, params={"per_page": 500, "status": "archived"}, headers=HEADERS).json()
    assert {u["status"] for u in default} == {"active"} and {u["status"] for u in archived} == {"archived"}
    assert len(default) + len(archived) == 40 and all(u["archived_at"] for u in archived)


def test_a_wrong_key_gets_401_with_a_message():
    with Sandbox(knowbe4=KnowBe4Volume(burst_limit=0)) as box:
        answer = requests.get(f"{box.url}/v1/users", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401 and "API key" in answer.json()["message"]


def test_more_than_four_requests_a_second_get_429_with_retry_after():
    with Sandbox(knowbe4=KnowBe4Volume(users=5, burst_limit=4)) as box:
        with requests.Session() as session:
            answers = [session.get(f"{box.url}/v1/users", headers=HEADERS) for _ in range(9)]
    throttled = [a for a in answers if a.status_code == 429]
    assert throttled and all(a.headers["Retry-After"] == "1" for a in throttled)


def listing(box, path, **params):
    records, page = [], 1
    while True:
        body = requests.get(
            f"{box.url}{path}", params={**params, "page": page, "per_page": 500}, headers=HEADERS
        ).json()
        records += body
        if len(body) < 500:
            return records
        page += 1


def moment(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)


NOW = datetime.fromtimestamp(1_800_000_000, UTC)


def test_each_phishing_test_counts_what_its_recipients_did_within_the_last_year():
    with Sandbox(seed=4, knowbe4=KnowBe4Volume(users=60, phishing_tests=12, burst_limit=0, now=NOW.timestamp())) as box:
        tests = listing(box, "/v1/phishing/security_tests")
        recipients = {t["pst_id"]: listing(box, f"/v1/phishing/security_tests/{t['pst_id']}/recipients") for t in tests}
        unknown = requests.get(f"{box.url}/v1/phishing/security_tests/1/recipients", headers=HEADERS)
    assert len(tests) == 12 and unknown.status_code == 404
    fields = {"clicked_count": "clicked_at", "data_entered_count": "data_entered_at", "reported_count": "reported_at"}
    fields |= {
        "delivered_count": "delivered_at",
        "opened_count": "opened_at",
        "qr_code_scanned_count": "qr_code_scanned",
    }
    for test in tests:
        assert timedelta(0) < NOW - moment(test["started_at"]) < timedelta(days=365)
        assert test["scheduled_count"] == len(recipients[test["pst_id"]])
        for count, field in fields.items():
            assert test[count] == sum(1 for r in recipients[test["pst_id"]] if r[field]), count
    everyone = [r for rs in recipients.values() for r in rs]
    clicked = [r for r in everyone if r["clicked_at"]]
    assert 0 < len(clicked) < len(everyone) / 5 and any(r["data_entered_at"] for r in clicked)
    assert all(moment(r["clicked_at"]) >= moment(r["opened_at"]) for r in clicked)  # a click follows the open


def test_most_users_completed_training_within_a_year_and_some_did_not():
    with Sandbox(seed=4, knowbe4=KnowBe4Volume(users=60, enrollments=180, burst_limit=0, now=NOW.timestamp())) as box:
        enrollments = listing(box, "/v1/training/enrollments")
        users = listing(box, "/v1/users")
    trained = {
        e["user"]["id"]
        for e in enrollments
        if e["completion_date"] and NOW - moment(e["completion_date"]) <= timedelta(days=365)
    }
    assert all(moment(e["enrollment_date"]) <= NOW for e in enrollments)
    assert 0.5 < len(trained & {u["id"] for u in users}) / len(users) < 0.95


def test_knowbe4_users_are_the_okta_orgs_people_by_email():
    volume = dict(now=NOW.timestamp())
    with Sandbox(
        seed=4, knowbe4=KnowBe4Volume(users=30, burst_limit=0, **volume), okta=OktaVolume(users=30, **volume)
    ) as box:
        kb4 = listing(box, "/v1/users") + listing(box, "/v1/users", status="archived")
        okta = requests.get(
            f"{box.url}/api/v1/users",
            params={"search": " or ".join(f'status eq "{s}"' for s in STATUSES)},
            headers={"Authorization": "SSWS sandbox-token"},
        ).json()
    assert {u["email"] for u in kb4} == {u["profile"]["email"] for u in okta}


def test_the_short_fault_leaves_one_record_out_of_a_mid_listing_page_and_the_next_page_moves_on_past_it():
    with Sandbox(knowbe4=KnowBe4Volume(users=10, enrollments=60, burst_limit=0)) as box:
        url = f"{box.url}/v1/training/enrollments"

        def page(number):
            body = requests.get(url, params={"page": number, "per_page": 20}, headers=HEADERS).json()
            return [e["enrollment_id"] for e in body]

        whole = [page(n) for n in (1, 2, 3)]
        box.add_fault(Fault(route="knowbe4.enrollments", kind="short", times=1, after=1))
        faulted = [page(n) for n in (1, 2, 3)]
        again = page(2)
    assert faulted[0] == whole[0] and faulted[2] == whole[2]
    assert faulted[1] == whole[1][:19]  # one record left out; page 3 still starts after it
    assert again == whole[1]  # the fault spent: the page asked for again is whole
