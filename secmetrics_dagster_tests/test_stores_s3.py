"""S3 store against a real S3 server over HTTP: history and backup objects, multipart, backup fetch."""

import json
from collections import Counter

from secmetrics_dagster.stores import S3Store, UploadRef, s3
from secmetrics_dagster.stores.envelope import render_envelope
from secmetrics_dagster.stores.s3 import MB

from .helpers import make_snapshot


def _store(bucket, s3_endpoint, **kwargs):
    return S3Store(
        bucket, "data/%TAG/%YYYY/%MM/%DD/%UUID.json", "backup/%TAG/%TENANCY.json", endpoint_url=s3_endpoint, **kwargs
    )


def test_history_and_backup_objects_hold_the_envelope(bucket, s3_endpoint, s3_client, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    result = _store(bucket, s3_endpoint).write(snapshot, render_envelope(snapshot))
    t = snapshot.timestamp
    history_key = f"data/snyk_issues/{t:%Y}/{t:%m}/{t:%d}/{snapshot.upload_id}.json"
    assert result.extra == {
        "history": f"s3://{bucket}/{history_key}",
        "backup": f"s3://{bucket}/backup/snyk_issues/acme.json",
    }
    for key in (history_key, "backup/snyk_issues/acme.json"):
        obj = s3_client.get_object(Bucket=bucket, Key=key)
        doc = json.loads(obj["Body"].read())
        assert doc["metadata"]["records"] == 2 and len(doc["data"]) == 2
        assert obj["Metadata"]["upload-id"] == snapshot.upload_id
        assert obj["ContentType"] == "application/json"


def test_the_backup_is_replaced_by_the_next_collection(bucket, s3_endpoint, s3_client, tmp_path):
    store = _store(bucket, s3_endpoint)
    for records in ([{"id": 1}], [{"id": 2}, {"id": 3}]):
        snapshot = make_snapshot(tmp_path, records)
        store.write(snapshot, render_envelope(snapshot))
    backup = store.fetch_backup("snyk_issues", "acme", tmp_path)
    assert backup.metadata["upload_id"] == snapshot.upload_id and backup.metadata["records"] == 2


def test_large_objects_go_up_in_multipart(bucket, s3_endpoint, s3_client, tmp_path):
    filler = "x" * 1000
    snapshot = make_snapshot(tmp_path, [{"id": i, "pad": filler} for i in range(12_000)])  # ~12 MB
    store = _store(bucket, s3_endpoint, multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    result = store.write(snapshot, render_envelope(snapshot))
    head = s3_client.head_object(Bucket=bucket, Key=result.extra["history"].split("/", 3)[3])
    assert head["ETag"].strip('"').endswith("-3")  # an S3 multipart ETag counts its parts
    ref = UploadRef("snyk_issues", "acme", snapshot.upload_id, {"s3": f"s3://{bucket}/backup/snyk_issues/acme.json"})
    assert sum(1 for _ in store.read(ref)) == 12_000


def test_no_backup_means_none(bucket, s3_endpoint, tmp_path):
    assert _store(bucket, s3_endpoint).fetch_backup("snyk_issues", "acme", tmp_path) is None


def test_a_snapshot_read_from_the_backup_is_not_uploaded_again(bucket, s3_endpoint, s3_client, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}])
    snapshot.source = "backup"
    result = _store(bucket, s3_endpoint).write(snapshot, render_envelope(snapshot))
    assert result.skipped and s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_without_a_history_key_the_backup_is_uploaded(bucket, s3_endpoint, s3_client, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}])
    store = S3Store(bucket, None, "backup/%TAG/%TENANCY.json", endpoint_url=s3_endpoint)
    result = store.write(snapshot, render_envelope(snapshot))
    assert result.extra == {"backup": f"s3://{bucket}/backup/snyk_issues/acme.json"}
    assert s3_client.head_object(Bucket=bucket, Key="backup/snyk_issues/acme.json")["Metadata"]["records"] == "1"


def _requests(store: S3Store) -> Counter:
    """The S3 operations the store's client sends, counted by botocore's own event hooks (nothing is replaced)."""
    sent: Counter = Counter()
    store.client.meta.events.register("before-call.s3", lambda model, **_: sent.update([model.name]))
    return sent


def _backup_holds(s3_client, bucket, snapshot, envelope_bytes):
    obj = s3_client.get_object(Bucket=bucket, Key="backup/snyk_issues/acme.json")
    assert obj["Body"].read() == envelope_bytes
    assert obj["Metadata"]["upload-id"] == snapshot.upload_id and obj["Metadata"]["records"] == "2"
    assert obj["ContentType"] == "application/json"


def test_the_backup_is_copied_from_the_history_object_inside_s3(bucket, s3_endpoint, s3_client, tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    store = _store(bucket, s3_endpoint)
    sent = _requests(store)
    rendered = render_envelope(snapshot)
    store.write(snapshot, rendered)
    assert sent["PutObject"] == 1 and sent["CopyObject"] == 1  # the envelope went up once
    _backup_holds(s3_client, bucket, snapshot, rendered.read_bytes())


def test_a_history_object_replaced_before_the_copy_makes_the_backup_an_upload_of_its_own(
    bucket, s3_endpoint, s3_client, tmp_path
):
    # Another run writes the same history key (a template without %UUID) between this upload and its copy.
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    store = S3Store(bucket, "data/%TAG.json", "backup/%TAG/%TENANCY.json", endpoint_url=s3_endpoint)
    sent = _requests(store)

    def other_run(**_):
        s3_client.put_object(Bucket=bucket, Key="data/snyk_issues.json", Body=b"{}", Metadata={"upload-id": "other"})

    store.client.meta.events.register_first("before-call.s3.CopyObject", other_run)
    rendered = render_envelope(snapshot)
    store.write(snapshot, rendered)
    assert sent["CopyObject"] == 1 and sent["PutObject"] == 2
    _backup_holds(s3_client, bucket, snapshot, rendered.read_bytes())


def test_a_history_object_gone_before_the_copy_makes_the_backup_an_upload_of_its_own(
    bucket, s3_endpoint, s3_client, tmp_path
):
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    store = _store(bucket, s3_endpoint)
    sent = _requests(store)

    def lifecycle_rule(params, **_):  # the history object is deleted: S3 answers the copy with NoSuchKey
        s3_client.delete_object(Bucket=bucket, Key=params["CopySource"]["Key"])

    store.client.meta.events.register_first("provide-client-params.s3.CopyObject", lifecycle_rule)
    rendered = render_envelope(snapshot)
    store.write(snapshot, rendered)
    assert sent["CopyObject"] == 1 and sent["PutObject"] == 2
    _backup_holds(s3_client, bucket, snapshot, rendered.read_bytes())


def test_an_object_over_copy_objects_5_gib_is_uploaded_twice(bucket, s3_endpoint, s3_client, tmp_path, monkeypatch):
    monkeypatch.setattr(s3, "COPY_OBJECT_LIMIT", 10)  # stands for 5 GiB: the envelope here is larger
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    store = _store(bucket, s3_endpoint)
    sent = _requests(store)
    rendered = render_envelope(snapshot)
    store.write(snapshot, rendered)
    assert sent["CopyObject"] == 0 and sent["PutObject"] == 2
    _backup_holds(s3_client, bucket, snapshot, rendered.read_bytes())
