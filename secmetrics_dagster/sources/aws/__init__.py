"""AWS: the IAM credential report, EC2 instances, EBS volumes and S3 bucket security settings, through boto3.

Credentials come from the standard AWS chain (client.py); the pulls are in pulls.py.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Optional

import boto3
import botocore.exceptions
import requests

from ...collection.boto import boto3_session
from ...collection.errors import ConfigError
from ...collection.http import HttpSettings
from ...collection.settings import env_setting
from ..base import VendorResource
from ..catalog import declare_source
from .client import AwsClient
from .pulls import pull_credential_report, pull_ebs_volumes, pull_ec2_instances, pull_s3_buckets  # noqa: F401 (the catalog's pulls)


class AwsResource(VendorResource):
    """AWS credentials and where to call. Keys enter config only as EnvVar references; None = the standard chain."""

    settings_title: ClassVar[str] = "AWS"

    access_key_id: Optional[str] = env_setting(
        "AWS_ACCESS_KEY_ID",
        "Access key id. Any other source of the standard AWS credential chain works "
        "instead: `AWS_PROFILE`, SSO, web identity, an instance or task role.",
        required=True,
        secret=True,
    )
    secret_access_key: Optional[str] = env_setting(
        "AWS_SECRET_ACCESS_KEY", "Secret access key of that key id.", required=True, secret=True
    )
    session_token: Optional[str] = env_setting(
        "AWS_SESSION_TOKEN", "Session token, for temporary credentials.", secret=True
    )
    profile: Optional[str] = env_setting(
        "AWS_PROFILE", "Named profile of `~/.aws/config` / `~/.aws/credentials` to use instead of keys."
    )
    regions: Optional[str] = env_setting(
        "AWS_REGIONS",
        "Regions to collect EC2 instances and EBS volumes from, comma-separated. Default: "
        "every region enabled for the account (`ec2:DescribeRegions`). Global calls go to `AWS_REGION` / "
        "`AWS_DEFAULT_REGION` (default `us-east-1`).",
    )
    endpoint_url: Optional[str] = env_setting(
        "AWS_ENDPOINT_URL",
        "One endpoint for every AWS call of this source (moto, LocalStack, a proxy); "
        "`AWS_ENDPOINT_URL_<SERVICE>` variables are ignored when it is set. The S3 store reads it too: for "
        "an S3-compatible store beside real AWS, set `STORE_AWS_S3_ENDPOINT_URL` instead.",
    )
    retry_mode: str = env_setting(
        "AWS_RETRY_MODE",
        "botocore retry mode: `standard`, or `adaptive` to also slow down client-side "
        "after throttling. Attempts per call: `COLLECTION_HTTP_MAX_RETRIES` + 1.",
        "standard",
    )
    # AWS_REGION, else AWS_DEFAULT_REGION: two variables, as the AWS CLI and SDKs read them.
    home_region: Optional[str] = None
    report_poll_seconds: float = env_setting(
        "AWS_CREDENTIAL_REPORT_POLL_SECONDS",
        "Wait between GenerateCredentialReport calls until the report is COMPLETE.",
        2.0,
        low=0.01,
        high=60,
    )
    report_timeout_seconds: float = 300.0

    @classmethod
    def from_env(cls, **overrides: Any) -> AwsResource:
        overrides.setdefault(
            "home_region", os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        )
        return super().from_env(**overrides)

    def boto_session(self) -> boto3.Session:
        if self.retry_mode not in ("standard", "adaptive", "legacy"):
            raise ConfigError(f"AWS_RETRY_MODE must be standard or adaptive, not {self.retry_mode!r}")
        try:
            if self.access_key_id:
                return boto3_session(
                    aws_access_key_id=self.access_key_id,
                    aws_secret_access_key=self.secret_access_key,
                    aws_session_token=self.session_token or None,
                    region_name=self.home_region,
                )
            return boto3_session(profile_name=self.profile or None, region_name=self.home_region)
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

    def client(self, settings: HttpSettings, logger: Any = None) -> AwsClient:
        return AwsClient(self, settings, logger)


def _sandbox_env(url: str, token: str) -> dict[str, str]:
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


SOURCE = declare_source(__name__, "datasets.yaml", AwsResource, sandbox_env=_sandbox_env)
