"""AWS assets end to end: moto (served over HTTP behind the sandbox's /aws/) -> boto3 -> spool -> stores."""

import json
from datetime import UTC, datetime

import boto3
import dagster as dg
import pytest
from botocore.config import Config

from secmetrics_dagster.collection.errors import ConfigError
from secmetrics_dagster.sandbox import Fault
from secmetrics_dagster.sources import aws as aws_source
from secmetrics_dagster.sources.aws import AwsResource
from secmetrics_dagster.stores import SnapshotIOManager, StoresResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source, source_assets
from .helpers import (
    duck_rows,
    failure_text,
    log_text,
    materialization_metadata,
    materialized_tags,
    pg_rows,
    replace,
    stored_file,
)
from .services import free_port

TAGS = ["aws_iam_credential_report", "aws_ec2_instances", "aws_ebs_volumes", "aws_s3_buckets"]
REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture
def aws_env(sandbox) -> dict:
    return aws_source.SOURCE.sandbox_env(sandbox.url, SANDBOX_TOKEN)


@pytest.fixture
def aws(aws_env) -> AwsResource:
    return AwsResource(
        access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
        secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        regions=aws_env["AWS_REGIONS"],
        report_poll_seconds=0.01,
    )


@pytest.fixture
def aws_collection(collection):
    # The sandbox seeds moto on its first AWS request (seconds); the shared 0.5 s read timeout is for fault tests.
    return replace(collection, http_read_timeout=60.0)


@pytest.fixture
def file_store(tmp_path) -> StoresResource:
    return StoresResource(file_template=str(tmp_path / "data/source/%TAG/%TENANCY.json"), s3_backup=None)


def boto(aws_env, service, region="us-east-1"):
    """A plain boto3 client on the sandbox, independent of the collector's, to count what is there."""
    return boto3.client(
        service,
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name=region,
        aws_access_key_id="counter",
        aws_secret_access_key="counter",
        config=Config(s3={"addressing_style": "path"}),
    )


def run(resource, collection, stores, selection=None, instance=None):
    return materialize_source(aws_source.SOURCE, resource, collection, stores, selection=selection, instance=instance)


def records(stores, tag) -> list:
    path = stored_file(stores, tag, "acme")
    return json.loads(path.read_text())["data"]


def expected_counts(aws_env) -> dict:
    iam, s3 = boto(aws_env, "iam"), boto(aws_env, "s3")
    counts = {
        "aws_iam_credential_report": len(iam.list_users()["Users"]),
        "aws_ec2_instances": 0,
        "aws_ebs_volumes": 0,
        "aws_s3_buckets": len(s3.list_buckets()["Buckets"]),
    }
    for region in REGIONS:
        ec2 = boto(aws_env, "ec2", region)
        counts["aws_ec2_instances"] += sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])
        counts["aws_ebs_volumes"] += len(ec2.describe_volumes()["Volumes"])
    return counts


def test_every_aws_asset_lands_in_all_four_stores_with_the_sandbox_counts(
    aws, aws_env, aws_collection, all_stores, s3_client, pg_conn
):
    result = run(aws, aws_collection, all_stores)
    assert result.success, failure_text(result)
    expected = expected_counts(aws_env)
    # moto's credential report has no <root_account> row (AWS's has): one row per IAM user here.
    assert expected == {
        "aws_iam_credential_report": 5,
        "aws_ec2_instances": 6,
        "aws_ebs_volumes": 10,
        "aws_s3_buckets": 4,
    }
    for tag in TAGS:
        backup = json.loads(
            s3_client.get_object(Bucket=all_stores.s3_bucket, Key=f"backup/{tag}/acme.json")["Body"].read()
        )
        assert {
            "file": len(records(all_stores, tag)),
            "s3": len(backup["data"]),
            "postgres": len(pg_rows(pg_conn, all_stores.postgres_schema, f"{tag}_latest")),
            "duckdb": len(duck_rows(all_stores.duckdb_path, f"{tag}_latest")),
        } == dict.fromkeys(["file", "s3", "postgres", "duckdb"], expected[tag]), tag
        md = materialization_metadata(result, tag)
        assert md["records"] == expected[tag] and md["aws_api_calls"] >= 1 and md["http_retries"] == 0


def test_instances_carry_their_region_reservation_and_owner(aws, aws_env, aws_collection, file_store):
    result = run(aws, aws_collection, file_store, selection="aws_ec2_instances")
    assert result.success, failure_text(result)
    got = {(r["_region"], r["InstanceId"]): r for r in records(file_store, "aws_ec2_instances")}
    for region in REGIONS:
        for reservation in boto(aws_env, "ec2", region).describe_instances()["Reservations"]:
            for instance in reservation["Instances"]:
                record = got.pop((region, instance["InstanceId"]))
                assert record["_reservation_id"] == reservation["ReservationId"]
                assert record["_owner_id"] == reservation["OwnerId"] and record["State"]["Name"] == "running"
                assert record["LaunchTime"] == instance["LaunchTime"].isoformat()  # datetimes become ISO 8601
    assert got == {}


