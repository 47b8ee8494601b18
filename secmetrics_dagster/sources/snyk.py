"""Snyk: organizations, members, projects and issues from the REST API (and v1 for members).

Members, projects and issues are read for SNYK_FANOUT_WORKERS organizations at once and spooled in the organizations'
order. Snyk sends no quota headers, only a 429 with Retry-After once the API key's limit is spent: the session paces
every worker together under SNYK_REQUESTS_PER_MINUTE, and a 429 pauses all of them, not only the one that was told.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Optional, TypeVar

from ..collection import jsonapi
from ..collection.errors import CollectionError
from ..collection.http import HttpSession, HttpSettings, normalize_base_url
from ..collection.settings import env_setting
from ..collection.spill import SpilledRecords
from ..collection.threads import fan_out
from .base import Pull, VendorResource, fanout_setting
from .catalog import declare_source

DEFAULT_ENDPOINT = "https://api.snyk.io"
DEFAULT_VERSION = "2024-10-15"
_ORG_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# "1620 requests per minute, per API key" (https://docs.snyk.io/snyk-api/rest-api/about-the-rest-api#rate-limiting):
# paced a little under it, so requests evenly spaced across a minute's boundary cannot make 1,621 in one minute.
DEFAULT_REQUESTS_PER_MINUTE = 1600
# 1,620 a minute is 27 a second: with pages of 100 issues that take a few hundred milliseconds each, 10 workers keep
# that pace busy, and the pace, not the workers, bounds the pull. At 100 ms of sandbox latency on a loaded 2-core
# machine, 6 workers reached 1.27x the rate-limit floor, 10 reached 1.16x.
DEFAULT_FANOUT_WORKERS = 10
T = TypeVar("T")


class SnykResource(VendorResource):
    """Snyk credentials and endpoint. The token enters config only as an EnvVar reference."""

    settings_title: ClassVar[str] = "Snyk"

    token: Optional[str] = env_setting(
        "SNYK_TOKEN", "Snyk API or service-account token, sent as `Authorization: token …`.", secret=True, required=True
    )
    endpoint: str = env_setting(
        "SNYK_ENDPOINT",
        "API host; regional hosts work (`https://api.eu.snyk.io`, `https://api.au.snyk.io`), http or https.",
        DEFAULT_ENDPOINT,
    )
    api_version: str = env_setting("SNYK_API_VERSION", "REST `version` parameter.", DEFAULT_VERSION)
    page_limit: int = env_setting(
        "SNYK_PAGE_LIMIT", "REST page size (10-100, a multiple of 10).", 100, low=10, high=100
    )
    fanout_workers: int = fanout_setting(
        "SNYK_FANOUT_WORKERS",
        DEFAULT_FANOUT_WORKERS,
        "Organizations whose members, projects or issues are read at once",
        "They share one pace, SNYK_REQUESTS_PER_MINUTE.",
    )
    requests_per_minute: float = env_setting(
        "SNYK_REQUESTS_PER_MINUTE",
        "Pace of all requests of one asset together, its workers included; Snyk allows 1,620 a minute per API key "
        "(lower it when other tools use the same key, or several Snyk assets run at once).",
        DEFAULT_REQUESTS_PER_MINUTE,
        low=1,
        high=100_000,
    )

    def client(self, settings: HttpSettings, logger: Any = None) -> HttpSession:
        return HttpSession(
            "Snyk",
            normalize_base_url(self.endpoint, strip_suffixes=("/rest", "/api/v1", "/v1", "/api")),
            settings=settings.paced(self.requests_per_minute / 60),
            # The limit is the key's, whatever the endpoint: one bucket, so a 429 pauses every worker.
            rate_limit_family=lambda method, path: "api key",
            pool_size=self.fanout_workers,
            headers={"Authorization": f"token {self.token}", "Accept": "application/vnd.api+json"},
            auth_hint="Check SNYK_TOKEN: it must be a valid Snyk API token with access to the organizations, "
            "and SNYK_ENDPOINT must be your tenant's region",
            secrets=[self.token or ""],
            logger=logger,
        )


def _rest_pages(pull: Pull, path: str, **params: Any) -> Iterator[list[dict]]:
    query = {"version": pull.resource.api_version, "limit": pull.resource.page_limit, **params}
    # Snyk REST pages are full until the last (docs.snyk.io, pagination in Snyk REST API): a short one with a next
    # link is asked for again, then counted. Snyk's next links omit the /rest prefix.
    return jsonapi.pages(pull.client, path, query, pull.resource.page_limit, prefix="/rest")


def pull_organizations(pull: Pull) -> None:
    for page in _rest_pages(pull, "rest/orgs"):
        pull.spool.extend(page)


def _per_org(pull: Pull, what: str, fetch: Callable[[str], T], first_alone: bool = True) -> Iterator[tuple[str, T]]:
    """(org id, fetch(org id)) in snyk_organizations' order, SNYK_FANOUT_WORKERS at a time. Issues are a paged
    listing that the organizations' listing, just before, met with the same token: they don't wait for the first."""
    orgs = pull.checked_ids("snyk_organizations", "id", _ORG_ID, "organization", "a valid Snyk id")
    org_ids = (org_id for org_id, _org in orgs)
    describe = lambda org_id: f"Snyk: {what} of organization {org_id}"  # noqa: E731
    workers = pull.resource.fanout_workers
    return fan_out(fetch, org_ids, workers, name="snyk", describe=describe, first_alone=first_alone)


def _members(pull: Pull, org_id: str) -> list:
    members = pull.client.get_json(f"v1/org/{org_id}/members", {"includeGroupAdmins": "true"})
    if not isinstance(members, list):
        raise CollectionError(f"Snyk: /v1/org/{org_id}/members did not answer with a list")
    return members


def pull_members(pull: Pull) -> None:
    for org_id, members in _per_org(pull, "members", lambda org_id: _members(pull, org_id)):
        for member in members:
            if isinstance(member, dict):
                member["_org_id"] = org_id
            pull.spool.write(member)


def _projects(pull: Pull, org_id: str) -> tuple[Optional[int], list]:
    path = f"rest/orgs/{org_id}/projects"
    counted = pull.client.get_json(path, {"version": pull.resource.api_version, "meta_count": "only"})
    count = ((counted or {}).get("meta") or {}).get("count")
    return (count if isinstance(count, int) else None), [r for page in _rest_pages(pull, path) for r in page]


def pull_projects(pull: Pull) -> None:
    for _org_id, (count, projects) in _per_org(pull, "projects", lambda org_id: _projects(pull, org_id)):
        if count is not None:
            pull.spool.expect(count)
        pull.spool.extend(projects)


def pull_issues(pull: Pull) -> None:
    def issues(org_id: str) -> SpilledRecords:
        # An organization's issues wait on disk, not in memory, for the organizations before it (one page deep).
        pages = _rest_pages(pull, f"rest/orgs/{org_id}/issues")
        records = (r for page in pages for r in page)
        return SpilledRecords(records, str(pull.spool.directory), encode=pull.spool.line_encoder())

    for _org_id, records in _per_org(pull, "issues", issues, first_alone=False):
        pull.spool.extend(records)


SOURCE = declare_source(
    __name__, "snyk.yaml", SnykResource, sandbox_env=lambda url, token: {"SNYK_TOKEN": token, "SNYK_ENDPOINT": url}
)
