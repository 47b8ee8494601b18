"""Okta: users of every status, their enrolled MFA factors and administrator roles, groups and group members from
the Management API.

Okta's rate limits are per endpoint and org-wide, shared with every other integration and with sign-ins, so the
pull reads X-Rate-Limit-* after each answer and pauses for the window's reset before the quota runs out.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Optional
from urllib.parse import urlsplit, urlunsplit

from requests.utils import parse_header_links

from ..collection.columns import col
from ..collection.errors import AuthError, CollectionError, ConfigError, http_status
from ..collection.http import HttpResponse, HttpSession, HttpSettings, http_date, normalize_base_url, redact_url
from ..collection.settings import env_setting
from .base import DatasetSpec, DatasetUnavailable, Pull, Source, VendorResource

DEFAULT_PAGE_LIMIT = 200
DEFAULT_RATE_LIMIT_RESERVE = 20.0
MAX_QUOTA_PAUSE = 120.0  # Okta's windows are a minute; a reset further out is a clock or proxy problem
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
_ADMIN_HOST = re.compile(r"^(?P<org>.+)-admin\.(?P<domain>(?:okta|oktapreview|okta-emea|okta-gov)\.(?:com|mil))$", re.I)


def okta_base_url(domain: str) -> str:
    """`acme.okta.com`, `https://acme.okta.com/`, `acme-admin.okta.com`, `…/api/v1` → `https://acme.okta.com/`."""
    try:
        base = normalize_base_url(domain, strip_suffixes=("/api/v1",))
    except CollectionError as exc:
        raise ConfigError(
            f"Okta: OKTA_DOMAIN {domain!r} is not usable ({exc}); set it to your org's domain, e.g. acme.okta.com"
        ) from None
    parts = urlsplit(base)
    admin = _ADMIN_HOST.match(parts.hostname or "")
    if admin:  # the Admin Console's host is not the API's
        netloc = f"{admin.group('org')}.{admin.group('domain')}" + (f":{parts.port}" if parts.port else "")
        base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return base


def _error_detail(body: Any) -> Optional[str]:
    if isinstance(body, dict) and body.get("errorSummary"):
        causes = "; ".join(str(c.get("errorSummary")) for c in body.get("errorCauses") or [] if isinstance(c, dict))
        text = f"{body.get('errorCode', 'E')}: {body['errorSummary']}"
        return f"{text} ({causes})" if causes else text
    return None


class OktaResource(VendorResource):
    """Okta org and API token. The token enters config only as an EnvVar reference."""

    settings_title: ClassVar[str] = "Okta"

    domain: Optional[str] = env_setting(
        "OKTA_DOMAIN",
        "Your Okta org: a bare domain (`acme.okta.com`) or a URL (`https://acme.okta.com`; "
        "http works for a local proxy). An `-admin` host is mapped to the org host.",
        required=True,
    )
    token: Optional[str] = env_setting(
        "OKTA_TOKEN",
        "Okta API token of a read-only administrator, sent as `Authorization: SSWS …`.",
        required=True,
        secret=True,
    )
    page_limit: int = env_setting(
        "OKTA_PAGE_LIMIT", "Page size of the list calls (1-200).", DEFAULT_PAGE_LIMIT, low=1, high=200
    )
    rate_limit_reserve: float = env_setting(
        "OKTA_RATE_LIMIT_RESERVE",
        "Percent of each endpoint's org-wide rate limit left to the org's other "
        "integrations and sign-ins: when `X-Rate-Limit-Remaining` falls to it, the "
        "pull waits for `X-Rate-Limit-Reset` (0-90).",
        DEFAULT_RATE_LIMIT_RESERVE,
        low=0,
        high=90,
    )

    def client(self, settings: HttpSettings, logger: Any = None) -> HttpSession:
        token = (self.token or "").strip()
        if token[:5].upper() == "SSWS ":  # pasted with its scheme
            token = token[5:].strip()
        return HttpSession(
            "Okta",
            okta_base_url(self.domain or ""),
            settings=settings,
            headers={"Authorization": f"SSWS {token}"},
            auth_hint="Check OKTA_TOKEN (an API token of an administrator allowed to read users, groups and factors; "
            "a Read-Only Administrator's is enough) and that OKTA_DOMAIN is that token's org",
            # Okta answers 429 without Retry-After; X-Rate-Limit-Reset (epoch seconds) says when the window reopens.
            retry_after_headers=("X-Rate-Limit-Reset", "Retry-After"),
            error_detail=_error_detail,
            secrets=[token, self.token or ""],
            logger=logger,
        )


class QuotaGuard:
    """Slows a pull down before an endpoint's org-wide quota runs out, from the X-Rate-Limit-* of each answer."""

    def __init__(
        self, http: HttpSession, reserve_percent: float, log: Any, sleep: Callable[[float], None] = time.sleep
    ):
        self.http = http
        self.reserve_percent = reserve_percent
        self.log = log
        self.sleep = sleep
        self.pauses = 0
        self.paused_seconds = 0.0

    def observe(self, response: HttpResponse) -> None:
        headers = response.headers
        try:
            limit = int(headers["X-Rate-Limit-Limit"])
            remaining = int(headers["X-Rate-Limit-Remaining"])
            reset = float(headers["X-Rate-Limit-Reset"])
        except (KeyError, TypeError, ValueError):
            return
        reserve = math.ceil(limit * self.reserve_percent / 100)
        if remaining > reserve:
            return
        # The reset is Okta's clock: measured against its Date header, a skewed local clock cannot shorten the wait.
        server_now = http_date(headers.get("Date"))
        wait = min(reset - (time.time() if server_now is None else server_now), MAX_QUOTA_PAUSE)
        if wait <= 0:
            return
        self.pauses += 1
        self.paused_seconds += wait
        self.http.stats.paced_seconds += wait  # shown as http_paced_seconds; not charged to the retry budget
        self.log.info(
            f"Okta: {remaining} of {limit} requests left in this rate-limit window of "
            f"{urlsplit(response.url).path} (reserve {reserve}); pausing {wait:.1f}s until it resets"
        )
        self.sleep(wait)


