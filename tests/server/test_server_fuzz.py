"""Property: any corruption or truncation of a valid upload gets a 2xx or a 4xx, never a 5xx, and a
refused upload leaves no file and no row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import make_served
from tests.server.upload_helpers import manifest_bytes, manifest_for, synthetic_files, upload_body


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    served = make_served(tmp_path_factory.mktemp("fuzz") / "srv")
    files = synthetic_files(np.random.default_rng(99), size=(48, 36))
    body, ctype = upload_body(manifest_bytes(manifest_for(files)), files)
    with served.client:
        yield served, body, ctype


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_uploads_never_5xx_and_leave_no_trace(fuzz_target, data):
    served, body, ctype = fuzz_target
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(body) - 1))
    if kind == "truncate":
        mutated = body[:pos]
    elif kind == "flip":
        mutated = body[:pos] + bytes([body[pos] ^ data.draw(st.integers(1, 255))]) + body[pos + 1:]
    elif kind == "insert":
        mutated = body[:pos] + data.draw(st.binary(min_size=1, max_size=16)) + body[pos:]
    else:
        mutated = body[:pos] + body[pos + data.draw(st.integers(1, 64)):]
    rows_before = served.count_rows()
    resp = served.client.post("/api/v1/uploads", content=mutated,
                              headers={"Content-Type": ctype, **served.auth(served.device)})
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert "detail" in resp.json()
        assert served.count_rows() == rows_before
        stored = {p.name for p in served.stored_files()}
        referenced = {r[0] for r in served.sql("SELECT sha256 FROM pair_blobs")}
        assert stored == referenced
    assert served.tmp_files() == []
