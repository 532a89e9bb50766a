"""Background worker that drains the spool to the collection server.

* ``POST /api/v1/uploads`` (msmine.wire) with ``Authorization: Bearer <token>``; the manifest's
  ``upload_id`` is a content hash, so a retry after a lost response is answered ``200 duplicate``
  and never creates a second record.
* A pair leaves the spool only when the server confirms it (201 created or 200 duplicate).
* Connection errors and 5xx: exponential backoff with full jitter, capped at ``backoff_max_s``;
  it keeps trying through hours of outage. 429: waits ``Retry-After`` seconds.
* A permanent refusal (400, 401, 403, 409, 413, 422) is not retried: the pair is set aside in the
  spool (state ``refused``, with the server's reason and the identity it was refused under) and the
  next pair goes at once, so one refused pair never blocks the queue. The first refusal of each
  status is logged as an error with what to fix; refused pairs are re-sent by ``--resend-refused``
  or automatically when the device starts with another token, device id or server.
* ``kbps``: a bandwidth cap, enforced per upload (the average rate stays under the cap).
* A confirmed pair whose spool files cannot be deleted (a read-only spool) counts as uploaded,
  is logged as a failed delete and is not sent again in this run.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from msmine import wire
from msmine.client import ServerClient, ServerError, UploadOutcome
from msmine.edge_runtime.spool import Spool, SpoolItem
from msmine.errors import UserError

log = logging.getLogger(__name__)

DELETE_RETRY_S = 5.0  # how often a failed delete (read-only spool) is tried again


def identity_key(server: str, token: str, device_id: str) -> str:
    """Names the identity a pair was refused under (no secret: a hash of the token)."""
    digest = hashlib.sha256(f"{server.rstrip('/')}\n{token}\n{device_id}".encode()).hexdigest()
    return digest[:16]


def check_identity(server: str, token: str, device_id: str, timeout_s: float = 5.0) -> dict:
    """Ask the server whose token this is (``GET /api/v1/whoami``) and check ``device_id`` against it.

    Returns the server's answer (``{"role", "device_id", "name"}``), or ``{}`` when it cannot tell
    (unreachable, an older server without the endpoint): then the device runs unchecked and spools.
    A refused token, a non-device token or a ``--device-id`` that is not the token's device is a
    :class:`UserError` (one line saying what to fix)."""
    try:
        ident = ServerClient(server, token, timeout=timeout_s).whoami()
    except ServerError as exc:
        if exc.status in (401, 403):
            raise UserError(f"the server refuses the token ({exc.status}: {exc.detail}); set --token or "
                            f"$MSMINE_TOKEN to this device's token (`msmine token create --device NAME`)") from None
        if exc.status is None:
            log.warning("cannot check the token's device at start (server unreachable: %s); uploads are checked "
                        "when it is back", exc.detail)
        else:
            log.warning("cannot check the token's device at start (server answered %d)", exc.status)
        return {}
    if ident is None:
        log.info("the server does not say whose token this is (no %s); device id not checked", wire.WHOAMI_PATH)
        return {}
    role, owner = ident.role, ident.device_id
    if role != "device":
        raise UserError(f"the token is a {role!r} token, not a device token; devices upload with a device token "
                        f"(`msmine token create --device NAME`)")
    if device_id and owner and device_id != owner:
        raise UserError(f"--device-id {device_id!r} is not the token's device {owner!r}: the server would refuse "
                        f"every upload; drop --device-id (the token names the device) or use {device_id!r}'s token")
    return {"role": ident.role, "device_id": ident.device_id, "name": ident.name}


class Uploader(threading.Thread):
    def __init__(self, spool: Spool, server: str, token: str, *, kbps: float = 0.0, timeout_s: float = 30.0,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 300.0, seed: int = 0, device_id: str = "",
                 on_uploaded: Callable[[SpoolItem, float], None] | None = None,
                 on_refused: Callable[[int], None] | None = None, delete_retry_s: float = DELETE_RETRY_S) -> None:
        super().__init__(name="uploader", daemon=True)
        self.spool = spool
        self.client = ServerClient(server, token, timeout=timeout_s)
        self.kbps = kbps
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.key = identity_key(server, token, device_id)
        self.delete_retry_s = delete_retry_s
        self._rng = np.random.default_rng(seed)
        self._halt = threading.Event()
        self._on_uploaded = on_uploaded or (lambda item, seconds: None)
        self._on_refused = on_refused or (lambda status: None)
        self._lock = threading.Lock()
        self._confirmed: set[str] = set()  # upload ids the server confirmed in this run
        self._undeleted: dict[str, float] = {}  # confirmed but still in the spool (delete failed) -> next retry
        self.duplicates = 0
        self.failures = 0
        self.refusals: Counter[int] = Counter()  # HTTP status -> pairs set aside in this run
        self.delete_failures = 0
        self.bytes_sent = 0
        self.server_up: bool | None = None

    # -- counters (read by the pipeline's threads) ---------------------------------------------

    @property
    def uploaded(self) -> int:
        """Distinct pairs the server confirmed (201 or 200 duplicate) in this run."""
        with self._lock:
            return len(self._confirmed)

    @property
    def refused(self) -> int:
        with self._lock:
            return sum(self.refusals.values())

    @property
    def rejected(self) -> int:  # the name before refusals were set aside
        return self.refused

    def _add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        self._halt.set()

    def pending(self) -> int:
        """Pairs still to send in this run (spooled, not refused, not already confirmed)."""
        with self._lock:
            undeleted = len(self._undeleted)
        try:
            return max(self.spool.count() - undeleted, 0)
        except sqlite3.Error:  # an index failing under us: nothing this run can still send
            return 0

    def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is left to send (True) or ``timeout_s`` has passed (False)."""
        deadline = time.monotonic() + timeout_s
        while self.pending() > 0:
            if time.monotonic() >= deadline or not self.is_alive():
                return False
            time.sleep(0.05)
        return True

    def run(self) -> None:
        backoff = self.backoff_initial_s
        index_errors = 0
        while not self._halt.is_set():
            try:
                self._retry_deletes()
                with self._lock:
                    exclude = set(self._undeleted)
                item = self.spool.next_pending(exclude=exclude)
            except sqlite3.Error as exc:  # the spool's index failed under us: keep the worker alive, retry
                index_errors += 1
                if index_errors == 1:
                    log.error("cannot read the spool index (%s); retrying (it is checked and rebuilt at the next "
                              "start)", exc)
                self._halt.wait(min(self.backoff_max_s, 5.0))
                continue
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

    # -- one pair ------------------------------------------------------------------------------

    def _confirm(self, item: SpoolItem) -> None:
        """The server holds the pair: count it, then remove it from the spool (a failed delete is only logged)."""
        with self._lock:
            self._confirmed.add(item.upload_id)
        try:
            self.spool.delete(item.upload_id)
        except (OSError, sqlite3.Error) as exc:
            self._add("delete_failures")
            with self._lock:
                first = item.upload_id not in self._undeleted
                self._undeleted[item.upload_id] = time.monotonic() + self.delete_retry_s
            if first:
                log.error("uploaded pair %s but cannot delete it from the spool (%s); it stays spooled and "
                          "is not sent again in this run", item.upload_id[:12], exc)

    def _retry_deletes(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [uid for uid, t in self._undeleted.items() if t <= now]
        for uid in due:
            try:
                self.spool.delete(uid)
            except (OSError, sqlite3.Error):
                with self._lock:
                    self._undeleted[uid] = now + self.delete_retry_s
                continue
            with self._lock:
                self._undeleted.pop(uid, None)
            log.info("spool writable again: deleted uploaded pair %s", uid[:12])

    def _refuse(self, item: SpoolItem, status: int, detail: str) -> None:
        reason = f"{status}: {detail}"
        try:
            self.spool.refuse(item.upload_id, reason, self.key)
        except (OSError, sqlite3.Error) as exc:
            log.error("cannot set refused pair %s aside in the spool: %s", item.upload_id[:12], exc)
            with self._lock:  # not again in this run
                self._undeleted[item.upload_id] = float("inf")
        with self._lock:
            first = self.refusals[status] == 0
            self.refusals[status] += 1
        self._on_refused(status)
        if first:
            hint = ("check --token / $MSMINE_TOKEN and --device-id (the token's device)" if status in (401, 403, 409)
                    else "the pair does not meet what the server accepts")
            log.error("server refused pair %s (%s); set aside in the spool, not retried: %s. After the fix run "
                      "edge-runtime --resend-refused (pairs are also re-sent when the token, device id or server "
                      "changes)", item.upload_id[:12], reason, hint)
        else:
            log.debug("server refused pair %s (%s); set aside", item.upload_id[:12], reason)

    def _upload(self, item: SpoolItem) -> float | None:
        """Try one pair. None: done (next one now); >= 0: wait that long; < 0: back off."""
        files = self.spool.read_files(item)
        if files is None:  # evicted meanwhile, or its files are gone: drop the row, never spin on it
            try:
                self.spool.delete(item.upload_id)
            except (OSError, sqlite3.Error):
                with self._lock:
                    self._undeleted[item.upload_id] = float("inf")
            return None
        result = self.client.upload_pair(item.manifest, files)
        sent, elapsed, status = result.bytes_sent, result.elapsed_s, result.status
        if status is None:  # no answer: connection refused, timeout, reset
            self._add("failures")
            if self.server_up is not False:
                log.warning("server unreachable (%s); %d pair(s) stay spooled", result.detail, self.spool.count())
            self.server_up = False
            return -1.0
        if status < 500:
            if self.server_up is False:
                log.info("server reachable again")
            self.server_up = True
        if result.ok:
            self._add("duplicates", result.outcome is UploadOutcome.DUPLICATE)
            self._add("bytes_sent", sent)
            self._confirm(item)
            self._on_uploaded(item, elapsed)
            log.debug("uploaded %s (%d bytes, %s)", item.upload_id[:12], sent, result.outcome.value)
            if self.kbps > 0:  # bandwidth cap: this upload's share of time at the capped rate
                self._halt.wait(max(0.0, sent * 8 / (self.kbps * 1000) - elapsed))
            return None
        self._add("failures")
        if status == 429:
            retry = result.retry_after
            log.info("server busy (429); retrying in %s s", retry if retry is not None else "a while")
            return retry if retry is not None else -1.0
        if result.outcome is UploadOutcome.REFUSED:
            self._refuse(item, status, result.detail)
            return None
        if self.server_up is not False:
            log.warning("server error %d; backing off, %d pair(s) stay spooled", status, self.spool.count())
        self.server_up = False
        return -1.0

