"""Credentials stay on the configured origins, source by source: a source with two configured origins (Graph's
token host and API host) reaches both, and a server-provided link to any other origin is refused."""

from secmetrics_dagster.sandbox import Microsoft365Volume, Sandbox
from secmetrics_dagster.sources import microsoft365 as m365_source
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.microsoft365 import Microsoft365Resource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import failure_text, materialization_metadata


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
