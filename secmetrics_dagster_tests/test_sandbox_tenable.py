"""The sandbox's Tenable.io routes over real HTTP: export job lifecycle, 409 on a duplicate, chunks, faults, WAS."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from tenable.io import TenableIO

from secmetrics_dagster.sandbox import Fault, Sandbox, TenableVolume
from secmetrics_dagster.sandbox.tenable import api_keys

from .helpers import module_sandbox, moment, shifted_timestamps

TOKEN = "sandbox-token"
HEADERS = {"X-APIKeys": api_keys(TOKEN)}
NOW = 1_800_000_000  # a fixed sandbox clock: 2027-01-15T08:00:00Z
CLOCK = datetime.fromtimestamp(NOW, UTC)
DAY = timedelta(days=1)
EVERY_STATE = {"state": ["OPEN", "REOPENED", "FIXED"]}


sandbox, _clean = module_sandbox(42, TOKEN, tenable=TenableVolume())


def start(sb, kind: str, body: dict) -> requests.Response:
    return requests.post(f"{sb.url}/{kind}/export", json=body, headers=HEADERS, timeout=5)


def status(sb, kind: str, uuid: str) -> dict:
    return requests.get(f"{sb.url}/{kind}/export/{uuid}/status", headers=HEADERS, timeout=5).json()


def chunk(sb, kind: str, uuid: str, chunk_id: int) -> requests.Response:
    return requests.get(f"{sb.url}/{kind}/export/{uuid}/chunks/{chunk_id}", headers=HEADERS, timeout=5)


def export(sb, kind: str, body: dict) -> tuple[dict, list[dict]]:
    """Run one export to FINISHED: (the final status, every record of its chunks)."""
    uuid = start(sb, kind, body).json()["export_uuid"]
    for _ in range(3):
        final = status(sb, kind, uuid)
    return final, [r for c in final["chunks_available"] for r in chunk(sb, kind, uuid, c).json()]


def test_an_export_goes_queued_then_processing_then_finished_one_status_request_at_a_time(sandbox):
    uuid = start(sandbox, "assets", {"chunk_size": 100, "filters": {}}).json()["export_uuid"]
    seen = [status(sandbox, "assets", uuid) for _ in range(4)]
    assert [(s["status"], s["chunks_available"]) for s in seen] == [
        ("QUEUED", []),
        ("PROCESSING", [1]),
        ("FINISHED", [1, 2]),
        ("FINISHED", [1, 2]),
    ]
    assert seen[-1]["total_chunks"] == 2 and seen[-1]["chunks_failed"] == [] and seen[-1]["uuid"] == uuid


def test_chunks_are_json_arrays_whose_records_add_up_to_the_volume(sandbox):
    uuid = start(sandbox, "compliance", {"num_findings": 50}).json()["export_uuid"]
    for _ in range(3):
        final = status(sandbox, "compliance", uuid)
    records = [r for c in final["chunks_available"] for r in chunk(sandbox, "compliance", uuid, c).json()]
    assert [len(chunk(sandbox, "compliance", uuid, c).json()) for c in final["chunks_available"]] == [50, 50, 50]
    assert len(records) == 150 and len({r["finding_id"] for r in records}) == 150
    assert {"asset_uuid", "check_name", "status", "audit_file"} <= set(records[0])


def test_a_vulnerability_chunk_holds_every_finding_of_num_assets_assets(sandbox):
    uuid = start(sandbox, "vulns", {"num_assets": 50, "filters": {"state": ["open", "reopened", "fixed"]}}).json()[
        "export_uuid"
    ]
    for _ in range(3):
        final = status(sandbox, "vulns", uuid)
    chunks = [chunk(sandbox, "vulns", uuid, c).json() for c in final["chunks_available"]]
    assets_per_chunk = [len({f["asset"]["uuid"] for f in c}) for c in chunks]
    assert assets_per_chunk == [50, 50, 20] and final["num_assets_per_chunk"] == 50
    per_chunk = [{f["asset"]["uuid"] for f in c} for c in chunks]
    assert not (per_chunk[0] & per_chunk[1]) and sum(len(c) for c in chunks) == 600


def test_without_a_state_filter_only_open_and_reopened_findings_are_exported(sandbox):
    uuid = start(sandbox, "vulns", {"num_assets": 500}).json()["export_uuid"]
    for _ in range(3):
        final = status(sandbox, "vulns", uuid)
    states = Counter(f["state"] for c in final["chunks_available"] for f in chunk(sandbox, "vulns", uuid, c).json())
    assert set(states) == {"OPEN", "REOPENED"} and sum(states.values()) < 600


def test_the_same_export_asked_again_while_it_runs_answers_409_with_the_active_job(sandbox):
    body = {"num_assets": 77, "filters": {"state": ["OPEN"]}}
    first = start(sandbox, "vulns", body).json()["export_uuid"]
    duplicate = start(sandbox, "vulns", body)
    assert duplicate.status_code == 409
    assert duplicate.json()["active_job_id"] == first and "Duplicate export" in duplicate.json()["failure_reason"]
    assert start(sandbox, "vulns", {**body, "num_assets": 78}).status_code == 200  # a different request is a new job
    for _ in range(3):
        status(sandbox, "vulns", first)
    assert start(sandbox, "vulns", body).json()["export_uuid"] != first  # finished: the same request starts anew


def test_pytenable_adopts_the_active_job_from_the_409(sandbox):
    tio = TenableIO(TOKEN, TOKEN, url=sandbox.url)
    first = tio.exports.vulns(num_assets=99, iterator=None)
    assert tio.exports.vulns(num_assets=99, iterator=None) == first


def test_a_cancelled_job_reports_cancelled(sandbox):
    uuid = start(sandbox, "assets", {"chunk_size": 100}).json()["export_uuid"]
    cancel = requests.post(f"{sandbox.url}/assets/export/{uuid}/cancel", headers=HEADERS)
    assert cancel.json() == {"status": "CANCELLED"} and status(sandbox, "assets", uuid)["status"] == "CANCELLED"


@pytest.mark.parametrize(
    "outcome,expected",
    [
        ("ERROR", ("ERROR", [1], [])),
        ("CANCELLED", ("CANCELLED", [1], [])),
        ("chunks_failed", ("FINISHED", [1], [2])),
    ],
)
def test_export_faults_end_the_job_as_configured(outcome, expected):
    with Sandbox(seed=1, token=TOKEN, tenable=TenableVolume(export_faults=(f"assets:{outcome}",))) as sb:
        uuid = start(sb, "assets", {"chunk_size": 100}).json()["export_uuid"]
        for _ in range(3):
            final = status(sb, "assets", uuid)
        assert (final["status"], final["chunks_available"], final["chunks_failed"]) == expected
        compliance = start(sb, "compliance", {}).json()["export_uuid"]
        assert [status(sb, "compliance", compliance)["status"] for _ in range(3)][-1] == "FINISHED"


def test_unknown_jobs_and_chunks_not_yet_available_are_404(sandbox):
    uuid = start(sandbox, "assets", {"chunk_size": 100}).json()["export_uuid"]
    assert chunk(sandbox, "assets", uuid, 1).status_code == 404  # still QUEUED
    missing = requests.get(f"{sandbox.url}/assets/export/00000000-0000-4000-8000-000000000000/status", headers=HEADERS)
    assert missing.status_code == 404 and missing.json()["statusCode"] == 404


@pytest.mark.parametrize(
    "kind,body",
    [
        ("vulns", {"num_assets": 10}),
        ("assets", {"chunk_size": 20000}),
        ("assets", {}),
        ("compliance", {"num_findings": "many"}),
        ("vulns", {"filters": {"state": ["CLOSED"]}}),
    ],
)
def test_invalid_export_requests_are_400_as_tenable_answers_them(sandbox, kind, body):
    response = start(sandbox, kind, body)
    assert response.status_code == 400 and response.json()["error"] == "Bad Request"


def test_wrong_keys_are_401_in_tenables_error_shape(sandbox):
    response = requests.post(f"{sandbox.url}/vulns/export", json={}, headers={"X-APIKeys": api_keys("wrong")})
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "error": "Unauthorized", "message": "Invalid Credentials"}


def test_shared_faults_fire_on_tenable_route_names(sandbox):
    sandbox.add_fault(Fault(route="tenable.assets.export", kind="429", times=1, retry_after=3))
    throttled = start(sandbox, "assets", {"chunk_size": 101})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert throttled.json()["statusCode"] == 429
    assert start(sandbox, "assets", {"chunk_size": 101}).status_code == 200


def test_the_three_step_was_flow_serves_every_finding_through_pytenable(sandbox):
    tio = TenableIO(TOKEN, TOKEN, url=sandbox.url)
    findings = list(
        tio.was.export(
            and_filter=[("scans_started_at", "gte", "2024/01/01"), ("scans_status", "contains", ["completed"])]
        )
    )
    assert len(findings) == 42
    assert len({(f["scan"]["scan_id"], f["finding"]["plugin_id"]) for f in findings}) == 42
    assert {"finding", "parent_scan", "config", "scan"} == set(findings[0])
    assert sandbox.stats() == {"tenable.was.configs": 1, "tenable.was.targets": 2, "tenable.was.report": 2}


def test_was_listings_page_with_limit_and_offset(sandbox):
    with Sandbox(seed=3, token=TOKEN, tenable=TenableVolume(was=21 * 2 * 250)) as sb:
        first = requests.post(
            f"{sb.url}/was/v2/configs/search", params={"limit": 200, "offset": 0}, json={}, headers=HEADERS
        ).json()
        second = requests.post(
            f"{sb.url}/was/v2/configs/search", params={"limit": 200, "offset": 200}, json={}, headers=HEADERS
        ).json()
    assert first["pagination"]["total"] == 250 and len(first["items"]) == 200 and len(second["items"]) == 50
    assert not {c["config_id"] for c in first["items"]} & {c["config_id"] for c in second["items"]}


def test_records_are_deterministic_for_a_seed(sandbox):
    def first_chunk(sb):
        uuid = start(sb, "vulns", {"num_assets": 50, "filters": {"state": ["OPEN"]}}).json()["export_uuid"]
        for _ in range(3):
            status(sb, "vulns", uuid)
        return chunk(sb, "vulns", uuid, 1).json()

    volume = TenableVolume(now=NOW)  # records count back from the clock: the same clock for the three
    with (
        Sandbox(seed=42, token=TOKEN, tenable=volume) as a,
        Sandbox(seed=42, token=TOKEN, tenable=volume) as b,
        Sandbox(seed=43, token=TOKEN, tenable=volume) as c,
    ):
        assert first_chunk(a) == first_chunk(b) != first_chunk(c)


def _site(now: float) -> dict[str, list[dict]]:
    """Every record the sandbox's Tenable site serves at clock `now`, and the export jobs' `created`."""
    with Sandbox(
        seed=9, token=TOKEN, tenable=TenableVolume(assets=60, vulnerabilities=300, findings=60, now=now)
    ) as sb:
        jobs, site = [], {}
        for kind, body in (("assets", {"chunk_size": 100}), ("vulns", {"filters": EVERY_STATE}), ("compliance", {})):
            final, site[kind] = export(sb, kind, body)
            jobs.append(final["created"])
        site["was"] = list(TenableIO(TOKEN, TOKEN, url=sb.url).was.export())
    return site | {"created": jobs}


def test_timestamps_count_back_from_the_sandbox_clock():
    first, again, later = _site(NOW), _site(NOW), _site(NOW + 86_400)
    assert first == again  # the same seed and clock give the same site
    assert first["created"] == [NOW * 1000 + 1000 * n for n in (1, 2, 3)]  # epoch ms: the clock, a second per job
    assert later["created"] == [c + 86_400_000 for c in first["created"]]
    # Everything is the same a day later, only every timestamp is a day later, but the plugins' own dates; none is
    # after the clock, none older than the oldest first scan (assets: three years and a half; WAS: scans of the last month).
    fixed = {"publication_date", "modification_date", "plugin_publication_date", "plugin_modification_date"}
    for kind, oldest in (("assets", 3.5 * 365), ("vulns", 600), ("compliance", 600), ("was", 40)):
        stamps = shifted_timestamps(first[kind], later[kind], DAY, fixed, kind)
        assert len(stamps) >= len(first[kind]) and all(CLOCK - oldest * DAY <= t <= CLOCK for t in stamps), kind


def test_the_site_mixes_recent_and_stale_assets_and_findings_in_and_past_their_sla():
    with Sandbox(seed=3, token=TOKEN, tenable=TenableVolume(assets=400, vulnerabilities=4000, now=NOW)) as sb:
        assets = export(sb, "assets", {"chunk_size": 1000})[1]
        findings = export(sb, "vulns", {"num_assets": 500, "filters": EVERY_STATE})[1]
        compliance = export(sb, "compliance", {})[1]
    seen = {a["id"]: moment(a["last_seen"]) for a in assets}
    assert all(moment(a["first_seen"]) <= seen[a["id"]] <= CLOCK for a in assets)
    recent = sum(1 for t in seen.values() if t >= CLOCK - 7 * DAY) / len(seen)
    stale = sum(1 for t in seen.values() if t < CLOCK - 30 * DAY) / len(seen)
    assert recent > 0.8 and 0.05 < stale < 0.2
    for f in findings:
        first, last = moment(f["first_found"]), moment(f["last_found"])
        assert first <= last <= seen[f["asset"]["uuid"]]  # no finding is seen after its asset's last scan
        if f["state"] == "FIXED":
            assert last <= moment(f["last_fixed"]) <= seen[f["asset"]["uuid"]]
        else:
            assert "last_fixed" not in f and last == seen[f["asset"]["uuid"]]  # open: seen by the last scan
    assert all(moment(c["first_seen"]) <= moment(c["last_seen"]) == seen[c["asset_uuid"]] for c in compliance)
    critical = [f for f in findings if f["severity"] == "critical"]
    open_ages = {f["state"] != "FIXED" and (CLOCK - moment(f["first_found"]) > 15 * DAY) for f in critical}
    fix_times = {
        moment(f["last_fixed"]) - moment(f["first_found"]) <= 15 * DAY for f in critical if f["state"] == "FIXED"
    }
    assert open_ages == {True, False}  # open critical findings both past their 15-day SLA and within it
    assert fix_times == {True, False}  # fixed ones both within 15 days and later


def test_a_million_findings_cost_the_sandbox_no_memory_beyond_one_chunk():
    tracemalloc.start()
    try:
        with Sandbox(
            seed=5,
            token=TOKEN,
            tenable=TenableVolume(assets=20_000, vulnerabilities=1_000_000, findings=1_000_000, was=1_000_000),
        ) as sb:
            uuid = start(sb, "vulns", {"num_assets": 50, "filters": {"state": ["OPEN", "REOPENED", "FIXED"]}}).json()[
                "export_uuid"
            ]
            for _ in range(3):
                final = status(sb, "vulns", uuid)
            assert final["total_chunks"] == 400
            last = chunk(sb, "vulns", uuid, 400).json()
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(last) == 2500
    assert peak < 60 * 1024 * 1024, f"{peak / 1e6:.0f} MB traced"


def test_the_cli_offers_the_tenable_volume_flags():
    out = subprocess.run(
        [sys.executable, "-m", "secmetrics_dagster.sandbox", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for flag in (
        "--tenable-assets",
        "--tenable-vulnerabilities",
        "--tenable-findings",
        "--tenable-was",
        "--tenable-chunk-size",
        "--tenable-status-polls",
    ):
        assert flag in out


def test_without_a_clock_the_site_counts_back_from_when_the_sandbox_starts():
    before = int(time.time())
    with Sandbox(seed=1, token=TOKEN, tenable=TenableVolume(assets=10, vulnerabilities=0, findings=0)) as sb:
        after = int(time.time())
        final, assets = export(sb, "assets", {"chunk_size": 100})
    assert (before + 1) * 1000 <= final["created"] <= (after + 1) * 1000  # the first job: a second past the clock
    seen = [moment(a["last_seen"]) for a in assets]
    assert (
        max(seen) <= datetime.fromtimestamp(after, UTC) and min(seen) >= datetime.fromtimestamp(before, UTC) - 180 * DAY
    )
