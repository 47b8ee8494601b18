"""Secret canaries (issue 12, case 1): a vendor token, the PostgreSQL password and the AWS keys the S3 store signs
with never appear in what a run leaves behind, whichever error quotes them: the event log (every event's
message, metadata and error), the backup-served `fallback_reason`, the step's stdout and stderr, and every file
written under the test's directories (stores, spool, the instance's storage and compute logs)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from secmetrics_dagster.automation import checks
from secmetrics_dagster.automation.checks import checks_for
from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.snyk import SnykResource
from secmetrics_dagster.stores import StoresResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source, resources_for, source_assets
from .helpers import failure_text, materialization_metadata

SNYK_SECRET = "snyk-canary-7f3e9a1c5b2d4e6f8a0b"
PG_SECRET = "pg-canary-2b4d6f8a0c1e3a5c7e9f"
AWS_SECRET = "aws-canary-secret-9e8d7c6b5a4f3e2d1c0b"
AWS_TOKEN = "aws-canary-session-1a2b3c4d5e6f7a8b9c0d"
CANARIES = (SNYK_SECRET, PG_SECRET, AWS_SECRET, AWS_TOKEN)


class _Echo(BaseHTTPRequestHandler):
    """An endpoint (a gateway in front of the API, say) whose error page quotes the request's credentials back."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        quoted = {name: self.headers.get(name) for name in self.server.echo if self.headers.get(name)}
        body = json.dumps({"errors": [{"status": "400", "detail": f"request refused; it carried {quoted}"}]}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/vnd.api+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_PUT = do_POST = do_GET

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], **attributes):
    """`handler` on a free port of 127.0.0.1 (its server carrying `attributes`); yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in attributes.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every event of the run as the instance stored it: messages, metadata, errors and their causes."""
    return "\n".join(serialize_value(entry) for entry in instance.all_logs(run_id))


def files_quoting(root: Path, secrets) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path} holds {s[:8]}…" for s in secrets if s.encode() in data]
    return found


def assert_nowhere(instance, result, capfd, root, secrets) -> str:
    """Nothing the run left behind holds any of `secrets`; returns the run's events as text."""
    said = run_text(instance, result.run_id)
    out, err = capfd.readouterr()
    for secret in secrets:
        assert secret not in said, f"{secret[:8]}… is in the event log"
        assert secret not in out and secret not in err, f"{secret[:8]}… is on stdout/stderr"
    assert files_quoting(root, secrets) == []
    return said


