"""HttpSession under hostile or faulty servers: credentials never reach another origin, no secret leaves in an
exception or a log line, and a page shorter than asked for is asked for again, then counted.

The two servers here are not vendor stand-ins: they are the misbehaving or hostile hosts of the fault matrix
(issue 12), on 127.0.0.1. A vendor's own next links stay on its origin: Snyk's `links.next` is a path
("/orgs/.../issues?...&starting_after=...", https://docs.snyk.io/~/changes/m2hJeDrttXy2N83AnRjM/snyk-api-info/
using-snyk-api/links-for-pagination-in-snyk-rest-api), so an absolute link elsewhere is never one to follow.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from secmetrics_dagster.collection import CollectionError, HttpSession, HttpSettings
from secmetrics_dagster.collection.http import SameOriginSession, require_same_origin
from secmetrics_dagster.sandbox import Fault

from .conftest import SANDBOX_TOKEN

FAST = HttpSettings(read_timeout=0.5, connect_timeout=2, max_retries=1, backoff_base=0.01, max_total_wait=10)
TOKEN = "tok-3f9c2a7e51d84b06"


class Server:
    """A local HTTP server that records every request and answers with `reply(path) -> (status, headers, body)`."""

    def __init__(self, reply=None):
        self.requests: list[tuple[str, dict]] = []
        self.reply = reply or (lambda path: (200, {}, {"data": []}))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                server.requests.append((self.path, dict(self.headers)))
                status, headers, body = server.reply(self.path)
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def elsewhere():
    """The other origin: it must never be contacted."""
    with Server() as server:
        yield server


def session(base_url, token=TOKEN, **kwargs):
    return HttpSession(
        "Snyk",
        base_url,
        settings=kwargs.pop("settings", FAST),
        headers={"Authorization": f"token {token}"},
        secrets=[token],
        **kwargs,
    )


def snyk_next(response):
    return (response.json() or {}).get("links", {}).get("next")


def chain(exc: BaseException) -> list[BaseException]:
    found, seen = [], set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        stack.extend([current.__cause__, current.__context__])
    return found


class ListLog:
    def __init__(self):
        self.lines: list[str] = []

    def _add(self, message, *args, **kwargs):
        self.lines.append(str(message))

    debug = info = warning = error = _add


# ------------------------------------------------------------------------------------ #2 same origin only


def test_an_absolute_next_link_to_another_origin_fails_the_pull_and_sends_nothing_there(elsewhere):
    def reply(path):
        return 200, {}, {"data": [{"id": 1}], "links": {"next": f"{elsewhere.url}/rest/orgs?starting_after=x"}}

    with Server(reply) as home:
        http = session(home.url)
        pages = []
        with pytest.raises(CollectionError) as info:
            for page in http.iter_pages("rest/orgs", {"limit": 10}, snyk_next):
                pages.append(page)
    message = str(info.value)
    assert message.startswith("Snyk: refused to send a request to")
    assert f"{elsewhere.url}/rest/orgs" in message and f"configured {home.url}" in message
    assert len(pages) == 1 and len(home.requests) == 1
    assert elsewhere.requests == []


@pytest.mark.parametrize("method", ["request", "get_json"])
def test_an_absolute_url_on_another_origin_is_refused_before_it_is_sent(elsewhere, method):
    with Server() as home:
        http = session(home.url)
        with pytest.raises(CollectionError, match="is not the configured"):
            if method == "request":
                http.request("GET", f"{elsewhere.url}/rest/orgs")
            else:
                http.get_json(f"{elsewhere.url}/rest/orgs")
        assert home.requests == []
    assert elsewhere.requests == []


def test_another_port_or_scheme_on_the_same_host_is_another_origin(elsewhere):
    base = "http://127.0.0.1:8080/"
    with pytest.raises(CollectionError):
        require_same_origin("Snyk", base, f"http://127.0.0.1:{elsewhere.port}/rest/orgs")
    with pytest.raises(CollectionError):
        require_same_origin("Snyk", base, "https://127.0.0.1:8080/rest/orgs")
    with pytest.raises(CollectionError):
        require_same_origin("Snyk", base, "http://127.0.0.1.evil.example:8080/rest/orgs")
    assert require_same_origin("Snyk", "https://api.snyk.io/", "https://API.snyk.io:443/rest/orgs?x=1")
    assert elsewhere.requests == []


def test_a_redirect_to_another_origin_is_refused_before_it_is_followed(elsewhere):
    def reply(path):
        return 302, {"Location": f"{elsewhere.url}/collect"}, {}

    with Server(reply) as home:
        with pytest.raises(CollectionError, match=f"{elsewhere.url}/collect"):
            session(home.url).get_json("rest/orgs")
        assert len(home.requests) == 1
    assert elsewhere.requests == []


def test_an_sdk_session_refuses_other_origins_too(elsewhere):
    with Server() as home:
        sdk = SameOriginSession("CrowdStrike", home.url)
        assert sdk.get(f"{home.url}/ok", timeout=5).status_code == 200
        with pytest.raises(CollectionError, match="CrowdStrike: refused"):
            sdk.get(f"{elsewhere.url}/oauth2/token", headers={"X-CS-SECRET": TOKEN}, timeout=5)
    assert elsewhere.requests == []


def test_links_on_the_configured_origin_and_trusted_origins_are_followed(elsewhere):
    def reply(path):
        if "page=2" in path:
            return 200, {}, {"data": [{"id": 2}], "links": {}}
        return 200, {}, {"data": [{"id": 1}], "links": {"next": f"{home.url}/rest/orgs?page=2"}}

    with Server(reply) as home:
        http = session(home.url, trusted_origins=[elsewhere.url])
        ids = [item["id"] for page in http.iter_pages("rest/orgs", None, snyk_next) for item in page.json()["data"]]
        http.request("POST", f"{elsewhere.url}/oauth2/v2.0/token", data={"grant_type": "client_credentials"})
    assert ids == [1, 2] and len(elsewhere.requests) == 1  # the configured token endpoint, nothing else


def test_the_refusal_masks_credentials_in_the_offending_url(elsewhere):
    with Server() as home:
        with pytest.raises(CollectionError) as info:
            session(home.url).get_json(f"{elsewhere.url}/x?api_key=leaked-value-123")
    assert "leaked-value-123" not in str(info.value) and "api_key=%2A%2A%2A" in str(info.value)


# ------------------------------------------------------------------------------------ #1 no secret in errors


def test_a_token_with_a_trailing_newline_never_appears_in_the_error_or_its_causes(elsewhere):
    token = TOKEN + "\n"  # as a copied secret often has it
    http = session(elsewhere.url, token=token)
    with pytest.raises(CollectionError) as info:
        http.get_json("rest/orgs")
    for exc in chain(info.value):
        assert TOKEN not in str(exc), type(exc).__name__
    assert "line break" in str(info.value) and "Snyk: GET" in str(info.value)
    assert elsewhere.requests == []  # requests refused the header before sending


def test_a_secret_added_during_the_pull_is_masked_from_then_on(elsewhere):
    obtained = "access-token-5b0e77c1"  # as an OAuth session adds the token it was issued
    http = HttpSession("Microsoft 365", elsewhere.url, settings=FAST)
    http.secrets = (*http.secrets, obtained)
    http.session.headers["Authorization"] = f"Bearer {obtained}\n"
    with pytest.raises(CollectionError) as info:
        http.get_json("v1.0/users")
    assert all(obtained not in str(exc) for exc in chain(info.value)) and "***" in str(info.value)


def test_a_secret_in_a_url_is_masked_in_connection_errors_and_their_causes():
    from .services import free_port

    secret = "sid-8d2f1c9b7e"
    http = session(f"http://127.0.0.1:{free_port()}/", token=secret)
    with pytest.raises(CollectionError) as info:
        http.get_json(f"v1/accounts/{secret}/users", params={"session": secret})
    assert "connection failed" in str(info.value)
    for exc in chain(info.value):
        assert secret not in str(exc), type(exc).__name__


def test_retry_warnings_are_written_without_the_secret():
    secret = "path-secret-77aa01"
    calls = []

    def reply(path):
        calls.append(path)
        return (500, {}, {"error": "boom"}) if len(calls) == 1 else (200, {}, {"data": []})

    log = ListLog()
    with Server(reply) as home:
        http = session(home.url, token=secret, logger=log)
        http.get_json(f"v1/{secret}/users")
    assert log.lines and all(secret not in line for line in log.lines)
    assert any("retry 1/1" in line for line in log.lines)


# ------------------------------------------------------------------------------------ #3 short pages


def _issue_ids(sandbox, **kwargs):
    http = HttpSession(
        "Snyk",
        sandbox.url,
        settings=FAST,
        headers={"Authorization": f"token {SANDBOX_TOKEN}"},
        secrets=[SANDBOX_TOKEN],
        logger=kwargs.pop("logger", None),
    )
    org = http.get_json("rest/orgs", {"version": "2024-10-15", "limit": 10})["data"][0]["id"]
    ids = []
    for page in http.iter_pages(
        f"rest/orgs/{org}/issues",
        {"version": "2024-10-15", "limit": 10},
        lambda r: ("/rest" + r.json()["links"]["next"]) if r.json()["links"].get("next") else None,
        page_size=10,
        items=lambda r: len(r.json()["data"]),
    ):
        ids.extend(item["id"] for item in page.json()["data"])
    return http, ids


def test_a_short_page_with_a_next_link_is_asked_for_again_and_the_second_answer_used(sandbox):
    # The sandbox's "short" fault drops the last record of one page (the cursor still moves past it).
    sandbox.add_fault(Fault(route="snyk.issues", kind="short", times=1, after=2))
    http, ids = _issue_ids(sandbox)
    assert len(ids) == len(set(ids)) == 57  # nothing lost, nothing twice; the last page (7) is short but final
    assert http.stats.short_pages == 0 and http.stats.requests == 1 + 6 + 1


def test_a_page_short_twice_is_counted_and_warned_about_naming_the_url(sandbox):
    sandbox.add_fault(Fault(route="snyk.issues", kind="short", times=2, after=2))
    log = ListLog()
    http, ids = _issue_ids(sandbox, logger=log)
    assert len(ids) == len(set(ids)) == 56
    assert http.stats.short_pages == 1 and http.stats.as_metadata()["http_short_pages"] == 1
    warning = next(line for line in log.lines if "short" in line or "asked for" in line)
    assert "/rest/orgs/" in warning and "/issues" in warning and "returned 9 records where 10" in warning


def test_without_a_page_size_pages_are_taken_as_they_come(sandbox):
    sandbox.add_fault(Fault(route="snyk.issues", kind="short", times=1, after=2))
    http = HttpSession("Snyk", sandbox.url, settings=FAST, headers={"Authorization": f"token {SANDBOX_TOKEN}"})
    org = http.get_json("rest/orgs", {"version": "2024-10-15", "limit": 10})["data"][0]["id"]
    pages = list(
        http.iter_pages(
            f"rest/orgs/{org}/issues",
            {"version": "2024-10-15", "limit": 10},
            lambda r: ("/rest" + r.json()["links"]["next"]) if r.json()["links"].get("next") else None,
        )
    )
    assert sum(len(p.json()["data"]) for p in pages) == 56  # opt-in: no page size, no second request
    assert http.stats.short_pages == 0 and http.stats.requests == 1 + 6
