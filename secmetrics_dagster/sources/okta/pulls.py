"""Okta pulls: users of every status, their factors and roles, groups and group members, walked by Link headers.

Factors, roles and members are read for several users (groups) at once (OKTA_FANOUT_WORKERS), paced together by
the session's rate limiter, and spooled in the order of the upstream dataset, as one after another would."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional
from urllib.parse import urljoin

from requests.utils import parse_header_links

from ...collection.errors import AuthError, CollectionError, http_status
from ...collection.http import HttpResponse, HttpSession, origin_of, origin_text, redact_url
from ...collection.spill import SpilledRecords
from ...collection.threads import fan_out
from ..base import DatasetUnavailable, Pull, StatedCounts

STATUSES = (
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "LOCKED_OUT",
    "PASSWORD_EXPIRED",
    "SUSPENDED",
    "DEPROVISIONED",
)
# List users leaves DEPROVISIONED users out unless a search names them; one search naming every status gets all
# users in one consistent listing (two listings would duplicate or lose users deactivated in between).
USER_SEARCH = " or ".join(f'status eq "{status}"' for status in STATUSES)
# Users whose administrator roles are not asked for: none of them can sign in until an administrator acts (a
# STAGED user is not yet activated, "Suspended users can't sign in to Okta" (suspendUser), a DEPROVISIONED user
# is deactivated: deactivateUser in Okta's Management API reference, okta-sdk-python openapi/api.yaml), so a role
# they hold cannot be used. PROVISIONED, RECOVERY, LOCKED_OUT and PASSWORD_EXPIRED users are a step of their own
# away from signing in, and keep their roles in the dataset.
ROLELESS_STATUSES = ("STAGED", "SUSPENDED", "DEPROVISIONED")
_OKTA_ID = re.compile(r"[A-Za-z0-9]{1,64}")


def _next_link(http: HttpSession, response: HttpResponse) -> Optional[str]:
    """Okta's rel="next", an absolute URL on the org's host. One on any other origin fails the pull before anything
    is sent there, so the token goes to OKTA_DOMAIN's origin only. (okta-sdk-python, `okta/api_response.py`
    extract_pagination, keeps the path from /api/ on and re-roots it on its configured org instead; a link naming
    another host means OKTA_DOMAIN is not the host Okta says it is, or something in between rewrote the answer, and
    a guess at which page was meant is not followed.)"""
    for link in parse_header_links(response.headers.get("Link") or ""):
        if link.get("rel") != "next" or not link.get("url"):
            continue
        url = urljoin(response.url, link["url"])  # a relative reference is resolved against the page (RFC 8288)
        if origin_of(url) is None or origin_of(url) != origin_of(http.base_url):
            raise CollectionError(
                f"Okta: the next page of {redact_url(response.url)} is on {origin_text(url)}, not on the configured "
                f"OKTA_DOMAIN origin {origin_text(http.base_url)}. The pull stopped and sent nothing there, so the "
                "token stayed with OKTA_DOMAIN. If Okta links to that host because it is your org's (a custom "
                "domain, or a proxy in front of Okta), set OKTA_DOMAIN to it"
            )
        return url
    return None


def _pages(pull: Pull, path: str, params: Mapping[str, Any]) -> Iterator[list[dict]]:
    """Each page of a listing, by Link rel="next". A page shorter than `limit` that still links to a next one is
    asked for again once, then counted (http_short_pages) and warned about: Okta does not document short pages
    with a next link (the cursor moves past the last record served, so one left out is lost)."""
    limit = int(params["limit"])

    def next_url(response: HttpResponse) -> Optional[str]:
        return _next_link(pull.client, response)

    def items(response: HttpResponse) -> int:
        body = response.json()
        return len(body) if isinstance(body, list) else limit  # not a list: json_array says so, no second ask

    for response in pull.client.iter_pages(path, dict(params), next_url, page_size=limit, items=items):
        yield response.json_array("Okta", path)


def _ids(pull: Pull, tag: str, kind: str) -> Iterator[dict]:
    return (record for _id, record in pull.checked_ids(tag, "id", _OKTA_ID, kind, "a valid Okta id"))


def _fan_out(
    pull: Pull, fetch: Callable[[dict], Any], parents: Iterator[dict], describe: Callable[[dict], str]
) -> Iterator[Any]:
    """fetch(parent) for every parent on OKTA_FANOUT_WORKERS threads, in the parents' order, the first alone (a token
    refused, 401 or 403 for roles, is refused once); a failure names its parent and ends the pull."""
    for _parent, result in fan_out(fetch, parents, pull.resource.fanout_workers, name="okta", describe=describe):
        yield result


def _limiter_note(pull: Pull, before: tuple[int, float]) -> str:
    limiter = pull.client.limiter
    return f"{limiter.pauses - before[0]} pause(s), {limiter.paused_seconds - before[1]:.1f}s, for the rate limit"


def pull_users(pull: Pull) -> None:
    for page in _pages(pull, "api/v1/users", {"search": USER_SEARCH, "limit": pull.resource.page_limit}):
        pull.spool.extend(page)


def _scrub_factor(factor: Any, user_id: str) -> Any:
    if isinstance(factor, dict):
        embedded = factor.get("_embedded")
        if isinstance(embedded, dict):
            embedded.pop("activation", None)  # a pending TOTP factor's shared secret: never stored
            if not embedded:
                factor.pop("_embedded")
        factor["_user_id"] = user_id
    return factor


def _per_user(
    pull: Pull,
    what: str,
    skip: tuple[str, ...],
    note: str = "",
    refused: Optional[Callable[[str, AuthError], Exception]] = None,
) -> Iterator[tuple[str, str, HttpResponse]]:
    """(user id, path, answer) of `GET api/v1/users/{id}/{what}` for every user of okta_users not in a `skip`
    status, in okta_users' order, read by OKTA_FANOUT_WORKERS at once under the shared rate limit. A user deleted
    since okta_users was collected (404) is counted and skipped; `refused` turns a 403 into the exception to raise
    (a permission skip) where one is expected."""
    limiter = pull.client.limiter
    before = (limiter.pauses, limiter.paused_seconds)
    asked = gone = 0

    def fetch(user: dict) -> tuple[str, str, Optional[HttpResponse]]:
        user_id = user["id"]
        path = f"api/v1/users/{user_id}/{what}"
        try:
            return user_id, path, pull.client.request("GET", path)
        except CollectionError as exc:
            if refused is not None and isinstance(exc, AuthError) and http_status(exc) == 403:
                raise refused(path, exc) from None
            if http_status(exc) != 404:
                raise  # 401: the token itself is refused, a failure like on every other asset
            return user_id, path, None  # deleted since okta_users was collected

    users = (user for user in _ids(pull, "okta_users", "user") if user.get("status") not in skip)
    for user_id, path, response in _fan_out(pull, fetch, users, lambda user: f"Okta: {what} of user {user['id']}"):
        if response is None:
            gone += 1
            continue
        asked += 1
        yield user_id, path, response
    if gone:
        pull.log.warning(f"Okta: {gone} user(s) of okta_users no longer exist (404); their {what} were skipped")
    pull.log.info(f"Okta: {what} of {asked} users read{note}; {_limiter_note(pull, before)}")


def pull_user_factors(pull: Pull) -> None:
    for user_id, path, response in _per_user(pull, "factors", ("DEPROVISIONED",)):
        for factor in response.json_array("Okta", path):
            pull.spool.write(_scrub_factor(factor, user_id))


def _refusal(exc: CollectionError) -> str:
    """Okta's own words from a refusal (`E0000006: You do not have permission ...`), without the session's hint."""
    found = re.search(r"HTTP \d{3} \((.*?)\)\. ", str(exc))
    return found.group(1) if found else "no error body"


def _roles_refused(path: str, exc: AuthError) -> DatasetUnavailable:
    # listAssignedRolesForUser answers 403 (ErrorAccessDenied, E0000006) to a token that may not read
    # roles: an OAuth app without okta.roles.read, or an API token whose administrator cannot see roles.
    return DatasetUnavailable(
        f"Okta refused GET /{path} with HTTP 403 ({_refusal(exc)}). The token may not read administrator "
        "roles: an "
        "API token has its administrator's permissions, an OAuth app needs the okta.roles.read scope. "
        "Grant it to collect okta_user_roles"
    )


def pull_user_roles(pull: Pull) -> None:
    note = f" (users {', '.join(ROLELESS_STATUSES)} not asked)"
    for user_id, path, response in _per_user(pull, "roles", ROLELESS_STATUSES, note, refused=_roles_refused):
        for role in response.json_array("Okta", path):
            if isinstance(role, dict):
                role["_user_id"] = user_id
            pull.spool.write(role)


def pull_groups(pull: Pull) -> None:
    # expand=stats adds `_embedded.stats.usersCount` to each group ("the number of users within a group",
    # okta-sdk-python docs/GroupApi.md list_groups): kept in the record as Okta sends it, for okta_group_members to
    # compare the members it lists with.
    for page in _pages(pull, "api/v1/groups", {"limit": pull.resource.page_limit, "expand": "stats"}):
        pull.spool.extend(page)


def _users_count(group: dict) -> Optional[int]:
    """The group's `_embedded.stats.usersCount` (expand=stats), None when the record has none."""
    embedded = group.get("_embedded")
    stats = embedded.get("stats") if isinstance(embedded, dict) else None
    count = stats.get("usersCount") if isinstance(stats, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def pull_group_members(pull: Pull) -> None:
    """Each group's members, every page of a group read by one worker; a group's members wait in an anonymous file
    until the groups before it are spooled (at most OKTA_FANOUT_WORKERS + 1 groups at once).

    Each group's count is compared with the `usersCount` okta_groups recorded (expand=stats): a group that differs
    is counted and warned about, and the sum over the groups is reported as the total record_count_stable compares
    the upload with (a WARN: the stats were read earlier, and memberships change in between)."""

    def fetch(group: dict) -> tuple[str, Optional[int], Optional[SpilledRecords]]:
        group_id, stated = group["id"], _users_count(group)
        pages = _pages(pull, f"api/v1/groups/{group_id}/users", {"limit": pull.resource.page_limit})
        try:
            # A big group's members wait on disk, not in memory, for the groups before it (one page deep).
            members = SpilledRecords((m for page in pages for m in page), str(pull.spool.directory))
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            return group_id, stated, None
        return group_id, stated, members

    counts = StatedCounts("group(s)", "members", "usersCount", "okta_groups' usersCount (expand=stats)")
    groups = _ids(pull, "okta_groups", "group")
    answers = _fan_out(pull, fetch, groups, lambda group: f"Okta: members of group {group['id']}")
    for group_id, stated, members in answers:
        if members is None:
            pull.log.warning(f"Okta: group {group_id} no longer exists (404); its members were skipped")
            continue
        counts.add(group_id, stated, len(members))
        for member in members:
            if isinstance(member, dict):
                member["_group_id"] = group_id
            pull.spool.write(member)
    # okta_groups collected without expand=stats (an older upload, a backup) carry no count: nothing is compared.
    counts.report(
        pull, "Okta", "Memberships may have changed since okta_groups was collected, or members were left out"
    )
