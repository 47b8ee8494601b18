"""Credentials stay on the configured origins, source by source: a source with two configured origins (Graph's
token host and API host) reaches both, and a server-provided link or redirect to any other origin is refused:
the pull fails naming both origins and the variable to set, and nothing is sent there."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from secmetrics_dagster.sandbox import Microsoft365Volume, OktaVolume, Sandbox
from secmetrics_dagster.sources import microsoft365 as m365_source
from secmetrics_dagster.sources import okta as okta_source
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.microsoft365 import Microsoft365Resource
from secmetrics_dagster.sources.okta import OktaResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import failure_text, materialization_metadata, materialized_tags


def test_graph_gets_its_token_from_the_login_host_though_it_is_another_origin(collection, file_stores):
    # localhost and 127.0.0.1 are two origins on one sandbox, as login.microsoftonline.com and graph.microsoft.com.
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(users=12, page_size=5)) as box:
        port = box.url.rsplit(":", 1)[1]
        resource = Microsoft365Resource(
            tenant_id="contoso.onmicrosoft.com",
            client_id="3f2e1d0c-9b8a-4765-8432-10fedcba9876",
            client_secret=SANDBOX_TOKEN,
            login_endpoint=f"http://localhost:{port}",
            graph_endpoint=f"http://127.0.0.1:{port}",
        )
        result = materialize_source(
            m365_source.SOURCE, resource, collection, file_stores, selection="microsoft365_users"
        )
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "microsoft365_users")["records"] == 12


def test_a_snyk_short_page_with_a_next_link_is_asked_for_again_and_nothing_is_lost(
    sandbox, snyk, collection, file_stores
):
    from secmetrics_dagster.sandbox import Fault

    sandbox.add_fault(Fault(route="snyk.issues", kind="short", times=1))
    result = materialize_source(snyk_source.SOURCE, snyk, collection, file_stores)
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "snyk_issues")
    assert md["records"] == 114 and md["http_short_pages"] == 0


# -------------------------------------------------- server-provided links and redirects to another origin


class Host:
    """A local HTTP host on 127.0.0.1 that records every request it gets and answers with
    `answer(method, path, headers, body) -> (status, headers, body bytes)`; by default it answers 404."""

    def __init__(self, answer=None):
        self.requests: list[tuple[str, str, dict]] = []
        self.answer = answer or (lambda method, path, headers, body: (404, {}, b"{}"))
        host = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                host.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, payload = host.answer(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve  # noqa: N815 - http.server's names

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.netloc = self.url.split("://", 1)[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def relay(sandbox_url: str, host: str) -> Host:
    """A proxy in front of the sandbox that passes a Host header of `host` on, as a proxy that keeps the vendor's own
    host name would: the sandbox's vendors build their next links from Host (as Okta and Graph name their own host),
    so every link in the answers names `host`, not the proxy the client was pointed at."""

    def answer(method, path, headers, body):
        headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        response = requests.request(method, sandbox_url + path, headers={**headers, "Host": host}, data=body)
        kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
        return response.status_code, kept, response.content

    return Host(answer)


HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "content-encoding", "date", "server")


def graph_resource(graph_endpoint: str, login_endpoint: str) -> Microsoft365Resource:
    return Microsoft365Resource(
        tenant_id="contoso.onmicrosoft.com",
        client_id="3f2e1d0c-9b8a-4765-8432-10fedcba9876",
        client_secret=SANDBOX_TOKEN,
        login_endpoint=login_endpoint,
        graph_endpoint=graph_endpoint,
    )


def test_an_okta_next_link_to_another_origin_fails_the_pull_naming_okta_domain_and_sends_nothing_there(
    collection, file_stores
):
    with (
        Sandbox(seed=11, token=SANDBOX_TOKEN, okta=OktaVolume(users=45, groups=2)) as box,
        Host() as elsewhere,
        relay(box.url, elsewhere.netloc) as proxy,
    ):
        resource = OktaResource(domain=proxy.url, token=SANDBOX_TOKEN, page_limit=10)
        result = materialize_source(okta_source.SOURCE, resource, collection, file_stores, selection="okta_users")
        pages = box.stats()["okta.users"]
    assert not result.success
    text = failure_text(result)
    assert elsewhere.url in text and proxy.url in text and "OKTA_DOMAIN" in text and SANDBOX_TOKEN not in text
    assert elsewhere.requests == [] and pages == 1  # the first page only; nothing went to the linked host
    assert "okta_users" not in materialized_tags(result)


def test_a_graph_next_link_to_another_origin_fails_the_pull_naming_the_graph_endpoint_and_sends_nothing_there(
    collection, file_stores
):
    with (
        Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(users=130)) as box,
        Host() as elsewhere,
        relay(box.url, elsewhere.netloc) as proxy,
    ):
        resource = graph_resource(graph_endpoint=proxy.url, login_endpoint=box.url)
        result = materialize_source(
            m365_source.SOURCE, resource, collection, file_stores, selection="microsoft365_users"
        )
        pages = box.stats()["microsoft365.users"]
    assert not result.success
    text = failure_text(result)
    assert elsewhere.url in text and proxy.url in text and "MICROSOFT365_GRAPH_ENDPOINT" in text
    assert SANDBOX_TOKEN not in text
    assert elsewhere.requests == [] and pages == 1 + 1  # Graph's count of the users, then the first page only


def test_the_login_host_is_trusted_for_the_token_request_only_not_for_a_graph_next_link(collection, file_stores):
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(users=130)) as box:
        login = box.url.replace("127.0.0.1", "localhost")
        with relay(box.url, login.split("://", 1)[1]) as proxy:  # Graph's next links name the login host
            resource = graph_resource(graph_endpoint=proxy.url, login_endpoint=login)
            result = materialize_source(
                m365_source.SOURCE, resource, collection, file_stores, selection="microsoft365_users"
            )
        stats = box.stats()
    assert not result.success
    text = failure_text(result)
    assert login in text and "MICROSOFT365_GRAPH_ENDPOINT" in text
    # the token, Graph's count of the users, then the first page only
    assert stats["microsoft365.token"] == 1 and stats["microsoft365.users"] == 1 + 1


def test_a_graph_redirect_to_the_login_host_is_refused_before_it_is_sent(collection, file_stores):
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(users=12)) as box:
        login = box.url.replace("127.0.0.1", "localhost")

        def redirect(method, path, headers, body):
            return 302, {"Location": login + path}, b""

        with Host(redirect) as graph_host:
            resource = graph_resource(graph_endpoint=graph_host.url, login_endpoint=login)
            result = materialize_source(
                m365_source.SOURCE, resource, collection, file_stores, selection="microsoft365_users"
            )
        stats = box.stats()
    assert not result.success
    assert "refused to send a request" in failure_text(result) and login in failure_text(result)
    assert stats["microsoft365.token"] == 1 and "microsoft365.users" not in stats