def _next_link(http: HttpSession, response: HttpResponse) -> Optional[str]:
    """Okta's rel="next", re-rooted on the configured base URL so the token never goes to another host."""
    for link in parse_header_links(response.headers.get("Link") or ""):
        if link.get("rel") != "next" or not link.get("url"):
            continue
        parts = urlsplit(link["url"])
        at = parts.path.find("/api/v1/")
        if at < 0:
            raise CollectionError(
                f"Okta: unexpected next link {redact_url(link['url'])} from {redact_url(response.url)}"
            )
        return http.base_url + parts.path[at + 1 :] + (f"?{parts.query}" if parts.query else "")
    return None


def _pages(pull: Pull, guard: QuotaGuard, path: str, params: Mapping[str, Any]) -> Iterator[list[dict]]:
    def next_url(response: HttpResponse) -> Optional[str]:
        guard.observe(response)
        return _next_link(pull.client, response)

    for response in pull.client.iter_pages(path, dict(params), next_url):
        yield _records(response, path)


def _records(response: HttpResponse, path: str) -> list[dict]:
    body = response.json()
    if not isinstance(body, list):
        raise CollectionError(
            f"Okta: GET /{path} answered with {type(body).__name__} where Okta sends a JSON array; "
            "a proxy or an API change is in the way"
        )
    return body


def _ids(pull: Pull, tag: str, kind: str) -> Iterator[dict]:
    for record in pull.inputs[tag]:
        value = str(record.get("id", ""))
        if not _OKTA_ID.fullmatch(value):  # it goes into a URL path
            raise CollectionError(f"Okta: {kind} id {value[:40]!r} in {tag} is not a valid Okta id")
        yield record


