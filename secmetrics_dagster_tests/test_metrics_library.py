"""The shipped metric library on sandbox data: every metric's rows and score against a computation by hand, in
Python, from the records the collection stored (read back from the file store, independently of the SQL)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Optional

import dagster as dg
import duckdb
import pytest

from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.metrics import MetricsResource, build_metrics, load_library
from secmetrics_dagster.sandbox import (
    CrowdStrikeVolume,
    DomainsVolume,
    KnowBe4Volume,
    Microsoft365Volume,
    OktaVolume,
    Sandbox,
    SnykVolume,
    TenableVolume,
)
from secmetrics_dagster.sources import SOURCES
from secmetrics_dagster.stores.io_manager import StoresResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
CAN_SIGN_IN = {"ACTIVE", "PASSWORD_EXPIRED", "LOCKED_OUT", "RECOVERY"}
PHISHING_RESISTANT = {"webauthn", "u2f", "signed_nonce"}
Rows = list[tuple[str, float]]


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """Every source collected once from the sandbox into the file store and DuckDB, then every metric computed at
    NOW, the clock every vendor's sandbox data counts back from."""
    base = tmp_path_factory.mktemp("metrics-library")
    saved = dict(os.environ)
    clock = {"now": NOW.timestamp()}
    volumes = {
        "okta": OktaVolume(**clock),
        "microsoft365": Microsoft365Volume(**clock),
        "knowbe4": KnowBe4Volume(**clock),
        "tenable": TenableVolume(**clock),
        "crowdstrike": CrowdStrikeVolume(**clock),
        "snyk": SnykVolume(**clock),
        "domains": DomainsVolume(**clock),
    }
    try:
        with Sandbox(seed=7, token=SANDBOX_TOKEN, **volumes) as box:
            for source in SOURCES:
                os.environ.update(source.sandbox_env(box.url, SANDBOX_TOKEN))
            vendors = {s.resource_key: s.resource.from_env() for s in SOURCES}
            collection = CollectionResource(tenancy="acme", spool_dir=str(base / "spool"))
            stores = StoresResource(
                file_template=str(base / "data/source/%TAG/%TENANCY.json"), duckdb_path=str(base / "db.duckdb")
            )
            collected = materialize_source(SOURCES, vendors, collection, stores)
            assert collected.success
    finally:
        os.environ.clear()
        os.environ.update(saved)
    computed = dg.materialize(
        build_metrics().assets,
        resources={"collection": collection, "stores": stores, "metrics": MetricsResource(as_of=NOW.isoformat())},
        raise_on_error=False,
    )
    assert computed.success
    return base


def records(base: Path, tag: str) -> list[dict]:
    path = base / f"data/source/{tag}/acme.json"
    return json.loads(path.read_text())["data"] if path.exists() else []


