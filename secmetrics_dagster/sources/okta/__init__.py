"""Okta: users of every status, their enrolled MFA factors and administrator roles, groups and group members from
the Management API.

Okta's rate limits are per endpoint and org-wide, shared with every other integration and with sign-ins, so the
session reads X-Rate-Limit-* after each answer and every worker pauses for the window's reset before the quota runs
out (down to OKTA_RATE_LIMIT_RESERVE).

The package: client.py (settings, session), pulls.py; the declaration is here.
"""

from __future__ import annotations

from ..catalog import declare_source
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

SOURCE = declare_source(
    __name__,
    "datasets.yaml",
    OktaResource,
    sandbox_env=lambda url, token: {"OKTA_DOMAIN": url, "OKTA_TOKEN": token},
    values={"statuses": len(STATUSES), "roleless": ", ".join(ROLELESS_STATUSES)},
)
