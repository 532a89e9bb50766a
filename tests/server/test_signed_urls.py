"""Signed image URLs: a team token gets them, anyone holding one gets that image until it expires,
and nothing else (expired, tampered, another image, another server's key: 403)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from msmine.server import signed_urls
from tests.server.conftest import make_served


@pytest.fixture
def srv(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(signed_urls.KEY_ENV, raising=False)
    s = make_served(tmp_path / "srv")
    with s.client:
        yield s
    s.app.state.ctx.close()


def _upload(srv, seed: int = 0) -> tuple[str, dict]:
    r, manifest = srv.upload_synthetic(np.random.default_rng(seed))
    assert r.status_code == 201, r.text
    return manifest["upload_id"], manifest


def test_signed_url_serves_the_image_without_a_token(srv):
    uid, manifest = _upload(srv)
    r = srv.client.post("/api/v1/signed-urls", json={"upload_ids": [uid], "expires_in_s": 600},
                        headers=srv.auth(srv.team))
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got["urls"][uid]) == {"visible", "thermal"}
    assert abs(got["expires_at"] - (time.time() + 600)) < 30
    for part in ("visible", "thermal"):
        url = got["urls"][uid][part]
        assert url.startswith(f"/signed/{uid}/{part}?exp=")
        img = srv.client.get(url)  # no Authorization header
        assert img.status_code == 200
        assert img.headers["content-type"] == manifest["files"][part]["media_type"]
        assert img.headers["access-control-allow-origin"] == "*"  # Label Studio's editor loads it cross-origin
        assert srv.client.get(f"/api/v1/pairs/{uid}/files/{part}", headers=srv.auth(srv.team)).content == img.content
    # the key was made once, private, and is reused
    key_file = srv.root / signed_urls.KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert signed_urls.load_key(srv.root) == key_file.read_bytes()


def test_signed_urls_refuse_what_they_were_not_given(srv):
    uid, _ = _upload(srv)
    other, _ = _upload(srv, seed=1)
    url = srv.client.post("/api/v1/signed-urls", json={"upload_ids": [uid], "parts": ["visible"]},
                          headers=srv.auth(srv.team)).json()["urls"][uid]["visible"]
    path, _, query = url.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    exp, sig = int(params["exp"]), params["sig"]
    # default lifetime: 7 days
    assert abs(exp - (time.time() + signed_urls.DEFAULT_TTL_S)) < 30
    tampered_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    for bad in (f"{path}?exp={exp + 1}&sig={sig}",  # lifetime stretched
                f"{path}?exp={exp}&sig={tampered_sig}",
                f"/signed/{uid}/thermal?exp={exp}&sig={sig}",  # another image of the pair
                f"/signed/{other}/visible?exp={exp}&sig={sig}"):  # another pair
        r = srv.client.get(bad)
        assert r.status_code == 403, (bad, r.status_code)
        assert r.json()["detail"] == "bad signature"
    assert srv.client.get(path).status_code == 422  # no signature at all
    # expired: a correctly signed URL whose time has passed
    key = signed_urls.load_key(srv.root)
    past = int(time.time()) - 5
    r = srv.client.get(signed_urls.signed_path(key, uid, "visible", past))
    assert r.status_code == 403 and r.json()["detail"] == "link expired"
    # another server's key signs nothing here
    foreign = signed_urls.signed_path(b"k" * 32, uid, "visible", exp)
    assert srv.client.get(foreign).status_code == 403


def test_signing_needs_a_team_token_and_known_pairs(srv):
    uid, _ = _upload(srv)
    body = {"upload_ids": [uid]}
    assert srv.client.post("/api/v1/signed-urls", json=body).status_code == 401
    assert srv.client.post("/api/v1/signed-urls", json=body, headers=srv.auth(srv.device)).status_code == 403
    r = srv.client.post("/api/v1/signed-urls", json={"upload_ids": [uid, "f" * 64]}, headers=srv.auth(srv.team))
    assert r.status_code == 404 and "f" * 64 in r.json()["detail"]
    for bad in ({"upload_ids": [uid], "expires_in_s": 1}, {"upload_ids": [uid], "expires_in_s": 10**9},
                {"upload_ids": []}, {"upload_ids": [uid], "parts": ["labels"]}):
        assert srv.client.post("/api/v1/signed-urls", json=bad, headers=srv.auth(srv.team)).status_code == 422


def test_key_from_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(signed_urls.KEY_ENV, "a-shared-replica-key-0123456789")
    assert signed_urls.load_key(tmp_path) == b"a-shared-replica-key-0123456789"
    assert not (tmp_path / signed_urls.KEY_FILE).exists()
    monkeypatch.setenv(signed_urls.KEY_ENV, "short")
    with pytest.raises(ValueError, match="16 characters"):
        signed_urls.load_key(tmp_path)
