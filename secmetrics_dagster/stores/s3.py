"""S3 store: a history object per upload (STORE_AWS_S3_KEY) and the last good copy (STORE_AWS_S3_BACKUP)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..collection.boto import boto3_session
from ..collection.context import RunContext, expand_path, parse_timestamp
from ..collection.errors import ConfigError
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, Timer, UploadRef, check_text
from .envelope import count_envelope_records, iter_envelope_records, read_envelope_metadata

MB = 1024 * 1024
COPY_OBJECT_LIMIT = 5 * 1024 * MB  # the largest object one CopyObject request copies
# botocore's own rule for bucket names (legacy us-east-1 names included) and for access point / Outposts ARNs.
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}|arn:[A-Za-z0-9-]+:s3[A-Za-z0-9-]*:[a-z0-9-]*:[0-9]{0,12}:[^\s]+")
# The backup is the one last good copy of a tag and tenancy, so its key may not change from one upload to the next.
_PER_UPLOAD = ("%UUID", "%YYYY", "%MM", "%DD", "%hh", "%mm", "%ss")


@dataclass
class Backup:
    """The last good copy of one tag and tenancy, downloaded to a local file."""

    path: Path
    uri: str
    metadata: dict[str, Any]

    @property
    def collected_at(self) -> datetime:
        return parse_timestamp(self.metadata["timestamp"])


@dataclass
class StreamedBackup:
    """The last good copy of one tag and tenancy, read from S3 as a stream (no local copy is made)."""

    uri: str
    metadata: dict[str, Any]
    open: Callable[[], Any]  # a new stream of the envelope (a context manager with read())

    def records(self) -> Iterator[dict]:
        with self.open() as body:
            yield from iter_envelope_records(body)


def _client_error(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip(": ")


class S3Store(Store):
    name = "s3"

    def __init__(
        self,
        bucket: str,
        key_template: Optional[str] = None,
        backup_template: Optional[str] = "backup/%TAG/%TENANCY.json",
        *,
        endpoint_url: Optional[str] = None,
        region: Optional[str] = None,
        multipart_threshold: int = 64 * MB,
        multipart_chunksize: int = 16 * MB,
    ):
        # Every setting is checked here, before any request: the step fails in a moment, before the pull.
        check_text("STORE_AWS_S3_BUCKET", bucket, what="an S3 bucket name")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(
                f"STORE_AWS_S3_BUCKET={bucket[:70]!r} is not an S3 bucket name: use the name alone (no s3:// "
                "prefix, no key), e.g. security-data-bucket"
            )
        if key_template:
            check_text(
                "STORE_AWS_S3_KEY", key_template, what="a key template such as data/%TAG/%YYYY/%MM/%DD/%UUID.json"
            )
        if backup_template:
            check_text("STORE_AWS_S3_BACKUP", backup_template, what="a key template such as backup/%TAG/%TENANCY.json")
            for variable in _PER_UPLOAD:
                if variable in backup_template:
                    raise ConfigError(
                        f"STORE_AWS_S3_BACKUP={backup_template!r} uses {variable}: the backup is the one last good "
                        "copy, so its key may only use %TAG and %TENANCY"
                    )
            if "%TAG" not in backup_template:
                raise ConfigError(
                    f"STORE_AWS_S3_BACKUP={backup_template!r} does not use %TAG: every asset would overwrite the "
                    "same backup. Use a template such as backup/%TAG/%TENANCY.json"
                )
        if endpoint_url:
            check_text("STORE_AWS_S3_ENDPOINT_URL", endpoint_url, what="an http:// or https:// URL")
            if not re.fullmatch(r"https?://[^/?#\s]+(/[^\s]*)?", endpoint_url):
                raise ConfigError(
                    f"STORE_AWS_S3_ENDPOINT_URL={endpoint_url[:70]!r} must be an http:// or https:// URL, "
                    "e.g. https://s3.eu-west-1.amazonaws.com"
                )
        if multipart_threshold < 5 * MB or multipart_chunksize < 5 * MB:
            raise ConfigError("STORE_AWS_S3_MULTIPART_MB must be at least 5: S3 refuses smaller multipart parts")
        self.bucket = bucket
        self.key_template = key_template or None
        self.backup_template = backup_template or None
        self.endpoint_url = endpoint_url
        self.region = region
        # boto3's transfer manager switches to multipart above the threshold and aborts a failed
        # multipart upload, so an object is either complete or absent.
        # Two upload threads: each holds a chunk in memory, and two already saturate a typical link to S3.
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize, max_concurrency=2
        )
        self._client = None

    @property
    def client(self):
        if self._client is None:
            region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            self._client = boto3_session().client(
                "s3",
                endpoint_url=self.endpoint_url,  # None: boto3 honours AWS_ENDPOINT_URL(_S3) itself
                region_name=region,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=120),
            )
        return self._client

    def describe(self) -> str:
        parts = [f"s3://{self.bucket}/{t}" for t in (self.key_template, self.backup_template) if t]
        return "S3 " + " and ".join(parts)

    @property
    def needs_envelope(self) -> bool:
        return True

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    @staticmethod
    def _key(template: str, ctx: RunContext) -> str:
        return expand_path(template, ctx).lstrip("/")

    def write(self, snapshot: Snapshot, envelope: Optional[Path]) -> StoreResult:
        if snapshot.source == "backup":
            return StoreResult(
                self.name,
                self.uri(self._key(self.backup_template, snapshot.context)) if self.backup_template else "",
                0,
                0,
                0.0,
                skipped="the snapshot was read from this bucket's backup; nothing new to upload",
            )
        assert envelope is not None
        size = envelope.stat().st_size
        extra: dict[str, Any] = {}
        object_metadata = {
            "tag": snapshot.tag,
            "tenancy": snapshot.tenancy,
            "upload-id": snapshot.upload_id,
            "timestamp": snapshot.timestamp_text,
            "records": str(snapshot.records),
        }
        errors = []
        history_key: Optional[str] = None  # once the history object is up
        with Timer() as timer:
            for role, template in (("history", self.key_template), ("backup", self.backup_template)):
                if not template:
                    continue
                key = self._key(template, snapshot.context)
                try:
                    # The backup holds the same bytes as the history object: S3 copies it on its side, and the
                    # envelope is sent once. Whenever that copy cannot be had, the envelope is uploaded again.
                    if not (
                        role == "backup" and history_key and self._copy(history_key, key, snapshot.upload_id, size)
                    ):
                        self.client.upload_file(
                            str(envelope),
                            self.bucket,
                            key,
                            Config=self.transfer,
                            ExtraArgs={"ContentType": "application/json", "Metadata": object_metadata},
                        )
                    extra[role] = self.uri(key)
                    if role == "history":
                        history_key = key
                except (BotoCoreError, ClientError, OSError) as exc:
                    errors.append(f"{role} object {self.uri(key)}: {exc}")
        if errors:
            raise StoreError("; ".join(errors))
        location = extra.get("history") or extra.get("backup", "")
        return StoreResult(self.name, location, snapshot.records, size, timer.seconds, extra=extra)

    def _copy(self, source: str, key: str, upload_id: str, size: int) -> bool:
        """Copy this upload's history object to `key` inside S3 (CopyObject: one request, up to 5 GiB, metadata and
        content type kept); True once `key` holds this upload. False, and nothing is left half-done, when the copy
        is not possible: a larger object, a history object another run replaced or removed meanwhile, a role
        without s3:GetObject, an S3-compatible server without CopyObject."""
        if size > COPY_OBJECT_LIMIT:
            return False
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=source)
            if (head.get("Metadata") or {}).get("upload-id") != upload_id or not head.get("ETag"):
                return False
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceIfMatch=head["ETag"],  # exactly the object just checked (S3 answers 412 otherwise)
                MetadataDirective="COPY",
            )
            # A server that ignores CopySourceIfMatch (moto does) may have copied a newer upload: checked again.
            copied = self.client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError):
            return False
        return (copied.get("Metadata") or {}).get("upload-id") == upload_id

    def _recorded_key(self, ref: UploadRef) -> str:
        uri = ref.locations.get(self.name)
        if not uri or not uri.startswith(f"s3://{self.bucket}/"):
            raise StoreError(f"S3 store: no object recorded for upload {ref.upload_id}")
        return uri[len(f"s3://{self.bucket}/") :]

    def count(self, ref: UploadRef) -> int:
        """Records of the upload in its object, after checking the object is that upload's.

        S3 checks an object's content against its checksums as it is uploaded, and an object appears whole or
        not at all, so the count written with it is trusted rather than downloading gigabytes on every check.
        A backup written by the original collectors carries no such metadata and is counted by streaming it.
        """
        key = self._recorded_key(ref)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise StoreError(f"S3 store: {self.uri(key)} cannot be read: {_client_error(exc)}") from None
        md = head.get("Metadata") or {}
        upload = md.get("upload-id")
        if upload is not None and upload != ref.upload_id:
            # The backup key holds one upload per tag and tenancy: a later collection replaced this one.
            raise StoreError(f"S3 store: {self.uri(key)} now holds upload {upload}, not {ref.upload_id}")
        records = md.get("records") or ""
        if upload is not None and records.isdigit():
            return int(records)
        try:
            with self._stream(key, head.get("ETag")) as body:
                return count_envelope_records(body)
        except (BotoCoreError, ClientError, ValueError, OSError) as exc:
            raise StoreError(f"S3 store: {self.uri(key)} cannot be read back: {exc}") from None

    def read(self, ref: UploadRef) -> Iterator[dict]:
        key = self._recorded_key(ref)
        with tempfile.TemporaryDirectory(prefix="secmetrics-s3-") as tmp:
            path = Path(tmp) / "object.json"
            self._download(key, path)
            with open(path, "rb") as handle:
                yield from iter_envelope_records(handle)

    def _download(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.bucket, key, str(path), Config=self.transfer)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(self.uri(key)) from None
            raise

    def open_backup(self, tag: str, tenancy: str) -> Optional[StreamedBackup]:
        """The backup of tag/tenancy read straight from S3, without a local copy; None when there is none.

        Its metadata comes from the object's metadata (written with it) or, for backups the original collectors
        wrote, from a first streamed pass over the envelope. The records are read from that same object version.
        """
        if not self.backup_template:
            return None
        key = self._key(self.backup_template, RunContext(tag, tenancy))
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        etag = head.get("ETag")
        md = head.get("Metadata") or {}
        if all(md.get(k) for k in ("tag", "tenancy", "upload-id", "timestamp", "records")):
            metadata: dict[str, Any] = {
                "tenancy": md["tenancy"],
                "upload_id": md["upload-id"],
                "timestamp": md["timestamp"],
                "tag": md["tag"],
                "records": int(md["records"]) if md["records"].isdigit() else md["records"],
            }
        else:
            with self._stream(key, etag) as body:
                metadata = read_envelope_metadata(body)
        return StreamedBackup(self.uri(key), metadata, lambda: self._stream(key, etag))

    def _stream(self, key: str, etag: Optional[str]) -> Any:
        """The object's body as a stream; IfMatch keeps every read on the version first looked at."""
        extra = {"IfMatch": etag} if etag else {}
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("PreconditionFailed", "412"):
                raise StoreError(
                    f"S3 store: the backup {self.uri(key)} was replaced while it was being read; run again"
                ) from None
            raise

    def fetch_backup(self, tag: str, tenancy: str, directory: Path) -> Optional[Backup]:
        """Download the backup of tag/tenancy into directory; None when there is none."""
        if not self.backup_template:
            return None
        key = self._key(self.backup_template, RunContext(tag, tenancy))
        path = Path(directory) / f"{tag}.{tenancy}.backup.json"
        try:
            self._download(key, path)
        except FileNotFoundError:
            return None
        with open(path, "rb") as handle:
            metadata = read_envelope_metadata(handle)
        return Backup(path=path, uri=self.uri(key), metadata=metadata)
