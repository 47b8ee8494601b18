"""Snyk in the sandbox: REST orgs/projects/issues (JSON:API, cursor pages) and v1 org members, modelled on api.snyk.io.

Every record is computed from (seed, org index, item index) when a page is served, so volume costs no memory.
Timestamps count back from the sandbox's clock (`SnykVolume.now`, default the moment the sandbox is created): projects
were imported over the three years before it, each issue found some time after its project, updated within half a
year of being found, never later than the clock.

Sources: Snyk's API standards and shared OpenAPI components (snyk/sweater-comb: components/common.yaml,
components/parameters/pagination.yaml, docs/standards/rest.md), the REST spec the docs publish
(snyk/user-docs docs/.gitbook/assets/rest-spec.json), docs.snyk.io pages and public threads cited beside each behaviour.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional
from urllib.parse import quote, urlencode

from .records import VendorApi, check_volume
from .server import FixedWindowQuota, Request, Response, Router, Vendor, VendorContext, register_vendor, throttled


@dataclass(frozen=True)
class SnykVolume:
    """How much Snyk data the sandbox serves; each int field is also a CLI flag (--snyk-orgs, ...)."""

    orgs: int = 3
    projects_per_org: int = 25
    issues_per_org: int = 200
    members_per_org: int = 8
    # 1: a REST listing whose records end exactly at a page boundary still links `next` to one more page, and that
    # page comes back empty with `links.next` equal to `links.self`, as Snyk was seen to answer (snyk-labs/pysnyk
    # issue 212 and PR 213: "the server will return pages of zero length, or the next link value will be the same
    # page"). 0 (default): the last page has no next link.
    trailing_empty_page: int = 0
    # Requests per `rate_window` seconds per API key over every REST endpoint: "1620 requests per minute, per API
    # key" (https://docs.snyk.io/snyk-api/rest-api/about-the-rest-api#rate-limiting). The v1 API: "a default rate
    # limit of 2,000 requests per minute" per endpoint (https://docs.snyk.io/snyk-api/v1-api#rate-limiting), scaled
    # with rate_window too. 0: unlimited.
    rate_limit: int = 1620
    v1_rate_limit: int = 2000
    rate_window: int = 60
    # The group's "now" (epoch seconds) every generated timestamp counts back from; None: when the sandbox is created.
    now: Optional[float] = None

    def __post_init__(self) -> None:
        counts = ("orgs", "projects_per_org", "issues_per_org", "members_per_org", "trailing_empty_page", "rate_limit")
        check_volume(self, (*counts, "v1_rate_limit", "rate_window"), least={"rate_window": 1})


JSONAPI_CONTENT_TYPE = "application/vnd.api+json"
V1_CONTENT_TYPE = "application/json; charset=utf-8"
REST_PREFIX = "/rest"
GROUP_ADMINS = 2  # group admins every org lists when ?includeGroupAdmins=true

_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(~(beta|experimental))?$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Codes and titles from Snyk's public error catalog (docs.snyk.io/more-info/error-catalog); the body is the JSON:API
# ErrorDocument of snyk/sweater-comb components/common.yaml (jsonapi, errors[] with id, status as a string, code,
# title, detail, meta). 401 means "the request requires an authentication token", 403 "an authentication token with
# more or different permissions" (the shared responses there). Throttling: 1,620 requests per minute per API key
# answered with 429 (docs.snyk.io REST API overview, quoted in DependencyTrack/dependency-track issue 2248); the
# 429 carries retry-after, which Snyk's own tools honour (snyk/parlay PR 86), added by the server for an injected 429.
_REST_ERRORS: dict[int, tuple[str, str, str]] = {
    400: (
        "SNYK-OPENAPI-0001",
        "Bad request",
        "The server cannot process the request due to invalid or corrupt data. Review the request, then try again.",
    ),
    401: (
        "SNYK-0005",
        "Authentication error",
        "Authentication credentials not recognized, or user access is not provisioned.",
    ),
    403: ("SNYK-OPENAPI-0002", "Forbidden", "Access to the requested resource is forbidden."),
    404: ("SNYK-OPENAPI-0004", "Not found", "The server cannot find the requested resource."),
    429: (
        "SNYK-0001",
        "Service temporarily throttled",
        "The request rate limit has been exceeded. Wait a few minutes, then try again.",
    ),
    500: (
        "SNYK-9999",
        "Request not fulfilled due to server error",
        "The server cannot process the request due to an unexpected error. Check Snyk status, then try again.",
    ),
    503: (
        "SNYK-0099",
        "Unavailable due to maintenance",
        "Snyk is temporarily unavailable for scheduled maintenance. Check Snyk status, then try again.",
    ),
}
# The v1 API's {"code", "message", "error"} body: 401 is {"code": 401, "error": "Not authorised", "message": "Not
# authorised"} (docs.snyk.io/snyk-api/v1-api, snyk/user-docs docs/snyk-api/v1-api.md); the other messages: no source.
_V1_ERRORS: dict[int, str] = {
    400: "Bad request",
    401: "Not authorised",
    403: "Forbidden",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def rest_error(status: int, detail: str | None = None) -> Response:
    code, title, default_detail = _REST_ERRORS.get(status, ("SNYK-9999", "Error", f"HTTP {status}"))
    error = {
        "id": str(uuid.uuid4()),
        "status": str(status),
        "code": code,
        "title": title,
        "detail": detail or default_detail,
        "meta": {"links": [f"https://docs.snyk.io/more-info/error-catalog#{code.lower()}"]},
    }
    return Response(status, {"jsonapi": {"version": "1.0"}, "errors": [error]}, content_type=JSONAPI_CONTENT_TYPE)


def v1_error(status: int, message: str | None = None) -> Response:
    short = _V1_ERRORS.get(status, f"HTTP {status}")
    return Response(status, {"code": status, "message": message or short, "error": short}, content_type=V1_CONTENT_TYPE)


# ------------------------------------------------------------------------------------------- cursors


def encode_cursor(index: int) -> str:
    """The opaque cursor for the record at `index` (0-based): `v1.` + base64 of {"id": "<index>"}.

    The shape of Snyk's own examples ("v1.eyJpZCI6IjEwMDAifQo=", sweater-comb components/parameters/pagination.yaml;
    real cursors may carry more keys, e.g. priorityScore, docs.snyk.io "Links for pagination in Snyk REST API").
    Snyk's cursors do not expire as far as any source says; none is modelled.
    """
    raw = json.dumps({"id": str(index)}, separators=(",", ":")).encode()
    return "v1." + base64.b64encode(raw).decode()


def decode_cursor(cursor: str) -> int:
    if not cursor.startswith("v1."):
        raise ValueError("cursor does not start with 'v1.'")
    # A '+' of standard base64 arrives as ' ' when a client forgot to URL-encode it.
    text = cursor[3:].replace(" ", "+")
    try:
        data = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
        index = int(data["id"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("cursor is not valid") from None
    if index < 0:
        raise ValueError("cursor is out of range")
    return index


# -------------------------------------------------------------------------------------- record makers

DAY = 24 * 3600
_PROJECT_AGE = (7 * DAY, 3 * 365 * DAY)  # how long before the clock a project was imported
_UPDATE_WITHIN = 180 * DAY  # an issue's last update: within this of being found, never after the clock

_TEAMS = [
    "Platform Engineering",
    "Payments",
    "Identity",
    "Mobile Apps",
    "Data Platform",
    "Customer Portal",
    "Internal Tools",
    "Checkout",
    "Search",
    "Security Engineering",
    "Growth",
    "Infrastructure",
]
_FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "Guido",
    "Katherine",
    "John",
    "Sophie",
    "Niklaus",
    "Anita",
    "Leslie",
]
_LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Rossum",
    "Johnson",
    "Backus",
    "Wilson",
    "Wirth",
    "Borg",
    "Lamport",
]
_REPO_WORDS = [
    "api",
    "web",
    "billing",
    "auth",
    "gateway",
    "worker",
    "ledger",
    "catalog",
    "search",
    "notify",
    "profile",
    "admin",
    "reports",
    "sync",
    "orders",
    "inventory",
    "mobile",
    "edge",
    "jobs",
    "feeds",
]
_ORIGINS = ["github"] * 12 + ["cli"] * 3 + ["gitlab"] * 2 + ["bitbucket-cloud", "azure-repos", "github-enterprise"]
_SUBDIRS = ["", "services/api/", "tools/"]
_SEVERITIES = ["low"] * 30 + ["medium"] * 40 + ["high"] * 22 + ["critical"] * 8
_RISK_RANGES = {"low": (0, 350), "medium": (250, 600), "high": (500, 800), "critical": (700, 1000)}
_TITLES = [
    "Prototype Pollution",
    "Regular Expression Denial of Service (ReDoS)",
    "Remote Code Execution (RCE)",
    "Deserialization of Untrusted Data",
    "Cross-site Scripting (XSS)",
    "Directory Traversal",
    "Server-side Request Forgery (SSRF)",
    "Information Exposure",
    "Denial of Service (DoS)",
    "Improper Input Validation",
    "SQL Injection",
    "Uncontrolled Resource Consumption",
    "Arbitrary Code Injection",
    "Open Redirect",
    "Improper Certificate Validation",
]
# project type -> (manifest file, Snyk vuln-id ecosystem, [(package, version), ...])
_JS = [
    ("lodash", "4.17.15"),
    ("minimist", "1.2.0"),
    ("axios", "0.21.1"),
    ("express", "4.17.1"),
    ("jsonwebtoken", "8.5.1"),
    ("moment", "2.29.1"),
    ("node-fetch", "2.6.0"),
    ("qs", "6.5.2"),
    ("semver", "5.7.1"),
    ("tough-cookie", "2.5.0"),
]
_JAVA = [
    ("com.fasterxml.jackson.core:jackson-databind", "2.9.10"),
    ("org.apache.logging.log4j:log4j-core", "2.14.1"),
    ("org.springframework:spring-web", "5.3.18"),
    ("org.yaml:snakeyaml", "1.30"),
    ("commons-collections:commons-collections", "3.2.1"),
    ("com.google.guava:guava", "30.1-jre"),
]
_PY = [
    ("django", "3.2.4"),
    ("requests", "2.25.1"),
    ("pyyaml", "5.3.1"),
    ("jinja2", "2.11.2"),
    ("urllib3", "1.26.4"),
    ("cryptography", "3.3.1"),
    ("pillow", "8.1.0"),
]
_PROJECT_TYPES: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "npm": ("package.json", "JS", _JS),
    "yarn": ("yarn.lock", "JS", _JS),
    "maven": ("pom.xml", "JAVA", _JAVA),
    "gradle": ("build.gradle", "JAVA", _JAVA),
    "pip": ("requirements.txt", "PYTHON", _PY),
    "poetry": ("pyproject.toml", "PYTHON", _PY),
    "gomodules": (
        "go.mod",
        "GOLANG",
        [
            ("golang.org/x/net", "v0.7.0"),
            ("golang.org/x/crypto", "v0.0.0-20210921155107"),
            ("github.com/gin-gonic/gin", "v1.6.3"),
        ],
    ),
    "nuget": ("packages.config", "DOTNET", [("Newtonsoft.Json", "12.0.3"), ("System.Text.Encodings.Web", "4.5.0")]),
    "rubygems": ("Gemfile.lock", "RUBY", [("nokogiri", "1.10.10"), ("rails", "5.2.4"), ("rack", "2.2.3")]),
    "composer": ("composer.lock", "PHP", [("laravel/framework", "8.0.0"), ("guzzlehttp/guzzle", "7.4.1")]),
}
_TYPE_WEIGHTS = (
    ["npm"] * 6
    + ["maven"] * 3
    + ["pip"] * 3
    + ["yarn", "gradle", "poetry", "gomodules", "nuget", "rubygems", "composer"]
)


def _rng(seed: int, kind: str, *parts: int) -> random.Random:
    return random.Random(f"{seed}:snyk:{kind}:" + ":".join(str(p) for p in parts))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _timestamp(moment: datetime, millis: bool = True) -> str:
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _after(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A moment in [start, end), to the millisecond."""
    return start + timedelta(milliseconds=rng.randrange(max(1, int((end - start).total_seconds() * 1000))))


