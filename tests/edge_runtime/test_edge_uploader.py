"""The uploader against a stub server on loopback: confirm-then-delete, idempotency, 429, outages."""

import time

import pytest

from msmine.edge_runtime.spool import Spool
from msmine.edge_runtime.uploader import Uploader
from tests.edge_runtime.helpers import make_pair
from tests.edge_runtime.stub_server import StubServer


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def server():
    with StubServer(tokens={"tok"}) as srv:
        yield srv


def filled_spool(tmp_path, n):
    spool = Spool(tmp_path / "spool", 1 << 24)
    manifests = [make_pair(i, 0.1 + 0.05 * i) for i in range(n)]
    for m, f in manifests:
        spool.put(m, f)
    return spool, {m["upload_id"] for m, _ in manifests}


def start(spool, server, **kw):
    up = Uploader(spool, server.url, kw.pop("token", "tok"), backoff_initial_s=0.05, backoff_max_s=0.2, **kw)
    up.start()
    return up


def test_drains_the_spool_and_deletes_only_confirmed_pairs(tmp_path, server):
    spool, ids = filled_spool(tmp_path, 4)
    up = start(spool, server)
    assert up.drain(10)
    up.stop()
    assert set(server.state.records) == ids
    assert all(n == 1 for n in server.state.created.values())
    assert spool.count() == 0 and up.uploaded == 4
    files = server.state.records[next(iter(ids))]["files"]
    assert set(files) == {"visible", "thermal", "heatmap"}


def test_server_down_keeps_everything_then_delivers_when_back(tmp_path, server):
    server.state.mode = "down"
    spool, ids = filled_spool(tmp_path, 3)
    up = start(spool, server)
    time.sleep(0.6)
    assert spool.count() == 3 and up.failures >= 2 and up.server_up is False
    server.state.mode = "up"
    assert up.drain(10)
    up.stop()
    assert set(server.state.records) == ids


def test_lost_response_is_retried_without_duplicating(tmp_path, server):
    server.state.mode = "lose_response"
    spool, ids = filled_spool(tmp_path, 2)
    up = start(spool, server)
    assert wait_for(lambda: len(server.state.requests) >= 2)  # stored, answer lost, retried
    assert spool.count() == 2  # never confirmed: still spooled
    server.state.mode = "up"
    assert up.drain(10)
    up.stop()
    assert server.state.created == dict.fromkeys(ids, 1)  # exactly one record each
    assert up.duplicates >= 1


def test_honours_429_retry_after(tmp_path, server):
    server.state.mode = "busy"
    server.state.retry_after = 1
    spool, _ = filled_spool(tmp_path, 1)
    up = start(spool, server)
    time.sleep(0.5)
    busy_requests = len(server.state.requests)
    assert busy_requests == 1  # waiting Retry-After (1 s), not hammering
    server.state.mode = "up"
    assert up.drain(10)
    up.stop()


def test_bad_token_sets_pairs_aside_without_retrying_them(tmp_path, server):
    spool, ids = filled_spool(tmp_path, 3)
    up = start(spool, server, token="wrong")
    assert wait_for(lambda: spool.count("refused") == 3)
    time.sleep(0.3)
    up.stop()
    up.join(5)
    assert server.state.records == {} and spool.count() == 0
    # each pair was tried once, not retried with backoff; every one kept with its reason
    assert server.state.requests.count(("/api/v1/uploads", 401)) == 3
    assert {uid for uid, _ in spool.refused()} == ids and all(r.startswith("401") for _, r in spool.refused())
    assert up.refusals == {401: 3} and up.uploaded == 0


def test_a_refused_pair_never_blocks_the_queue(tmp_path):
    with StubServer(tokens={"tok"}, devices={"tok": "test-dev"}) as srv:
        spool = Spool(tmp_path / "spool", 1 << 24)
        from tests.edge_runtime.helpers import make_pair as mk
        top, top_files = mk(99, 0.99)  # the highest score, but addressed to another device
        top = dict(top, device_id="someone-else")
        top.pop("upload_id")
        from msmine import wire
        top["upload_id"] = wire.compute_upload_id(top)
        spool.put(top, top_files)
        for i in range(3):
            spool.put(*mk(i, 0.2 + 0.1 * i))
        up = start(spool, srv)
        assert up.drain(10)
        up.stop()
        assert len(srv.state.records) == 3 and spool.count("refused") == 1
        assert spool.refused()[0][1].startswith("403") and "someone-else" in spool.refused()[0][1]
        # after the fix (re-addressed to this device) it goes through once
        assert spool.requeue_refused(device_id="test-dev") == 1
        up = start(spool, srv)
        assert up.drain(10)
        up.stop()
        assert len(srv.state.records) == 4 and spool.count() == 0 and spool.count("refused") == 0


def test_bandwidth_cap(tmp_path, server):
    spool, _ = filled_spool(tmp_path, 3)
    per_pair = spool.total_bytes() / 3
    kbps = per_pair * 8 / 1000 / 0.25  # one pair per 0.25 s
    up = start(spool, server, kbps=kbps)
    t0 = time.monotonic()
    assert up.drain(10)
    elapsed = time.monotonic() - t0
    up.stop()
    assert elapsed >= 0.45  # 3 pairs at the cap: at least two full waits


def test_no_server_reachable_at_all(tmp_path):
    spool, _ = filled_spool(tmp_path, 1)
    up = Uploader(spool, "http://127.0.0.1:9", "tok", backoff_initial_s=0.05, backoff_max_s=0.1)
    up.start()
    assert wait_for(lambda: up.failures >= 2)
    up.stop()
    assert spool.count() == 1
