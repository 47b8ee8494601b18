"""Microsoft Graph session: the app registration's settings and a session holding its client-credentials token,
renewed before it lapses; the login host is asked for the token only, and @odata.nextLink must stay on the Graph host."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Optional
from urllib.parse import urlsplit

from ...collection.errors import AuthError, CollectionError, ConfigError, http_status
from ...collection.http import HttpSession, HttpSettings, normalize_base_url, origin_of, origin_text, redact_url
from ...collection.settings import env_setting
from ..base import VendorResource, fanout_setting

DEFAULT_LOGIN_ENDPOINT = "https://login.microsoftonline.com"
DEFAULT_GRAPH_ENDPOINT = "https://graph.microsoft.com"
RENEW_MARGIN = 300.0  # seconds before expiry a token is replaced, so no request carries one about to lapse
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")  # a GUID or a verified domain; it goes into a URL path
DEFAULT_FANOUT_WORKERS = 4
_CREDENTIALS = "MICROSOFT365_TENANT_ID, MICROSOFT365_CLIENT_ID and MICROSOFT365_CLIENT_SECRET"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class GraphSession(HttpSession):
    """An HttpSession on Graph that holds the app's client-credentials token and renews it before it lapses."""

    def __init__(self, resource: Microsoft365Resource, settings: HttpSettings, logger: Any = None):
        tenant = (resource.tenant_id or "").strip()
        if not _TENANT.fullmatch(tenant):
            raise ConfigError(f"Microsoft 365: MICROSOFT365_TENANT_ID {tenant[:60]!r} is not a tenant ID or domain")
        try:
            graph = normalize_base_url(resource.graph_endpoint, strip_suffixes=("/v1.0", "/beta"))
            login = normalize_base_url(resource.login_endpoint, strip_suffixes=(f"/{tenant}/oauth2/v2.0/token",))
        except CollectionError as exc:
            raise ConfigError(
                f"Microsoft 365: MICROSOFT365_GRAPH_ENDPOINT or MICROSOFT365_LOGIN_ENDPOINT is not usable: {exc}"
            ) from None
        super().__init__(
            "Microsoft 365",
            graph,
            settings=settings,
            auth_hint=f"Check {_CREDENTIALS}, and that the app registration has the Graph application permissions "
            "with admin consent",
            error_detail=self._error_detail,
            secrets=[resource.client_secret or ""],
            logger=logger,
            pool_size=resource.fanout_workers,
        )
        # The token comes from the login host (Entra ID), another origin than Graph's. It is trusted for the token
        # request only: that request goes through a session of its own, held to the login origin, and this one (the
        # bearer token, every next link and redirect) is held to the Graph origin alone.
        self.login = HttpSession(
            "Microsoft 365",
            login,
            settings=settings,
            auth_hint=f"Check {_CREDENTIALS}",
            error_detail=self._error_detail,
            secrets=[resource.client_secret or ""],
            logger=logger,
            pool_size=1,
        )
        self.login.stats = self.login.retrier.stats = self.stats  # one set of counters: the asset's http_* metadata
        self.token_url = f"{login}{tenant}/oauth2/v2.0/token"
        self.scope = f"{_origin(graph)}/.default"
        self.client_id = (resource.client_id or "").strip()
        self.client_secret = resource.client_secret or ""
        self.clock: Callable[[], float] = time.monotonic
        self.tokens_issued = 0
        self._errors = threading.local()  # each worker reads the error of its own request
        self._token_lock = threading.Lock()  # one worker renews the token; the others wait and use it
        self._renew_at = 0.0

    @property
    def last_error(self) -> dict[str, str]:
        """Graph's {code, message} of this thread's last error answer."""
        return getattr(self._errors, "last", {})

    @last_error.setter
    def last_error(self, value: dict[str, str]) -> None:
        self._errors.last = value

    def _error_detail(self, body: Any) -> Optional[str]:
        """Graph's {"error": {code, message}} and Entra ID's {"error", "error_description"}; the last one is kept."""
        self.last_error = {}
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                self.last_error = {"code": str(error.get("code") or ""), "message": str(error.get("message") or "")}
            elif isinstance(error, str):
                self.last_error = {"code": error, "message": str(body.get("error_description") or "")}
        if not self.last_error:
            return None
        return f"{self.last_error['code']}: {self.last_error['message']}".strip(": ")

    def authorize(self, force: bool = False) -> None:
        """Make sure the session carries a token that is not about to expire (a forced renewal asked by several
        workers at once is done by the first of them)."""
        if not force and self.clock() < self._renew_at:
            return
        renewed_before = self.tokens_issued
        with self._token_lock:
            if self.tokens_issued != renewed_before or (not force and self.clock() < self._renew_at):
                return  # another worker renewed it meanwhile
            self._renew()

    def _renew(self) -> None:
        try:
            # The login session never carries the bearer token: the old token has no business at the token endpoint.
            response = self.login.request(
                "POST",
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "scope": self.scope,
                },
            )
        except CollectionError as exc:
            if http_status(exc) in (400, 401, 403):
                raise AuthError(
                    f"Microsoft 365: the token request to {redact_url(self.token_url)} was refused "
                    f"({self.last_error.get('code') or exc}: {self.last_error.get('message', '')[:300]}). "
                    f"Check {_CREDENTIALS} (the secret's value, not its ID) and, for national clouds, "
                    "MICROSOFT365_LOGIN_ENDPOINT."
                ) from None
            raise
        body = response.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise CollectionError(
                f"Microsoft 365: the token endpoint {redact_url(self.token_url)} answered without an access_token"
            )
        try:
            lifetime = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 3599.0
        self._renew_at = self.clock() + lifetime - min(RENEW_MARGIN, lifetime / 2)
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.secrets = tuple(self.secrets) + (token,)
        self.tokens_issued += 1

    def follow(self, link: str) -> str:
        """An @odata.nextLink as Graph sends it: absolute, on the Graph host (https://learn.microsoft.com/graph/paging:
        "include the entire URL"). One on any other origin, the login host's included, fails the pull before anything
        is sent there, so the bearer token goes to MICROSOFT365_GRAPH_ENDPOINT's origin only."""
        found = origin_of(link)
        if found is not None and found == origin_of(self.base_url):
            return link
        raise CollectionError(
            f"Microsoft 365: an @odata.nextLink points at {origin_text(link)}, not at the configured "
            f"MICROSOFT365_GRAPH_ENDPOINT origin {origin_text(self.base_url)}. The pull stopped and sent nothing there, "
            "so the token stayed with the Graph host. If the tenant's Graph really is on that host (a national cloud), "
            "set MICROSOFT365_GRAPH_ENDPOINT to it"
        )

    def close(self) -> None:
        self.login.close()
        super().close()