def ts(value: Any) -> Optional[datetime]:
    """A timestamp as the typed columns read it: ISO 8601 (no zone is UTC); anything else is None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def flag(value: Any) -> Optional[bool]:
    text = str(value).strip().lower() if value is not None else ""
    return {"true": True, "false": False}.get(text)


def get(record: dict, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def within(moment: Optional[datetime], days: int, now: datetime) -> bool:
    return moment is not None and moment >= now - days * DAY


# ------------------------------------------------------------------------------ hand computations


def im_mfa_okta(base: Path, now: datetime) -> Rows:
    active = {f["_user_id"] for f in records(base, "okta_user_factors") if f.get("status") == "ACTIVE"}
    users = [u for u in records(base, "okta_users") if u.get("status") == "ACTIVE"]
    return [(get(u, "profile.login"), 1.0 if u["id"] in active else 0.0) for u in users]


def im_phishing_resistant_mfa_okta(base: Path, now: datetime) -> Rows:
    strong = {
        f["_user_id"]
        for f in records(base, "okta_user_factors")
        if f.get("status") == "ACTIVE" and f.get("factorType") in PHISHING_RESISTANT
    }
    users = [u for u in records(base, "okta_users") if u.get("status") == "ACTIVE"]
    return [(get(u, "profile.login"), 1.0 if u["id"] in strong else 0.0) for u in users]


def _entra_enabled(base: Path, members_only: bool) -> list[dict]:
    return [
        u
        for u in records(base, "microsoft365_users")
        if u.get("accountEnabled") is True and (not members_only or u.get("userType") == "Member")
    ]


def im_mfa_entra(base: Path, now: datetime) -> Rows:
    registered = {r["id"]: r.get("isMfaRegistered") is True for r in records(base, "microsoft365_mfa_registration")}
    return [(u["userPrincipalName"], 1.0 if registered.get(u["id"]) else 0.0) for u in _entra_enabled(base, True)]


def im_dormant_okta(base: Path, now: datetime) -> Rows:
    rows = []
    for u in records(base, "okta_users"):
        if u.get("status") not in CAN_SIGN_IN:
            continue
        last, created = ts(u.get("lastLogin")), ts(u.get("created"))
        ok = within(last, 90, now) or (last is None and within(created, 90, now))
        rows.append((get(u, "profile.login"), 1.0 if ok else 0.0))
    return rows


def im_dormant_entra(base: Path, now: datetime) -> Rows:
    rows = []
    for u in _entra_enabled(base, False):
        seen = [ts(get(u, f"signInActivity.{k}")) for k in ("lastSignInDateTime", "lastNonInteractiveSignInDateTime")]
        seen = [s for s in seen if s is not None]
        last = max(seen) if seen else None
        ok = within(last, 90, now) or (last is None and within(ts(u.get("createdDateTime")), 90, now))
        rows.append((u["userPrincipalName"], 1.0 if ok else 0.0))
    return rows


def im_password_age(base: Path, now: datetime) -> Rows:
    rows = [
        (get(u, "profile.login"), 1.0 if within(ts(u.get("passwordChanged")), 365, now) else 0.0)
        for u in records(base, "okta_users")
        if u.get("status") in CAN_SIGN_IN and get(u, "credentials.provider.type") == "OKTA"
    ]
    rows += [
        (u["userPrincipalName"], 1.0 if within(ts(u.get("lastPasswordChangeDateTime")), 365, now) else 0.0)
        for u in _entra_enabled(base, True)
    ]
    return rows


def ac_leavers_disabled(base: Path, now: datetime) -> Rows:
    enabled = set()
    for u in _entra_enabled(base, False):
        enabled |= {str(v).lower() for v in (u.get("mail"), u.get("userPrincipalName")) if v}
    rows = []
    for u in records(base, "okta_users"):
        changed = ts(u.get("statusChanged"))
        if u.get("status") != "DEPROVISIONED" or not within(changed, 365, now):
            continue
        email = str(get(u, "profile.email")).lower()
        ok = email not in enabled or changed > now - DAY
        rows.append((email, 1.0 if ok else 0.0))
    return rows


def iam_aws_console_mfa(base: Path, now: datetime) -> Rows:
    return [
        (r["user"], 1.0 if flag(r.get("mfa_active")) else 0.0)
        for r in records(base, "aws_iam_credential_report")
        if flag(r.get("password_enabled")) or r["user"] == "<root_account>"
    ]


def iam_aws_access_keys_rotated(base: Path, now: datetime) -> Rows:
    rows = []
    for r in records(base, "aws_iam_credential_report"):
        for n in (1, 2):
            if flag(r.get(f"access_key_{n}_active")):
                ok = within(ts(r.get(f"access_key_{n}_last_rotated")), 90, now)
                rows.append((f"{r['user']} access key {n}", 1.0 if ok else 0.0))
    return rows


def us_training_completed(base: Path, now: datetime) -> Rows:
    completed: dict[str, datetime] = {}
    for e in records(base, "knowbe4_enrollments"):
        when = ts(e.get("completion_date"))
        email = str(get(e, "user.email")).lower()
        if e.get("status") in ("Passed", "Completed") and when is not None:
            completed[email] = max(when, completed.get(email, when))
    users = [str(get(u, "profile.email")).lower() for u in records(base, "okta_users") if u.get("status") == "ACTIVE"]
    return [(email, 1.0 if within(completed.get(email), 365, now) else 0.0) for email in users]


def ep_sensor_coverage(base: Path, now: datetime) -> Rows:
    last_seen: dict[str, datetime] = {}
    for h in records(base, "crowdstrike_hosts"):
        serial, seen = (h.get("serial_number") or "").upper(), ts(h.get("last_seen"))
        if serial and seen is not None:
            last_seen[serial] = max(seen, last_seen.get(serial, seen))
    rows = []
    for d in records(base, "microsoft365_managed_devices"):
        if d.get("operatingSystem") not in ("Windows", "macOS"):
            continue
        serial = (d.get("serialNumber") or "").upper() or None
        resource = f"{d['deviceName']} ({serial or 'no serial'})"
        rows.append((resource, 1.0 if serial and within(last_seen.get(serial), 7, now) else 0.0))
    return rows


def falcon_hosts_exploitable_patchable(base: Path, now: datetime) -> Rows:
    bad_falcon: dict[str, int] = {}
    for v in records(base, "crowdstrike_vulnerabilities"):
        cve = v.get("cve") or {}
        exploit = cve.get("exploit_status")
        if (
            v.get("status") in ("open", "reopen")
            and str(cve.get("severity", "")).upper() in ("CRITICAL", "HIGH")
            and isinstance(exploit, int)
            and exploit > 0
            and cve.get("remediation_level") == "O"
        ):
            bad_falcon[v["aid"]] = bad_falcon.get(v["aid"], 0) + 1
    return [
        (h.get("hostname") or h["device_id"], 0.0 if bad_falcon.get(h["device_id"]) else 1.0)
        for h in records(base, "crowdstrike_hosts")
        if within(ts(h.get("last_seen")), 30, now)
    ]


def tenable_assets_exploitable_patchable(base: Path, now: datetime) -> Rows:
    rows = []
    bad_tenable: dict[str, int] = {}
    for v in records(base, "tenable_vulnerabilities"):
        if (
            v.get("state") in ("OPEN", "REOPENED")
            and v.get("severity") in ("critical", "high")
            and flag(get(v, "plugin.exploit_available"))
            and flag(get(v, "plugin.has_patch"))
        ):
            uuid = get(v, "asset.uuid")
            bad_tenable[uuid] = bad_tenable.get(uuid, 0) + 1
    for a in records(base, "tenable_assets"):
        if within(ts(a.get("last_seen")), 30, now) and a.get("terminated_at") is None and a.get("deleted_at") is None:
            name = get(a, "hostnames.0") or get(a, "fqdns.0") or get(a, "ipv4s.0") or a["id"]
            rows.append((name, 0.0 if bad_tenable.get(a["id"]) else 1.0))
    return rows


def vm_hosts_exploitable_patchable(base: Path, now: datetime) -> Rows:
    return falcon_hosts_exploitable_patchable(base, now) + tenable_assets_exploitable_patchable(base, now)


def tenable_critical_within_sla(base: Path, now: datetime) -> Rows:
    rows = []
    for v in records(base, "tenable_vulnerabilities"):
        found, fixed = ts(v.get("first_found")), ts(v.get("last_fixed"))
        if v.get("severity") != "critical" or not within(found, 365, now):
            continue
        if v.get("state") == "FIXED":
            ok = fixed is not None and fixed <= found + 15 * DAY
        else:
            ok = found > now - 15 * DAY
        name = get(v, "asset.hostname") or get(v, "asset.uuid")
        rows.append((f"{name} plugin {get(v, 'plugin.id')}", 1.0 if ok else 0.0))
    return rows


def falcon_critical_within_sla(base: Path, now: datetime) -> Rows:
    rows = []
    for v in records(base, "crowdstrike_vulnerabilities"):
        created, closed = ts(v.get("created_timestamp")), ts(v.get("closed_timestamp"))
        if str(get(v, "cve.severity")).upper() != "CRITICAL" or not within(created, 365, now):
            continue
        if v.get("status") == "closed":
            ok = closed is not None and closed <= created + 15 * DAY
        else:
            ok = created > now - 15 * DAY
        host = get(v, "host_info.hostname") or v.get("aid")
        rows.append((f"{host} {get(v, 'cve.id') or v['id']}", 1.0 if ok else 0.0))
    return rows


def vm_critical_within_sla(base: Path, now: datetime) -> Rows:
    return tenable_critical_within_sla(base, now) + falcon_critical_within_sla(base, now)


def sd_snyk_projects_clean(base: Path, now: datetime) -> Rows:
    dirty = {
        get(i, "relationships.scan_item.data.id")
        for i in records(base, "snyk_issues")
        if get(i, "attributes.status") == "open"
        and not flag(get(i, "attributes.ignored"))
        and get(i, "attributes.effective_severity_level") in ("critical", "high")
    }
    return [
        (get(p, "attributes.name"), 0.0 if p["id"] in dirty else 1.0)
        for p in records(base, "snyk_projects")
        if get(p, "attributes.status") == "active"
    ]


def dp_ebs_encrypted(base: Path, now: datetime) -> Rows:
    return [(v["VolumeId"], 1.0 if flag(v.get("Encrypted")) else 0.0) for v in records(base, "aws_ebs_volumes")]


def dp_s3_public_access_blocked(base: Path, now: datetime) -> Rows:
    keys = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    rows = []
    for b in records(base, "aws_s3_buckets"):
        block = b.get("public_access_block") or {}
        rows.append((b["Name"], 1.0 if all(flag(block.get(k)) for k in keys) else 0.0))
    return rows


def _resolving(base: Path) -> list[dict]:
    return [d for d in records(base, "domains") if flag(d.get("valid")) and flag(get(d, "dns.exists"))]


def ns_domains_spf(base: Path, now: datetime) -> Rows:
    return [
        (d["domain"], 1.0 if str(get(d, "dns.spf.0") or "").strip().lower().startswith("v=spf1") else 0.0)
        for d in _resolving(base)
    ]


def ns_domains_dmarc_enforced(base: Path, now: datetime) -> Rows:
    return [
        (d["domain"], 1.0 if str(get(d, "dns.dmarc_policy.p") or "").lower() in ("quarantine", "reject") else 0.0)
        for d in _resolving(base)
    ]


def ns_domains_not_expiring(base: Path, now: datetime) -> Rows:
    return [
        (d["domain"], 1.0 if (ts(get(d, "whois.expiration_date")) or now) > now + 30 * DAY else 0.0)
        for d in records(base, "domains")
        if flag(get(d, "whois.registered"))
    ]


def ns_domains_hsts(base: Path, now: datetime) -> Rows:
    import re

    rows = []
    for d in records(base, "domains"):
        if get(d, "https.status") is None:
            continue
        header = str(get(d, "https.security_headers.strict-transport-security") or "").lower()
        found = re.search(r'max-age\s*=\s*"?([0-9]+)', header)
        rows.append((d["domain"], 1.0 if found and int(found.group(1)) > 0 else 0.0))
    return rows


def im_privileged_mfa_okta(base: Path, now: datetime) -> Rows:
    admins = {r["_user_id"] for r in records(base, "okta_user_roles") if r.get("status") == "ACTIVE"}
    active = {f["_user_id"] for f in records(base, "okta_user_factors") if f.get("status") == "ACTIVE"}
    return [
        (get(u, "profile.login"), 1.0 if u["id"] in active else 0.0)
        for u in records(base, "okta_users")
        if u["id"] in admins and u.get("status") == "ACTIVE"
    ]


def im_privileged_mfa_entra(base: Path, now: datetime) -> Rows:
    registered = {r["id"]: r.get("isMfaRegistered") is True for r in records(base, "microsoft365_mfa_registration")}
    holders: dict[str, str] = {}
    for r in records(base, "microsoft365_directory_roles"):
        if r.get("_principal_type") == "user":
            holders[r["id"]] = max(holders.get(r["id"]) or "", r.get("userPrincipalName") or "") or r["id"]
    return [(upn, 1.0 if registered.get(i) else 0.0) for i, upn in holders.items()]


def us_phishing_simulation(base: Path, now: datetime) -> Rows:
    fell: dict[str, bool] = {}
    for r in records(base, "knowbe4_phishing_recipients"):
        email = get(r, "user.email")
        if email is None or not within(ts(r.get("delivered_at")), 365, now):
            continue
        failed = ts(r.get("clicked_at")) is not None or ts(r.get("data_entered_at")) is not None
        fell[email.lower()] = fell.get(email.lower(), False) or failed
    return [(email, 0.0 if failed else 1.0) for email, failed in fell.items()]


EXPECTED: dict[str, Callable[[Path, datetime], Rows]] = {
    f.__name__: f
    for f in (
        im_mfa_okta,
        im_phishing_resistant_mfa_okta,
        im_mfa_entra,
        im_dormant_okta,
        im_dormant_entra,
        im_password_age,
        ac_leavers_disabled,
        iam_aws_console_mfa,
        iam_aws_access_keys_rotated,
        us_training_completed,
        ep_sensor_coverage,
        vm_hosts_exploitable_patchable,
        vm_critical_within_sla,
        sd_snyk_projects_clean,
        dp_ebs_encrypted,
        dp_s3_public_access_blocked,
        ns_domains_spf,
        ns_domains_dmarc_enforced,
        ns_domains_not_expiring,
        ns_domains_hsts,
        im_privileged_mfa_okta,
        im_privileged_mfa_entra,
        us_phishing_simulation,
    )
}


def stored_rows(base: Path, metric_id: str, now: datetime) -> tuple[Rows, Optional[float], int]:
    con = duckdb.connect(str(base / "db.duckdb"), read_only=True)
    day = now.date().isoformat()
    try:
        rows = con.execute(
            "SELECT resource, compliance FROM metric_detail WHERE metric_id = ? AND tenancy = 'acme' "
            "AND datestamp = ?::DATE",
            [metric_id, day],
        ).fetchall()
        score, total = con.execute(
            "SELECT score, total FROM metric_summary WHERE metric_id = ? AND tenancy = 'acme' AND datestamp = ?::DATE",
            [metric_id, day],
        ).fetchone()
    finally:
        con.close()
    return rows, score, total


def test_the_shipped_library_has_at_least_15_metrics_each_checked_here():
    shipped = {m.metric_id for m in load_library(None).computable}
    assert len(shipped) >= 15
    assert shipped - set(EXPECTED) == set(), "every shipped metric needs a hand computation in this file"


# Metrics whose sandbox data has no mix at NOW yet, and why: each is checked to be uniform, so an entry must go
# when its data gains the mix. Every other metric must have compliant and failing rows.
UNIFORM = {}
# Metrics over two vendors: each vendor's rows must be mixed on their own.
PARTS = {
    "vm_critical_within_sla": (tenable_critical_within_sla, falcon_critical_within_sla),
    "vm_hosts_exploitable_patchable": (tenable_assets_exploitable_patchable, falcon_hosts_exploitable_patchable),
}


@pytest.mark.parametrize("metric_id", sorted(EXPECTED))
def test_shipped_metric_matches_a_hand_computation_from_the_stored_records(stored, metric_id):
    base = stored
    expected = EXPECTED[metric_id](base, NOW)
    rows, score, total = stored_rows(base, metric_id, NOW)
    assert sorted(rows) == sorted(expected)
    assert total == len(expected)
    if expected:
        assert score == pytest.approx(sum(c for _r, c in expected) / len(expected))
    else:
        assert score is None


def test_the_sandbox_data_exercises_both_compliant_and_failing_rows_of_every_metric_at_now(stored):
    """A guard against hand computations that agree only because both sides are empty or uniform: the sandbox's
    data, counted back from its clock, gives every metric (and each vendor's part of a two-vendor metric) rows that
    comply and rows that fail, at that clock; the UNIFORM ones are named, with the reason."""
    values = {metric_id: {c for _r, c in expected(stored, NOW)} for metric_id, expected in EXPECTED.items()}
    mixed = {metric_id for metric_id, found in values.items() if found == {0.0, 1.0}}
    assert mixed == set(EXPECTED) - set(UNIFORM), {m: values[m] for m in mixed ^ (set(EXPECTED) - set(UNIFORM))}
    assert all(len(values[m]) == 1 for m in UNIFORM), {m: values[m] for m in UNIFORM}
    for metric_id, parts in PARTS.items():
        for part in parts:
            assert {c for _r, c in part(stored, NOW)} == {0.0, 1.0}, (metric_id, part.__name__)
