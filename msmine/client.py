"""One typed client for the collection server's HTTP API (standard library only).

Every caller that talks to a server -- the device's uploader and model updater, ``msmine pull``,
the demo, the fleet simulation and the report -- goes through :class:`ServerClient`, so URLs are
built in one place, from :mod:`msmine.wire`'s constants and the few paths below, and every failure
is one :class:`ServerError` line naming the method, the URL and the server's answer.

Two kinds of answer:

* :meth:`ServerClient.upload_pair` never raises for the network or the server: it returns an
  :class:`UploadResult` whose ``outcome`` says what the device should do with the pair (gone:
  ``CREATED``/``DUPLICATE``; keep and retry: ``TRANSIENT``, with ``retry_after`` from a 429;
  the server will not take it: ``REFUSED``, with ``auth_refused`` telling a refused token from a
  refused pair).
* Every other method returns a typed record or raises :class:`ServerError` (a
  :class:`~msmine.errors.UserError`, so a CLI prints one line); ``ServerError.transient`` says
  whether trying again later may help.

The transport is ``urllib``: no extra dependency for the ground floor, thread-safe (no shared
connection state), redirects refused (the bearer token is never replayed to another host) and one
connection per request (fine for a device's few uploads a minute and a pull's pages and blobs).
"""

from __future__ import annotations