@functools.lru_cache(maxsize=16384)  # every issue of the project looks it up (a quarter of an issue's cost); bounded
def project_created(seed: int, org: int, index: int, now: datetime) -> datetime:
    """When project `index` of `org` was imported, counted back from the sandbox's clock `now`."""
    rng = _rng(seed, "project-created", org, index)
    return now - timedelta(seconds=rng.randrange(*_PROJECT_AGE), milliseconds=rng.randrange(1000))


def group_id(seed: int) -> str:
    return _uuid(_rng(seed, "group"))


@functools.lru_cache(maxsize=16384)  # every issue looks these up; bounded, so memory stays flat
def org_id(seed: int, org: int) -> str:
    return _uuid(_rng(seed, "org", org))


@functools.lru_cache(maxsize=16384)
def project_id(seed: int, org: int, index: int) -> str:
    return _uuid(_rng(seed, "project", org, index))


@functools.lru_cache(maxsize=16384)
def _project_type(seed: int, org: int, index: int) -> str:
    return _rng(seed, "project-type", org, index).choice(_TYPE_WEIGHTS)


def _org_name(seed: int, org: int) -> str:
    base = _TEAMS[(org + seed) % len(_TEAMS)]
    return base if org < len(_TEAMS) else f"{base} {org // len(_TEAMS) + 1}"


