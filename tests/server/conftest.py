"""Fixtures for the server tests: an app on a temporary root with tokens, and an upload helper."""

from __future__ import annotations

import dataclasses
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
    backend: str = "sqlite"  # which metadata store: "sqlite" (under root) or "postgres"

    def sql(self, query: str) -> list[tuple]:
        """Rows of a read-only SQL query against the metadata store, whichever database it is."""
        meta = self.app.state.ctx.meta
        if self.backend == "sqlite":
            return [tuple(r) for r in meta._read().execute(query).fetchall()]
        with meta._tx() as conn:
            return [tuple(r) for r in conn.execute(query).fetchall()]

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
        return self.sql(f"SELECT COUNT(*) FROM {table}")[0][0]

    def stored_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "blobs").rglob("*") if p.is_file())

    def tmp_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "tmp").rglob("*") if p.is_file())


def make_served(root: Path, config: ServerConfig | None = None, db: str = "") -> Served:
    config = config or ServerConfig(rate_limit_per_min=0)
    if db:
        config = dataclasses.replace(config, db=db)
    app = create_app(root, config)
    meta = app.state.ctx.meta
    device, _ = create_token(meta, role="device", device_id="pole-1")
    device2, _ = create_token(meta, role="device", device_id="pole-2")
    team, _ = create_token(meta, role="data-team")
    client = TestClient(app)
    return Served(root=root, client=client, device=device, device2=device2, team=team, app=app,
                  backend="postgres" if db else "sqlite")


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path: Path):
    """The app on a temporary root, once with SQLite and once with PostgreSQL metadata (the same
    tests must pass on both stores)."""
    db = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else ""
    s = make_served(tmp_path / "srv", db=db)
    with s.client:
        yield s
    s.app.state.ctx.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
