"""Okta's Management API session: the org and token settings, and the SSWS session whose shared rate limiter reads
X-Rate-Limit-* from every answer and pauses every worker before an endpoint's org-wide rate limit runs out."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Optional
from urllib.parse import urlsplit, urlunsplit

from ...collection.errors import CollectionError, ConfigError
from ...collection.http import HttpSession, HttpSettings, normalize_base_url
from ...collection.settings import env_setting
from ..base import VendorResource, fanout_setting

DEFAULT_PAGE_LIMIT = 200
DEFAULT_RATE_LIMIT_RESERVE = 20.0
# Users (or groups) read at once by the per-user and per-group pulls. Okta also limits concurrent requests per org
# (https://developer.okta.com/docs/reference/rl2-limits/, linked from rl-global-mgmt), shared with every other integration: 4 stays
# well inside it, and the per-endpoint quota, not the workers, is what bounds a large org's pull.
DEFAULT_FANOUT_WORKERS = 4
MAX_QUOTA_PAUSE = 120.0  # Okta's windows are a minute; a reset further out is a clock or proxy problem
_ADMIN_HOST = re.compile(r"(?P<org>.+)-admin\.(?P<domain>(?:okta|oktapreview|okta-emea|okta-gov)\.(?:com|mil))", re.I)


def okta_base_url(domain: str) -> str:
    """`acme.okta.com`, `https://acme.okta.com/`, `acme-admin.okta.com`, `…/api/v1` → `https://acme.okta.com/`."""
    try:
        base = normalize_base_url(domain, strip_suffixes=("/api/v1",))
    except CollectionError as exc:
        raise ConfigError(
            f"Okta: OKTA_DOMAIN {domain!r} is not usable ({exc}); set it to your org's domain, e.g. acme.okta.com"
        ) from None
    parts = urlsplit(base)
    admin = _ADMIN_HOST.fullmatch(parts.hostname or "")
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
    fanout_workers: int = fanout_setting(
        "OKTA_FANOUT_WORKERS",
        DEFAULT_FANOUT_WORKERS,
        "Users' factors and roles, and groups' members, read at once",
        "They share one pace: the rate-limit reserve holds for all of them together.",
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
            # One window per endpoint family (/api/v1/users/*/factors for all users), org-wide: every worker's
            # request counts it down, so the reserve holds however many are in flight.
            quota_headers=("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"),
            quota_reserve_percent=self.rate_limit_reserve,
            max_quota_pause=MAX_QUOTA_PAUSE,
            pool_size=self.fanout_workers,
        )