def make_org(seed: int, org: int) -> dict[str, Any]:
    name = _org_name(seed, org)
    return {
        "id": org_id(seed, org),
        "type": "org",
        "attributes": {
            "name": name,
            "slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
            "is_personal": False,
            "group_id": group_id(seed),
        },
    }


def _repo(seed: int, org: int, target: int) -> str:
    rng = _rng(seed, "target", org, target)
    owner = _org_name(seed, org).split()[0].lower()
    return f"acme-{owner}/{rng.choice(_REPO_WORDS)}-{rng.choice(_REPO_WORDS)}-{target}"


def make_project(seed: int, org: int, index: int, now: datetime) -> dict[str, Any]:
    rng = _rng(seed, "project", org, index)
    pid = _uuid(rng)
    ptype = _project_type(seed, org, index)
    manifest = _PROJECT_TYPES[ptype][0]
    target = index // len(_SUBDIRS)  # a few manifests per repository, as in a monorepo
    target_file = _SUBDIRS[index % len(_SUBDIRS)] + manifest
    origin = rng.choice(_ORIGINS)
    team = rng.choice(_TEAMS)
    return {
        "id": pid,
        "type": "project",
        "attributes": {
            "name": f"{_repo(seed, org, target)}:{target_file}",
            "type": ptype,
            "target_file": target_file,
            "target_reference": rng.choice(["main", "main", "master", "develop"]),
            "origin": origin,
            "created": _timestamp(project_created(seed, org, index, now)),
            "status": "active",
            "business_criticality": rng.choice([[], ["critical"], ["high"], ["medium"], ["low"]]),
            "environment": rng.choice(
                [[], ["backend"], ["frontend"], ["backend", "external"], ["internal"], ["saas"], ["mobile"]]
            ),
            "lifecycle": rng.choice([["production"], ["production"], ["development"], ["sandbox"], []]),
            "tags": [{"key": "team", "value": re.sub(r"[^a-z0-9]+", "-", team.lower())}]
            + ([{"key": "tier", "value": str(rng.randint(1, 3))}] if rng.random() < 0.5 else []),
            "read_only": False,
            "settings": {
                "recurring_tests": {"frequency": rng.choice(["daily", "daily", "weekly"])},
                "pull_requests": {"fail_only_for_issues_with_fix": rng.random() < 0.3},
            },
        },
        "relationships": {
            "organization": {"data": {"id": org_id(seed, org), "type": "org"}},
            "target": {"data": {"id": _uuid(_rng(seed, "target-id", org, target)), "type": "target"}},
        },
    }


