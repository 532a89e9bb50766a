"""The server's outer ASGI layer: what every request passes before the application sees its body.

In order, for each HTTP request:

1. **Token before body.** A request to ``/api/*`` must carry ``Authorization: Bearer <token>`` of a
   valid, unrevoked token; otherwise it is answered 401 (``Connection: close``) without one byte of
   its body being read. Role checks stay in the routes (:mod:`msmine.server.auth`), which reuse the
   token found here.
2. **Failed-auth throttle.** Each wrong or revoked token counts against the client's address; past
   ``auth_fail_limit`` in ``auth_fail_window_s`` the address gets 429 + ``Retry-After`` for any
   request without a valid token. A valid token is always served.
3. **Body limit while streaming.** A declared ``Content-Length`` over the route's limit
   (:func:`msmine.server.limits.body_limit`) is refused 413 before reading; otherwise the bytes are
   counted as they arrive and the request fails with 413 the moment they pass the limit.
4. **Body deadlines.** Each read of the body waits at most ``body_idle_timeout_s``; the whole body
   must arrive within ``body_timeout_s`` plus one second per ``body_min_rate_kb`` KiB received;
   else 408 and the connection is closed.
5. **Security headers** on every response (Content-Security-Policy, X-Content-Type-Options,
   X-Frame-Options, Referrer-Policy).
6. **Access log**: one line per request on the ``msmine.server.access`` logger (INFO): address,
   method, path (never the query string, which may hold a token), status, who (device or role),
   bytes in and out, duration.

Slow or too many *connections* (an unfinished header, a flood from one address) are stopped one
layer further out, in the HTTP protocol (:mod:`msmine.server.connections`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from msmine.server.config import ServerConfig
from msmine.server.limits import body_limit
from msmine.server.metadata import MetadataStore
from msmine.server.ratelimit import FailureThrottle, RateLimiter
from msmine.server.records import TokenRecord
from msmine.server.tokens import lookup

access_log = logging.getLogger("msmine.server.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOKEN_STATE_KEY = "msmine_token"  # scope["state"][...] -> the TokenRecord the guard verified
PROTECTED_PREFIX = "/api/"

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# FastAPI's /docs and /redoc load Swagger UI / ReDoc from a CDN with an inline start-up script
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; worker-src blob:; "
            "object-src 'none'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class BodyRefused(HTTPException):
    """Raised from ``receive`` when a body is too large (413) or too slow (408); closes the connection."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code, detail, headers={"Connection": "close"})


def csp_for(path: str) -> bytes:
    if path.startswith(PROTECTED_PREFIX):
        return API_CSP.encode()
    if path in DOCS_PATHS or path.startswith(DOCS_PATHS[0] + "/"):
        return DOCS_CSP.encode()
    return PAGE_CSP.encode()


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The credentials of ``Authorization: Bearer <token>``, or None (missing, other scheme, empty)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            credentials = credentials.strip()
            if scheme.lower() == "bearer" and credentials:
                return credentials
            return None
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def who(record: TokenRecord | None) -> str:
    if record is None:
        return "-"
    return f"device:{record.device_id}" if record.role == "device" else f"{record.role}:{record.name}"


class _GuardedBody:
    """``receive`` with a byte limit and deadlines, applied until the body's last chunk has arrived."""

    def __init__(self, receive: Receive, limit: int, config: ServerConfig, started: float) -> None:
        self._receive = receive
        self.limit = limit
        self.idle_s = config.body_idle_timeout_s
        self.base_s = config.body_timeout_s
        self.rate = max(config.body_min_rate_kb, 1e-6) * 1024  # bytes per second of extra allowance
        self.started = started
        self.received = 0
        self.done = False

    async def __call__(self) -> Message:
        if self.done:  # after the body: waiting for a disconnect is not bounded here
            return await self._receive()
        now = time.monotonic()
        allowed = self.started + self.base_s + self.received / self.rate - now
        wait = min(self.idle_s, allowed)
        if wait <= 0:
            raise BodyRefused(408, f"request body too slow: {self.received} bytes in {now - self.started:.1f} s")
        try:
            async with asyncio.timeout(wait):  # no task per read, unlike wait_for
                message = await self._receive()
        except TimeoutError:
            raise BodyRefused(408, f"request body too slow: {self.received} bytes in "
                                   f"{time.monotonic() - self.started:.1f} s") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise BodyRefused(413, f"body is larger than the limit of {self.limit} bytes")
            if not message.get("more_body", False):
                self.done = True
        else:
            self.done = True
        return message


