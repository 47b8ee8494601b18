"""The Falcon OAuth2 token of one pull: obtained and renewed through falconpy's OAuth2, by one thread at a time while
the others wait, and never moved to another host than the one configured."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

from ...collection.errors import AuthError, CollectionError
from ...collection.http import RETRYABLE_STATUS, Retrier, RetryableFailure, retry_after_seconds
from ...collection.threads import ExclusiveGate
from .api import CREDENTIALS_HINT, VENDOR, describe, header, sdk_failure


def retry_after(headers: Any) -> Optional[float]:
    # Falcon's X-Ratelimit-Retryafter is epoch seconds on its clock (psfalcon's class/Class.ps1 reads it with
    # FromUnixTimeSeconds); falconpy hands headers over as a plain dict.
    return retry_after_seconds(lambda name: header(headers, name), ("X-Ratelimit-Retryafter", "Retry-After"))


@functools.lru_cache(maxsize=1)
def falcon_auth_class() -> type:
    """falconpy's OAuth2 with the region rule below; built on first use, so that the processes that import the
    definitions but never pull (webserver, daemon, code server) do not load falconpy (18 MB of RSS, measured).
    Step processes get it from the forkserver's preload (definitions.PRELOADED_SDKS)."""
    from falconpy import OAuth2

    class FalconAuth(OAuth2):
        """falconpy's OAuth2, except that a token answer's X-Cs-Region may not move a URL the user configured.

        falconpy switches `base_url` to the region's public host after every login (autodiscover_region in
        _util/_functions.py); for a proxy, a private endpoint or the sandbox that would send the next request,
        bearer token included, somewhere else. Between CrowdStrike's own clouds (a region name was configured) the
        switch is kept, as falconpy means it: it rescues a wrong region.
        """

        def __init__(self, *, follow_region: bool, **kwargs: Any):
            self.follow_region = follow_region
            self.region_redirect: Optional[str] = None  # the last host a token answer pointed to
            super().__init__(**kwargs)

        @property
        def base_url(self) -> str:
            return self.config.base_url

        @base_url.setter
        def base_url(self, value: str) -> None:
            if value == self.config.base_url:
                return
            self.region_redirect = value
            if self.follow_region:
                self.config.base_url = value

    return FalconAuth


class FalconToken:
    """The bearer token every request of a pull carries, kept in falconpy's OAuth2 object (`auth`).

    Requests run inside `in_use()`, any number at once; a renewal after a refusal runs alone, and the threads that
    queue up behind it find the new token in place.
    """

    def __init__(self, auth: Any, retrier: Retrier, where: Callable[[], str], secrets: tuple[str, ...] = ()):
        self.auth = auth
        self.retrier = retrier
        self.log = retrier.log
        self._where = where
        self._secrets = secrets
        self._gate = ExclusiveGate()

    @property
    def value(self) -> Optional[str]:
        return self.auth.token_value

    def stale(self) -> bool:
        """True when there is no token yet; falconpy renews an expiring one by itself (auth_headers)."""
        return not self.auth.token_value

    @contextmanager
    def in_use(self) -> Iterator[Optional[str]]:
        """Hold the current token for one request; yields it, to tell a refusal of it from one of its successor."""
        with self._gate.shared():
            yield self.auth.token_value

    def ensure_fresh(self) -> None:
        if self.stale():
            self.renew()

    def renew(self, refused: Optional[str] = None) -> None:
        """A new token: ahead of expiry (`refused` None) or because the API refused `refused` (revoked, expired).

        Threads that queue up behind a renewal find the new token in place and return without asking again.
        """
        with self._gate.exclusive():
            if refused is None and not self.stale():
                return
            if refused is not None and self.auth.token_value and self.auth.token_value != refused:
                return
            self.retrier.call(self._login)

    def _login(self) -> None:
        """One token request (falconpy's login), turned into success, a retry or a clear refusal."""
        where = self._where()
        try:
            result = self.auth.login()
        except (KeyError, TypeError, AttributeError) as exc:  # a 201 whose body was not a token
            raise RetryableFailure(f"malformed token answer ({type(exc).__name__})", where) from None
        status = result.get("status_code") if isinstance(result, dict) else None
        body = result.get("body") if isinstance(result, dict) else None
        headers = result.get("headers") if isinstance(result, dict) else None
        if status == 201 and self.auth.token_value:
            self._note_region(headers)
            return
        if not isinstance(body, dict) or "meta" not in body:
            raise sdk_failure(body, where, self._secrets)
        detail = describe(body, self._secrets)
        if status in (401, 403):
            raise AuthError(f"{VENDOR}: {where} was refused with HTTP {status} ({detail}). {CREDENTIALS_HINT}.")
        if status in RETRYABLE_STATUS:
            raise RetryableFailure(
                f"HTTP {status}: {detail}", where, retry_after=retry_after(headers), throttled=status == 429
            )
        raise CollectionError(f"{VENDOR}: {where} failed with HTTP {status}: {detail}")

    def _note_region(self, headers: Any) -> None:
        redirect = self.auth.region_redirect
        if not redirect:
            return
        region = header(headers, "X-Cs-Region") or redirect
        if self.auth.follow_region:
            self.log.warning(
                f"{VENDOR}: the API client belongs to the cloud {region}; falconpy moved to "
                f"{redirect}. Set FALCON_BASE_URL={region} to skip the detour."
            )
        else:
            self.log.info(
                f"{VENDOR}: the token answer names the cloud {region}; staying on the configured "
                f"FALCON_BASE_URL {self.auth.base_url}."
            )
        self.auth.region_redirect = None
