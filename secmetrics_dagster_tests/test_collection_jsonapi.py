"""JSON:API listings: links.next, the self-looping last page, a path prefix the links leave out, the data list."""

import json

import pytest

from secmetrics_dagster.collection import CollectionError, HttpSession, HttpSettings, jsonapi
from secmetrics_dagster.collection.http import HttpResponse
from secmetrics_dagster.sandbox import Fault

from .conftest import SANDBOX_TOKEN


def _answer(body):
    return HttpResponse(200, {}, json.dumps(body).encode(), "https://api.example/rest/things", body)


@pytest.mark.parametrize(
    "nxt, prefix, expected",
    [
        ("/orgs?starting_after=x", "/rest", "/rest/orgs?starting_after=x"),
        ("orgs?starting_after=x", "/rest", "/rest/orgs?starting_after=x"),
        ("/rest/orgs?starting_after=x", "/rest", "/rest/orgs?starting_after=x"),  # not prefixed twice
        ("/restful?x", "/rest", "/rest/restful?x"),  # a prefix is a whole segment
        ("https://api.example/rest/orgs?x", "/rest", "https://api.example/rest/orgs?x"),
        ("/orgs?x", "", "/orgs?x"),  # no prefix: the link as sent
    ],
)
def test_the_next_link_gets_the_prefix_it_lacks(nxt, prefix, expected):
    assert jsonapi.next_link(_answer({"data": [{"id": 1}], "links": {"next": nxt}}), prefix) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"id": 1}], "links": {}},
        {"data": [{"id": 1}]},
        {"data": [{"id": 1}], "links": {"next": None}},
        {"data": [], "links": {"next": "/orgs?starting_after=z"}},  # an empty page ends the listing
        {"data": [{"id": 1}], "links": {"self": "/orgs?a=1", "next": "/orgs?a=1"}},  # pysnyk#212: next is self
        ["not", "an", "object"],
        None,
    ],
)
def test_the_listing_ends_without_a_next_link_on_an_empty_page_or_a_next_link_to_itself(body):
    assert jsonapi.next_link(_answer(body), "/rest") is None


def _session(sandbox):
    settings = HttpSettings(read_timeout=5, connect_timeout=2, max_retries=2, backoff_base=0.01)
    return HttpSession("Snyk", sandbox.url, settings=settings, headers={"Authorization": f"token {SANDBOX_TOKEN}"})


def _org(http):
    return http.get_json("rest/orgs", {"version": "2024-10-15", "limit": 10})["data"][0]["id"]


def test_pages_walks_a_listing_by_its_prefixed_links_and_yields_each_data_list(sandbox):
    http = _session(sandbox)
    query = {"version": "2024-10-15", "limit": 10}
    pages = list(jsonapi.pages(http, f"rest/orgs/{_org(http)}/issues", query, 10, prefix="/rest"))
    assert [len(page) for page in pages] == [10, 10, 10, 10, 10, 7]
    ids = [issue["id"] for page in pages for issue in page]
    assert len(ids) == len(set(ids)) == 57


def test_pages_asks_again_for_a_short_page_with_a_next_link_and_counts_it_when_it_stays_short(sandbox):
    sandbox.add_fault(Fault(route="snyk.issues", kind="short", times=2, after=1))
    http = _session(sandbox)
    query = {"version": "2024-10-15", "limit": 10}
    ids = [i["id"] for page in jsonapi.pages(http, f"rest/orgs/{_org(http)}/issues", query, 10, "/rest") for i in page]
    assert http.stats.short_pages == 1
    assert len(ids) == len(set(ids)) == 56  # the record the page left out twice is lost, and said so


def test_an_answer_without_a_data_list_fails_the_pull_naming_the_vendor_and_the_path():
    class _OneAnswer:
        vendor = "Tool"

        def iter_pages(self, path, query, next_url, *, page_size, items):
            assert (page_size, items(_answer({"data": [1, 2]}))) == (5, 2)
            yield _answer({"errors": [{"detail": "no"}]})

    with pytest.raises(CollectionError, match=r"^Tool: v1/things answered without a `data` list$"):
        list(jsonapi.pages(_OneAnswer(), "v1/things", {}, 5))


@pytest.mark.parametrize("body, kind", [({"errorCode": "E0000011"}, "dict"), ("<html>", "str"), (None, "NoneType")])
def test_an_endpoint_documented_as_an_array_that_answers_something_else_says_so(body, kind):
    # Okta's and KnowBe4's listings are bare arrays; an object there is a proxy's page or a changed API.
    with pytest.raises(CollectionError) as caught:
        _answer(body).json_array("Okta", "api/v1/users/00u1/factors")
    assert str(caught.value) == (
        f"Okta: GET /api/v1/users/00u1/factors answered with {kind} where Okta sends a JSON array; a proxy or an "
        "API change is in the way"
    )
    assert _answer([{"id": 1}]).json_array("Okta", "x") == [{"id": 1}]
