"""The Falcon OAuth2 token of one pull: renewed ahead of its expiry by one thread while the others wait, and the
falconpy service classes that carry it, which never leave the configured host (or, from one of CrowdStrike's clouds,
the other CrowdStrike cloud a token answer names)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

from ...collection.errors import AuthError, CollectionError
from ...collection.http import RETRYABLE_STATUS, Retrier, RetryableFailure, retry_after_seconds
from ...collection.threads import ExclusiveGate
from .api import CREDENTIALS_HINT, SERVICES, VENDOR, describe, followed_cloud, header, sdk_failure

# A token is renewed this long before its `expires_in` runs out: falconpy's own renew window (BearerToken's
# _renew_window = 120 in falconpy 1.6.6, _auth_object/_bearer_token.py), capped at half the lifetime so that a
# short-lived token (a sandbox's) is still used for a while. Falcon's tokens live 30 minutes ("Tokens expire after
# 30 minutes", CrowdStrike's API specification, quoted at https://docs.rs/crate/rusty_falcon/latest/source/src/apis/oauth2_api.rs).
RENEW_MARGIN = 120.0


def retry_after(headers: Any) -> Optional[float]:
    # Falcon's X-Ratelimit-Retryafter is epoch seconds on its clock (CrowdStrike's psfalcon, class/Class.ps1, reads
    # it with FromUnixTimeSeconds on a 429); falconpy hands headers over as a plain dict.
    return retry_after_seconds(lambda name: header(headers, name), ("X-Ratelimit-Retryafter", "Retry-After"))


@dataclass(frozen=True)
class Issued:
    """One token and the falconpy service classes that carry it."""

    value: str
    services: dict[str, Any]


class FalconToken:
    """The bearer token every request of a pull carries.

    falconpy's OAuth2 object (`auth`, built with the credentials) only logs in and out. The service classes get
    the token by falconpy's token authentication ("cannot reauthenticate itself ... You will have to regenerate your
    bearer token before it expires", falconpy samples/authentication/README.md), because with object authentication
    falconpy renews by itself in `FalconInterface.auth_headers`: unlocked, from every worker thread that builds a
    request once the token is inside its renew window (never under 120 s, _constant MIN_TOKEN_RENEW_WINDOW), and
    unretried. Here, requests run inside `in_use()`, any number at once; a renewal runs alone: it waits for the
    requests in flight (their token is still valid, it is renewed early), holds new ones back, and hands out new
    service classes. An expiry costs one token request and no refused call.
    """

    def __init__(
        self,
        auth: Any,
        make_service: Callable[[str, str, str], Any],
        retrier: Retrier,
        where: Callable[[], str],
        *,
        base_url: str,
        follow_region: bool,
        move_session: Callable[[str], None] = lambda url: None,
        secrets: tuple[str, ...] = (),
    ):
        self.auth = auth
        self.base_url = base_url  # where requests go: the configured URL, or the cloud a token answer named
        self.follow_region = follow_region  # the configured URL is one of CrowdStrike's clouds (followed_cloud)
        self._move_session = move_session  # the session's allowed origin moves with the requests
        self.retrier = retrier
        self.log = retrier.log
        self._configured_url = base_url
        self._make_service = make_service
        self._where = where
        self._secrets = secrets
        self._gate = ExclusiveGate()
        self._issued: Optional[Issued] = None

    def stale(self) -> bool:
        """True when there is no token or it is within the renew margin of its expiry.

        falconpy's OAuth2 records the token answer's `expires_in` as `token_expiration` and the moment it got the
        answer as `token_time` (epoch seconds); its own `token_stale` (a service class's `token_expired()`) is the
        same test with its renew window.
        """
        lifetime = self.auth.token_expiration
        if self._issued is None or not lifetime:
            return True
        margin = min(RENEW_MARGIN, lifetime / 2)
        return time.time() - self.auth.token_time >= lifetime - margin

    @contextmanager
    def in_use(self) -> Iterator[Issued]:
        """The current token and its service classes, held for one request (after ensure_fresh())."""
        with self._gate.shared():
            if self._issued is None:
                raise CollectionError(f"{VENDOR}: no token yet; ensure_fresh() comes before a request")
            yield self._issued

    def ensure_fresh(self) -> None:
        if self.stale():
            self.renew()

    def renew(self, refused: Optional[str] = None) -> None:
        """A new token: ahead of expiry (`refused` None) or because the API refused `refused` (revoked, expired).

        Threads that queue up behind a renewal find the new token in place and return without asking again.
        """
        with self._gate.exclusive():
            current = self._issued.value if self._issued else None
            if refused is None and not self.stale():
                return
            if refused is not None and current and current != refused:
                return
            self.retrier.call(self._login)

    def revoke(self) -> None:
        """Revoke the current token (falconpy's logout), if there is one."""
        if self._issued is not None and self.auth.token_value:
            self.auth.logout()

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
            self._follow_region(headers)
            token = self.auth.token_value
            self._issued = Issued(token, {name: self._make_service(name, token, self.base_url) for name in SERVICES})
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

    def _follow_region(self, headers: Any) -> None:
        """falconpy moves OAuth2's `base_url` to the public host of the cloud a token answer names (X-Cs-Region;
        autodiscover_region in _util/_functions.py). Between CrowdStrike's own clouds (api.followed_cloud) that
        rescues a wrong region and is kept, and the session's allowed origin moves with it; a URL the user configured
        (proxy, private endpoint, sandbox), or a cloud outside that list, stays, so that neither the requests nor the
        next login carry a token anywhere else."""
        moved = self.auth.base_url
        if moved == self.base_url:
            return
        region = header(headers, "X-Cs-Region") or moved
        if self.follow_region and followed_cloud(moved):
            self._move_session(moved)  # first: should the session refuse, nothing has moved
            self.base_url = moved
            self.log.warning(
                f"{VENDOR}: the API client belongs to the cloud {region}; falconpy moved to "
                f"{moved}. Set FALCON_BASE_URL={region} to skip the detour."
            )
            return
        self.auth.base_url = self.base_url
        if self.follow_region:
            self.log.warning(
                f"{VENDOR}: the token answer names the cloud {region} ({moved}), which a pull does not move to; "
                f"staying on {self.base_url}. Set FALCON_BASE_URL to the API client's cloud if requests are refused."
            )
            return
        self.log.info(
            f"{VENDOR}: the token answer names the cloud {region}; staying on the configured "
            f"FALCON_BASE_URL {self._configured_url}."
        )
