"""Model updates from the collection server.

``GET /api/v1/models/latest`` says which model is current (version, sha256, bytes); a new one is
downloaded to ``model_dir``, its sha256 verified, loaded and validated against the contract, and
only then handed to the pipeline, which swaps it in between two batches (no frame is dropped).
A model that fails any step is remembered and skipped; the running model stays.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import requests

from msmine import wire
from msmine.edge_runtime.runners import Runner, load_runner
from msmine.errors import UserError

log = logging.getLogger(__name__)


class ModelFetcher:
    """Talks to the model registry of one server."""

    def __init__(self, server: str, token: str, model_dir: str | Path, timeout_s: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.model_dir = Path(model_dir)
        self.timeout_s = timeout_s
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"Bearer {token}"

    def latest(self) -> dict | None:
        """The registry's current model record, or None when none is published."""
        resp = self._http.get(self.server + wire.MODELS_LATEST_PATH, timeout=self.timeout_s)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        record = resp.json()
        if not isinstance(record, dict) or not isinstance(record.get("version"), str) or not isinstance(
            record.get("sha256"), str
        ) or not wire.VERSION_RE.match(record["version"]):
            raise ValueError(f"malformed models/latest answer: {str(record)[:200]}")
        return record

    def download(self, record: dict) -> Path:
        """Download a model and verify its sha256 (and size); returns the verified file."""
        self.model_dir.mkdir(parents=True, exist_ok=True)
        version, sha = record["version"], record["sha256"]
        final = self.model_dir / f"{version}-{sha[:12]}.onnx"
        if final.is_file():
            return final
        part = final.with_suffix(".onnx.part")
        digest = hashlib.sha256()
        size = 0
        url = self.server + wire.MODEL_FILE_PATH.format(version=version)
        with self._http.get(url, stream=True, timeout=self.timeout_s) as resp:
            resp.raise_for_status()
            with open(part, "wb") as fh:
                for chunk in resp.iter_content(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        if digest.hexdigest() != sha or (record.get("bytes") not in (None, size)):
            part.unlink(missing_ok=True)
            raise ValueError(f"model {version}: downloaded {size} bytes with sha256 {digest.hexdigest()[:12]}, "
                             f"registry says {record.get('bytes')} bytes, {sha[:12]}")
        os.replace(part, final)
        return final


def fetch_initial_model(fetcher: ModelFetcher) -> Path:
    """At start without --model: the server's latest model, or one clear error."""
    try:
        record = fetcher.latest()
        if record is None:
            raise UserError(f"no --model given and server {fetcher.server} has no published model")
        return fetcher.download(record)
    except (requests.RequestException, ValueError) as exc:
        raise UserError(f"no --model given and the latest model cannot be fetched from {fetcher.server}: {exc}") from None


class ModelUpdater(threading.Thread):
    """Polls the registry every ``poll_s`` seconds; hands each new, verified, loaded runner to ``install``."""

    def __init__(self, fetcher: ModelFetcher, current_sha256: str, install: Callable[[Runner], None],
                 poll_s: float, backend: str = "auto", threads: int = 0, spin: bool = False) -> None:
        super().__init__(name="model-updater", daemon=True)
        self.fetcher = fetcher
        self.current = current_sha256
        self.install = install
        self.poll_s = poll_s
        self.backend = backend
        self.threads = threads
        self.spin = spin
        self.failed: set[str] = set()
        self.updates = 0
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.wait(self.poll_s):
            self.check_once()

    def check_once(self) -> bool:
        """One poll; True if a new model was installed."""
        try:
            record = self.fetcher.latest()
        except (requests.RequestException, ValueError) as exc:
            log.debug("model poll failed: %s", exc)
            return False
        if record is None or record["sha256"] in (self.current, *self.failed):
            return False
        log.info("new model %s (%s) published; downloading", record["version"], record["sha256"][:12])
        try:
            path = self.fetcher.download(record)
            runner = load_runner(path, self.backend, self.threads, sha256=record["sha256"], spin=self.spin)
        except (requests.RequestException, ValueError, UserError, OSError) as exc:
            self.failed.add(record["sha256"])
            log.warning("model %s rejected, keeping the current one: %s", record["version"], exc)
            return False
        self.current = record["sha256"]
        self.updates += 1
        self.install(runner)
        return True
