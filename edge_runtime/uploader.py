"""Background worker that drains the spool to the collection server.

* ``POST /api/v1/uploads`` (msmine.wire) with ``Authorization: Bearer <token>``; the manifest's
  ``upload_id`` is a content hash, so a retry after a lost response is answered ``200 duplicate``
  and never creates a second record.
* A pair leaves the spool only when the server confirms it (201 created or 200 duplicate).
* Connection errors and 5xx: exponential backoff with full jitter, capped at ``backoff_max_s``;
  it keeps trying through hours of outage. 429: waits ``Retry-After`` seconds.
* 401/403: the token is refused; logged loudly, retried with backoff (fix the token and it resumes).
  400/413/422: the server will never take this pair; it is marked rejected and kept for inspection.
* ``kbps``: a bandwidth cap, enforced per upload (the average rate stays under the cap).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import requests

from msmine import wire
from msmine.edge_runtime.spool import Spool, SpoolItem

log = logging.getLogger(__name__)

MEDIA_EXT = {"image/png": "png", "image/jpeg": "jpg"}


class Uploader(threading.Thread):
    def __init__(self, spool: Spool, server: str, token: str, *, kbps: float = 0.0, timeout_s: float = 30.0,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 300.0, seed: int = 0,
                 on_uploaded: Callable[[SpoolItem, float], None] | None = None) -> None:
        super().__init__(name="uploader", daemon=True)
        self.spool = spool
        self.url = server.rstrip("/") + wire.UPLOAD_PATH
        self.kbps = kbps
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._rng = np.random.default_rng(seed)
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"Bearer {token}"
        self._halt = threading.Event()
        self._on_uploaded = on_uploaded or (lambda item, seconds: None)
        self.uploaded = 0
        self.duplicates = 0
        self.failures = 0
        self.rejected = 0
        self.bytes_sent = 0
        self.server_up: bool | None = None

    def stop(self) -> None:
        self._halt.set()

    def drain(self, timeout_s: float) -> bool:
        """Wait until the spool is empty (True) or ``timeout_s`` has passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self.spool.count() > 0:
            if time.monotonic() >= deadline or not self.is_alive():
                return False
            time.sleep(0.05)
        return True

    def run(self) -> None:
        backoff = self.backoff_initial_s
        while not self._halt.is_set():
            item = self.spool.next_pending()
            if item is None:
                self._halt.wait(0.2)
                continue
            try:
                wait = self._upload(item)
            except OSError as exc:  # the spool's disk, not the network: keep the worker alive
                log.error("cannot read spooled pair %s: %s", item.upload_id[:12], exc)
                wait = -1.0
            if wait is None:
                backoff = self.backoff_initial_s
                continue
            if wait < 0:  # no hint from the server: exponential backoff with full jitter
                wait = float(self._rng.uniform(0.5, 1.0)) * backoff
                backoff = min(backoff * 2, self.backoff_max_s)
            self._halt.wait(wait)

    def _upload(self, item: SpoolItem) -> float | None:
        """Try one pair. None: done (next one now); >= 0: wait that long; < 0: back off."""
        files = self.spool.read_files(item)
        if files is None:  # evicted meanwhile
            return None
        manifest = wire.canonical_json(item.manifest)
        multipart = {wire.MANIFEST_PART: ("manifest.json", manifest, "application/json")}
        for part in wire.FILE_PARTS:
            media = item.manifest["files"][part]["media_type"]
            multipart[part] = (f"{part}.{MEDIA_EXT[media]}", files[part], media)
        sent = len(manifest) + sum(len(b) for b in files.values())
        start = time.monotonic()
        try:
            resp = self._http.post(self.url, files=multipart, timeout=self.timeout_s)
        except requests.RequestException as exc:
            self.failures += 1
            if self.server_up is not False:
                log.warning("server unreachable (%s); %d pair(s) stay spooled", type(exc).__name__, self.spool.count())
            self.server_up = False
            return -1.0
        elapsed = time.monotonic() - start
        status = resp.status_code
        if status < 500:
            if self.server_up is False:
                log.info("server reachable again")
            self.server_up = True
        if status in (200, 201):
            self.spool.delete(item.upload_id)
            self.uploaded += 1
            self.duplicates += status == 200
            self.bytes_sent += sent
            self._on_uploaded(item, elapsed)
            log.debug("uploaded %s (%d bytes, %s)", item.upload_id[:12], sent, "duplicate" if status == 200 else "new")
            if self.kbps > 0:  # bandwidth cap: this upload's share of time at the capped rate
                self._halt.wait(max(0.0, sent * 8 / (self.kbps * 1000) - elapsed))
            return None
        self.failures += 1
        if status == 429:
            try:
                retry = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                retry = -1.0
            log.info("server busy (429); retrying in %s s", retry if retry >= 0 else "a while")
            return min(retry, 3600.0) if retry >= 0 else -1.0
        if status in (401, 403):
            log.error("server refused the upload (%d: %s); check --token and --device-id (the token's device name); "
                      "retrying with backoff", status, resp.text[:200])
            return -1.0
        if status in (400, 413, 422):
            self.rejected += 1
            self.spool.reject(item.upload_id)
            log.error("server rejected pair %s (%d): %s", item.upload_id[:12], status, resp.text[:200])
            return None
        if self.server_up is not False:
            log.warning("server error %d; backing off, %d pair(s) stay spooled", status, self.spool.count())
        self.server_up = False
        return -1.0
