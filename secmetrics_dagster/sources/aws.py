"""AWS: the IAM credential report, EC2 instances, EBS volumes and S3 bucket security settings, through boto3.

Credentials come from the standard AWS chain; botocore does the signing, retries (standard or adaptive
mode) and pagination; this module counts calls and retries for the asset metadata.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Optional

import boto3
import botocore.exceptions
import botocore.parsers
import requests
from botocore.config import Config

from ..collection.env import secret_env
from ..collection.errors import AuthError, CollectionError, ConfigError
from ..collection.http import HttpSettings, redact_url
from .base import DatasetSpec, EnvVarDoc, Pull, SourceSpec, VendorResource, build_assets

DEFAULT_REGION = "us-east-1"  # where global APIs (IAM, S3 ListBuckets, DescribeRegions) are called from
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")

SOURCE = SourceSpec(
    group="aws",
    title="AWS",
    docs_url="https://docs.aws.amazon.com/boto3/latest/",
    resource_key="aws",
    env_vars=(
        EnvVarDoc(
            "AWS_ACCESS_KEY_ID",
            "Access key id. Any other source of the standard AWS credential chain works "
            "instead: `AWS_PROFILE`, SSO, web identity, an instance or task role.",
            required=True,
        ),
        EnvVarDoc("AWS_SECRET_ACCESS_KEY", "Secret access key of that key id.", required=True, secret=True),
        EnvVarDoc("AWS_SESSION_TOKEN", "Session token, for temporary credentials.", secret=True),
        EnvVarDoc("AWS_PROFILE", "Named profile of `~/.aws/config` / `~/.aws/credentials` to use instead of keys."),
        EnvVarDoc(
            "AWS_REGIONS",
            "Regions to collect EC2 instances and EBS volumes from, comma-separated. Default: "
            "every region enabled for the account (`ec2:DescribeRegions`). Global calls go to `AWS_REGION` / "
            "`AWS_DEFAULT_REGION` (default `us-east-1`).",
        ),
        EnvVarDoc(
            "AWS_ENDPOINT_URL",
            "One endpoint for every AWS call of this source (moto, LocalStack, a proxy); "
            "`AWS_ENDPOINT_URL_<SERVICE>` variables are ignored when it is set. The S3 store reads it too: for "
            "an S3-compatible store beside real AWS, set `STORE_AWS_S3_ENDPOINT_URL` instead.",
        ),
        EnvVarDoc(
            "AWS_RETRY_MODE",
            "botocore retry mode: `standard`, or `adaptive` to also slow down client-side "
            "after throttling. Attempts per call: `COLLECTION_HTTP_MAX_RETRIES` + 1.",
            "standard",
        ),
    ),
    datasets=(
        DatasetSpec(
            "aws_iam_credential_report",
            "IAM credential report",
            "One record per row of the account's credential report (generated, awaited, then read): password, MFA, "
            "access keys and certificates with their last use; AWS's first row is `<root_account>`. Values are the "
            "report's strings (`true`, `N/A`, `no_information`, ISO dates); `_generated_time` is when AWS built it.",
            "iam:GenerateCredentialReport, iam:GetCredentialReport",
            required_fields=("user", "arn", "mfa_active", "password_enabled"),
        ),
        DatasetSpec(
            "aws_ec2_instances",
            "EC2 instances",
            "Every instance in every collected region, all states, as `DescribeInstances` returns it, plus `_region`, "
            "`_reservation_id` and `_owner_id`.",
            "ec2:DescribeInstances (each region)",
            required_fields=("InstanceId", "State.Name", "_region"),
            allow_empty=True,
        ),
        DatasetSpec(
            "aws_ebs_volumes",
            "EBS volumes",
            "Every volume in every collected region with `Encrypted`, `KmsKeyId` and attachments, plus `_region` and "
            "`_encryption_by_default` (the region's EBS default-encryption setting; null if it could not be read).",
            "ec2:DescribeVolumes, ec2:GetEbsEncryptionByDefault (each region)",
            required_fields=("VolumeId", "Encrypted", "_region"),
            allow_empty=True,
        ),
        DatasetSpec(
            "aws_s3_buckets",
            "S3 buckets",
            "Every bucket with `region`, `public_access_block`, `default_encryption` and `policy_status` (null when "
            "not configured: no block, no default encryption, no bucket policy). A call S3 refuses for one bucket "
            "(AccessDenied, NotImplemented...) is recorded in that bucket's `errors` and does not fail the others.",
            "s3:ListBuckets, s3:GetBucketLocation, s3:GetBucketPublicAccessBlock, s3:GetEncryptionConfiguration, "
            "s3:GetBucketPolicyStatus",
            required_fields=("Name", "region", "errors"),
            allow_empty=True,
        ),
    ),
)

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
    bad = [r for r in regions if not _REGION.match(r)]
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


class AwsResource(VendorResource):
    """AWS credentials and where to call. Keys enter config only as EnvVar references; None = the standard chain."""

    access_key_id: Optional[str] = None
    secret_access_key: Optional[str] = None
    session_token: Optional[str] = None
    profile: Optional[str] = None
    endpoint_url: Optional[str] = None
    regions: Optional[str] = None
    home_region: Optional[str] = None
    retry_mode: str = "standard"
    report_poll_seconds: float = 2.0
    report_timeout_seconds: float = 300.0

    @classmethod
    def from_env(cls) -> AwsResource:
        return cls(
            access_key_id=secret_env("AWS_ACCESS_KEY_ID"),
            secret_access_key=secret_env("AWS_SECRET_ACCESS_KEY"),
            session_token=secret_env("AWS_SESSION_TOKEN"),
            profile=os.environ.get("AWS_PROFILE") or None,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            regions=os.environ.get("AWS_REGIONS") or None,
            home_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            retry_mode=os.environ.get("AWS_RETRY_MODE") or "standard",
        )

    def boto_session(self) -> boto3.Session:
        if self.retry_mode not in ("standard", "adaptive", "legacy"):
            raise ConfigError(f"AWS_RETRY_MODE must be standard or adaptive, not {self.retry_mode!r}")
        try:
            if self.access_key_id:
                return boto3.Session(
                    aws_access_key_id=self.access_key_id,
                    aws_secret_access_key=self.secret_access_key,
                    aws_session_token=self.session_token or None,
                    region_name=self.home_region,
                )
            return boto3.Session(profile_name=self.profile or None, region_name=self.home_region)
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(
                f"AWS: the profile {self.profile or os.environ.get('AWS_PROFILE')!r} (AWS_PROFILE) is not in "
                "~/.aws/config or ~/.aws/credentials; set AWS_PROFILE to an existing profile or unset it."
            ) from None

    def missing_env(self) -> list[str]:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            return ["AWS_SECRET_ACCESS_KEY" if self.access_key_id else "AWS_ACCESS_KEY_ID"]
        if self.access_key_id:
            return []
        try:
            found = self.boto_session().get_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigError(f"AWS: the credential chain is misconfigured: {exc}") from None
        return [] if found is not None else ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]

    def session(self, settings: HttpSettings, logger: Any = None) -> AwsClient:
        return AwsClient(self, settings, logger)


# ------------------------------------------------------------------------------------------- pulls


def _regions(pull: Pull) -> list[str]:
    aws: AwsClient = pull.http
    if pull.resource.regions:
        return parse_regions(pull.resource.regions)
    with aws.translated("ec2:DescribeRegions", aws.region):
        answer = aws.client("ec2").describe_regions()
    # AWS leaves regions the account has not opted into out of this answer; moto lists them as "not-opted-in".
    regions = sorted(
        r["RegionName"]
        for r in answer.get("Regions", [])
        if r.get("OptInStatus", "opt-in-not-required") != "not-opted-in"
    )
    if pull.log:
        pull.log.info(f"AWS: collecting {len(regions)} enabled region(s): {', '.join(regions)}")
    return regions


def pull_credential_report(pull: Pull) -> None:
    aws: AwsClient = pull.http
    iam = aws.client("iam")
    deadline = time.monotonic() + pull.resource.report_timeout_seconds
    delay = pull.resource.report_poll_seconds
    while True:  # AWS's documented way to wait: ask to generate until the state is COMPLETE
        with aws.translated("iam:GenerateCredentialReport", "global"):
            state = iam.generate_credential_report().get("State")
        if state == "COMPLETE":
            break
        if time.monotonic() + delay > deadline:
            raise CollectionError(
                f"AWS: the IAM credential report was still {state} after {pull.resource.report_timeout_seconds:g}s "
                "(iam:GenerateCredentialReport). AWS usually finishes in seconds; try again later."
            )
        time.sleep(delay)
        delay = min(max(delay * 2, 0.05), 10.0)
    with aws.translated("iam:GetCredentialReport", "global"):
        report = iam.get_credential_report()
    content = report.get("Content") or b""
    text = content.decode("utf-8-sig") if isinstance(content, (bytes, bytearray)) else str(content)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"user", "arn"} <= set(reader.fieldnames):
        raise CollectionError(
            f"AWS: iam:GetCredentialReport answered a {report.get('ReportFormat')} report without the user and arn "
            f"columns (columns: {', '.join((reader.fieldnames or [])[:8]) or 'none'}); it cannot be read."
        )
    # AWS's report starts with a <root_account> row; moto's lists IAM users only and stamps a fixed 2015 time.
    generated = report.get("GeneratedTime")
    stamp = generated.isoformat() if isinstance(generated, datetime) else generated
    for row in reader:
        row = {k: v for k, v in row.items() if k is not None}  # a ragged row's extra cells have no column
        row["_generated_time"] = stamp
        pull.spool.write(row)


def pull_ec2_instances(pull: Pull) -> None:
    aws: AwsClient = pull.http
    for region in _regions(pull):
        pages = (
            aws.client("ec2", region).get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 1000})
        )
        with aws.translated("ec2:DescribeInstances", region):
            for page in pages:
                for reservation in page.get("Reservations", []):
                    for instance in reservation.get("Instances", []):
                        record = jsonable(instance)
                        record.update(
                            _region=region,
                            _reservation_id=reservation.get("ReservationId"),
                            _owner_id=reservation.get("OwnerId"),
                        )
                        pull.spool.write(record)


def _encryption_by_default(pull: Pull, client: Any, region: str) -> Optional[bool]:
    try:
        return bool(client.get_ebs_encryption_by_default().get("EbsEncryptionByDefault"))
    except botocore.exceptions.ClientError as exc:
        # Useful, not essential: the volumes still say whether each one is encrypted.
        if pull.log:
            pull.log.warning(
                f"AWS: ec2:GetEbsEncryptionByDefault in {region} failed "
                f"({exc.response.get('Error', {}).get('Code')}); _encryption_by_default is null there"
            )
        return None


def pull_ebs_volumes(pull: Pull) -> None:
    aws: AwsClient = pull.http
    for region in _regions(pull):
        client = aws.client("ec2", region)
        default = _encryption_by_default(pull, client, region)
        pages = client.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 500})
        with aws.translated("ec2:DescribeVolumes", region):
            for page in pages:
                for volume in page.get("Volumes", []):
                    record = jsonable(volume)
                    record.setdefault("Encrypted", False)
                    record.update(_region=region, _encryption_by_default=default)
                    pull.spool.write(record)


_BUCKET_SETTINGS = (
    # (record field, client method, API name for errors, codes meaning "not configured", answer field).
    # AWS has encrypted every bucket by default since January 2023, so GetBucketEncryption always answers
    # there; moto and other S3 servers still answer ServerSideEncryptionConfigurationNotFoundError (null).
    # moto implements GetBucketPolicyStatus; S3 servers that do not answer NotImplemented (recorded in errors).
    (
        "public_access_block",
        "get_public_access_block",
        "s3:GetBucketPublicAccessBlock",
        {"NoSuchPublicAccessBlockConfiguration"},
        "PublicAccessBlockConfiguration",
    ),
    (
        "default_encryption",
        "get_bucket_encryption",
        "s3:GetEncryptionConfiguration",
        {"ServerSideEncryptionConfigurationNotFoundError"},
        "ServerSideEncryptionConfiguration",
    ),
    ("policy_status", "get_bucket_policy_status", "s3:GetBucketPolicyStatus", {"NoSuchBucketPolicy"}, "PolicyStatus"),
)


def _bucket_call(aws: AwsClient, record: dict, api: str, region: str, call: Any, absent: set[str]) -> Optional[dict]:
    """One per-bucket call: its answer, None when not configured or refused (refusals go to `errors`)."""
    try:
        with aws.translated(api, region):
            try:
                return call()
            except botocore.exceptions.ClientError as exc:
                error = exc.response.get("Error") or {}
                code = error.get("Code", "?")
                status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
                if code in absent:
                    return None
                if code in _BUCKET_RECORDABLE or status in (403, 404, 405, 501):
                    record["errors"][api] = f"{code}: {error.get('Message') or ''}".strip()
                    return None
                raise
    except AuthError as exc:  # an auth code the list above does not name (e.g. a 403 variant): still this bucket's
        record["errors"][api] = str(exc)
        return None


def pull_s3_buckets(pull: Pull) -> None:
    aws: AwsClient = pull.http
    s3 = aws.client("s3")
    pages = s3.get_paginator("list_buckets").paginate() if s3.can_paginate("list_buckets") else [s3.list_buckets()]
    with aws.translated("s3:ListBuckets", aws.region):
        for page in pages:
            for bucket in page.get("Buckets", []):
                pull.spool.write(_bucket_record(aws, bucket))


def _bucket_record(aws: AwsClient, bucket: dict) -> dict:
    name = bucket["Name"]
    record = jsonable(bucket)
    record["errors"] = {}
    # ListBuckets has named each bucket's region (BucketRegion) since 2024; moto and older S3 servers do not.
    region = bucket.get("BucketRegion")
    if not region:
        location = _bucket_call(
            aws,
            record,
            "s3:GetBucketLocation",
            aws.region,
            lambda: aws.client("s3").get_bucket_location(Bucket=name),
            set(),
        )
        region = _bucket_region(location.get("LocationConstraint")) if location is not None else None
    record["region"] = region
    client = aws.client("s3", region or aws.region)  # asking the bucket's own region avoids S3's redirects
    for field, method, api, absent, key in _BUCKET_SETTINGS:
        answer = _bucket_call(
            aws, record, api, region or aws.region, lambda method=method: getattr(client, method)(Bucket=name), absent
        )
        record[field] = jsonable(answer.get(key)) if answer is not None else None
    return record


def sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the sandbox's AWS (moto behind /aws/), never at real AWS.

    Explicit keys and an explicit endpoint outrank a developer's ~/.aws profiles and AWS_ENDPOINT_URL_*;
    the session token is blanked so a real one is not sent along.
    """
    try:  # the sandbox seeds its AWS data in the background meanwhile; the first call would otherwise wait for it
        requests.post(f"{url.rstrip('/')}/aws-sandbox/seed", timeout=10)
    except requests.RequestException:
        pass
    return {
        "AWS_ENDPOINT_URL": f"{url.rstrip('/')}/aws",
        "AWS_ACCESS_KEY_ID": "sandbox-access-key-id",
        "AWS_SECRET_ACCESS_KEY": token,
        "AWS_SESSION_TOKEN": "",
        "AWS_REGIONS": "us-east-1,eu-west-1",
    }


RESOURCE = AwsResource
assets = build_assets(
    SOURCE,
    {
        "aws_iam_credential_report": pull_credential_report,
        "aws_ec2_instances": pull_ec2_instances,
        "aws_ebs_volumes": pull_ebs_volumes,
        "aws_s3_buckets": pull_s3_buckets,
    },
)