def _guard(pull: Pull) -> QuotaGuard:
    return QuotaGuard(pull.client, pull.resource.rate_limit_reserve, pull.log)


def pull_users(pull: Pull) -> None:
    guard = _guard(pull)
    for page in _pages(pull, guard, "api/v1/users", {"search": USER_SEARCH, "limit": pull.resource.page_limit}):
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


def pull_user_factors(pull: Pull) -> None:
    guard = _guard(pull)
    asked = gone = 0
    for user in _ids(pull, "okta_users", "user"):
        if user.get("status") == "DEPROVISIONED":
            continue
        user_id = user["id"]
        path = f"api/v1/users/{user_id}/factors"
        try:
            response = pull.client.request("GET", path)
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            gone += 1  # deleted since okta_users was collected
            continue
        asked += 1
        guard.observe(response)
        for factor in _records(response, path):
            pull.spool.write(_scrub_factor(factor, user_id))
    if gone:
        pull.log.warning(f"Okta: {gone} user(s) of okta_users no longer exist (404); their factors were skipped")
    pull.log.info(
        f"Okta: factors of {asked} users read; {guard.pauses} pause(s), {guard.paused_seconds:.1f}s, for the rate limit"
    )


def _refusal(exc: CollectionError) -> str:
    """Okta's own words from a refusal (`E0000006: You do not have permission ...`), without the session's hint."""
    found = re.search(r"HTTP \d{3} \((.*?)\)\. ", str(exc))
    return found.group(1) if found else "no error body"


def pull_user_roles(pull: Pull) -> None:
    guard = _guard(pull)
    asked = gone = 0
    for user in _ids(pull, "okta_users", "user"):
        if user.get("status") in ROLELESS_STATUSES:
            continue
        user_id = user["id"]
        path = f"api/v1/users/{user_id}/roles"
        try:
            response = pull.client.request("GET", path)
        except AuthError as exc:
            if http_status(exc) != 403:
                raise  # 401: the token itself is refused, a failure like on every other asset
            # listAssignedRolesForUser answers 403 (ErrorAccessDenied, E0000006) to a token that may not read
            # roles: an OAuth app without okta.roles.read, or an API token whose administrator cannot see roles.
            raise DatasetUnavailable(
                f"Okta refused GET /{path} with HTTP 403 ({_refusal(exc)}). The token may not read administrator "
                "roles: an "
                "API token has its administrator's permissions, an OAuth app needs the okta.roles.read scope. "
                "Grant it to collect okta_user_roles"
            ) from None
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            gone += 1  # deleted since okta_users was collected
            continue
        asked += 1
        guard.observe(response)
        for role in _records(response, path):
            if isinstance(role, dict):
                role["_user_id"] = user_id
            pull.spool.write(role)
    if gone:
        pull.log.warning(f"Okta: {gone} user(s) of okta_users no longer exist (404); their roles were skipped")
    pull.log.info(
        f"Okta: roles of {asked} users read (users {', '.join(ROLELESS_STATUSES)} not asked); {guard.pauses} "
        f"pause(s), {guard.paused_seconds:.1f}s, for the rate limit"
    )


def pull_groups(pull: Pull) -> None:
    guard = _guard(pull)
    for page in _pages(pull, guard, "api/v1/groups", {"limit": pull.resource.page_limit}):
        pull.spool.extend(page)


def pull_group_members(pull: Pull) -> None:
    guard = _guard(pull)
    for group in _ids(pull, "okta_groups", "group"):
        group_id = group["id"]
        try:
            for page in _pages(pull, guard, f"api/v1/groups/{group_id}/users", {"limit": pull.resource.page_limit}):
                for member in page:
                    if isinstance(member, dict):
                        member["_group_id"] = group_id
                    pull.spool.write(member)
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            pull.log.warning(f"Okta: group {group_id} no longer exists (404); its members were skipped")


