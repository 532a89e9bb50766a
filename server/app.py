"""The collection server: ``create_app(root, config)`` builds the FastAPI application.

Open without a token: ``GET /healthz`` (says only that the server is up), ``GET /`` and ``/static/*``
(the web page's code; every API call it makes needs a data-team token) and the OpenAPI docs
(``/docs``, ``/openapi.json``: the API's shape, no data), and ``/signed/*`` (one image per HMAC-signed,
expiring URL: :mod:`msmine.server.signed_urls`). Every ``/api/v1/*`` endpoint needs a token,
checked by :class:`msmine.server.guard.RequestGuard` before any body is read (see that module for the
limits, deadlines, throttle, security headers and access log every request passes).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from msmine import __version__
from msmine.errors import UserError
from msmine.server.config import ServerConfig
from msmine.server.context import build_context
from msmine.server.errors import StoreError, http_status
from msmine.server.guard import RequestGuard
from msmine.server.routes_ingest import router as ingest_router
from msmine.server.routes_models import router as models_router
from msmine.server.routes_pairs import router as pairs_router
from msmine.server.routes_whoami import router as whoami_router
from msmine.server.signed_urls import api_router as signed_api_router
from msmine.server.signed_urls import open_router as signed_open_router

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """Collection server for msmine: devices upload mined visible+thermal pairs (device token),
the data team ranks them, exports labelling batches, imports labels and publishes models
(data-team token). Create tokens with `msmine token create --root DIR --device NAME` or
`--role data-team`; send them as `Authorization: Bearer <token>`."""


def validation_message(exc: RequestValidationError) -> str:
    """One line for a request that fails validation, e.g. ``query.offset: Input should be ...``.

    FastAPI's default answer is a list that echoes the input, which cannot be encoded when the input
    is not finite (``Infinity`` in a JSON body gave a 500); the first error, named by its location,
    says what to fix."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def create_app(root: Path, config: ServerConfig | None = None) -> FastAPI:
    """Open (or create) the server data directory ``root`` and return the app serving it."""
    config = config or ServerConfig()
    ctx = build_context(Path(root), config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        ctx.close()

    app = FastAPI(title="msmine collection server", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        status = http_status(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get("/healthz", tags=["meta"], summary="Liveness (no token; reveals nothing)")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["meta"], summary="Readiness: the metadata database and the blob store answer "
             "(no token; a load balancer routes only to replicas that say ready)")
    def readyz() -> JSONResponse:
        try:
            ctx.meta.ping()
            ctx.blobs.exists("0" * 64)
        except Exception as exc:  # any failure of either store means: do not route here
            log.warning("not ready: %s", " ".join(str(exc).split())[:200])
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.include_router(ingest_router)
    app.include_router(pairs_router)
    app.include_router(models_router)
    app.include_router(whoami_router)
    app.include_router(signed_api_router)
    app.include_router(signed_open_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(RequestGuard, meta=ctx.meta, config=config)
    log.info("serving %s (%d pairs)", ctx.root, ctx.meta.stats().pairs)
    return app