import email.utils
import enum
import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from msmine import __version__, wire
from msmine.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Paths of the server API that msmine.wire does not name (wire names the device's endpoints:
# UPLOAD_PATH, MODELS_LATEST_PATH, MODEL_FILE_PATH, WHOAMI_PATH). ``{...}`` fields are filled URL-quoted.
HEALTH_PATH = "/healthz"
STATS_PATH = f"{wire.API_PREFIX}/stats"
PAIRS_PATH = f"{wire.API_PREFIX}/pairs"
PAIR_PATH = f"{wire.API_PREFIX}/pairs/{{upload_id}}"
PAIR_FILE_PATH = f"{wire.API_PREFIX}/pairs/{{upload_id}}/files/{{part}}"
PAIR_MASK_PATH = f"{wire.API_PREFIX}/pairs/{{upload_id}}/masks/{{branch}}"  # predicted class-id PNG
PAIR_LABEL_MASK_PATH = f"{wire.API_PREFIX}/pairs/{{upload_id}}/labels/{{modality}}/mask"  # imported class-id PNG
BATCHES_PATH = f"{wire.API_PREFIX}/batches"
BATCH_PATH = f"{wire.API_PREFIX}/batches/{{batch_id}}"
BATCH_EXPORT_PATH = f"{wire.API_PREFIX}/batches/{{batch_id}}/export"
LABELS_PATH = f"{wire.API_PREFIX}/labels"
# ``POST /labels``'s query choices (the server's msmine.server.label_import FORMATS and MODALITY_CHOICES;
# tests/server/test_label_import_cli.py keeps them equal)
LABEL_FORMATS = ("auto", "coco", "yolo", "label-studio", "png", "zip")
LABEL_MODALITIES = ("auto", "all", "visible", "infrared", "fusion")
SIGNED_URLS_PATH = f"{wire.API_PREFIX}/signed-urls"
BATCH_LABEL_STUDIO_PATH = f"{wire.API_PREFIX}/batches/{{batch_id}}/label-studio"
MODELS_PATH = f"{wire.API_PREFIX}/models"
MODEL_PATH = f"{wire.API_PREFIX}/models/{{version}}"

# Upload answers: which statuses mean "the server will never take this" (the rest of 4xx and all
# 5xx, 408, 429 and no answer at all are worth another try later; unknown statuses too: a device
# must not drop data on an answer it does not understand).
REFUSED_STATUSES = frozenset({400, 401, 403, 409, 413, 415, 422})
AUTH_STATUSES = frozenset({401, 403})
TRANSIENT_STATUSES = frozenset({408, 425, 429})

MEDIA_EXT = {"image/png": "png", "image/jpeg": "jpg"}
CHUNK = 1 << 20
MAX_DETAIL = 300
MAX_RETRY_AFTER_S = 3600.0


class ServerError(UserError):
    """A request that did not get the answer it needed: one line naming method, URL and status."""

    def __init__(self, method: str, url: str, status: int | None, detail: str,
                 retry_after: float | None = None) -> None:
        self.method = method
        self.url = url
        self.status = status  # None: no HTTP answer (connection refused, timeout, reset)
        self.detail = _one_line(detail)
        self.retry_after = retry_after
        if status is None:
            text = f"cannot reach server: {method} {url} failed: {self.detail}"
        else:
            text = f"{method} {url} answered {status}: {self.detail}"
        super().__init__(text)

    @property
    def transient(self) -> bool:
        """True when the same request may succeed later (no answer, 5xx, 408, 429)."""
        return self.status is None or self.status >= 500 or self.status in TRANSIENT_STATUSES


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


# -- typed records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairFilter:
    """Filters of ``GET /pairs`` and ``POST /batches``; None matches everything."""

    device: str | None = None  # exact device id
    since: float | None = None  # captured_at >= since (unix seconds)
    until: float | None = None  # captured_at < until
    min_score: float | None = None  # score >= min_score
    max_score: float | None = None  # score <= max_score
    model_version: str | None = None  # exact model version
    labelled: bool | None = None  # True: labelled only, False: unlabelled only

    def as_dict(self) -> dict[str, Any]:
        """The set fields, as the JSON body of ``POST /batches`` takes them."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def as_query(self) -> dict[str, str]:
        """The set fields as query parameters (booleans as ``true``/``false``)."""
        return {k: (("true" if v else "false") if isinstance(v, bool) else str(v)) for k, v in self.as_dict().items()}


@dataclass(frozen=True)
class PairSummary:
    """One row of a pair listing (ranked by score, highest first)."""

    upload_id: str
    device_id: str
    score: float
    captured_at: float
    received_at: float
    model_version: str
    task: str
    image_size: tuple[int, int]
    labelled: bool
    raw: dict = field(default_factory=dict, repr=False, compare=False)  # the answer, fields added later included

    @classmethod
    def from_json(cls, d: dict) -> PairSummary:
        return cls(upload_id=str(d["upload_id"]), device_id=str(d["device_id"]), score=float(d["score"]),
                   captured_at=float(d.get("captured_at", 0.0)), received_at=float(d.get("received_at", 0.0)),
                   model_version=str(d.get("model_version", "")), task=str(d.get("task", "")),
                   image_size=tuple(d.get("image_size") or (0, 0)), labelled=bool(d.get("labelled", False)), raw=d)


@dataclass(frozen=True)
class PairPage:
    items: list[PairSummary]
    total: int  # pairs matching the filter, all pages together
    limit: int
    offset: int
    next: str | None = None  # cursor of the following page (a server without keyset paging: None)


@dataclass(frozen=True)
class PairDetail:
    """One pair: its summary, the predictions of every branch, its files and imported labels."""

    summary: PairSummary
    class_names: list[str]
    predictions: dict[str, list[dict]]  # branch -> [{"box", "score", "class_id"}]
    files: dict[str, dict]  # part -> {"sha256", "bytes", "media_type"}
    labels: dict[str, list]  # modality -> YOLO boxes [class, cx, cy, w, h]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def upload_id(self) -> str:
        return self.summary.upload_id

    @classmethod
    def from_json(cls, d: dict) -> PairDetail:
        return cls(summary=PairSummary.from_json(d), class_names=list(d.get("class_names") or []),
                   predictions=dict(d.get("predictions") or {}), files=dict(d.get("files") or {}),
                   labels=dict(d.get("labels") or {}), raw=d)


@dataclass(frozen=True)
class Batch:
    """A labelling batch: the top ``k`` pairs after near-duplicate removal, in rank order."""

    batch_id: str
    upload_ids: list[str]
    k: int
    hamming: int
    skipped_duplicates: int
    examined: int
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict) -> Batch:
        return cls(batch_id=str(d["batch_id"]), upload_ids=list(d.get("upload_ids") or []), k=int(d.get("k", 0)),
                   hamming=int(d.get("hamming", 0)), skipped_duplicates=int(d.get("skipped_duplicates", 0)),
                   examined=int(d.get("examined", 0)), raw=d)


@dataclass(frozen=True)
class LabelImport:
    """What ``POST /labels`` stored. The import is all or nothing: a refused file is a ServerError
    (400 and the server's reason) and leaves every stored label as it was."""

    pairs_labelled: int  # pairs that got at least one label set
    label_sets: int  # (pair, modality) label sets written, boxes or masks
    unmatched: list[str]  # file names / tasks that match no stored pair (ignored)
    masks: int = 0  # of the label sets, those with a class-id mask
    skipped: list[str] = field(default_factory=list)  # Label Studio tasks without a finished annotation
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict) -> LabelImport:
        return cls(pairs_labelled=int(d["pairs_labelled"]), label_sets=int(d.get("label_sets", 0)),
                   unmatched=[str(u) for u in d.get("unmatched") or []], masks=int(d.get("masks") or 0),
                   skipped=[str(u) for u in d.get("skipped") or []], raw=d)


@dataclass(frozen=True)
class ModelInfo:
    """A published model version (``bytes`` and ``sha256`` of its file)."""

    version: str
    sha256: str
    bytes: int | None
    metadata: dict = field(default_factory=dict)
    published_at: float = 0.0

    @classmethod
    def from_json(cls, d: Any) -> ModelInfo:
        """Parse a registry record; ValueError when it is not one."""
        if (not isinstance(d, dict) or not isinstance(d.get("version"), str) or not isinstance(d.get("sha256"), str)
                or not wire.VERSION_RE.match(d["version"]) or not wire.SHA256_RE.match(d["sha256"])):
            raise ValueError(f"not a model record: {str(d)[:200]}")
        size = d.get("bytes")
        metadata = d.get("metadata")
        return cls(version=d["version"], sha256=d["sha256"], bytes=None if size is None else int(size),
                   metadata=metadata if isinstance(metadata, dict) else {},
                   published_at=float(d.get("published_at") or 0.0))


@dataclass(frozen=True)
class Identity:
    """Whose token this is (``GET whoami``): its role and, for a device token, the device it uploads for."""

    role: str  # "device" or "data-team"
    device_id: str | None
    name: str

    @classmethod
    def from_json(cls, d: dict) -> Identity:
        device = d.get("device_id")
        return cls(role=str(d["role"]), device_id=None if device is None else str(device), name=str(d.get("name", "")))


@dataclass(frozen=True)
class PublishResult:
    model: ModelInfo
    created: bool  # False: the same version with the same file was already published


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    bytes: int


class UploadOutcome(enum.Enum):
    CREATED = "created"  # 201: stored
    DUPLICATE = "duplicate"  # 200: the server already had this upload_id (a retry after a lost answer)
    TRANSIENT = "transient"  # no answer, 5xx, 408 or 429: keep the pair, try again later
    REFUSED = "refused"  # 400/401/403/409/413/415/422: the server will not take it as sent


@dataclass(frozen=True)
class UploadResult:
    outcome: UploadOutcome
    status: int | None  # HTTP status; None when no answer came
    detail: str = ""  # the server's detail, or why no answer came; one line
    retry_after: float | None = None  # seconds, from a 429's Retry-After (None when absent)
    record: dict | None = None  # the server's record on CREATED/DUPLICATE
    bytes_sent: int = 0  # request body size
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """The server holds the pair: the device may delete it."""
        return self.outcome in (UploadOutcome.CREATED, UploadOutcome.DUPLICATE)

    @property
    def auth_refused(self) -> bool:
        """Refused because of the token (401) or what it may do (403), not because of the pair."""
        return self.outcome is UploadOutcome.REFUSED and self.status in AUTH_STATUSES


def classify_upload(status: int | None) -> UploadOutcome:
    if status == 201:
        return UploadOutcome.CREATED
    if status == 200:
        return UploadOutcome.DUPLICATE
    if status in REFUSED_STATUSES:
        return UploadOutcome.REFUSED
    return UploadOutcome.TRANSIENT


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped at an hour; None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


# -- multipart ------------------------------------------------------------------------------------


def encode_multipart(fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """``multipart/form-data`` body and its Content-Type: ``fields`` name -> text, ``files`` name ->
    (filename, bytes, media type)."""
    payloads = [v.encode() for v in fields.values()] + [data for _, data, _ in files.values()]
    boundary = uuid.uuid4().hex
    while any(boundary.encode() in p for p in payloads):  # astronomically rare; cheap to rule out
        boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_param(name)}"\r\n\r\n'.encode()
                      + value.encode() + b"\r\n")
    for name, (filename, data, media_type) in files.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_param(name)}"; '
                      f'filename="{_quote_param(filename)}"\r\nContent-Type: {media_type}\r\n\r\n'.encode()
                      + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _quote_param(value: str) -> str:
    return "".join(c for c in value if c not in '"\r\n\\')


