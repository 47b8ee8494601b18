"""AWS through boto3: one botocore session per pull, counted calls and retries, AWS errors translated for people.

botocore does the signing, retries (standard or adaptive mode) and pagination; this module counts calls and
retries for the asset metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Optional

import botocore.exceptions
import botocore.parsers
from botocore.config import Config

from ...collection.errors import AuthError, CollectionError, ConfigError
from ...collection.http import HttpSettings, redact_url

if TYPE_CHECKING:
    from . import AwsResource

DEFAULT_REGION = "us-east-1"  # where global APIs (IAM, S3 ListBuckets, DescribeRegions) are called from
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


# Error codes meaning "these credentials may not do that": fail at once, naming the permission.
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "UnrecognizedClientException",
        "OptInRequired",
    }
)
_THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestThrottled",
        "EC2ThrottledException",
        "BandwidthLimitExceeded",
    }
)
# Per-bucket answers that describe that bucket (or this S3 implementation), not a broken collection.
_BUCKET_RECORDABLE = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "NoSuchBucket",
        "NotImplemented",
        "MethodNotAllowed",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
        "InvalidRequest",
        "XNotImplemented",
    }
)


def _excerpt(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_regions(value: str) -> list[str]:
    regions = [r.strip().lower() for r in re.split(r"[,;\s]+", value or "") if r.strip()]
    bad = [r for r in regions if not _REGION.fullmatch(r)]
    if bad:
        raise ConfigError(f"AWS_REGIONS: {', '.join(repr(b[:30]) for b in bad)} is not a region name like eu-west-1")
    return list(dict.fromkeys(regions))


def jsonable(value: Any) -> Any:
    """A boto3 answer as plain JSON: datetimes in ISO 8601, bytes as text, ResponseMetadata dropped."""

    def default(obj: Any) -> Any:
        if isinstance(obj, (datetime, date)):
            return obj.isoformat()
        if isinstance(obj, (bytes, bytearray)):
            return obj.decode("utf-8", "replace")
        return str(obj)

    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "ResponseMetadata"}
    return json.loads(json.dumps(value, default=default))


def _bucket_region(constraint: Optional[str]) -> str:
    # GetBucketLocation answers null for us-east-1 and the legacy "EU" for eu-west-1.
    if not constraint:
        return "us-east-1"
    return "eu-west-1" if constraint == "EU" else constraint


@dataclass
class AwsStats:
    api_calls: int = 0
    requests: int = 0  # HTTP attempts, retries included
    throttled: int = 0

    def as_metadata(self) -> dict[str, Any]:
        # Same http_* names as the HTTP sources, so dashboards compare vendors; retries = attempts beyond the first.
        return {
            "http_requests": self.requests,
            "http_retries": max(0, self.requests - self.api_calls),
            "http_throttled": self.throttled,
            "aws_api_calls": self.api_calls,
        }


class AwsClient:
    """boto3 clients of one pull with shared timeouts, retry mode and counters.

    It stands where HTTP sources have an HttpSession: a context manager with `stats`. botocore already
    signs, retries (honouring throttling) and paginates; wrapping it in HttpSession would undo that.
    """

    def __init__(self, resource: AwsResource, settings: HttpSettings, logger: Any = None):
        self.resource = resource
        self.log = logger
        self.session = resource.boto_session()
        self.region = resource.home_region or self.session.region_name or DEFAULT_REGION
        self.config = Config(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"mode": resource.retry_mode, "total_max_attempts": settings.max_retries + 1},
            user_agent_extra=settings.user_agent,
            # S3-compatible servers and proxies behind a custom endpoint rarely resolve bucket.host names.
            s3={"addressing_style": "path"} if resource.endpoint_url else None,
        )
        self.max_attempts = settings.max_retries + 1
        self.stats = AwsStats()
        self._secrets = [s for s in (resource.secret_access_key, resource.session_token) if s]
        events = self.session.events  # registered before any client exists, so every client inherits them
        events.register("before-call", self._on_call)
        events.register("before-send", self._on_send)
        events.register("response-received", self._on_response)
        self._clients: dict[tuple[str, str], Any] = {}

    def _on_call(self, **_kwargs: Any) -> None:
        self.stats.api_calls += 1

    def _on_send(self, **_kwargs: Any) -> None:
        self.stats.requests += 1

    def _on_response(self, response_dict: Any = None, parsed_response: Any = None, **_kwargs: Any) -> None:
        code = ((parsed_response or {}).get("Error") or {}).get("Code")
        if code in _THROTTLE_CODES or (response_dict or {}).get("status_code") == 429:
            self.stats.throttled += 1

    def __enter__(self) -> AwsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def client(self, service: str, region: Optional[str] = None) -> Any:
        key = (service, region or self.region)
        if key not in self._clients:
            # An explicit endpoint_url outranks every config file and AWS_ENDPOINT_URL_* variable.
            self._clients[key] = self.session.client(
                service, region_name=key[1], endpoint_url=self.resource.endpoint_url, config=self.config
            )
        return self._clients[key]

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextmanager
    def translated(self, api: str, region: str) -> Iterator[None]:
        """Turn botocore's exceptions into errors that name the call, region, cause and what to do."""
        where = f"AWS: {api} in {region}" + (
            f" at {redact_url(self.resource.endpoint_url)}" if self.resource.endpoint_url else ""
        )
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error") or {}
            code, message = error.get("Code", "?"), self._redact(str(error.get("Message") or ""))
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            attempts = ((exc.response.get("ResponseMetadata") or {}).get("RetryAttempts") or 0) + 1
            if code in _AUTH_CODES or status in (401, 403):
                raise AuthError(
                    f"{where} was refused ({code}: {message}). Grant {api} to the identity the credentials belong "
                    "to, or check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE."
                ) from None
            hint = (
                "AWS kept throttling; try again later or set AWS_RETRY_MODE=adaptive"
                if code in _THROTTLE_CODES
                else "try again later"
            )
            raise CollectionError(
                f"{where} failed after {attempts} attempt(s): {code} (HTTP {status}): {message}; {hint}."
            ) from None
        except botocore.exceptions.NoCredentialsError:
            raise AuthError(
                f"{where}: no AWS credentials found. Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE."
            ) from None
        except botocore.parsers.ResponseParserError as exc:
            cause = str(exc).split(", invalid XML received")[0].split("\n")[0]  # not the body: it can be megabytes
            raise CollectionError(
                f"{where}: the answer could not be parsed ({_excerpt(cause)}); try again later."
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise CollectionError(
                f"{where} failed after up to {self.max_attempts} attempt(s): {_excerpt(self._redact(str(exc)))}. Check "
                "network access to AWS (or AWS_ENDPOINT_URL), then try again."
            ) from None
