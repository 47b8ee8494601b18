"""AWS pulls: the IAM credential report, EC2 instances, EBS volumes and S3 bucket security settings."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from typing import Any, Optional

import botocore.exceptions
import botocore.parsers

from ...collection.errors import AuthError, CollectionError
from ..base import Pull
from .client import _BUCKET_RECORDABLE, AwsClient, _bucket_region, jsonable, parse_regions

# ------------------------------------------------------------------------------------------- pulls


def _regions(pull: Pull) -> list[str]:
    aws: AwsClient = pull.client
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
    aws: AwsClient = pull.client
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
    aws: AwsClient = pull.client
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
    aws: AwsClient = pull.client
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
    aws: AwsClient = pull.client
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
