"""msmine.client.ServerClient: URLs, auth, upload outcomes, paging and error lines.

Most tests run against a scripted stdlib HTTP server on 127.0.0.1 (it records every request and
answers what the test says); one runs the whole API against a real `msmine serve` (skipped without
the server extra)."""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import socket
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from msmine import wire
from msmine.client import (
    PairFilter,
    ServerClient,
    ServerError,
    UploadOutcome,
    encode_multipart,
    parse_retry_after,
)
from msmine.errors import UserError

pytestmark = pytest.mark.timeout(120)

TOKEN = "msm_secret-token-value"


@dataclass
class Seen:
    method: str
    path: str  # raw request path, without the query
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict, bytes]  # status, headers, body


def js(status: int, obj, headers: dict | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


class Scripted:
    """A tiny HTTP server: ``answer(seen) -> Reply`` decides every reply; ``seen`` lists the requests."""

    def __init__(self, answer: Callable[[Seen], Reply] | None = None) -> None:
        self.answer = answer or (lambda seen: js(200, {"status": "ok"}))
        self.seen: list[Seen] = []
        self.delay_s = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path, _, qs = self.path.partition("?")
                seen = Seen(self.command, path, dict(urllib.parse.parse_qsl(qs)), dict(self.headers), body)
                outer.seen.append(seen)
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                status, headers, data = outer.answer(seen)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def stub():
    with Scripted() as s:
        yield s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


def png(value: int, size: tuple[int, int] = (8, 8)) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((size[1], size[0], 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def pair(seed: int = 1) -> tuple[dict, dict[str, bytes]]:
    files = {"visible": png(seed), "thermal": png(seed + 1), "heatmap": png(seed + 2)}
    manifest = wire.build_manifest(
        device_id="pole-1", captured_at={"visible": 1764131234.5, "thermal": 1764131234.48},
        model_version="v1", model_hash="ab" * 32, task="detect", score=0.5, image_size=(8, 8),
        class_names=["person", "car"], files=files,
        predictions={"fused": [{"box": [0.1, 0.2, 0.4, 0.8], "score": 0.8, "class_id": 1}], "visible": [],
                     "thermal": []},
    )
    return manifest, files


def parse_multipart(seen: Seen) -> dict[str, tuple[str | None, bytes]]:
    import email.parser
    import email.policy

    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {seen.headers['Content-Type']}\r\n\r\n".encode() + seen.body)
    return {p.get_param("name", header="content-disposition"): (p.get_filename(), p.get_payload(decode=True))
            for p in msg.iter_parts()}


# -- upload outcomes ------------------------------------------------------------------------------


def test_upload_sends_the_wire_format_with_the_token(stub):
    manifest, files = pair()
    stub.answer = lambda seen: js(201, {"upload_id": manifest["upload_id"], "duplicate": False})
    result = ServerClient(stub.url, TOKEN).upload_pair(manifest, files)
    assert result.outcome is UploadOutcome.CREATED and result.ok and result.status == 201
    assert result.record["upload_id"] == manifest["upload_id"]
    (seen,) = stub.seen
    assert (seen.method, seen.path) == ("POST", wire.UPLOAD_PATH)
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert result.bytes_sent == len(seen.body)
    parts = parse_multipart(seen)
    assert set(parts) == {wire.MANIFEST_PART, *wire.FILE_PARTS}
    assert wire.parse_manifest(parts[wire.MANIFEST_PART][1]) == manifest
    for part in wire.FILE_PARTS:
        assert parts[part] == (f"{part}.png", files[part])
        wire.verify_file(manifest, part, parts[part][1])


@pytest.mark.parametrize(("reply", "outcome", "auth"), [
    (js(200, {"duplicate": True}), UploadOutcome.DUPLICATE, False),
    (js(201, {"duplicate": True}), UploadOutcome.DUPLICATE, False),  # the body's word wins
    (js(401, {"detail": "invalid or revoked token"}), UploadOutcome.REFUSED, True),
    (js(403, {"detail": "this token belongs to device 'pole-2'"}), UploadOutcome.REFUSED, True),
    (js(409, {"detail": "conflict"}), UploadOutcome.REFUSED, False),
    (js(422, {"detail": "manifest.score must lie in [0, 1]"}), UploadOutcome.REFUSED, False),
    (js(400, {"detail": "visible: content hash does not match"}), UploadOutcome.REFUSED, False),
    (js(413, {"detail": "too large"}), UploadOutcome.REFUSED, False),
    (js(503, {"detail": "down"}), UploadOutcome.TRANSIENT, False),
    (js(500, {"detail": "boom"}), UploadOutcome.TRANSIENT, False),
    (js(404, {"detail": "Not Found"}), UploadOutcome.TRANSIENT, False),  # a misrouted proxy: keep the pair
])
def test_upload_outcome_of_each_answer(stub, reply, outcome, auth):
    stub.answer = lambda seen: reply
    manifest, files = pair()
    result = ServerClient(stub.url, TOKEN).upload_pair(manifest, files)
    assert result.outcome is outcome
    assert result.status == reply[0]
    assert result.auth_refused is auth
    assert result.ok is (outcome in (UploadOutcome.CREATED, UploadOutcome.DUPLICATE))
    if not result.ok:
        assert result.detail == json.loads(reply[2])["detail"] and "\n" not in result.detail


def test_upload_429_carries_retry_after_in_seconds_or_as_a_date(stub):
    manifest, files = pair()
    client = ServerClient(stub.url, TOKEN)
    stub.answer = lambda seen: js(429, {"detail": "busy"}, {"Retry-After": "7"})
    result = client.upload_pair(manifest, files)
    assert (result.outcome, result.status, result.retry_after) == (UploadOutcome.TRANSIENT, 429, 7.0)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    stub.answer = lambda seen: js(429, {"detail": "busy"}, {"Retry-After": when})
    assert 25 <= client.upload_pair(manifest, files).retry_after <= 31
    stub.answer = lambda seen: js(429, {"detail": "busy"})
    assert client.upload_pair(manifest, files).retry_after is None
    stub.answer = lambda seen: js(503, {"detail": "down"}, {"Retry-After": "5"})
    assert client.upload_pair(manifest, files).retry_after is None  # only a 429's hint is one


def test_parse_retry_after_edges():
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0 and parse_retry_after("99999") == 3600.0
    assert parse_retry_after("nan") is None


def test_upload_without_a_server_is_transient_not_an_exception():
    manifest, files = pair()
    result = ServerClient(f"http://127.0.0.1:{closed_port()}", TOKEN).upload_pair(manifest, files)
    assert result.outcome is UploadOutcome.TRANSIENT and result.status is None and not result.ok
    assert "refused" in result.detail.lower()


def test_upload_timeout_is_transient(stub):
    stub.delay_s = 1.0
    manifest, files = pair()
    t0 = time.monotonic()
    result = ServerClient(stub.url, TOKEN, timeout=0.2).upload_pair(manifest, files)
    assert result.outcome is UploadOutcome.TRANSIENT and result.status is None
    assert time.monotonic() - t0 < 1.0


def test_upload_with_a_missing_part_is_a_caller_bug(stub):
    manifest, files = pair()
    del files["heatmap"]
    with pytest.raises(ValueError, match="heatmap"):
        ServerClient(stub.url, TOKEN).upload_pair(manifest, files)
    assert stub.seen == []


def test_redirects_are_not_followed_so_the_token_stays_home(stub):
    with Scripted() as elsewhere:
        stub.answer = lambda seen: (307, {"Location": elsewhere.url + wire.UPLOAD_PATH}, b"")
        manifest, files = pair()
        result = ServerClient(stub.url, TOKEN).upload_pair(manifest, files)
        assert result.outcome is UploadOutcome.TRANSIENT and result.status == 307
        with pytest.raises(ServerError, match="answered 307"):
            ServerClient(stub.url, TOKEN).stats()
        assert elsewhere.seen == []


# -- URLs, auth, paging ---------------------------------------------------------------------------


def test_every_call_builds_its_url_from_the_api_paths(stub):
    uid = "ab" * 32
    model = b"onnx-bytes" * 10
    sha = hashlib.sha256(model).hexdigest()
    record = {"version": "v2", "sha256": sha, "bytes": len(model), "metadata": {"map50": 0.6}, "published_at": 1.0}

    def answer(seen: Seen) -> Reply:
        p = seen.path
        if p == f"{wire.API_PREFIX}/pairs":
            return js(200, {"items": [], "total": 0, "limit": 50, "offset": 0})
        if p == f"{wire.API_PREFIX}/pairs/{uid}":
            return js(200, {"upload_id": uid, "device_id": "pole-1", "score": 0.3, "class_names": ["car"],
                            "predictions": {"fused": []}, "files": {}, "labels": {"fusion": [[0, .5, .5, .1, .1]]}})
        if p == f"{wire.API_PREFIX}/pairs/{uid}/files/thermal":
            return 200, {"Content-Type": "image/png"}, b"\x89PNG..."
        if p == f"{wire.API_PREFIX}/batches" and seen.method == "POST":
            return js(201, {"batch_id": "0123456789abcdef", "upload_ids": [uid], "k": 3, "hamming": 10,
                            "skipped_duplicates": 1, "examined": 4})
        if p == f"{wire.API_PREFIX}/labels":
            return js(200, {"pairs_labelled": 2, "label_sets": 2, "unmatched": ["x.txt"]})
        if p == wire.MODELS_LATEST_PATH:
            return js(200, record)
        if p == wire.MODEL_FILE_PATH.format(version="v2"):
            return 200, {}, model
        if p == f"{wire.API_PREFIX}/models" and seen.method == "POST":
            return js(201, record)
        if p == f"{wire.API_PREFIX}/models":
            return js(200, [record])
        if p == f"{wire.API_PREFIX}/stats":
            return js(200, {"pairs": 0})
        if p == "/healthz":
            return js(200, {"status": "ok"})
        return js(404, {"detail": f"no route {p}"})

    stub.answer = answer
    c = ServerClient(stub.url + "/", TOKEN)  # a trailing slash is not doubled
    assert c.health() == {"status": "ok"} and c.is_up()
    assert c.stats() == {"pairs": 0}
    page = c.list_pairs(PairFilter(device="pole-1", labelled=False, min_score=0.25), limit=7, offset=14)
    assert page.total == 0 and page.items == []
    detail = c.get_pair(uid)
    assert detail.upload_id == uid and detail.class_names == ["car"] and detail.labels["fusion"][0][0] == 0
    assert c.pair_file(uid, "thermal") == b"\x89PNG..."
    batch = c.create_batch(3, PairFilter(labelled=False), hamming=-1)
    assert batch.batch_id == "0123456789abcdef" and batch.upload_ids == [uid] and batch.skipped_duplicates == 1
    imported = c.post_labels(b"{}", "coco.json", fmt="coco", modality="visible")
    assert (imported.pairs_labelled, imported.unmatched) == (2, ["x.txt"])
    latest = c.latest_model()
    assert latest.version == "v2" and latest.metadata == {"map50": 0.6}
    published = c.publish_model("v2", model, {"map50": 0.6})
    assert published.created and published.model == latest
    assert c.list_models() == [latest]
    by_path = {(s.method, s.path): s for s in stub.seen}
    assert by_path[("GET", f"{wire.API_PREFIX}/pairs")].query == {
        "device": "pole-1", "labelled": "false", "min_score": "0.25", "limit": "7", "offset": "14"}
    assert json.loads(by_path[("POST", f"{wire.API_PREFIX}/batches")].body) == {
        "k": 3, "filters": {"labelled": False}, "hamming": -1}
    assert by_path[("POST", f"{wire.API_PREFIX}/labels")].query == {"format": "coco", "modality": "visible"}
    parts = parse_multipart(by_path[("POST", f"{wire.API_PREFIX}/models")])
    assert parts["version"][1] == b"v2" and json.loads(parts["metadata"][1]) == {"map50": 0.6}
    assert parts["file"][1] == model
    for seen in stub.seen:
        assert not seen.path.startswith("//")
        assert seen.headers.get("Authorization") == f"Bearer {TOKEN}", seen.path


def test_path_parameters_are_quoted_so_they_cannot_walk_the_api(stub):
    stub.answer = lambda seen: js(404, {"detail": "no such pair"})
    c = ServerClient(stub.url, TOKEN)
    with pytest.raises(ServerError):
        c.get_pair("../../models")
    with pytest.raises(ServerError):
        c.get_batch("x/../../y?z=1")
    assert [s.path for s in stub.seen] == [f"{wire.API_PREFIX}/pairs/..%2F..%2Fmodels",
                                           f"{wire.API_PREFIX}/batches/x%2F..%2F..%2Fy%3Fz%3D1"]
    with pytest.raises(ValueError):
        c.pair_file("ab" * 32, "../secret")


def test_no_token_sends_no_authorization_header(stub):
    assert ServerClient(stub.url).is_up()
    assert "Authorization" not in stub.seen[0].headers


def test_iter_pairs_walks_every_page_once(stub):
    ids = [f"{i:064x}" for i in range(5)]

    def answer(seen: Seen) -> Reply:
        off, lim = int(seen.query["offset"]), int(seen.query["limit"])
        items = [{"upload_id": u, "device_id": "d", "score": 1 - i / 10} for i, u in enumerate(ids)][off:off + lim]
        return js(200, {"items": items, "total": len(ids), "limit": lim, "offset": off})

    stub.answer = answer
    c = ServerClient(stub.url, TOKEN)
    got = list(c.iter_pairs(PairFilter(labelled=True), page_size=2))
    assert [p.upload_id for p in got] == ids and got[0].score == 1.0
    assert [(s.query["offset"], s.query["limit"], s.query["labelled"]) for s in stub.seen] == [
        ("0", "2", "true"), ("2", "2", "true"), ("4", "2", "true")]
    stub.seen.clear()
    assert [p.upload_id for p in c.iter_pairs(page_size=2, max_items=3)] == ids[:3]
    assert len(stub.seen) == 2


def test_iter_pairs_stops_on_an_empty_page_even_if_total_lies(stub):
    stub.answer = lambda seen: js(200, {"items": [], "total": 10, "limit": 2, "offset": 0})
    assert list(ServerClient(stub.url, TOKEN).iter_pairs(page_size=2)) == []
    assert len(stub.seen) == 1


# -- errors ---------------------------------------------------------------------------------------


def test_errors_are_one_user_error_line_naming_method_url_and_status(stub):
    stub.answer = lambda seen: js(401, {"detail": "invalid\nor revoked token"})
    c = ServerClient(stub.url, TOKEN)
    with pytest.raises(ServerError) as info:
        c.list_pairs(limit=5)
    err = info.value
    assert isinstance(err, UserError) and err.status == 401 and not err.transient
    assert str(err) == f"GET {stub.url}{wire.API_PREFIX}/pairs?limit=5&offset=0 answered 401: invalid or revoked token"
    assert TOKEN not in str(err) and TOKEN not in repr(c)
    stub.answer = lambda seen: (502, {"Content-Type": "text/html"}, b"<html>" + b"x" * 5000 + b"</html>")
    with pytest.raises(ServerError) as info:
        c.stats()
    assert info.value.transient and "\n" not in str(info.value) and len(str(info.value)) < 500
    stub.answer = lambda seen: js(429, {"detail": "busy"}, {"Retry-After": "3"})
    with pytest.raises(ServerError) as info:
        c.stats()
    assert info.value.transient and info.value.retry_after == 3.0
    stub.answer = lambda seen: (200, {}, b"not json")
    with pytest.raises(ServerError, match="not JSON"):
        c.stats()
    stub.answer = lambda seen: js(200, {"items": "nope"})
    with pytest.raises(ServerError, match="malformed answer"):
        c.list_pairs()


def test_an_unreachable_server_is_one_line_and_transient():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ServerError) as info:
        ServerClient(url, TOKEN).stats()
    assert str(info.value).startswith(f"cannot reach server: GET {url}{wire.API_PREFIX}/stats failed:")
    assert info.value.status is None and info.value.transient
    assert not ServerClient(url).is_up(timeout=0.5)


def test_a_bad_base_url_is_a_user_error():
    for bad in ("127.0.0.1:8080", "ftp://host", "http://"):
        with pytest.raises(UserError, match="server URL"):
            ServerClient(bad, TOKEN)


def test_whoami_says_whose_token_it_is_or_none_on_an_older_server(stub):
    c = ServerClient(stub.url, TOKEN)
    stub.answer = lambda seen: js(200, {"role": "device", "device_id": "pole-1", "name": "pole-1"})
    ident = c.whoami()
    assert (ident.role, ident.device_id, ident.name) == ("device", "pole-1", "pole-1")
    assert stub.seen[-1].path == wire.WHOAMI_PATH and stub.seen[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    stub.answer = lambda seen: js(404, {"detail": "Not Found"})
    assert c.whoami() is None
    stub.answer = lambda seen: js(401, {"detail": "invalid or revoked token"})
    with pytest.raises(ServerError, match="answered 401: invalid or revoked token"):
        c.whoami()


def test_latest_model_is_none_on_404_and_rejects_a_malformed_record(stub):
    c = ServerClient(stub.url, TOKEN)
    stub.answer = lambda seen: js(404, {"detail": "no model is published yet"})
    assert c.latest_model() is None
    stub.answer = lambda seen: js(200, {"version": "../x", "sha256": "zz"})
    with pytest.raises(ServerError, match="malformed"):
        c.latest_model()


def test_download_is_verified_and_leaves_nothing_behind_on_a_mismatch(stub, tmp_path):
    from msmine.client import ModelInfo

    data = b"model" * 1000
    good = ModelInfo("v1", hashlib.sha256(data).hexdigest(), len(data))
    stub.answer = lambda seen: (200, {}, data)
    c = ServerClient(stub.url, TOKEN)
    got = c.download_model(good, tmp_path / "m" / "v1.onnx")
    assert got.path.read_bytes() == data and got.sha256 == good.sha256 and got.bytes == len(data)
    stub.answer = lambda seen: (200, {}, data[:-1] + b"X")
    with pytest.raises(ServerError, match="expected 5000 bytes"):
        c.download_model(ModelInfo("v2", good.sha256, len(data)), tmp_path / "v2.onnx")
    stub.answer = lambda seen: js(503, {"detail": "down"})
    with pytest.raises(ServerError) as info:
        c.download_model(ModelInfo("v3", good.sha256, len(data)), tmp_path / "v3.onnx")
    assert info.value.transient and info.value.status == 503
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_encode_multipart_boundary_never_occurs_in_a_part():
    body, ctype = encode_multipart({"version": "v1"}, {"file": ('we"ird\r\n.onnx', b"--" + b"x" * 40, "a/b")})
    boundary = ctype.split("boundary=")[1]
    assert body.count(boundary.encode()) == 3  # two openings and the closing one
    assert b'filename="weird.onnx"' in body


# -- the device's model updater on top of the client -----------------------------------------------


def test_model_updater_retries_a_download_cut_by_the_network_but_remembers_a_bad_file(stub, tmp_path):
    update = pytest.importorskip("msmine.edge_runtime.model_update")
    data = b"not really onnx" * 100
    record = {"version": "v5", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "metadata": {}}
    file_reply: list[Reply] = [js(503, {"detail": "restarting"})]
    stub.answer = lambda seen: js(200, record) if seen.path == wire.MODELS_LATEST_PATH else file_reply[0]
    updater = update.ModelUpdater(update.ModelFetcher(stub.url, TOKEN, tmp_path / "models"), "0" * 64,
                                  lambda runner: None, 1.0)
    assert not updater.check_once() and updater.failed == set()  # transient: tried again next poll
    file_reply[0] = (200, {}, data[::-1])  # the wrong bytes
    assert not updater.check_once() and updater.failed == {record["sha256"]}
    assert not list((tmp_path / "models").glob("*.part"))


# -- against a real server ------------------------------------------------------------------------


def test_the_whole_api_against_a_real_server(tmp_path):
    pytest.importorskip("fastapi")
    from tests.server.live_server import LiveServer, make_tokens

    root = tmp_path / "srv"
    tokens = make_tokens(root, ("pole-1", "pole-2"))
    server = LiveServer(root, ("--rate-limit", "0")).start()
    try:
        dev = ServerClient(server.url, tokens["pole-1"], timeout=30)
        team = ServerClient(server.url, tokens["team"], timeout=30)
        assert dev.is_up() and dev.latest_model() is None
        rng = np.random.default_rng(7)
        ids = []
        for i in range(5):
            files = {p: png(int(v), (32, 24)) for p, v in zip(wire.FILE_PARTS, rng.integers(0, 255, 3), strict=True)}
            files["visible"] = cv2.imencode(".png", rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))[1].tobytes()
            manifest = wire.build_manifest(
                device_id="pole-1", captured_at={"visible": 1000.0 + i, "thermal": 1000.0 + i},
                model_version="v1", model_hash="ab" * 32, task="detect", score=0.1 + 0.2 * i, image_size=(32, 24),
                class_names=["person", "car"], files=files,
                predictions={"fused": [{"box": [0.1, 0.1, 0.5, 0.5], "score": 0.9, "class_id": 1}]},
            )
            first = dev.upload_pair(manifest, files)
            assert first.outcome is UploadOutcome.CREATED, first
            ids.append(manifest["upload_id"])
        again = dev.upload_pair(manifest, files)
        assert again.outcome is UploadOutcome.DUPLICATE and again.record["duplicate"] is True
        wrong_device = ServerClient(server.url, tokens["pole-2"]).upload_pair(manifest, files)
        assert wrong_device.outcome is UploadOutcome.REFUSED and wrong_device.auth_refused
        assert wrong_device.status == 403 and "pole-2" in wrong_device.detail
        bad = dict(manifest, score=0.99)  # upload_id no longer matches the content
        refused = dev.upload_pair(bad, files)
        assert refused.outcome is UploadOutcome.REFUSED and not refused.auth_refused and refused.status == 400
        with pytest.raises(ServerError) as info:  # a device token may not list pairs
            dev.list_pairs()
        assert info.value.status == 403 and not info.value.transient

        page = team.list_pairs(limit=2, offset=1)
        assert page.total == 5 and [p.upload_id for p in page.items] == ids[::-1][1:3]
        assert [p.upload_id for p in team.iter_pairs(PairFilter(min_score=0.45), page_size=2)] == ids[::-1][:3]
        detail = team.get_pair(ids[0])
        assert detail.class_names == ["person", "car"] and detail.files["visible"]["bytes"] > 0
        assert team.pair_file(ids[0], "visible")[:4] == b"\x89PNG"
        batch = team.create_batch(2, PairFilter(device="pole-1"), hamming=-1)
        assert batch.upload_ids == ids[::-1][:2]
        assert team.export_batch(batch.batch_id, tmp_path / "batch.zip").bytes > 0
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"{ids[4]}.txt", "1 0.5 0.5 0.2 0.2\n")
        imported = team.post_labels(buf.getvalue(), "labels.zip", fmt="yolo", modality="all")
        assert imported.pairs_labelled == 1
        assert [p.upload_id for p in team.iter_pairs(PairFilter(labelled=True))] == [ids[4]]

        model = b"\x08\x09fake-onnx" * 300
        published = team.publish_model("v7", model, {"map50": 0.5})
        assert published.created and published.model.sha256 == hashlib.sha256(model).hexdigest()
        assert not team.publish_model("v7", model).created  # same file again: no-op
        with pytest.raises(ServerError) as info:
            team.publish_model("v7", model + b"!")
        assert info.value.status == 409 and "already published" in str(info.value)
        latest = dev.latest_model()
        assert latest.version == "v7" and latest.metadata == {"map50": 0.5}
        assert [m.version for m in team.list_models()] == ["v7"] and team.get_model("v7") == latest
        assert dev.download_model(latest, tmp_path / "v7.onnx").path.read_bytes() == model
    finally:
        server.stop()
