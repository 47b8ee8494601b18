"""S3 store: a history object per upload (STORE_AWS_S3_KEY) and the last good copy (STORE_AWS_S3_BACKUP)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..collection.context import RunContext, expand_path, parse_timestamp
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, Timer, UploadRef
from .envelope import iter_envelope_records, read_envelope_metadata

MB = 1024 * 1024


@dataclass
class Backup:
    """The last good copy of one tag and tenancy, downloaded to a local file."""

    path: Path
    uri: str
    metadata: dict[str, Any]

    @property
    def collected_at(self) -> datetime:
        return parse_timestamp(self.metadata["timestamp"])


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
            self._client = boto3.session.Session().client(
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
        with Timer() as timer:
            for role, template in (("history", self.key_template), ("backup", self.backup_template)):
                if not template:
                    continue
                key = self._key(template, snapshot.context)
                try:
                    self.client.upload_file(
                        str(envelope),
                        self.bucket,
                        key,
                        Config=self.transfer,
                        ExtraArgs={"ContentType": "application/json", "Metadata": object_metadata},
                    )
                    extra[role] = self.uri(key)
                except (BotoCoreError, ClientError, OSError) as exc:
                    errors.append(f"{role} object {self.uri(key)}: {exc}")
        if errors:
            raise StoreError("; ".join(errors))
        location = extra.get("history") or extra.get("backup", "")
        return StoreResult(self.name, location, snapshot.records, size, timer.seconds, extra=extra)

    def read(self, ref: UploadRef) -> Iterator[dict]:
        uri = ref.locations.get(self.name)
        if not uri or not uri.startswith(f"s3://{self.bucket}/"):
            raise StoreError(f"S3 store: no object recorded for upload {ref.upload_id}")
        key = uri[len(f"s3://{self.bucket}/") :]
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