def make_issue(seed: int, org: int, index: int, projects: int, now: datetime) -> dict[str, Any]:
    rng = _rng(seed, "issue", org, index)
    iid = _uuid(rng)
    project = rng.randrange(projects) if projects else 0
    ptype = _project_type(seed, org, project)
    _, ecosystem, packages = _PROJECT_TYPES[ptype]
    package, version = rng.choice(packages)
    vuln_id = f"SNYK-{ecosystem}-{re.sub(r'[^A-Z0-9]', '', package.upper())}-{rng.randint(100000, 7999999)}"
    severity = rng.choice(_SEVERITIES)
    created = _after(rng, project_created(seed, org, project, now), now)  # found by a test of its project
    updated = _after(rng, created, min(now, created + timedelta(seconds=_UPDATE_WITHIN)))
    resolved = rng.random() < 0.15
    low, high = _RISK_RANGES[severity]
    fixable = rng.random() < 0.6
    attributes: dict[str, Any] = {
        "key": vuln_id,
        "title": rng.choice(_TITLES),
        "type": "package_vulnerability",
        "status": "resolved" if resolved else "open",
        "effective_severity_level": severity,
        "ignored": rng.random() < 0.05,
        "created_at": _timestamp(created),
        "updated_at": _timestamp(updated),
        "problems": [{"id": vuln_id, "source": "SNYK", "type": "vulnerability"}],
        "coordinates": [
            {
                "is_fixable_snyk": fixable,
                "is_upgradeable": fixable and rng.random() < 0.8,
                "representations": [{"dependency": {"package_name": package, "package_version": version}}],
            }
        ],
        "risk": {"factors": [], "score": {"model": "v1", "value": rng.randint(low, high)}},
    }
    if resolved:
        attributes["resolution"] = {"type": "fixed", "resolved_at": _timestamp(updated)}
    return {
        "id": iid,
        "type": "issue",
        "attributes": attributes,
        "relationships": {
            "organization": {"data": {"id": org_id(seed, org), "type": "org"}},
            "scan_item": {"data": {"id": project_id(seed, org, project), "type": "project"}},
        },
    }