class Microsoft365Resource(VendorResource):
    """The Graph app registration. The client secret enters config only as an EnvVar reference."""

    settings_title: ClassVar[str] = "Microsoft 365"

    tenant_id: Optional[str] = env_setting(
        "MICROSOFT365_TENANT_ID", "Directory (tenant) ID, or a verified domain, of the app registration.", required=True
    )
    client_id: Optional[str] = env_setting(
        "MICROSOFT365_CLIENT_ID",
        "Application (client) ID of the app registration. Graph application "
        "permissions with admin consent: User.Read.All, AuditLog.Read.All, "
        "DeviceManagementManagedDevices.Read.All, SecurityEvents.Read.All, RoleManagement.Read.Directory.",
        required=True,
    )
    client_secret: Optional[str] = env_setting(
        "MICROSOFT365_CLIENT_SECRET",
        "Client secret value (not its ID) of the app registration.",
        required=True,
        secret=True,
    )
    login_endpoint: str = env_setting(
        "MICROSOFT365_LOGIN_ENDPOINT",
        "Entra ID token host; national clouds: `https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`.",
        DEFAULT_LOGIN_ENDPOINT,
    )
    graph_endpoint: str = env_setting(
        "MICROSOFT365_GRAPH_ENDPOINT",
        "Graph host (also the token's scope); national clouds: "
        "`https://graph.microsoft.us`, `https://dod-graph.microsoft.us`, "
        "`https://microsoftgraph.chinacloudapi.cn`.",
        DEFAULT_GRAPH_ENDPOINT,
    )

    fanout_workers: int = fanout_setting(
        "MICROSOFT365_FANOUT_WORKERS",
        DEFAULT_FANOUT_WORKERS,
        "Directory roles whose members are read at once",
        "A 429 (Graph's throttling, with Retry-After) pauses all of them.",
    )

    def client(self, settings: HttpSettings, logger: Any = None) -> GraphSession:
        return GraphSession(self, settings, logger)