@pytest.fixture
def canary_env(monkeypatch, tmp_path, bucket, s3_endpoint, pg_params, pg_schema):
    """A deployment configured from the environment with every store, each secret a canary (moto and the test
    PostgreSQL accept any key and password)."""
    for name, value in {
        "STORE_FILE": str(tmp_path / "data/%TAG/%TENANCY.json"),
        "STORE_AWS_S3_BUCKET": bucket,
        "STORE_AWS_S3_ENDPOINT_URL": s3_endpoint,
        "STORE_POSTGRES_HOST": pg_params["host"],
        "STORE_POSTGRES_PORT": str(pg_params.get("port", 5432)),
        "STORE_POSTGRES_USER": pg_params.get("user") or "postgres",
        "STORE_POSTGRES_DBNAME": pg_params.get("dbname") or "postgres",
        "STORE_POSTGRES_SCHEMA": pg_schema,
        "STORE_POSTGRES_PASSWORD": PG_SECRET,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STORE_DUCKDB", raising=False)
    monkeypatch.delenv("STORE_AWS_S3_KEY", raising=False)


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield instance


def collection_for(tmp_path) -> CollectionResource:
    return CollectionResource(
        tenancy="acme", spool_dir=str(tmp_path / "spool"), http_read_timeout=2.0, http_max_retries=1,
        http_backoff_base=0.01, http_max_wait=5,
    )  # fmt: skip


@pytest.mark.parametrize("endpoint", ["refused by the sandbox", "echoed by a gateway"])
def test_a_secret_quoted_while_the_backup_is_served_appears_nowhere(
    sandbox, canary_env, instance, monkeypatch, tmp_path, capfd, endpoint
):
    collection = collection_for(tmp_path)
    monkeypatch.setenv("SNYK_ENDPOINT", sandbox.url)
    monkeypatch.setenv("SNYK_TOKEN", SANDBOX_TOKEN)
    stores = StoresResource.from_env()
    first = materialize_source(
        snyk_source.SOURCE, SnykResource.from_env(), collection, stores, instance=instance,
        selection="snyk_organizations",
    )  # fmt: skip
    assert first.success, failure_text(first)

    monkeypatch.setenv("SNYK_TOKEN", SNYK_SECRET)  # not the sandbox's token: refused with 401
    with serving(_Echo, echo=("Authorization", "X-Amz-Security-Token")) as echo:
        if endpoint == "echoed by a gateway":
            monkeypatch.setenv("SNYK_ENDPOINT", echo)
        result = materialize_source(
            snyk_source.SOURCE, SnykResource.from_env(), collection, StoresResource.from_env(), instance=instance,
            selection="snyk_organizations",
        )  # fmt: skip
    assert result.success, failure_text(result)
    metadata = materialization_metadata(result, "snyk_organizations")
    assert metadata["source"] == "backup" and metadata["records"] == 2
    reason = metadata["fallback_reason"]
    assert ("HTTP 401" if endpoint.startswith("refused") else "HTTP 400: request refused") in reason
    assert not any(secret in reason for secret in CANARIES)
    assert_nowhere(instance, result, capfd, tmp_path, CANARIES)


class _S3Gateway(BaseHTTPRequestHandler):
    """An S3-compatible endpoint (a gateway or proxy) that lists every object as present and refuses every read
    and write with S3's XML error, quoting the session token it was sent."""

    def _drain(self) -> None:
        if self.headers.get("Content-Length"):
            self.rfile.read(int(self.headers["Content-Length"]))
        elif "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._drain()
        token = self.headers.get("X-Amz-Security-Token")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidToken</Code>'
            f"<Message>The provided token is malformed or otherwise invalid: {token}</Message>"
            "<RequestId>gateway</RequestId></Error>"
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = do_GET

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def test_the_s3_session_token_quoted_while_the_backup_is_read_is_masked_in_the_steps_log(
    sandbox, canary_env, instance, monkeypatch, tmp_path, capfd
):
    monkeypatch.setenv("SNYK_ENDPOINT", sandbox.url)
    monkeypatch.setenv("SNYK_TOKEN", SNYK_SECRET)  # refused: the backup is read at once
    monkeypatch.delenv("STORE_POSTGRES_HOST")
    with serving(_S3Gateway) as gateway:
        monkeypatch.setenv("STORE_AWS_S3_ENDPOINT_URL", gateway)
        result = materialize_source(
            snyk_source.SOURCE, SnykResource.from_env(), collection_for(tmp_path), StoresResource.from_env(),
            instance=instance, selection="snyk_organizations",
        )  # fmt: skip
    assert not result.success
    said = assert_nowhere(instance, result, capfd, tmp_path, CANARIES)
    assert "the backup could not be read either" in said and "InvalidToken" in said


def test_the_s3_session_token_quoted_by_a_failed_write_is_masked_in_the_stores_metadata(
    sandbox, snyk, canary_env, instance, monkeypatch, tmp_path, capfd
):
    monkeypatch.delenv("STORE_POSTGRES_HOST")
    with serving(_S3Gateway) as gateway:
        monkeypatch.setenv("STORE_AWS_S3_ENDPOINT_URL", gateway)
        result = materialize_source(
            snyk_source.SOURCE, snyk, collection_for(tmp_path), StoresResource.from_env(), instance=instance,
            selection="snyk_organizations",
        )  # fmt: skip
    assert not result.success and "s3 store failed" in failure_text(result)
    said = assert_nowhere(instance, result, capfd, tmp_path, CANARIES)
    assert "InvalidToken" in said


def test_every_secret_the_stores_use_is_masked_by_their_redactor(canary_env, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "pg-env-canary-0f1e2d3c")
    secrets = set(StoresResource.from_env().secret_values())
    assert {PG_SECRET, AWS_SECRET, AWS_TOKEN, "pg-env-canary-0f1e2d3c"} <= secrets


def _check_only(instance, snyk, collection, stores, tag):
    """Run only the check step of `tag`, as a re-run of the checks from the UI does."""
    names = [spec.name for spec in checks.check_specs(snyk_source.SOURCE.dataset(tag))]
    return dg.materialize(
        [*source_assets(snyk_source.SOURCE), *checks_for([snyk_source.SOURCE])],
        instance=instance,
        selection=dg.AssetSelection.checks(*(dg.AssetCheckKey(dg.AssetKey(tag), n) for n in names)),
        raise_on_error=False,
        resources=resources_for(snyk_source.SOURCE, snyk, collection, stores),
    )


def _dsn_in_the_host(monkeypatch, pg_params, suffix: str = "") -> None:
    """STORE_POSTGRES_HOST given a whole connection URL, password included (libpq quotes it back)."""
    user, port, db = pg_params.get("user") or "postgres", pg_params.get("port", 5432), pg_params.get("dbname")
    url = f"postgresql://{user}:{PG_SECRET}@{pg_params['host']}:{port}/{db}"
    monkeypatch.setenv("STORE_POSTGRES_HOST", url + suffix)


def test_a_store_error_in_the_check_step_is_masked(snyk, canary_env, instance, monkeypatch, tmp_path, capfd, pg_params):
    collection = collection_for(tmp_path)
    first = materialize_source(snyk_source.SOURCE, snyk, collection, StoresResource.from_env(), instance=instance,
                               selection="snyk_organizations")  # fmt: skip
    assert first.success, failure_text(first)
    _dsn_in_the_host(monkeypatch, pg_params)
    result = _check_only(instance, snyk, collection, StoresResource.from_env(), "snyk_organizations")
    assert result.success, failure_text(result)
    said = assert_nowhere(instance, result, capfd, tmp_path, CANARIES)
    [present] = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == checks.RECORDS_PRESENT
    ]
    assert not present.passed and present.metadata["postgres_status"].value == "error"
    assert "failed to resolve host" in present.description and "***" in said


