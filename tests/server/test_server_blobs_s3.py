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


def test_serve_with_blobs_in_s3(s3_endpoint, tmp_path):
    """`msmine serve --blobs s3://...`: an upload's files land in the bucket and are served back."""
    import json
    import subprocess
    import sys

    import numpy as np

    from msmine.client import ServerClient
    from tests.fleet import free_port, wait_http
    from tests.server.upload_helpers import manifest_for, synthetic_files

    root = tmp_path / "root"
    out = subprocess.run([sys.executable, "-m", "msmine.loop.cli", "token", "create", "--root", str(root),
                          "--device", "pole-1", "--json"], capture_output=True, text=True, timeout=120, check=True)
    token = json.loads(out.stdout)["token"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "msmine.loop.cli", "serve", "--root", str(root), "--port", str(port),
                             "--blobs", f"s3://serve-{os.getpid()}/p", "--s3-endpoint", s3_endpoint,
                             "--set", "s3_create_bucket=true", "--rate-limit", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        files = synthetic_files(np.random.default_rng(3))
        manifest = manifest_for(files)
        assert ServerClient(f"http://127.0.0.1:{port}", token).upload_pair(manifest, files).ok
        assert not (root / "blobs").exists() or not any((root / "blobs").rglob("*")), "files went to --root"
        from msmine.server.blobs_s3 import S3BlobStore, S3Config

        bucket = S3BlobStore(S3Config(bucket=f"serve-{os.getpid()}", prefix="p/", endpoint_url=s3_endpoint,
                                      region="us-east-1", access_key_id="test", secret_access_key="test"))
        assert hashlib.sha256(files["visible"]).hexdigest() in set(bucket.iter_all())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
