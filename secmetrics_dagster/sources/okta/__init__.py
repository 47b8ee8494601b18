"""Okta: users of every status, their enrolled MFA factors and administrator roles, groups and group members from
the Management API.

Okta's rate limits are per endpoint and org-wide, shared with every other integration and with sign-ins, so the
session reads X-Rate-Limit-* after each answer and every worker pauses for the window's reset before the quota runs
out (down to OKTA_RATE_LIMIT_RESERVE).

The package: client.py (settings, session), pulls.py; the declaration is here.
"""

from __future__ import annotations

from ...collection.columns import col
from ..base import DatasetSpec, Source
from .client import (
    DEFAULT_FANOUT_WORKERS,
    DEFAULT_PAGE_LIMIT,
    DEFAULT_RATE_LIMIT_RESERVE,
    MAX_QUOTA_PAUSE,
    OktaResource,
    okta_base_url,
)
from .pulls import (
    ROLELESS_STATUSES,
    STATUSES,
    USER_SEARCH,
    _next_link,
    pull_group_members,
    pull_groups,
    pull_user_factors,
    pull_user_roles,
    pull_users,
)

__all__ = [
    "DEFAULT_FANOUT_WORKERS",
    "DEFAULT_PAGE_LIMIT",
    "DEFAULT_RATE_LIMIT_RESERVE",
    "MAX_QUOTA_PAUSE",
    "ROLELESS_STATUSES",
    "SOURCE",
    "STATUSES",
    "USER_SEARCH",
    "OktaResource",
    "_next_link",
    "okta_base_url",
    "pull_group_members",
    "pull_groups",
    "pull_user_factors",
    "pull_user_roles",
    "pull_users",
]

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
            "Every group (Okta, app-imported such as Active Directory, built-in), with Okta's member count "
            "(`_embedded.stats.usersCount`), which okta_group_members is checked against.",
            "GET /api/v1/groups?expand=stats",
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
                col(
                    "_embedded.stats.usersCount", "integer", "Members of the group, as Okta counts them (expand=stats)."
                ),
            ),
        ),
        DatasetSpec(
            "okta_group_members",
            "Group members",
            "One record per membership: the member's user object plus `_group_id`. Each group's members are "
            "compared with its `usersCount` in okta_groups (a difference warns in record_count_stable).",
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