# The user object's columns, shared by okta_users and okta_group_members (whose records are user objects too).
_USER_COLUMNS = (
    col(
        "status",
        "text",
        "STAGED, PROVISIONED, ACTIVE, RECOVERY, LOCKED_OUT, PASSWORD_EXPIRED, SUSPENDED or DEPROVISIONED.",
    ),
    col("profile.login", "text", "Login (unique in the org, usually an email address)."),
    col("profile.email", "text", "Primary email (join to KnowBe4 `email`, Snyk members' `email`)."),
    col("profile.firstName", "text", "Given name."),
    col("profile.lastName", "text", "Family name."),
    col("created", "timestamp", "When the user was created."),
    col("activated", "timestamp", "When the user was activated (NULL: never)."),
    col("statusChanged", "timestamp", "Last status change: for DEPROVISIONED users, when access was revoked."),
    col("lastLogin", "timestamp", "Last sign-in to Okta (NULL: never): the dormant-account metrics read it."),
    col("lastUpdated", "timestamp", "Last change of the user object."),
    col("passwordChanged", "timestamp", "Last password change (NULL for federated users without an Okta password)."),
)
_USERS_COLUMNS = (
    col("id", "text", "User id (the `_user_id` of factors and roles; `id` of group members)."),
    *_USER_COLUMNS,
    col("profile.displayName", "text", "Display name."),
    col("profile.title", "text", "Job title."),
    col("profile.department", "text", "Department."),
    col("profile.userType", "text", "The org's own user classification (Employee, Contractor, ...)."),
    col("profile.employeeNumber", "text", "Employee number (HR join key)."),
    col("type.id", "text", "User type id."),
    col(
        "credentials.provider.type",
        "text",
        "Credential provider: OKTA, ACTIVE_DIRECTORY, LDAP, FEDERATION, SOCIAL, IMPORT.",
    ),
    col("credentials.provider.name", "text", "Credential provider name (the AD domain, ...)."),
)

