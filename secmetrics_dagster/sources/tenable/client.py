"""pyTenable wired into the framework: a TenableIO on the pull's HTTP session, request counters, errors for people.

pyTenable (its embedded restfly) retries 429 and 501-504 itself, honouring Retry-After, so nothing here retries HTTP
again; the counters come from a requests transport adapter, which sees every attempt pyTenable makes.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenable import errors as tenable_errors
from tenable.io import TenableIO

from ...collection.errors import AuthError, CollectionError
from ...collection.http import HttpStats, default_error_detail, redact_url
from . import AUTH_HINT, VENDOR  # the package defines them without importing pyTenable

# What pyTenable retries with the 500 added below; every answer with one of these is followed by another attempt.
RETRIED_STATUS = frozenset({429, 500, 501, 502, 503, 504})


class RetriedServerError(tenable_errors.ServerError):
    """HTTP 500, retried like the 5xx answers pyTenable already retries (its default gives up on a 500 at once)."""

    retryable = True


class SecmetricsTenableIO(TenableIO):
    """TenableIO with restfly's documented error-map override: a 500 is retried like a 502/503/504."""

    _error_map = {500: RetriedServerError}


class CountingAdapter(HTTPAdapter):
    """Counts pyTenable's attempts for the asset metadata: requests, retries, 429s, bytes and time spent waiting.

    A retry is an attempt that follows a failed one (429/5xx answer, timeout, dropped or cut-short body) in the same
    thread: pyTenable retries in the thread that failed, sleeping in between, so that gap is the wait.
    """

    def __init__(self, stats: HttpStats, pool_size: int = 10):
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size)
        self.stats = stats
        self._lock = threading.Lock()
        self._local = threading.local()

    def note_retry(self) -> None:
        """An attempt that failed above HTTP (a chunk that did not parse) and will be made again."""
        self._local.failed_at = time.monotonic()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        failed_at = getattr(self._local, "failed_at", None)
        self._local.failed_at = None
        with self._lock:
            self.stats.requests += 1
            if failed_at is not None:
                self.stats.retries += 1
                self.stats.waited_seconds += time.monotonic() - failed_at
        try:
            response = super().send(request, **kwargs)
            # Read here so that a body cut short fails inside this attempt (requests would read it right after).
            size = len(response.content) if not kwargs.get("stream") else 0
        except requests.RequestException:
            self._local.failed_at = time.monotonic()
            raise
        with self._lock:
            self.stats.bytes += size
            if response.status_code == 429:
                self.stats.throttled += 1
        if response.status_code in RETRIED_STATUS:
            self._local.failed_at = time.monotonic()
        return response


def connect(resource: Any, http: Any) -> tuple[SecmetricsTenableIO, CountingAdapter]:
    """A TenableIO that talks through the pull's HttpSession (its requests session, timeouts and retry budget)."""
    settings = http.settings
    adapter = CountingAdapter(http.stats, pool_size=max(10, 2 * resource.export_threads))
    tio = SecmetricsTenableIO(
        resource.access_key,
        resource.secret_key,
        url=http.base_url.rstrip("/"),
        retries=settings.max_retries,
        backoff=settings.backoff_base,
        timeout=(settings.connect_timeout, settings.read_timeout),
        session=http.session,
        adapter=adapter,
        vendor="secmetrics-dagster",
        product="secmetrics-dagster",
        build="0.1",
    )
    return tio, adapter


def _detail(response: requests.Response, secrets: tuple[str, ...]) -> str:
    try:
        detail = default_error_detail(json.loads(response.content))
    except ValueError:
        detail = None
    text = detail or response.content[:200].decode("utf-8", "replace").strip() or response.reason or ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:300]


def describe(exc: BaseException, what: str, secrets: tuple[str, ...] = ()) -> CollectionError:
    """An error that names the endpoint, the cause and what to do; AuthError for 401/403."""
    if isinstance(exc, tenable_errors.APIError):
        response = exc.response
        where = f"{response.request.method} {redact_url(response.request.url)}"
        detail = _detail(response, secrets)
        if exc.code in (401, 403):
            return AuthError(f"{VENDOR}: {what}: {where} was refused with HTTP {exc.code} ({detail}). {AUTH_HINT}.")
        tail = (
            " after pyTenable's retries; the API may be down or throttling, try again later"
            if exc.code in RETRIED_STATUS
            else ""
        )
        return CollectionError(f"{VENDOR}: {what}: {where} failed with HTTP {exc.code}: {detail}{tail}.")
    if isinstance(exc, requests.RequestException):
        url = redact_url(exc.request.url) if getattr(exc, "request", None) is not None else "the API"
        return CollectionError(
            f"{VENDOR}: {what}: {url} could not be read ({type(exc).__name__}) after pyTenable's "
            "retries. Check TIO_URL and the network, or raise COLLECTION_HTTP_READ_TIMEOUT."
        )
    if isinstance(exc, tenable_errors.TioExportsError):
        return CollectionError(f"{VENDOR}: {what}: {exc}")
    return CollectionError(f"{VENDOR}: {what}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def tenable_errors_as_collection_errors(what: str, secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """pyTenable's exceptions (and requests' after its retries) become the framework's errors, described for people."""
    try:
        yield
    except CollectionError:
        raise
    except (tenable_errors.RestflyException, requests.RequestException) as exc:
        raise describe(exc, what, secrets) from exc