def test_the_sandboxs_ec2_has_no_public_ami_catalogue_and_its_instances_still_name_their_image(aws_env):
    # moto's catalogue costs half of each re-seed (sandbox/aws.py _moto_app); the collector never reads images.
    ec2 = boto(aws_env, "ec2", REGIONS[0])
    assert ec2.describe_images(Owners=["amazon"])["Images"] == []
    images = {i["ImageId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert images == {"ami-0c55b159cbfafe1f0"}


def test_regions_default_to_every_region_enabled_for_the_account(aws, aws_collection, file_store, sandbox):
    instance = dg.DagsterInstance.ephemeral()
    result = run(
        replace(aws, regions=None), aws_collection, file_store, selection="aws_ec2_instances", instance=instance
    )
    assert result.success, failure_text(result)
    enabled = [
        r["RegionName"]
        for r in boto(aws_source.SOURCE.sandbox_env(sandbox.url, SANDBOX_TOKEN), "ec2").describe_regions(
            AllRegions=True
        )["Regions"]
        if r["OptInStatus"] != "not-opted-in"
    ]
    assert "ap-east-1" not in enabled and len(enabled) > 10  # moto lists opt-in regions as not-opted-in
    assert f"collecting {len(enabled)} enabled region(s)" in log_text(instance, result)
    assert {r["_region"] for r in records(file_store, "aws_ec2_instances")} == set(REGIONS)
    # one DescribeRegions, then one DescribeInstances page per enabled region and nothing for the others
    assert materialization_metadata(result, "aws_ec2_instances")["aws_api_calls"] == 1 + len(enabled)


def test_an_invalid_region_in_AWS_REGIONS_fails_before_any_call(aws, aws_collection, file_store, sandbox):
    result = run(replace(aws, regions="eu-west-1,../../etc"), aws_collection, file_store, selection="aws_ec2_instances")
    assert not result.success
    assert "AWS_REGIONS: '../../etc' is not a region name" in failure_text(result)
    assert "aws.query" not in sandbox.stats()


def test_volumes_carry_their_encryption_state_key_and_the_regions_default(aws, aws_env, aws_collection, file_store):
    result = run(aws, aws_collection, file_store, selection="aws_ebs_volumes")
    assert result.success, failure_text(result)
    got = {r["VolumeId"]: r for r in records(file_store, "aws_ebs_volumes")}
    encrypted_with_key = 0
    for region in REGIONS:
        for volume in boto(aws_env, "ec2", region).describe_volumes()["Volumes"]:
            record = got.pop(volume["VolumeId"])
            assert record["Encrypted"] is volume["Encrypted"] and record.get("KmsKeyId") == volume.get("KmsKeyId")
            assert record["_region"] == region
            assert record["_encryption_by_default"] is (region == "eu-west-1")  # the sandbox enabled it there only
            encrypted_with_key += bool(record["Encrypted"] and record.get("KmsKeyId"))
    assert got == {} and encrypted_with_key == 2


def test_the_credential_report_is_generated_awaited_and_read_row_by_row(aws, aws_env, aws_collection, file_store):
    result = run(aws, aws_collection, file_store, selection="aws_iam_credential_report")
    assert result.success, failure_text(result)
    rows = {r["user"]: r for r in records(file_store, "aws_iam_credential_report")}
    users = boto(aws_env, "iam").list_users()["Users"]
    assert set(rows) == {u["UserName"] for u in users}
    for user in users:
        row = rows[user["UserName"]]
        i = int(user["UserName"][-2:])
        assert row["arn"] == user["Arn"]
        assert row["password_enabled"] == ("true" if i % 2 == 0 else "false")
        # the sandbox gives two console users in three an MFA device, and ages the access keys
        assert row["mfa_active"] == ("true" if i % 2 == 0 and i % 3 != 1 else "false")
        if i % 3 != 2:
            rotated = datetime.fromisoformat(row["access_key_1_last_rotated"])
            age = (datetime.now(UTC) - rotated).days
            assert (age in (3, 20, 45, 80)) if i % 4 != 3 else (age in (120, 400)), (user["UserName"], age)
        assert row["_generated_time"]
    # moto answers STARTED to the first GenerateCredentialReport, COMPLETE to the second: two asks, one read.
    assert materialization_metadata(result, "aws_iam_credential_report")["aws_api_calls"] == 3


def test_bucket_region_public_access_block_encryption_and_policy_status(aws, aws_collection, file_store):
    result = run(aws, aws_collection, file_store, selection="aws_s3_buckets")
    assert result.success, failure_text(result)
    got = {r["Name"]: r for r in records(file_store, "aws_s3_buckets")}
    assert sorted(got) == [f"sandbox-7-bucket-{i}" for i in range(4)]
    blocked = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    b0, b1, b2, b3 = (got[f"sandbox-7-bucket-{i}"] for i in range(4))
    assert (b0["region"], b1["region"]) == ("us-east-1", "eu-west-1")  # GetBucketLocation's null means us-east-1
    assert b0["public_access_block"] == blocked and b1["public_access_block"] is None
    assert b0["default_encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert b1["default_encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert b2["default_encryption"] is None  # not configured: recorded as such, not an error
    assert b3["policy_status"] == {"IsPublic": True} and b0["policy_status"] is None
    assert all(r["errors"] == {} for r in got.values())


def test_a_call_denied_for_one_bucket_is_recorded_there_and_the_others_are_collected(
    aws, aws_collection, file_store, sandbox
):
    sandbox.add_fault(
        Fault(route="aws.s3", kind="403", after=4, times=1)
    )  # past ListBuckets and one bucket's first calls
    result = run(aws, aws_collection, file_store, selection="aws_s3_buckets")
    assert result.success, failure_text(result)
    got = records(file_store, "aws_s3_buckets")
    assert len(got) == 4
    denied = [(r["Name"], r["errors"]) for r in got if r["errors"]]
    assert len(denied) == 1 and len(denied[0][1]) == 1
    ((api, error),) = denied[0][1].items()
    assert api.startswith("s3:Get") and error == "AccessDenied: Access Denied"


def test_throttling_is_retried_by_botocore_and_counted(aws, aws_collection, file_store, sandbox):
    sandbox.add_fault(Fault(route="aws.query", kind="429", times=1))
    result = run(aws, aws_collection, file_store, selection="aws_ec2_instances")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "aws_ec2_instances")
    assert md["records"] == 6 and md["source"] == "api"
    assert (md["http_throttled"], md["http_retries"], md["aws_api_calls"]) == (1, 1, 2)


def test_a_malformed_answer_serves_the_last_backup_labelled_as_such(aws, aws_collection, all_stores, sandbox, pg_conn):
    instance = dg.DagsterInstance.ephemeral()
    first = run(aws, aws_collection, all_stores, selection="aws_ec2_instances", instance=instance)
    assert first.success, failure_text(first)
    sandbox.add_fault(Fault(route="aws.query", kind="malformed", times=0))
    second = run(aws, aws_collection, all_stores, selection="aws_ec2_instances", instance=instance)
    assert second.success, failure_text(second)
    md = materialization_metadata(second, "aws_ec2_instances")
    assert md["source"] == "backup" and md["records"] == 6
    assert md["upload_id"] == materialization_metadata(first, "aws_ec2_instances")["upload_id"]
    assert "ec2:DescribeInstances in us-east-1" in md["fallback_reason"] and "parse" in md["fallback_reason"]
    assert len(pg_rows(pg_conn, all_stores.postgres_schema, "aws_ec2_instances_latest")) == 6


def test_refused_credentials_fail_naming_the_permission_without_the_secret(aws, aws_collection, file_store, sandbox):
    sandbox.add_fault(Fault(route="aws.query", kind="403", times=0))
    result = run(aws, aws_collection, file_store, selection="aws_ebs_volumes")
    assert not result.success
    text = failure_text(result)
    assert "UnauthorizedOperation" in text and "Grant ec2:DescribeVolumes" in text
    assert SANDBOX_TOKEN not in text


def test_without_credentials_a_whole_run_skips_aws_with_a_warning_and_stays_green(
    aws, aws_collection, file_store, sandbox, monkeypatch
):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    unconfigured = replace(aws, access_key_id=None, secret_access_key=None)
    assert unconfigured.missing_env() == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    instance = dg.DagsterInstance.ephemeral()
    job = dg.Definitions(
        assets=source_assets(aws_source.SOURCE),
        resources={
            "collection": aws_collection,
            "stores": file_store,
            "snapshot_io_manager": SnapshotIOManager(stores=file_store),
            "aws": unconfigured,
        },
    ).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, failure_text(result)
    assert materialized_tags(result) == set()
    assert (
        "AWS: aws_s3_buckets skipped, missing environment variable(s) AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
        in log_text(instance, result)
    )
    assert not {"aws.query", "aws.s3"} & set(sandbox.stats())  # not one AWS call


def test_the_demo_settings_reach_the_sandbox_whatever_the_developers_aws_config_says(
    aws_env, aws_collection, file_store, tmp_path, monkeypatch
):
    elsewhere = f"http://127.0.0.1:{free_port()}"  # stands in for real AWS: nothing listens there
    config = tmp_path / "aws_config"
    config.write_text(
        f"[profile developer]\nregion = ap-south-1\nendpoint_url = {elsewhere}\n[default]\nendpoint_url = {elsewhere}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "developer")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", elsewhere)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-developers-real-session-token")
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    resource = AwsResource.from_env()
    assert resource.session_token is None  # the demo blanks it: a real token is never sent to the sandbox
    result = run(replace(resource, report_poll_seconds=0.01), aws_collection, file_store, selection="aws_ec2_instances")
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "aws_ec2_instances")["records"] == 6


def test_the_credential_report_poll_interval_is_read_from_its_variable_and_bounded(monkeypatch):
    monkeypatch.setenv("AWS_CREDENTIAL_REPORT_POLL_SECONDS", "0.5")
    assert AwsResource.from_env().report_poll_seconds == 0.5
    with pytest.raises(ConfigError, match="AWS_CREDENTIAL_REPORT_POLL_SECONDS must be between 0.01 and 60"):
        AwsResource(report_poll_seconds=0).check_settings()
