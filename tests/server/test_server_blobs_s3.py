"""The S3 blob store against a real S3-compatible server over HTTP (moto's server process), and
the same contract checks against the local directory store."""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest

from msmine.errors import UserError
from msmine.server.blobs import LocalBlobStore

_bucket_ids = itertools.count()


@pytest.fixture
def s3_store(s3_endpoint):
    from msmine.server.blobs_s3 import S3BlobStore, S3Config

    config = S3Config(bucket=f"msmine-test-{os.getpid()}-{next(_bucket_ids)}", prefix="fleet/",
                      endpoint_url=s3_endpoint, region="us-east-1", access_key_id="test",
                      secret_access_key="test", create_bucket=True)
    return S3BlobStore(config)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalBlobStore(tmp_path / "root", fsync=False)
    return request.getfixturevalue("s3_store")


def test_put_read_exists_delete(store):
    data = b"visible image bytes"
    sha = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.put(data) == sha  # idempotent
    assert store.exists(sha) and store.read(sha) == data
    assert list(store.iter_all()) == [sha]
    store.delete(sha)
    assert not store.exists(sha) and list(store.iter_all()) == []


def test_streamed_write_large_and_abort(store):
    chunk = os.urandom(1 << 20)
    writer = store.writer()
    for _ in range(12):  # 12 MiB: above boto3's multipart threshold (8 MiB)
        writer.write(chunk)
    sha, size = writer.commit()
    assert size == 12 << 20 and sha == hashlib.sha256(chunk * 12).hexdigest()
    assert store.read(sha) == chunk * 12
    aborted = store.writer()
    aborted.write(b"never stored")
    aborted.abort()
    assert list(store.iter_all()) == [sha]


def test_bad_digest_refused(store):
    with pytest.raises(ValueError, match="sha256"):
        store.exists("../../etc/passwd")


def test_s3_keys_are_content_addressed_under_the_prefix(s3_store):
    sha = s3_store.put(b"x")
    assert s3_store.key(sha) == f"fleet/blobs/{sha[:2]}/{sha}"
    assert s3_store.local_path(sha) is None
    with pytest.raises(FileNotFoundError):
        s3_store.read(hashlib.sha256(b"absent").hexdigest())


def test_s3_sweep_keeps_referenced_and_young_blobs(s3_store):
    keep, drop = s3_store.put(b"referenced"), s3_store.put(b"orphan")
    assert s3_store.sweep({keep}) == 0  # the orphan is younger than an hour: another replica may own it
    assert s3_store.sweep({keep}, min_age_s=0) == 1
    assert list(s3_store.iter_all()) == [keep] and not s3_store.exists(drop)


def test_s3_errors_are_one_line(s3_endpoint):
    from msmine.server.blobs_s3 import S3BlobStore, S3Config

    with pytest.raises(UserError, match="not usable"):
        S3BlobStore(S3Config(bucket="no-such-bucket", endpoint_url=s3_endpoint, region="us-east-1",
                             access_key_id="t", secret_access_key="t"))
    with pytest.raises(UserError, match="not an S3 URL"):
        S3Config.from_url("http://bucket")
    assert S3Config.from_url("s3://b/p").prefix == "p/"