SOURCE = Source(
    group="okta",
    title="Okta",
    docs_url="https://developer.okta.com/docs/api/openapi/okta-management/management/tag/User/",
    resource=OktaResource,
    datasets=(
        DatasetSpec(
            "okta_users",
            "Users",
            "Every user with the full profile, of every status including DEPROVISIONED (which a plain "
            "listing omits), for revoked-access and dormant-account metrics.",
            f'GET /api/v1/users?search=status eq "…" (all {len(STATUSES)} statuses)',
            pull=pull_users,
            required_fields=("id", "status", "profile.login"),
            columns=_USERS_COLUMNS,
        ),
        DatasetSpec(
            "okta_user_factors",
            "Enrolled MFA factors",
            "The factors each user has enrolled (type, provider, status); each record carries `_user_id`. "
            "Deprovisioned users are not asked (they hold no factors); enrollment secrets of pending "
            "factors are dropped.",
            "GET /api/v1/users/{user_id}/factors",
            pull=pull_user_factors,
            deps=("okta_users",),
            required_fields=("id", "factorType", "status", "_user_id"),
            allow_empty=True,
            columns=(
                col("id", "text", "Factor id."),
                col("_user_id", "text", "User the factor belongs to (join to okta_users.id)."),
                col(
                    "factorType",
                    "text",
                    "push, signed_nonce (Okta FastPass), token:software:totp, sms, call, email, webauthn, "
                    "token:hardware, u2f, question, ...",
                ),
                col("provider", "text", "OKTA, GOOGLE, FIDO, RSA, SYMANTEC, YUBICO, DUO, CUSTOM."),
                col("vendorName", "text", "Vendor of the factor (OKTA, GOOGLE, FIDO, ...)."),
                col("status", "text", "ACTIVE, PENDING_ACTIVATION, NOT_SETUP, ENROLLED, DISABLED or EXPIRED."),
                col("created", "timestamp", "When the factor was enrolled."),
                col("lastUpdated", "timestamp", "Last change of the factor."),
                col("profile.authenticatorName", "text", "WebAuthn authenticator (YubiKey, Touch ID, Windows Hello)."),
                col("profile.deviceType", "text", "Device of a push factor (SmartPhone_IPhone, ...)."),
                col("profile.platform", "text", "Platform of a push or FastPass factor (IOS, ANDROID, MACOS, ...)."),
            ),
        ),
        DatasetSpec(
            "okta_user_roles",
            "Administrator roles",
            "The administrator roles each user holds, assigned to the user or through a group "
            "(`assignmentType`); each record carries `_user_id`. Users who cannot sign in until an administrator "
            f"acts ({', '.join(ROLELESS_STATUSES)}) are not asked; a token that may not read roles (403) skips "
            "the asset.",
            "GET /api/v1/users/{user_id}/roles",
            pull=pull_user_roles,
            deps=("okta_users",),
            required_fields=("id", "type", "status", "_user_id"),
            allow_empty=True,
            columns=(
                col("id", "text", "Role assignment id."),
                col("_user_id", "text", "User holding the role (join to okta_users.id)."),
                col(
                    "type",
                    "text",
                    "SUPER_ADMIN, ORG_ADMIN, APP_ADMIN, USER_ADMIN, HELP_DESK_ADMIN, READ_ONLY_ADMIN, "
                    "GROUP_MEMBERSHIP_ADMIN, REPORT_ADMIN, MOBILE_ADMIN, API_ACCESS_MANAGEMENT_ADMIN, CUSTOM, ...",
                ),
                col("label", "text", "Role name as the Admin Console shows it."),
                col("status", "text", "ACTIVE or INACTIVE."),
                col("assignmentType", "text", "USER (assigned to the user) or GROUP (through a group)."),
                col("created", "timestamp", "When the role was assigned."),
                col("lastUpdated", "timestamp", "Last change of the assignment."),
                col("role", "text", "Custom role id (CUSTOM assignments)."),
                col("resource-set", "text", "Resource set of a custom role assignment."),
                col("_links.assignee.href", "text", "The user or group the role is assigned to."),
            ),
        ),
        DatasetSpec(
            "okta_groups",
            "Groups",
            "Every group (Okta, app-imported such as Active Directory, built-in).",
            "GET /api/v1/groups",
            pull=pull_groups,
            required_fields=("id", "type", "profile.name"),
            # Members are collected per group: a third of the groups lost empties a third of the memberships.
            max_drop=0.1,
            columns=(
                col("id", "text", "Group id (the `_group_id` of group members)."),
                col("type", "text", "OKTA_GROUP, APP_GROUP (imported, e.g. Active Directory) or BUILT_IN."),
                col("profile.name", "text", "Group name."),
                col("profile.description", "text", "Group description."),
                col("created", "timestamp", "When the group was created."),
                col("lastUpdated", "timestamp", "Last change of the group's profile."),
                col("lastMembershipUpdated", "timestamp", "Last change of the group's membership."),
                col("source.id", "text", "App an APP_GROUP is imported from."),
                col("profile.samAccountName", "text", "Active Directory sAMAccountName of an imported group."),
                col(
                    "profile.windowsDomainQualifiedName", "text", "Active Directory DOMAIN\\name of an imported group."
                ),
            ),
        ),
        DatasetSpec(
            "okta_group_members",
            "Group members",
            "One record per membership: the member's user object plus `_group_id`.",
            "GET /api/v1/groups/{group_id}/users",
            pull=pull_group_members,
            deps=("okta_groups",),
            required_fields=("id", "status", "_group_id"),
            allow_empty=True,
            columns=(
                col("id", "text", "Member's user id (join to okta_users.id)."),
                col("_group_id", "text", "Group of the membership (join to okta_groups.id)."),
                *_USER_COLUMNS,
            ),
        ),
    ),
    sandbox_env=lambda url, token: {"OKTA_DOMAIN": url, "OKTA_TOKEN": token},
)
