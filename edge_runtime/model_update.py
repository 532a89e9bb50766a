"""Model updates from the collection server.

``GET /api/v1/models/latest`` says which model is current (version, sha256, bytes); a new one is
downloaded to ``model_dir``, its sha256 verified, loaded and validated against the contract, and
only then handed to the pipeline, which swaps it in between two batches (no frame is dropped).
A model that fails any step is remembered and skipped; the running model stays. A download cut
short by the network (no answer, 5xx) is not a failure of the model: the next poll tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from msmine.client import ModelInfo, ServerClient, ServerError
from msmine.edge_runtime.runners import ModelRunner, load_runner
from msmine.errors import UserError

log = logging.getLogger(__name__)


class ModelFetcher:
    """Talks to the model registry of one server (through :class:`msmine.client.ServerClient`)."""

    def __init__(self, server: str, token: str, model_dir: str | Path, timeout_s: float = 60.0) -> None:
        self.client = ServerClient(server, token, timeout=timeout_s)
        self.server = self.client.base_url
        self.model_dir = Path(model_dir)
        self.timeout_s = timeout_s

    def latest(self) -> dict | None:
        """The registry's current model record, or None when none is published; ServerError otherwise."""
        info = self.client.latest_model()
        if info is None:
            return None
        return {"version": info.version, "sha256": info.sha256, "bytes": info.bytes, "metadata": info.metadata}

    def download(self, record: dict) -> Path:
        """Download a model and verify its sha256 (and size); returns the verified file."""
        info = ModelInfo.from_json(record)
        final = self.model_dir / f"{info.version}-{info.sha256[:12]}.onnx"
        if final.is_file():
            return final
        return self.client.download_model(info, final).path


def fetch_initial_model(fetcher: ModelFetcher) -> Path:
    """At start without --model: the server's latest model, or one clear error."""
    try:
        record = fetcher.latest()
        path = None if record is None else fetcher.download(record)
    except (ServerError, ValueError) as exc:
        raise UserError(f"no --model given and the latest model cannot be fetched from {fetcher.server}: {exc}") from None
    if path is None:
        raise UserError(f"no --model given and server {fetcher.server} has no published model")
    return path


class ModelUpdater(threading.Thread):
    """Polls the registry every ``poll_s`` seconds; hands each new, verified, loaded runner to ``install``."""

    def __init__(self, fetcher: ModelFetcher, current_sha256: str, install: Callable[[ModelRunner], None],
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
        except ServerError as exc:
            log.debug("model poll failed: %s", exc)
            return False
        if record is None or record["sha256"] in (self.current, *self.failed):
            return False
        log.info("new model %s (%s) published; downloading", record["version"], record["sha256"][:12])
        try:
            path = self.fetcher.download(record)
            runner = load_runner(path, self.backend, self.threads, sha256=record["sha256"], spin=self.spin)
        except ServerError as exc:
            if exc.transient:  # the server went away mid-download: try again at the next poll
                log.info("model %s not downloaded yet: %s", record["version"], exc)
                return False
            self.failed.add(record["sha256"])
            log.warning("model %s rejected, keeping the current one: %s", record["version"], exc)
            return False
        except (ValueError, UserError, OSError) as exc:
            self.failed.add(record["sha256"])
            log.warning("model %s rejected, keeping the current one: %s", record["version"], exc)
            return False
        try:
            self.install(runner)
        except UserError as exc:  # the device's settings do not fit it (e.g. --class-weights names a class it lacks)
            self.failed.add(record["sha256"])
            log.warning("model %s rejected, keeping the current one: %s", record["version"], exc)
            return False
        self.current = record["sha256"]
        self.updates += 1
        return True
