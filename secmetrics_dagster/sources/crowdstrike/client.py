"""falconpy's service classes behind the project's retries, counters and rate-limit pacing: one `call()` per operation.

falconpy makes the HTTP calls; this adds what it leaves out: retries (it never retries, 429 included), slowing down
before `X-Ratelimit-Remaining` reaches zero, one token renewal for all threads (token.py), and errors that name the
endpoint and the variable to check.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from requests.adapters import HTTPAdapter

from ...collection.errors import AuthError, CollectionError
from ...collection.http import (
    RETRYABLE_STATUS,
    HttpSettings,
    Retrier,
    RetryableFailure,
    SameOriginSession,
    origin_text,
    redact_url,
)
from .api import (
    CREDENTIALS_HINT,
    TOKEN,
    VENDOR,
    Endpoint,
    FalconApiError,
    describe,
    error_messages,
    errors,
    followed_cloud,
    header,
    resolve_base_url,
    sdk_failure,
)
from .token import FalconToken, retry_after

if TYPE_CHECKING:
    from . import CrowdStrikeResource


def _falconpy_version() -> str:
    from falconpy import __version__

    return __version__


class CloudSession(SameOriginSession):
    """The pooled session of a Falcon pull: held to one origin, which moves only from one of CrowdStrike's clouds to
    another (api.followed_cloud) when a token answer names the cloud the API client belongs to."""

    def move_to(self, url: str) -> None:
        """Send from now on to `url` (and nowhere else); a CollectionError, and no move, unless both the current
        origin and `url` are followed clouds."""
        if not (followed_cloud(self.base_url) and followed_cloud(url)):
            raise CollectionError(
                f"{VENDOR}: refused to move from {origin_text(self.base_url)} to {redact_url(url)}: a pull follows a "
                "token answer's region only between CrowdStrike's clouds (us-1, us-2, eu-1, us-gov-1). Set "
                "FALCON_BASE_URL to the cloud of the API client."
            )
        self.base_url = url


class FalconClient:
    """falconpy's Hosts, SpotlightVulnerabilities and ZeroTrustAssessment behind the project's retries and counters.

    It stands where `HttpSession` does for HTTP sources: `stats`, a context manager, and `call()` for one operation.
    """

    def __init__(
        self,
        resource: CrowdStrikeResource,
        settings: HttpSettings,
        logger: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.resource = resource
        self.base_url = resolve_base_url(resource.base_url)  # as configured; requests go to token.base_url
        self.retrier = Retrier(VENDOR, settings, logger=logger, sleep=sleep)
        self.stats = self.retrier.stats
        self.log = self.retrier.log
        self._secrets = tuple(resource.secret_values())  # masked in every error text this client writes
        self._sleep = sleep
        self._rate_lock = threading.Lock()
        self._rate: tuple[int, int] | None = None  # (X-Ratelimit-Limit, X-Ratelimit-Remaining) last seen
        self._sent: deque[float] = deque()  # when this client's requests of the last rate window went (monotonic)
        # One pooled session for every thread (falconpy otherwise opens a new connection per request), held to the
        # configured origin: a request or redirect anywhere else is refused before the bearer token is sent.
        self.session = CloudSession(VENDOR, self.base_url)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=resource.workers + 2)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._connection = {
            # True lets requests apply REQUESTS_CA_BUNDLE / SSL_CERT_FILE, as everywhere else in the project.
            "ssl_verify": True,
            "proxy": {"http": resource.proxy, "https": resource.proxy} if resource.proxy else None,
            "timeout": (settings.connect_timeout, settings.read_timeout),
            "user_agent": f"{settings.user_agent} crowdstrike-falconpy/{_falconpy_version()}",
            "session": self.session,
        }
        # falconpy is imported when a client is built, not with this module: the processes that import the
        # definitions but never pull (webserver, daemon, code server) do not load it (18 MB of RSS, measured). Step
        # processes get it from the forkserver's preload (definitions.PRELOADED_SDKS).
        from falconpy import OAuth2

        self.auth = OAuth2(
            client_id=resource.client_id,
            client_secret=resource.client_secret,
            base_url=self.base_url,
            **self._connection,
        )
        self.token = FalconToken(
            self.auth,
            self._service,
            self.retrier,
            lambda: self._where(TOKEN),
            base_url=self.base_url,
            follow_region=followed_cloud(self.base_url),
            move_session=self.session.move_to,
            secrets=self._secrets,
        )

    def _service(self, name: str, token: str, base_url: str) -> Any:
        """A falconpy service class carrying `token` (falconpy's token authentication: it never logs in itself)."""
        import falconpy

        return getattr(falconpy, name)(access_token=token, base_url=base_url, **self._connection)

    # lifecycle

    def __enter__(self) -> FalconClient:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.token.revoke()  # best effort, a failed revoke does not fail the pull
        except Exception as revoke_error:  # noqa: BLE001
            self.log.debug(f"{VENDOR}: token revocation failed: {revoke_error}")
        finally:
            self.close()

    def close(self) -> None:
        self.session.close()

    def _where(self, endpoint: Endpoint) -> str:
        return f"{endpoint.method} {redact_url(self.token.base_url + endpoint.path)}"

    def services(self) -> dict[str, Any]:
        """The service classes carrying the current token (getting one first if needed)."""
        self.token.ensure_fresh()
        with self.token.in_use() as issued:
            return issued.services

    # rate limit

    @staticmethod
    def _retry_after(headers: Any) -> Optional[float]:
        return retry_after(headers)

    def _note_rate_limit(self, headers: Any) -> None:
        try:
            limit = int(header(headers, "X-Ratelimit-Limit") or "")
            remaining = int(header(headers, "X-Ratelimit-Remaining") or "")
        except ValueError:
            return
        with self._rate_lock:
            self._rate = (limit, remaining)

    def _slow_down(self) -> None:
        """Near the end of the rate limit, wait for a slot instead of running into 429s.

        Falcon counts requests over a sliding window ("calculated on a sliding window", CrowdStrike's rate-limit
        documentation as quoted in CrowdStrike/gofalcon#364): a slot frees when a request leaves the window, and the
        oldest this client knows of is its own. So, near the end, each request waits until the oldest of ours is a
        window old; requests of other clients of the same account can still exhaust it, which a 429 then handles.
        """
        window = self.resource.rate_limit_window
        with self._rate_lock:
            now = time.monotonic()
            while self._sent and self._sent[0] <= now - window:
                self._sent.popleft()
            slot = now
            if self._rate and self._rate[0] > 0 and self._sent:
                limit, remaining = self._rate
                # Requests in flight on other threads spend the remainder too, hence the workers in the margin.
                if remaining <= max(self.resource.workers + 2, math.ceil(limit * 0.05)):
                    slot = max(now, self._sent.popleft() + window)
            self._sent.append(slot)
        if slot > now:
            self._sleep(slot - now)
            self.retrier.count("paced_seconds", slot - now)

    # one operation

    def call(self, endpoint: Endpoint, *, missing_ok: bool = False, **kwargs: Any) -> dict:
        """Run one falconpy operation with retries (getting a token first if needed); returns the answer's body.

        `missing_ok`: a 404 whose errors are all "not found" (entity lookups by id) is an answer, not a failure.
        """
        renewed = False

        def attempt() -> dict:
            nonlocal renewed
            self.token.ensure_fresh()
            self._slow_down()
            with self.token.in_use() as issued:
                result = getattr(issued.services[endpoint.service], endpoint.function)(**kwargs)
            status = result.get("status_code") if isinstance(result, dict) else None
            headers = result.get("headers") if isinstance(result, dict) else None
            body = result.get("body") if isinstance(result, dict) else None
            where = self._where(endpoint)
            # Not from a 429 (its X-Ratelimit-Retryafter already says when to go on) nor a 401 (a refused token is
            # metered apart, at 15 a minute per address: the sandbox's RATE LIMITS).
            if status not in (401, 429):
                self._note_rate_limit(headers)
            self.retrier.count("bytes", int(header(headers, "Content-Length") or 0))
            if not isinstance(body, dict) or "meta" not in body:
                raise sdk_failure(body, where, self._secrets)
            if isinstance(status, int) and 200 <= status < 300:
                return body
            if missing_ok and status == 404 and all(e.get("code") == 404 for e in errors(body)):
                return body
            detail = describe(body, self._secrets)
            if status in RETRYABLE_STATUS:
                raise RetryableFailure(
                    f"HTTP {status}: {detail}", where, retry_after=retry_after(headers), throttled=status == 429
                )
            if status == 401 and not renewed:
                renewed = True  # revoked, or expired early: one fresh token, then the same request again
                self.token.renew(refused=issued.value)
                raise RetryableFailure(
                    f"HTTP 401 ({detail}): the token expired or was revoked; got a new one", where, retry_after=0
                )
            if status == 401:
                raise AuthError(
                    f"{VENDOR}: {where} was refused with HTTP 401 ({detail}) even with a new token. {CREDENTIALS_HINT}."
                )
            if status == 403:
                raise AuthError(
                    f"{VENDOR}: {where} was refused with HTTP 403 ({detail}). Check that the API client "
                    f"FALCON_CLIENT_ID has the scope '{endpoint.scope}'."
                )
            raise FalconApiError(
                f"{VENDOR}: {where} failed with HTTP {status}: {detail}", status or 0, error_messages(body)
            )

        return self.retrier.call(attempt)
