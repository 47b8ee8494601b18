"""Recorded Tenable.io responses (pyTenable's cassettes in fixtures/tenable) replayed through pyTenable and the project.

A small server on 127.0.0.1 answers each request with the next recorded response for its method, path and query
(the last one again once they run out, like vcrpy's allow_playback_repeats) and 404 for anything never recorded.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
import pytest

from secmetrics_dagster.sources import tenable as tenable_source
from secmetrics_dagster.sources.tenable import TenableResource
from secmetrics_dagster.stores import SnapshotIOManager

from .harness import source_assets
from .helpers import duck_rows, failure_text, materialization_metadata, materialized_tags, pg_rows, stored_file

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tenable"  # gzipped copies; SOURCE.txt says where from
CASSETTES = ["test_exports_vulns", "test_exports_assets", "test_exports_compliance", "test_was_export"]
VULNS_JOB = "b8f7f2da-b1e5-4585-bbf2-8a90631a9f1a"
# pyTenable's own test read the first chunk and stopped, so the vulns cassette ends while the job is PROCESSING; the
# one answer it never recorded, the job's FINISHED status with the same single chunk, is added here.
VULNS_FINISHED = {
    "method": "GET",
    "uri": f"https://cloud.tenable.com/vulns/export/{VULNS_JOB}/status",
    "status": 200,
    "response_headers": {"Content-Type": ["application/json; charset=utf-8"]},
    "response_body": {"status": "FINISHED", "chunks_available": [1], "chunks_failed": [], "chunks_cancelled": []},
}


def _key(method: str, uri: str) -> tuple:
    parts = urlsplit(uri)
    return method.upper(), parts.path, tuple(sorted(parse_qsl(parts.query)))


class Replay:
    """Serves recorded interactions; `served` counts what was answered, `unrecorded` what was asked but never recorded."""

    def __init__(self, interactions: list[dict]):
        self.queues: dict[tuple, list[dict]] = defaultdict(list)
        for interaction in interactions:
            self.queues[_key(interaction["method"], interaction["uri"])].append(interaction)
        self.positions: Counter = Counter()
        self.served: Counter = Counter()
        self.unrecorded: list[tuple] = []
        self.lock = threading.Lock()
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = replay.answer(self.command, self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, method: str, path: str) -> tuple[int, dict, bytes]:
        key = _key(method, path)
        with self.lock:
            queue = self.queues.get(key)
            if not queue:
                self.unrecorded.append(key)
                return 404, {"Content-Type": "application/json"}, b'{"error": "not in the cassette"}'
            interaction = queue[min(self.positions[key], len(queue) - 1)]
            self.positions[key] += 1
            self.served[key[1]] += 1
        recorded = {k.lower(): v[0] for k, v in (interaction.get("response_headers") or {}).items()}
        body = json.dumps(
            interaction["response_body"]
        ).encode()  # the decoded body; the recording's gzip is not replayed
        return interaction["status"], {"Content-Type": recorded.get("content-type", "application/json")}, body

    def __enter__(self) -> Replay:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def recorded(name: str) -> list[dict]:
    return json.loads(gzip.decompress((FIXTURES / f"{name}.decoded.json.gz").read_bytes()))


@pytest.fixture(scope="module")
def interactions() -> list[dict]:
    return [i for name in CASSETTES for i in recorded(name)] + [VULNS_FINISHED]


def run(replay: Replay, collection, stores):
    resource = TenableResource(
        access_key="TIO_ACCESS_KEY", secret_key="TIO_SECRET_KEY", url=replay.url, export_poll_seconds=0.01
    )
    resources = {
        "collection": collection,
        "stores": stores,
        "snapshot_io_manager": SnapshotIOManager(stores=stores),
        "tenable": resource,
    }
    return dg.materialize(source_assets(tenable_source.SOURCE), resources=resources, raise_on_error=False)


@pytest.fixture
def result_and_replay(interactions, collection, all_stores):
    """One materialization of all four Tenable assets against the recordings, into all four stores."""
    with Replay(interactions) as replay:
        result = run(replay, collection, all_stores)
    return result, replay


def test_the_344_recorded_vulnerabilities_land_in_all_four_stores_as_recorded(
    result_and_replay, all_stores, pg_conn, s3_client
):
    result, _ = result_and_replay
    assert "tenable_vulnerabilities" in materialized_tags(result), failure_text(result)
    chunk = next(i for i in recorded("test_exports_vulns") if i["uri"].endswith("/chunks/1"))["response_body"]
    assert materialization_metadata(result, "tenable_vulnerabilities")["records"] == len(chunk) == 344
    key = lambda v: (v["asset"]["uuid"], v["plugin"]["id"], v["port"]["port"], v["port"]["protocol"], v["state"])  # noqa: E731
    file_doc = json.loads(stored_file(all_stores, "tenable_vulnerabilities", "acme").read_text())
    backup = json.loads(
        s3_client.get_object(Bucket=all_stores.s3_bucket, Key="backup/tenable_vulnerabilities/acme.json")["Body"].read()
    )
    in_postgres = [row[2] for row in pg_rows(pg_conn, all_stores.postgres_schema, "tenable_vulnerabilities")]
    in_duckdb = [row[2] for row in duck_rows(all_stores.duckdb_path, "tenable_vulnerabilities")]
    for records in (file_doc["data"], backup["data"], in_postgres, in_duckdb):
        assert Counter(map(key, records)) == Counter(map(key, chunk))
    assert Counter(v["severity"] for v in in_postgres) == {
        "info": 265,
        "high": 50,
        "low": 12,
        "medium": 11,
        "critical": 6,
    }


def test_the_recorded_was_reports_give_their_42_findings_with_scan_and_config(result_and_replay, all_stores, pg_conn):
    result, replay = result_and_replay
    assert materialization_metadata(result, "tenable_was")["records"] == 42
    rows = [row[2] for row in pg_rows(pg_conn, all_stores.postgres_schema, "tenable_was")]
    assert Counter(r["scan"]["scan_id"] for r in rows) == {
        "e576337f-fc91-474c-9b9d-49c0799211e0": 21,
        "009a9d16-ab40-4143-99d8-64a95797d5a8": 21,
    }
    assert {r["config"]["name"] for r in rows} == {"Aseem_TEST_14"}
    assert replay.served["/was/v2/configs/search"] == 1


def test_the_recorded_compliance_export_with_one_empty_chunk_stores_an_empty_dataset(result_and_replay, all_stores):
    result, replay = result_and_replay
    assert materialization_metadata(result, "tenable_findings")["records"] == 0
    assert duck_rows(all_stores.duckdb_path, "tenable_findings") == []
    assert replay.served["/compliance/export/f4a5a5ef-9878-4e72-af70-2d346960669d/chunks/1"] == 1


def test_the_assets_cassette_lacks_chunks_2_and_3_and_the_pull_fails_naming_them_storing_nothing(
    result_and_replay, all_stores
):
    result, replay = result_and_replay
    assert "tenable_assets" not in materialized_tags(result)
    text = failure_text(result)
    assert "/assets/export/82662d3e-e653-46ce-a592-1f276b188c53/chunks/" in text and "HTTP 404" in text
    assert {key[1].rsplit("/", 1)[-1] for key in replay.unrecorded} >= {"2"}
    assert not stored_file(all_stores, "tenable_assets", "acme").exists()
