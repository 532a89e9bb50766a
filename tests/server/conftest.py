"""Fixtures for the server tests: an app on a temporary root with tokens, and an upload helper."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():  # starlette suggests httpx2; httpx is what the project installs
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from msmine.server.app import create_app
from msmine.server.config import ServerConfig
from msmine.server.tokens import create_token
from tests.server.upload_helpers import manifest_bytes, manifest_for, synthetic_files, upload_body


@dataclass
class Served:
    root: Path
    client: TestClient
    device: str  # token of device pole-1
    device2: str  # token of device pole-2
    team: str  # data-team token
    app: object

    def auth(self, token: str) -> dict:
        return {"Authorization": f"Bearer {token}"}

    def upload(self, manifest: dict, files: dict[str, bytes], token: str | None = None):
        body, ctype = upload_body(manifest_bytes(manifest), files)
        return self.client.post("/api/v1/uploads", content=body,
                                headers={"Content-Type": ctype, **self.auth(token or self.device)})

    def upload_synthetic(self, rng: np.random.Generator, token: str | None = None, **kw):
        files = synthetic_files(rng)
        manifest = manifest_for(files, **kw)
        return self.upload(manifest, files, token), manifest

    def count_rows(self, table: str = "pairs") -> int:
        return self.app.state.ctx.meta._read().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def stored_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "blobs").rglob("*") if p.is_file())

    def tmp_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "tmp").rglob("*") if p.is_file())


def make_served(root: Path, config: ServerConfig | None = None) -> Served:
    app = create_app(root, config or ServerConfig(rate_limit_per_min=0))
    meta = app.state.ctx.meta
    device, _ = create_token(meta, role="device", device_id="pole-1")
    device2, _ = create_token(meta, role="device", device_id="pole-2")
    team, _ = create_token(meta, role="data-team")
    client = TestClient(app)
    return Served(root=root, client=client, device=device, device2=device2, team=team, app=app)


@pytest.fixture
def served(tmp_path: Path):
    s = make_served(tmp_path / "srv")
    with s.client:
        yield s


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