async def _send_json(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Pure ASGI middleware (see the module docstring); ``meta`` verifies tokens."""

    def __init__(self, app: Callable, *, meta: MetadataStore, config: ServerConfig,
                 throttle: FailureThrottle | None = None) -> None:
        self.app = app
        self.meta = meta
        self.config = config
        self.throttle = throttle or FailureThrottle(config.auth_fail_limit, config.auth_fail_window_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        method, path, address = scope["method"], scope["path"], client_address(scope)
        state: dict[str, Any] = {"status": 0, "out": 0, "who": "-"}
        csp = csp_for(path)

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(b"content-security-policy", csp), *COMMON_HEADERS]
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            await send(message)

        body = None
        try:
            refusal = await self._admit(scope, address, state)
            if refusal is not None:
                await _send_json(guarded_send, *refusal)
                return
            refusal = self._declared_length(scope, method, path)
            if refusal is not None:
                await _send_json(guarded_send, *refusal)
                return
            body = _GuardedBody(receive, body_limit(self.config, method, path), self.config, started)
            try:
                await self.app(scope, body, guarded_send)
            except BodyRefused as exc:  # escaped the app (no exception handler on its way)
                if state["status"]:
                    raise
                await _send_json(guarded_send, exc.status_code, str(exc.detail))
        except BaseException:
            state["status"] = state["status"] or 500  # answered by the server-error layer outside this one
            raise
        finally:
            access_log.info("%s %s %s %d %s in=%d out=%d %.1fms", address, method, path, state["status"],
                            state["who"], body.received if body is not None else 0, state["out"],
                            (time.monotonic() - started) * 1000)

    async def _admit(self, scope: Scope, address: str, state: dict) -> tuple[int, str, dict[str, str]] | None:
        """Token check for protected paths: None to go on, else (status, detail, headers) to refuse.

        A database server's lookup runs in a worker thread: on the event loop its round trip (and any
        wait for a pooled connection) would stall every other request of this replica."""
        if not scope["path"].startswith(PROTECTED_PREFIX):
            return None
        token = bearer_token(scope.get("headers", []))
        record = None
        if token is not None:
            if getattr(self.meta, "waits_on_network", False):
                record = await run_in_threadpool(lookup, self.meta, token)
            else:
                record = lookup(self.meta, token)
        if record is not None:
            scope.setdefault("state", {})[TOKEN_STATE_KEY] = record
            state["who"] = who(record)
            return None
        wait = self.throttle.blocked(address)
        if wait > 0:
            return 429, "too many failed token checks from this address; retry later", \
                {"Retry-After": RateLimiter.retry_after_header(wait)}
        if token is None:
            return 401, "missing bearer token", {"WWW-Authenticate": "Bearer"}
        self.throttle.fail(address)
        return 401, "invalid or revoked token", {"WWW-Authenticate": "Bearer"}

    def _declared_length(self, scope: Scope, method: str, path: str) -> tuple[int, str] | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                text = value.decode("latin-1").strip()
                if not text.isdigit():
                    return 400, f"invalid Content-Length {text!r}"
                limit = body_limit(self.config, method, path)
                if int(text) > limit:
                    return 413, f"body of {int(text)} bytes is larger than the limit of {limit} bytes"
        return None
