"""The sandbox's /aws as a credential-free S3 store: every S3 call the S3 store and the backup fallback make
(HeadBucket, HeadObject, PutObject, multipart upload, ListObjectsV2, ranged GetObject) answered by moto behind it."""

import os

import dagster as dg

from secmetrics_dagster.sandbox import Fault
from secmetrics_dagster.stores import S3Store, StoresResource, UploadRef
from secmetrics_dagster.stores.envelope import render_envelope
from secmetrics_dagster.stores.s3 import MB

from .helpers import failure_text, make_snapshot, materialization_metadata
from .test_automation_freshness import collect

# The conftest sandbox's seed is 7; the sandbox seeds buckets sandbox-<seed>-bucket-<n> (bucket 0 in us-east-1).
BUCKET = "sandbox-7-bucket-0"


def _store(sandbox, **kwargs) -> S3Store:
    return S3Store(
        BUCKET, "data/%TAG/%UUID.json", "backup/%TAG/%TENANCY.json", endpoint_url=f"{sandbox.url}/aws", **kwargs
    )


def test_head_bucket_and_head_object_answer_with_the_objects_size_and_metadata(sandbox, tmp_path):
    store = _store(sandbox)
    assert store.client.head_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 200
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    envelope = render_envelope(snapshot)
    store.write(snapshot, envelope)
    head = store.client.head_object(Bucket=BUCKET, Key="backup/snyk_issues/acme.json")
    assert head["ContentLength"] == envelope.stat().st_size
    assert head["Metadata"]["upload-id"] == snapshot.upload_id and head["Metadata"]["records"] == "2"
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=BUCKET, Prefix="data/snyk_issues/")["Contents"]]
    assert keys == [f"data/snyk_issues/{snapshot.upload_id}.json"]
    assert store.open_backup("snyk_issues", "nobody") is None  # HeadObject's 404 means "no backup"


def test_a_large_upload_goes_up_in_parts_and_reads_back_whole(sandbox, tmp_path):
    store = _store(sandbox, multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    snapshot = make_snapshot(tmp_path, [{"id": i, "pad": "x" * 1000} for i in range(7_000)])  # ~7 MB: two parts
    store.write(snapshot, render_envelope(snapshot))
    head = store.client.head_object(Bucket=BUCKET, Key=f"data/snyk_issues/{snapshot.upload_id}.json")
    assert head["ETag"].strip('"').endswith("-2")  # a multipart ETag counts its parts
    for key in (f"data/snyk_issues/{snapshot.upload_id}.json", "backup/snyk_issues/acme.json"):  # the backup: a copy
        ref = UploadRef("snyk_issues", "acme", snapshot.upload_id, {"s3": f"s3://{BUCKET}/{key}"})
        assert store.count(ref) == 7_000
        assert sum(1 for _ in store.read(ref)) == 7_000  # download_file: HeadObject, then ranged GETs


def test_a_failed_pull_serves_the_backup_kept_in_the_sandboxs_aws(sandbox, snyk, collection, tmp_path):
    stores = StoresResource(
        file_template=str(tmp_path / "data/source/%TAG/%TENANCY.json"),
        s3_bucket=BUCKET,
        s3_backup="backup/%TAG/%TENANCY.json",
        s3_endpoint_url=f"{sandbox.url}/aws",
    )
    instance = dg.DagsterInstance.ephemeral()
    first = collect(instance, snyk, collection, stores)
    assert first.success, failure_text(first)
    assert materialization_metadata(first, "snyk_organizations")["source"] == "api"
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    second = collect(instance, snyk, collection, stores)
    assert second.success, failure_text(second)
    served = materialization_metadata(second, "snyk_organizations")
    assert served["source"] == "backup"
    assert served["dagster/row_count"] == materialization_metadata(first, "snyk_organizations")["dagster/row_count"]


def test_with_the_sandboxs_variables_a_bucket_name_is_all_the_s3_store_needs(sandbox, monkeypatch, tmp_path):
    # README, "S3 without AWS": under `make dev` the AWS variables point at the sandbox; only the bucket is set.
    from secmetrics_dagster.sandbox.__main__ import source_environment

    for name in [n for n in os.environ if n.startswith("STORE_")]:
        monkeypatch.delenv(name)
    for name, value in source_environment(sandbox.url, "sandbox-token").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORE_AWS_S3_BUCKET", BUCKET)
    store = StoresResource.from_env().s3_store()
    snapshot = make_snapshot(tmp_path, [{"id": 1}])
    store.write(snapshot, render_envelope(snapshot))
    backup = store.open_backup("snyk_issues", "acme")
    assert backup.metadata["upload_id"] == snapshot.upload_id