# -- the client -----------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None  # answered as the 3xx itself: the token is never sent on to another URL


@dataclass
class _Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class ServerClient:
    """The collection server's API. ``base_url`` like ``http://127.0.0.1:8080``; ``token`` a bearer token."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0,
                 user_agent: str = f"msmine/{__version__}") -> None:
        base = base_url.strip().rstrip("/")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UserError(f"server URL must look like http://host:port, got {base_url!r}")
        self.base_url = base
        self.timeout = float(timeout)
        self._token = token or None
        self._user_agent = user_agent
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:  # never the token
        return f"ServerClient({self.base_url!r})"

    # plumbing -------------------------------------------------------------------------------------

    def url(self, template: str, query: Mapping[str, Any] | None = None, **params: str) -> str:
        """The full URL of an API path template, each ``{param}`` URL-quoted (no ``/``, no ``..``)."""
        path = template.format(**{k: urllib.parse.quote(str(v), safe="") for k, v in params.items()})
        url = self.base_url + path
        if query:
            items = {k: v for k, v in query.items() if v is not None}
            if items:
                url += "?" + urllib.parse.urlencode(items)
        return url

    def _open(self, method: str, url: str, body: bytes | None, content_type: str | None,
              timeout: float | None) -> http.client.HTTPResponse:
        req = urllib.request.Request(url, data=body, method=method)
        req.add_header("User-Agent", self._user_agent)
        req.add_header("Accept", "application/json, */*")
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        if content_type:
            req.add_header("Content-Type", content_type)
        return self._opener.open(req, timeout=self.timeout if timeout is None else timeout)

    def _send(self, method: str, url: str, body: bytes | None = None, content_type: str | None = None,
              timeout: float | None = None) -> _Answer:
        """One request; the answer whatever its status, ServerError only when none came."""
        try:
            with self._open(method, url, body, content_type, timeout) as resp:
                return _Answer(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as exc:
            return _Answer(exc.code, exc.headers, _read_quietly(exc))
        except urllib.error.URLError as exc:
            raise ServerError(method, url, None, str(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:  # timeout, reset, bad status line
            raise ServerError(method, url, None, f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _detail(answer: _Answer) -> str:
        try:
            detail = json.loads(answer.body).get("detail")
            if detail is not None:
                return detail if isinstance(detail, str) else json.dumps(detail)
        except (ValueError, AttributeError):
            pass
        return answer.body.decode("utf-8", "replace") or http.client.responses.get(answer.status, "")

    def _error(self, method: str, url: str, answer: _Answer) -> ServerError:
        retry = parse_retry_after(answer.headers.get("Retry-After")) if answer.headers else None
        return ServerError(method, url, answer.status, self._detail(answer), retry)

    def _expect(self, method: str, url: str, answer: _Answer, ok: tuple[int, ...] = (200, 201)) -> _Answer:
        if answer.status not in ok:
            raise self._error(method, url, answer)
        return answer

    def _json(self, method: str, template: str, *, query: Mapping[str, Any] | None = None,
              body: Any = None, params: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        url = self.url(template, query, **(params or {}))
        data = None if body is None else json.dumps(body).encode()
        answer = self._expect(method, url, self._send(method, url, data, "application/json" if data else None), ok)
        try:
            return answer.json()
        except ValueError:
            raise ServerError(method, url, answer.status, "answer is not JSON: "
                              + answer.body[:80].decode("utf-8", "replace")) from None

    def _bytes(self, template: str, **params: str) -> bytes:
        url = self.url(template, **params)
        return self._expect("GET", url, self._send("GET", url), (200,)).body

    def _multipart(self, template: str, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]],
                   query: Mapping[str, Any] | None = None, ok: tuple[int, ...] = (200, 201),
                   timeout: float | None = None) -> tuple[int, Any]:
        url = self.url(template, query)
        body, ctype = encode_multipart(fields, files)
        answer = self._expect("POST", url, self._send("POST", url, body, ctype, timeout), ok)
        try:
            return answer.status, answer.json()
        except ValueError:
            raise ServerError("POST", url, answer.status, "answer is not JSON") from None

    def download(self, template: str, dest: str | Path, *, expect_sha256: str | None = None,
                 expect_bytes: int | None = None, **params: str) -> Download:
        """Stream a GET to ``dest`` (via ``dest.part``, fsynced, renamed only when complete and matching
        ``expect_sha256``/``expect_bytes``); ServerError otherwise, leaving no partial file."""
        url = self.url(template, **params)
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        size = 0
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with self._open("GET", url, None, None, None) as resp, open(part, "wb") as fh:
                while chunk := resp.read(CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        except urllib.error.HTTPError as exc:
            part.unlink(missing_ok=True)
            raise self._error("GET", url, _Answer(exc.code, exc.headers, _read_quietly(exc))) from None
        except urllib.error.URLError as exc:
            part.unlink(missing_ok=True)
            raise ServerError("GET", url, None, str(exc.reason)) from None
        except http.client.HTTPException as exc:
            part.unlink(missing_ok=True)
            raise ServerError("GET", url, None, f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            part.unlink(missing_ok=True)
            if isinstance(exc, (TimeoutError, ConnectionError)):
                raise ServerError("GET", url, None, f"{type(exc).__name__}: {exc}") from None
            raise UserError(f"cannot write {part}: {exc}") from None
        sha = digest.hexdigest()
        if (expect_sha256 is not None and sha != expect_sha256) or (expect_bytes is not None and size != expect_bytes):
            part.unlink(missing_ok=True)
            raise ServerError("GET", url, 200, f"downloaded {size} bytes with sha256 {sha[:12]}, expected "
                              f"{expect_bytes if expect_bytes is not None else '?'} bytes, "
                              f"{(expect_sha256 or '?')[:12]}")
        os.replace(part, dest)
        return Download(dest, sha, size)

    # health -----------------------------------------------------------------------------------------

    def health(self) -> dict:
        """``GET /healthz`` (no token needed): ServerError unless the server answers it is up."""
        return self._json("GET", HEALTH_PATH, ok=(200,))

    def is_up(self, timeout: float = 2.0) -> bool:
        """True when ``/healthz`` answers 200 within ``timeout`` seconds; never raises."""
        url = self.url(HEALTH_PATH)
        try:
            return self._send("GET", url, timeout=timeout).status == 200
        except ServerError:
            return False

    def whoami(self) -> Identity | None:
        """The token's own record; None when the server is too old to say (404). 401/403 and the rest
        are a ServerError."""
        url = self.url(wire.WHOAMI_PATH)
        answer = self._send("GET", url)
        if answer.status == 404:
            return None
        self._expect("GET", url, answer, (200,))
        return _typed("GET", url, lambda: Identity.from_json(answer.json()))

    # device ---------------------------------------------------------------------------------------

    def upload_pair(self, manifest: dict, files: Mapping[str, bytes], timeout: float | None = None) -> UploadResult:
        """``POST`` one mined pair (msmine.wire) and say what became of it; never raises for the
        network or the server (ValueError only for a manifest/files mismatch, a caller's bug)."""
        missing = [p for p in wire.FILE_PARTS if p not in files or p not in manifest.get("files", {})]
        if missing:
            raise ValueError(f"upload_pair: part(s) {missing} missing from the manifest or the files")
        parts = {wire.MANIFEST_PART: ("manifest.json", wire.canonical_json(manifest), "application/json")}
        for part in wire.FILE_PARTS:
            media = manifest["files"][part]["media_type"]
            parts[part] = (f"{part}.{MEDIA_EXT.get(media, 'bin')}", files[part], media)
        for part in wire.mask_parts(manifest).values():  # segmentation: the class-id mask PNGs
            if part not in files:
                raise ValueError(f"upload_pair: mask part {part!r} declared in the manifest but not in the files")
            parts[part] = (f"{part}.png", files[part], "image/png")
        url = self.url(wire.UPLOAD_PATH)
        body, ctype = encode_multipart({}, parts)
        start = time.monotonic()
        try:
            answer = self._send("POST", url, body, ctype, timeout)
        except ServerError as exc:
            return UploadResult(UploadOutcome.TRANSIENT, None, exc.detail, bytes_sent=len(body),
                                elapsed_s=time.monotonic() - start)
        elapsed = time.monotonic() - start
        outcome = classify_upload(answer.status)
        record = None
        if outcome in (UploadOutcome.CREATED, UploadOutcome.DUPLICATE):
            try:
                record = answer.json()
            except ValueError:
                record = None
            if isinstance(record, dict) and record.get("duplicate") is True:
                outcome = UploadOutcome.DUPLICATE
        retry = parse_retry_after(answer.headers.get("Retry-After")) if answer.status == 429 else None
        detail = "" if record is not None else _one_line(self._detail(answer))
        return UploadResult(outcome, answer.status, detail, retry, record if isinstance(record, dict) else None,
                            len(body), elapsed)

    def latest_model(self) -> ModelInfo | None:
        """The registry's current model, or None when none is published (404)."""
        url = self.url(wire.MODELS_LATEST_PATH)
        answer = self._send("GET", url)
        if answer.status == 404:
            return None
        self._expect("GET", url, answer, (200,))
        try:
            return ModelInfo.from_json(answer.json())
        except ValueError as exc:
            raise ServerError("GET", url, answer.status, f"malformed answer: {exc}") from None

    def download_model(self, model: ModelInfo, dest: str | Path) -> Download:
        """Download ``model``'s file to ``dest``, verified against its sha256 and size."""
        return self.download(wire.MODEL_FILE_PATH, dest, expect_sha256=model.sha256, expect_bytes=model.bytes,
                             version=model.version)

    # data team ------------------------------------------------------------------------------------

    def stats(self) -> dict:
        return self._json("GET", STATS_PATH)

    def list_pairs(self, filters: PairFilter | None = None, *, limit: int = 50, offset: int = 0,
                   after: str | None = None) -> PairPage:
        """One page of pairs, highest score first: at ``offset``, or after the cursor ``after`` (a
        previous page's ``next``)."""
        query = {**(filters or PairFilter()).as_query(), "limit": int(limit), "offset": int(offset)}
        if after is not None:
            query["after"] = after
        page = self._json("GET", PAIRS_PATH, query=query)
        return _typed("GET", self.url(PAIRS_PATH, query), lambda: PairPage(
            [PairSummary.from_json(i) for i in page["items"]], int(page["total"]),
            int(page.get("limit", limit)), int(page.get("offset", offset)), page.get("next")))

    def iter_pairs(self, filters: PairFilter | None = None, *, page_size: int = 500,
                   max_items: int | None = None) -> Iterator[PairSummary]:
        """Every matching pair, page by page in rank order (each upload id once), up to ``max_items``.
        Pages follow the server's keyset cursor (``next``), so pairs arriving meanwhile neither shift
        nor repeat the walk; an older server without cursors is paged by offset."""
        seen: set[str] = set()
        offset, after = 0, None
        while max_items is None or len(seen) < max_items:
            page = self.list_pairs(filters, limit=page_size, offset=0 if after else offset, after=after)
            for item in page.items:
                if item.upload_id not in seen and (max_items is None or len(seen) < max_items):
                    seen.add(item.upload_id)
                    yield item
            offset += len(page.items)
            if page.next is not None:
                after = page.next
                continue
            if not page.items or offset >= page.total or after is not None:
                return

    def get_pair(self, upload_id: str) -> PairDetail:
        got = self._json("GET", PAIR_PATH, params={"upload_id": upload_id})
        return _typed("GET", self.url(PAIR_PATH, upload_id=upload_id), lambda: PairDetail.from_json(got))

    def pair_file(self, upload_id: str, part: str) -> bytes:
        """A pair's stored image bytes (``part`` one of msmine.wire.FILE_PARTS)."""
        if part not in wire.FILE_PARTS:
            raise ValueError(f"part must be one of {wire.FILE_PARTS}, got {part!r}")
        return self._bytes(PAIR_FILE_PATH, upload_id=upload_id, part=part)

    def pair_mask(self, upload_id: str, branch: str) -> bytes:
        """A branch's predicted class-id mask PNG (segmentation pairs; ``detail.raw["masks"]`` lists them)."""
        if branch not in wire.BRANCHES:
            raise ValueError(f"branch must be one of {wire.BRANCHES}, got {branch!r}")
        return self._bytes(PAIR_MASK_PATH, upload_id=upload_id, branch=branch)

    def label_mask(self, upload_id: str, modality: str) -> bytes:
        """An imported mask label's class-id PNG (``detail.raw["label_masks"]`` lists them)."""
        return self._bytes(PAIR_LABEL_MASK_PATH, upload_id=upload_id, modality=modality)

    def create_batch(self, k: int, filters: PairFilter | None = None, hamming: int | None = None) -> Batch:
        """Pick the top ``k`` pairs for labelling (near-duplicates removed; ``hamming=-1`` keeps them)."""
        body: dict[str, Any] = {"k": int(k), "filters": (filters or PairFilter()).as_dict()}
        if hamming is not None:
            body["hamming"] = int(hamming)
        got = self._json("POST", BATCHES_PATH, body=body, ok=(200, 201))
        return _typed("POST", self.url(BATCHES_PATH), lambda: Batch.from_json(got))

    def get_batch(self, batch_id: str) -> dict:
        return self._json("GET", BATCH_PATH, params={"batch_id": batch_id})

    def export_batch(self, batch_id: str, dest: str | Path) -> Download:
        """The batch's labelling zip (images, COCO pre-annotations, Label Studio tasks) to ``dest``."""
        return self.download(BATCH_EXPORT_PATH, dest, batch_id=batch_id)

    def label_studio_tasks(self, batch_id: str, *, branch: str = "fused", masks: str = "polygon",
                           expires_in_s: int = 7 * 86400) -> dict:
        """A batch as Label Studio tasks: ``config`` (labelling config), ``tasks`` (rank order; image
        URLs signed, server-relative ``/signed/...``), ``expires_at``, ``class_names``, ``branch``."""
        got = self._json("POST", BATCH_LABEL_STUDIO_PATH, params={"batch_id": batch_id}, ok=(200,),
                         body={"branch": branch, "masks": masks, "expires_in_s": int(expires_in_s)})
        if not isinstance(got, dict) or not isinstance(got.get("tasks"), list) or not isinstance(got.get("config"), str):
            raise ServerError("POST", self.url(BATCH_LABEL_STUDIO_PATH, batch_id=batch_id), 200,
                              "malformed answer: no 'tasks' list and 'config'")
        return got

    def post_labels(self, data: bytes, filename: str, *, fmt: str = "auto", modality: str = "auto",
                    class_map: str = "", timeout: float | None = None) -> LabelImport:
        """Import labels (all or nothing). ``fmt`` one of :data:`LABEL_FORMATS`: COCO JSON (boxes,
        polygon/RLE masks), a CVAT "COCO 1.0" zip, a Label Studio JSON export, YOLO ``<upload_id>.txt``,
        a class-id PNG mask ``<upload_id>.png``, or a zip of any of them; ``auto`` tells them apart.
        ``modality`` one of :data:`LABEL_MODALITIES` (``auto``: from the file's path, else all);
        ``class_map`` like ``pedestrian=person,van=car``. ``filename`` matters: the server reads the
        format, the modality and (for one file) the upload id from it."""
        query = {"format": fmt, "modality": modality, "class_map": class_map or None}
        _, got = self._multipart(LABELS_PATH, {}, {"file": (filename, data, "application/octet-stream")},
                                 query=query, ok=(200, 201), timeout=timeout)
        return _typed("POST", self.url(LABELS_PATH, query), lambda: LabelImport.from_json(got))

    def signed_urls(self, upload_ids: list[str], parts: tuple[str, ...] = ("visible", "thermal"),
                    expires_in_s: int = 7 * 86400) -> tuple[dict[str, dict[str, str]], int]:
        """Token-free, expiring URLs of pairs' images (for a labelling tool's browser): ({upload_id:
        {part: absolute URL}}, expiry in unix seconds)."""
        got = self._json("POST", SIGNED_URLS_PATH, body={"upload_ids": list(upload_ids), "parts": list(parts),
                                                         "expires_in_s": int(expires_in_s)}, ok=(200,))
        return _typed("POST", self.url(SIGNED_URLS_PATH), lambda: (
            {uid: {part: self.base_url + path for part, path in urls.items()} for uid, urls in got["urls"].items()},
            int(got["expires_at"])))

    def list_models(self) -> list[ModelInfo]:
        """Every published model, newest first."""
        got = self._json("GET", MODELS_PATH)
        return _typed("GET", self.url(MODELS_PATH), lambda: [ModelInfo.from_json(m) for m in got])

    def get_model(self, version: str) -> ModelInfo:
        got = self._json("GET", MODEL_PATH, params={"version": version})
        return _typed("GET", self.url(MODEL_PATH, version=version), lambda: ModelInfo.from_json(got))

    def publish_model(self, version: str, model: bytes | str | Path, metadata: dict | None = None,
                      timeout: float | None = None) -> PublishResult:
        """Publish a model version (data-team token); republishing the same file is a no-op (created False)."""
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        fields = {"version": version, "metadata": json.dumps(metadata or {})}
        status, got = self._multipart(MODELS_PATH, fields, {"file": ("model.onnx", data, "application/octet-stream")},
                                      ok=(200, 201), timeout=timeout)
        return PublishResult(_typed("POST", self.url(MODELS_PATH), lambda: ModelInfo.from_json(got)),
                             created=status == 201)


def _typed(method: str, url: str, build: Callable[[], T]) -> T:
    """Build a typed record from an answer; a malformed answer is a ServerError, not a KeyError."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ServerError(method, url, 200, f"malformed answer: {type(exc).__name__}: {exc}") from None


def _read_quietly(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""