def test_a_store_error_reading_an_input_back_is_masked(
    snyk, canary_env, instance, monkeypatch, tmp_path, capfd, pg_params
):
    collection = collection_for(tmp_path)
    first = materialize_source(snyk_source.SOURCE, snyk, collection, StoresResource.from_env(), instance=instance,
                               selection="snyk_organizations")  # fmt: skip
    assert first.success, failure_text(first)
    # Only PostgreSQL configured now: the check step's sample is read back from it.
    monkeypatch.setenv("STORE_FILE", "")
    monkeypatch.delenv("STORE_AWS_S3_BUCKET")
    _dsn_in_the_host(monkeypatch, pg_params)
    result = _check_only(instance, snyk, collection, StoresResource.from_env(), "snyk_organizations")
    assert not result.success
    assert "failed to resolve host" in failure_text(result)
    assert_nowhere(instance, result, capfd, tmp_path, CANARIES)


def test_a_store_setting_refused_at_step_start_is_quoted_with_its_secrets_masked(
    sandbox, snyk, canary_env, instance, monkeypatch, tmp_path, capfd, pg_params
):
    _dsn_in_the_host(monkeypatch, pg_params, suffix="\n")  # a URL pasted with its newline: refused, quoted
    result = materialize_source(
        snyk_source.SOURCE, snyk, collection_for(tmp_path), StoresResource.from_env(), instance=instance,
        selection="snyk_organizations",
    )  # fmt: skip
    assert not result.success and sandbox.stats() == {}
    user = pg_params.get("user") or "postgres"
    assert f"STORE_POSTGRES_HOST='postgresql://{user}:***@" in failure_text(result)
    assert_nowhere(instance, result, capfd, tmp_path, CANARIES)
