"""boto3 sessions share one botocore loader per data path (collection/boto.py): a second client parses no JSON,
while each session keeps its own credentials, profile and region. Against the S3 server on 127.0.0.1."""

from __future__ import annotations

import json

import botocore.exceptions
import pytest

from secmetrics_dagster.collection.boto import boto3_session, shared_loader
from secmetrics_dagster.stores.s3 import S3Store


class CountingFileLoader:
    """Wraps a loader's file loader (botocore's public `file_loader` attribute) to count the files it parses."""

    def __init__(self, inner):
        self.inner, self.paths = inner, []

    def exists(self, path):
        return self.inner.exists(path)

    def load_file(self, path):
        self.paths.append(path)
        return self.inner.load_file(path)


@pytest.fixture
def own_data_path(tmp_path, monkeypatch):
    """A data path no other test uses, so this test gets a loader of its own with nothing parsed yet."""
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    loader = shared_loader(str(tmp_path / "models"))
    counting = loader.file_loader = CountingFileLoader(loader.file_loader)
    return loader, counting


def test_a_second_sessions_client_parses_no_data_file(own_data_path, s3_endpoint):
    loader, counting = own_data_path
    first = boto3_session().client("s3", region_name="us-east-1", endpoint_url=s3_endpoint)
    parsed = len(counting.paths)
    assert parsed >= 2 and any("s3" in p for p in counting.paths)  # the S3 model and the endpoint data, once
    second = boto3_session().client("s3", region_name="eu-west-1", endpoint_url=s3_endpoint)
    assert len(counting.paths) == parsed
    assert first.meta.region_name == "us-east-1" and second.meta.region_name == "eu-west-1"
    assert second.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200  # a working client


def test_the_data_path_is_honoured_and_boto3s_own_directory_is_listed_once(own_data_path, tmp_path):
    loader, _ = own_data_path
    for _ in range(5):
        session = boto3_session()
    assert session._session.get_component("data_loader") is loader
    assert loader.search_paths[0] == str(tmp_path / "models")
    assert len(loader.search_paths) == len(set(loader.search_paths)) == 4  # AWS_DATA_PATH, ~/.aws/models, both SDKs
    assert shared_loader(None) is not loader


def test_each_session_resolves_its_own_credentials_and_region(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    explicit = boto3_session(aws_access_key_id="explicit", aws_secret_access_key="s", region_name="eu-west-2")
    ambient = boto3_session()
    assert explicit.get_credentials().access_key == "explicit" and explicit.region_name == "eu-west-2"
    assert ambient.get_credentials().access_key == "from-the-environment"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    assert boto3_session().get_credentials().access_key == "rotated"  # nothing resolved is cached


def test_profiles_are_read_as_boto3_reads_them(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text("[profile auditor]\nregion = ap-south-1\n")
    creds = tmp_path / "credentials"
    creds.write_text("[auditor]\naws_access_key_id = auditor-key\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    session = boto3_session(profile_name="auditor")
    assert (session.profile_name, session.region_name) == ("auditor", "ap-south-1")
    assert session.get_credentials().access_key == "auditor-key"
    with pytest.raises(botocore.exceptions.ProfileNotFound):
        boto3_session(profile_name="nobody")


def test_the_s3_store_writes_and_reads_through_a_shared_loader(own_data_path, bucket, s3_endpoint):
    _, counting = own_data_path
    for n in range(3):
        store = S3Store(bucket=bucket, key_template=f"probe/{n}.json", endpoint_url=s3_endpoint)
        store.client.put_object(Bucket=bucket, Key=f"probe/{n}.json", Body=json.dumps({"n": n}).encode())
        if n == 0:
            parsed = len(counting.paths)
    assert parsed >= 2 and len(counting.paths) == parsed  # the first store parsed the S3 model, the others nothing
    body = S3Store(bucket=bucket, endpoint_url=s3_endpoint).client.get_object(Bucket=bucket, Key="probe/2.json")
    assert json.loads(body["Body"].read()) == {"n": 2}
