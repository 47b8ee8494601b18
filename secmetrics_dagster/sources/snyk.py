"""Snyk: organizations, members, projects and issues from the REST API (and v1 for members)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any, Optional

from ..collection.env import env_number, secret_env
from ..collection.errors import CollectionError
from ..collection.http import HttpResponse, HttpSession, HttpSettings, normalize_base_url
from .base import DatasetSpec, EnvVarDoc, Pull, SourceSpec, VendorResource, build_assets

DEFAULT_ENDPOINT = "https://api.snyk.io"
DEFAULT_VERSION = "2024-10-15"
_ORG_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")

SOURCE = SourceSpec(
    group="snyk",
    title="Snyk",
    docs_url="https://docs.snyk.io/snyk-api",
    resource_key="snyk",
    env_vars=(
        EnvVarDoc(
            "SNYK_TOKEN",
            "Snyk API or service-account token, sent as `Authorization: token …`.",
            required=True,
            secret=True,
        ),
        EnvVarDoc(
            "SNYK_ENDPOINT",
            "API host; regional hosts work (`https://api.eu.snyk.io`, `https://api.au.snyk.io`), http or https.",
            DEFAULT_ENDPOINT,
        ),
        EnvVarDoc("SNYK_API_VERSION", "REST `version` parameter.", DEFAULT_VERSION),
        EnvVarDoc("SNYK_PAGE_LIMIT", "REST page size (10-100, a multiple of 10).", "100"),
    ),
    datasets=(
        DatasetSpec(
            "snyk_organizations",
            "Organizations",
            "Every organization the token can read.",
            "GET /rest/orgs",
            required_fields=("id", "attributes.name"),
        ),
        DatasetSpec(
            "snyk_members",
            "Organization members",
            "Members of each organization, group admins included; each record carries `_org_id`.",
            "GET /v1/org/{org_id}/members?includeGroupAdmins=true",
            deps=("snyk_organizations",),
            required_fields=("id", "role", "_org_id"),
        ),
        DatasetSpec(
            "snyk_projects",
            "Projects",
            "Every project of each organization; the count is checked against the API's `meta.count`.",
            "GET /rest/orgs/{org_id}/projects",
            deps=("snyk_organizations",),
            required_fields=("id", "attributes.name", "relationships.organization.data.id"),
        ),
        DatasetSpec(
            "snyk_issues",
            "Issues",
            "Every issue of each organization (open and resolved).",
            "GET /rest/orgs/{org_id}/issues",
            deps=("snyk_organizations",),
            required_fields=("id", "attributes.effective_severity_level", "attributes.status"),
            allow_empty=True,
        ),
    ),
)


class SnykResource(VendorResource):
    """Snyk credentials and endpoint. The token enters config only as an EnvVar reference."""

    token: Optional[str] = None
    endpoint: str = DEFAULT_ENDPOINT
    api_version: str = DEFAULT_VERSION
    page_limit: int = 100

    @classmethod
    def from_env(cls) -> SnykResource:
        return cls(
            token=secret_env("SNYK_TOKEN"),
            endpoint=os.environ.get("SNYK_ENDPOINT") or DEFAULT_ENDPOINT,
            api_version=os.environ.get("SNYK_API_VERSION") or DEFAULT_VERSION,
            page_limit=env_number("SNYK_PAGE_LIMIT", 100, low=10, high=100),
        )

    def missing_env(self) -> list[str]:
        return [] if self.token else ["SNYK_TOKEN"]

    def session(self, settings: HttpSettings, logger: Any = None) -> HttpSession:
        return HttpSession(
            "Snyk",
            normalize_base_url(self.endpoint, strip_suffixes=("/rest", "/api/v1", "/v1", "/api")),
            settings=settings,
            headers={"Authorization": f"token {self.token}", "Accept": "application/vnd.api+json"},
            auth_hint="Check SNYK_TOKEN: it must be a valid Snyk API token with access to the organizations, "
            "and SNYK_ENDPOINT must be your tenant's region",
            secrets=[self.token or ""],
            logger=logger,
        )


def _next_link(response: HttpResponse) -> Optional[str]:
    links = (response.json() or {}).get("links") or {}
    nxt = links.get("next")
    if not nxt:
        return None
    if nxt.startswith(("http://", "https://", "/rest/")):
        return nxt
    return "/rest" + (nxt if nxt.startswith("/") else "/" + nxt)  # Snyk's links omit the /rest prefix


def _rest_pages(pull: Pull, path: str, **params: Any) -> Iterator[list[dict]]:
    query = {"version": pull.resource.api_version, "limit": pull.resource.page_limit, **params}
    for response in pull.http.iter_pages(path, query, _next_link):
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise CollectionError(f"Snyk: {path} answered without a `data` list")
        yield body["data"]


def _org_ids(pull: Pull) -> Iterator[str]:
    for org in pull.inputs["snyk_organizations"]:
        org_id = str(org.get("id", ""))
        if not _ORG_ID.match(org_id):  # it goes into a URL path
            raise CollectionError(f"Snyk: organization id {org_id[:40]!r} is not a valid id")
        yield org_id


def pull_organizations(pull: Pull) -> None:
    for page in _rest_pages(pull, "rest/orgs"):
        pull.spool.extend(page)


def pull_members(pull: Pull) -> None:
    for org_id in _org_ids(pull):
        members = pull.http.get_json(f"v1/org/{org_id}/members", {"includeGroupAdmins": "true"})
        if not isinstance(members, list):
            raise CollectionError(f"Snyk: /v1/org/{org_id}/members did not answer with a list")
        for member in members:
            if isinstance(member, dict):
                member["_org_id"] = org_id
            pull.spool.write(member)


def pull_projects(pull: Pull) -> None:
    for org_id in _org_ids(pull):
        path = f"rest/orgs/{org_id}/projects"
        counted = pull.http.get_json(path, {"version": pull.resource.api_version, "meta_count": "only"})
        count = ((counted or {}).get("meta") or {}).get("count")
        if isinstance(count, int):
            pull.spool.expect(count)
        for page in _rest_pages(pull, path):
            pull.spool.extend(page)


def pull_issues(pull: Pull) -> None:
    for org_id in _org_ids(pull):
        for page in _rest_pages(pull, f"rest/orgs/{org_id}/issues"):
            pull.spool.extend(page)


def sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks)."""
    return {"SNYK_TOKEN": token, "SNYK_ENDPOINT": url}


RESOURCE = SnykResource
assets = build_assets(
    SOURCE,
    {
        "snyk_organizations": pull_organizations,
        "snyk_members": pull_members,
        "snyk_projects": pull_projects,
        "snyk_issues": pull_issues,
    },
)
