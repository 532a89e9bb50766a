"""Every API endpoint refuses a missing or wrong token; roles are enforced; tokens are stored hashed."""

from __future__ import annotations

import re

import pytest

from msmine.server.tokens import create_token, hash_token

DUMMY = {"upload_id": "a" * 64, "part": "visible", "batch_id": "0" * 16, "version": "v1", "branch": "fused",
         "modality": "visible"}


def api_endpoints(app) -> list[tuple[str, str]]:
    out = []
    for path, ops in app.openapi()["paths"].items():
        if not path.startswith("/api/"):
            continue
        concrete = re.sub(r"\{(\w+)\}", lambda m: DUMMY[m.group(1)], path)
        out += [(method.upper(), concrete) for method in ops]
    return out


def test_api_surface_is_what_we_expect(served):
    endpoints = api_endpoints(served.app)
    assert len(endpoints) == 20  # + GET /api/v1/whoami
    assert ("POST", "/api/v1/uploads") in endpoints and ("GET", "/api/v1/models/v1/file") in endpoints
    uid = DUMMY["upload_id"]
    for added in [("GET", "/api/v1/palette"), ("GET", f"/api/v1/pairs/{uid}/masks/fused"),
                  ("GET", f"/api/v1/pairs/{uid}/labels/visible/mask"), ("POST", "/api/v1/signed-urls")]:
        assert added in endpoints, added


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer msm_not-a-real-token"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "msm_raw-token-without-scheme"},
])
def test_every_endpoint_refuses_missing_or_wrong_token(served, headers):
    for method, path in api_endpoints(served.app):
        resp = served.client.request(method, path, headers=headers)
        assert resp.status_code == 401, (method, path, resp.status_code, resp.text)
        assert "token" in resp.json()["detail"]


def test_revoked_token_is_refused(served):
    meta = served.app.state.ctx.meta
    token, record = create_token(meta, role="data-team", name="temp")
    assert served.client.get("/api/v1/pairs", headers=served.auth(token)).status_code == 200
    assert meta.revoke_token(record.id)
    assert served.client.get("/api/v1/pairs", headers=served.auth(token)).status_code == 401


def test_device_token_cannot_read_or_manage(served, rng):
    resp, manifest = served.upload_synthetic(rng)
    assert resp.status_code == 201
    uid = manifest["upload_id"]
    forbidden = [
        ("GET", "/api/v1/pairs"), ("GET", "/api/v1/stats"), ("GET", f"/api/v1/pairs/{uid}"),
        ("GET", f"/api/v1/pairs/{uid}/files/visible"), ("POST", "/api/v1/batches"),
        ("GET", "/api/v1/batches/0000000000000000"), ("GET", "/api/v1/batches/0000000000000000/export"),
        ("POST", "/api/v1/labels"), ("POST", "/api/v1/models"), ("GET", "/api/v1/models"),
    ]
    for method, path in forbidden:
        resp = served.client.request(method, path, headers=served.auth(served.device), json={"k": 1})
        assert resp.status_code == 403, (method, path, resp.status_code)


def test_device_token_may_fetch_models_but_team_may_not_upload(served, rng):
    assert served.client.get("/api/v1/models/latest", headers=served.auth(served.device)).status_code == 404
    resp, _ = served.upload_synthetic(rng, token=served.team)
    assert resp.status_code == 403


def test_device_cannot_upload_for_another_device(served, rng):
    resp, _ = served.upload_synthetic(rng, token=served.device2)  # manifest says pole-1
    assert resp.status_code == 403
    assert "pole-2" in resp.json()["detail"]
    assert served.count_rows() == 0 and served.stored_files() == []


def test_tokens_are_stored_hashed(served):
    stored = {r[0] for r in served.sql("SELECT token_hash FROM tokens")}
    assert served.team not in stored and hash_token(served.team) in stored
    if served.backend == "sqlite":
        db_bytes = (served.root / "msmine.sqlite3").read_bytes()
        assert served.team.encode() not in db_bytes


def test_open_endpoints_reveal_no_data(served, rng):
    served.upload_synthetic(rng)
    for path in ("/healthz", "/", "/static/app.js", "/openapi.json"):
        resp = served.client.get(path)
        assert resp.status_code == 200, path
        assert "pole-1" not in resp.text
