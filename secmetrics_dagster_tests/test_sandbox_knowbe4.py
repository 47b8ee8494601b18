"""The KnowBe4 sandbox speaks the Reporting API: Bearer keys, page/per_page arrays, statuses, the burst limit."""

import requests

from secmetrics_dagster.sandbox import KnowBe4Volume, Sandbox

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