def _person(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    suffix = str(rng.randint(2, 99)) if rng.random() < 0.3 else ""
    email = f"{first}.{last}{suffix}".lower().replace("-", "") + "@acme-corp.example"
    return {"id": _uuid(rng), "username": email, "name": f"{first} {last}", "email": email}


def make_member(seed: int, org: int, index: int) -> dict[str, str]:
    rng = _rng(seed, "member", org, index)
    person = _person(rng)
    # Every org has at least one admin, like a real one (its creator).
    role = "admin" if index == 0 or rng.random() < 0.15 else "collaborator"
    return {**person, "role": role}


def make_group_admin(seed: int, index: int) -> dict[str, str]:
    return {**_person(_rng(seed, "group-admin", index)), "role": "admin"}


# -------------------------------------------------------------------------------------------- routes


class _KeyQuota(FixedWindowQuota):
    """Requests per API key in fixed windows aligned to the clock; a spent window answers 429 until it ends.

    Snyk documents the ceiling and the 429 ("If you exceed the rate limit, you will receive a 429 error response",
    https://docs.snyk.io/snyk-api/rest-api/about-the-rest-api#rate-limiting) but no X-RateLimit-* headers, so none
    are sent; the 429 carries Retry-After in seconds, which Snyk's own tools honour (snyk/parlay PR 86). How Snyk
    counts the minute (fixed or sliding) is not documented: a fixed window is assumed.
    """

    def __init__(self, limit: int, window: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__(limit, window, clock)
        self.throttled = 0  # 429s answered, for tests and benchmarks

    def take(self, bucket: str) -> float | None:
        """None if the request is within the quota, else the seconds until its window ends."""
        taken = self.count(bucket)
        if taken.allowed:
            return None
        self.throttled += 1
        return taken.wait


class _SnykApi(VendorApi):
    volume: SnykVolume

    def __init__(self, context: VendorContext, volume: SnykVolume) -> None:
        super().__init__(context, volume)
        self.rest_quota = _KeyQuota(volume.rate_limit, volume.rate_window)
        self.v1_quota = _KeyQuota(volume.v1_rate_limit, volume.rate_window)
        # Only the org ids are indexed: O(orgs), never O(records).
        self.org_index = {org_id(self.seed, o): o for o in range(volume.orgs)}

    def authorized(self, request: Request) -> bool:
        # `Authorization: token <API token>` (docs.snyk.io v1-api and REST pages); OAuth and service-account
        # tokens go as `Bearer` (the spec's APIToken and BearerAuth schemes, e.g. dejanb/snyk-rs docs/ProjectsApi.md).
        scheme, _, credential = (request.headers.get("Authorization") or "").strip().partition(" ")
        return scheme.lower() in ("token", "bearer") and credential.strip() == self.secret

    # shared REST plumbing

    def _rest_checks(self, request: Request) -> tuple[Response | None, int, str]:
        """Auth, version and limit as Snyk validates them; returns (error or None, limit, version).

        `version` is required (the Version parameter of common.yaml); the sandbox accepts YYYY-MM-DD with an optional
        ~beta/~experimental (QueryVersion also admits bare "wip", "experimental", "beta": not modelled). `limit`:
        integer, default 10, minimum 10, maximum 100, multipleOf 10 (the Limit parameter of rest-spec.json and
        pagination.yaml); outside that Snyk's OpenAPI validation answers 400 (the sandbox's detail text: no source).
        """
        if not self.authorized(request):
            return rest_error(401), 0, ""
        version = request.arg("version")
        if version is None:
            return rest_error(400, "missing required query parameter 'version'"), 0, ""
        if not _VERSION_RE.fullmatch(version):
            return (
                rest_error(
                    400, f"invalid version '{version}': expected YYYY-MM-DD with optional ~beta or ~experimental"
                ),
                0,
                "",
            )
        raw_limit = request.arg("limit", "10")
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = -1
        if not (10 <= limit <= 100 and limit % 10 == 0):
            return rest_error(400, f"invalid limit '{raw_limit}': must be a multiple of 10 between 10 and 100"), 0, ""
        if request.has_arg("starting_after") and request.has_arg("ending_before"):
            return rest_error(400, "starting_after and ending_before cannot be used together"), 0, ""
        return None, limit, version

    def _org_rest_checks(self, request: Request) -> tuple[Response | None, int, str, int]:
        """`_rest_checks`, then the org of the path: (error or None, limit, version, org index)."""
        error, limit, version = self._rest_checks(request)
        if error:
            return error, 0, "", -1
        error, org = self._org(request)
        return error, limit, version, org

    def _org(self, request: Request) -> tuple[Response | None, int]:
        oid = request.params["org_id"]
        if not _UUID_RE.fullmatch(oid):
            return rest_error(400, f"invalid org_id '{oid}': must be a UUID"), -1
        if oid.lower() not in self.org_index:
            return rest_error(404, f"org {oid} not found"), -1
        return None, self.org_index[oid.lower()]

    @staticmethod
    def _link(request: Request, limit: int | None = None, cursor: tuple[str, str] | None = None) -> str:
        """A relative link as Snyk writes it: no /rest prefix, other query params kept in order."""
        if limit is None:
            pairs = list(request.query)
        else:
            kept = [(k, v) for k, v in request.query if k not in ("limit", "starting_after", "ending_before")]
            pairs = [("limit", str(limit))] + kept + ([cursor] if cursor else [])
        path = request.path[len(REST_PREFIX) :] if request.path.startswith(REST_PREFIX) else request.path
        return path + ("?" + urlencode(pairs, quote_via=quote) if pairs else "")

    def _page(self, request: Request, version: str, limit: int, total: int, make) -> Response:
        """One cursor page: `links` holds relative URLs without the /rest prefix, other query parameters kept
        ("next": "/orgs/<id>/issues?...&limit=10&version=...&starting_after=v1.eyJ..." in docs.snyk.io "Links for
        pagination in Snyk REST API"); `next` is absent on the last page unless volume.trailing_empty_page.
        """
        try:
            if request.has_arg("ending_before"):
                end = min(decode_cursor(request.arg("ending_before") or ""), total)
                start = max(0, end - limit)
            else:
                after = request.arg("starting_after")
                start = decode_cursor(after) + 1 if after is not None else 0
                end = min(start + limit, total)
        except ValueError as exc:
            return rest_error(400, str(exc))
        start = min(start, total)
        links = {"self": self._link(request)}
        trailing = bool(self.volume.trailing_empty_page) and total > 0 and end == total and end - start == limit
        if start >= total and self.volume.trailing_empty_page and total > 0:
            links["next"] = links["self"]  # the empty page past the end links to itself (pysnyk issue 212)
        elif trailing:
            links["next"] = self._link(request, limit, ("starting_after", encode_cursor(end - 1)))
        if end < total:
            # end == 0 only after ending_before at the very start: the next page is then the first one.
            links["next"] = self._link(request, limit, ("starting_after", encode_cursor(end - 1)) if end else None)
        if start > 0:
            links["prev"] = self._link(request, limit, ("ending_before", encode_cursor(start)))
        payload = {"jsonapi": {"version": "1.0"}, "data": [make(i) for i in range(start, end)], "links": links}
        return Response(
            200,
            payload,
            content_type=JSONAPI_CONTENT_TYPE,
            headers=self._rest_headers(version),
            records_key="data",
            paginated=True,
        )

    @staticmethod
    def _rest_headers(version: str) -> dict[str, str]:
        # Response headers every REST answer carries (sweater-comb common.yaml headers; docs/standards/rest.md
        # "Response Headers"); snyk-version-requested/-lifecycle-stage are left out.
        return {"snyk-version-served": version, "snyk-request-id": str(uuid.uuid4())}

    # handlers

    def orgs(self, request: Request) -> Response:
        error, limit, version = self._rest_checks(request)
        if error:
            return error
        return self._page(request, version, limit, self.volume.orgs, lambda i: make_org(self.seed, i))

    def projects(self, request: Request) -> Response:
        error, limit, version, org = self._org_rest_checks(request)
        if error:
            return error
        total = self.volume.projects_per_org
        meta_count = request.arg("meta_count")
        if meta_count is not None:
            # List projects takes meta_count ("The collection count", dejanb/snyk-rs docs/ProjectsApi.md, generated
            # from Snyk's spec); "only" answers meta.count without data (sweater-comb docs/standards/rest.md,
            # "Collection counts"). The standard also defines "with" (counts plus data) but lets a collection support
            # one value only; which one projects declares is not checked here, so "with" stays refused.
            if meta_count != "only":
                return rest_error(400, f"invalid meta_count '{meta_count}': the only accepted value is 'only'")
            payload = {"jsonapi": {"version": "1.0"}, "meta": {"count": total}, "links": {"self": self._link(request)}}
            return Response(200, payload, content_type=JSONAPI_CONTENT_TYPE, headers=self._rest_headers(version))
        return self._page(request, version, limit, total, lambda i: make_project(self.seed, org, i, self.now))

    def issues(self, request: Request) -> Response:
        # No meta_count on orgs or issues in the spec versions read (dejanb/snyk-rs docs/IssuesApi.md, OrgsApi.md):
        # a count is not offered, so none is served.
        error, limit, version, org = self._org_rest_checks(request)
        if error:
            return error
        projects = self.volume.projects_per_org
        return self._page(
            request,
            version,
            limit,
            self.volume.issues_per_org,
            lambda i: make_issue(self.seed, org, i, projects, self.now),
        )

    def members(self, request: Request) -> Response:
        # v1 GET /org/{orgId}/members?includeGroupAdmins=true: a bare JSON array, unpaged and uncounted (Snyk's v1
        # reference, docs/snyk-api/reference/organizations-v1.md in snyk/user-docs); default limit 2,000 requests
        # per minute (v1-api.md). 404 body text for an unknown org: no source beyond the v1 error example's start.
        if not self.authorized(request):
            return v1_error(401)
        org = self.org_index.get(request.params["org_id"].lower())
        if org is None:
            return v1_error(404, "Org not found")
        members = [make_member(self.seed, org, i) for i in range(self.volume.members_per_org)]
        if (request.arg("includeGroupAdmins") or "").lower() == "true":
            members += [make_group_admin(self.seed, g) for g in range(GROUP_ADMINS)]
        return Response(200, members, content_type=V1_CONTENT_TYPE, records_key="")


def _metered(
    quota: _KeyQuota, per_endpoint: bool, error: Callable[[int], Response], handler: Callable[[Request], Response]
) -> Callable[[Request], Response]:
    """Count the request against its key's quota (REST: one for every endpoint; v1: one per endpoint)."""

    def serve(request: Request) -> Response:
        key = (request.headers.get("Authorization") or "").strip()
        wait = quota.take(f"{request.route}:{key}" if per_endpoint else key)
        if wait is not None:
            return throttled(error(429), wait)
        return handler(request)

    return serve


def _install(router: Router, context: VendorContext, volume: SnykVolume) -> None:
    api = _SnykApi(context, volume)
    rest = lambda status, request: rest_error(status)  # noqa: E731
    v1 = lambda status, request: v1_error(status)  # noqa: E731
    org = r"(?P<org_id>[^/]+)"

    def metered_rest(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        return _metered(api.rest_quota, False, rest_error, handler)

    router.add("GET", r"/rest/orgs", "snyk.orgs", metered_rest(api.orgs), rest)
    router.add("GET", rf"/rest/orgs/{org}/projects", "snyk.projects", metered_rest(api.projects), rest)
    router.add("GET", rf"/rest/orgs/{org}/issues", "snyk.issues", metered_rest(api.issues), rest)
    router.add(
        "GET", rf"/v1/org/{org}/members", "snyk.members", _metered(api.v1_quota, True, v1_error, api.members), v1
    )


register_vendor(Vendor("snyk", SnykVolume, _install))
