"""Content-addressed blobs in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, ...).

The same :class:`msmine.server.blobs.BlobStore` protocol as the local directory store, with the
same key layout (``<prefix>blobs/<aa>/<sha256>``): a blob's key is its SHA-256, so a write is
idempotent and two replicas uploading the same file race harmlessly (same key, same bytes).

Writes are streamed to a local temporary file while hashing (the key is only known at the end),
then uploaded with boto3's managed transfer (multipart above its threshold). Nothing is visible
under the final key until the upload completes, which S3 guarantees is atomic per object.

Several replicas share one bucket, so :meth:`sweep` never deletes a blob younger than
``min_age_s``: another replica may have stored it a moment ago and not yet committed the record
that references it. Run the sweep from one replica at a time (the server takes a lock for it).

Configuration: ``S3Config`` fields, or the standard AWS environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``)
that boto3 reads itself. boto3 is imported only when an S3 store is created (extra ``s3``).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from msmine.errors import UserError
from msmine.server.blobs import HashingWriter, _check_sha

log = logging.getLogger(__name__)


@dataclass
class S3Config:
    bucket: str
    prefix: str = ""  # key prefix inside the bucket, e.g. "msmine/"
    endpoint_url: str | None = None  # None: AWS, or AWS_ENDPOINT_URL from the environment
    region: str | None = None
    access_key_id: str | None = None  # None: boto3's own chain (environment, config files, roles)
    secret_access_key: str | None = None
    create_bucket: bool = False  # create the bucket when it does not exist (tests, first start)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> S3Config:
        """``s3://bucket/prefix`` -> S3Config."""
        if not url.startswith("s3://") or len(url) <= 5:
            raise UserError(f"not an S3 URL: {url!r} (expected s3://BUCKET[/PREFIX])")
        bucket, _, prefix = url[5:].partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket=bucket, prefix=prefix, **kwargs)


class _S3Writer(HashingWriter):
    def __init__(self, store: S3BlobStore) -> None:
        super().__init__(tempfile.TemporaryFile(prefix="msmine-s3-"))
        self._store = store

    def commit(self) -> tuple[str, int]:
        sha = self._hash.hexdigest()
        try:
            if not self._store.exists(sha):
                self._file.seek(0)
                self._store._client.upload_fileobj(self._file, self._store.bucket, self._store.key(sha))
        finally:
            self._file.close()
        return sha, self._size

    def abort(self) -> None:
        self._file.close()


class S3BlobStore:
    """Blobs in one bucket (and key prefix) of an S3-compatible object store."""

    def __init__(self, config: S3Config, client=None) -> None:
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise UserError("S3 blob storage needs boto3: pip install 'msmine[s3]'") from None
            client = boto3.client(
                "s3",
                endpoint_url=config.endpoint_url,
                region_name=config.region,
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60),
            )
        self._client = client
        self._check_bucket()

    # -- set-up ----------------------------------------------------------------------------------
    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound") and self.config.create_bucket:
                self._client.create_bucket(Bucket=self.bucket)
                log.info("created bucket %s", self.bucket)
                return
            raise UserError(f"S3 bucket {self.bucket!r} is not usable: {code or exc}") from None
        except BotoCoreError as exc:
            raise UserError(f"cannot reach the S3 endpoint for bucket {self.bucket!r}: {exc}") from None

    def key(self, sha256: str) -> str:
        sha = _check_sha(sha256)
        return f"{self.prefix}blobs/{sha[:2]}/{sha}"

    # -- BlobStore -------------------------------------------------------------------------------
    def put(self, data: bytes, sha256: str | None = None) -> str:
        sha = _check_sha(sha256) if sha256 is not None else hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._client.put_object(Bucket=self.bucket, Key=self.key(sha), Body=data)
        return sha

    def writer(self) -> _S3Writer:
        return _S3Writer(self)

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read(self, sha256: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self._client.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"].read()
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"blob {sha256} not in s3://{self.bucket}/{self.prefix}") from None
            raise

    def local_path(self, sha256: str) -> Path | None:
        return None

    def delete(self, sha256: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def _objects(self) -> Iterator[dict]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"):
            yield from page.get("Contents", [])

    def iter_all(self) -> Iterator[str]:
        for obj in self._objects():
            name = obj["Key"].rsplit("/", 1)[-1]
            try:
                if self.key(name) == obj["Key"]:
                    yield name
            except ValueError:
                continue

    def sweep(self, referenced: set[str], min_age_s: float = 3600.0) -> int:
        """Delete blobs that no record references and that are older than ``min_age_s``."""
        now = time.time()
        removed = 0
        for obj in self._objects():
            name = obj["Key"].rsplit("/", 1)[-1]
            if name in referenced:
                continue
            modified = obj.get("LastModified")
            age = now - modified.timestamp() if modified is not None else float("inf")
            if age < min_age_s:
                continue
            self._client.delete_object(Bucket=self.bucket, Key=obj["Key"])
            removed += 1
        if removed:
            log.warning("sweep removed %d unreferenced blob(s) from s3://%s/%s", removed, self.bucket, self.prefix)
        return removed
