"""A small stand-in for the collection server, on 127.0.0.1, for the edge runtime's tests.

It follows msmine.wire: ``POST /api/v1/uploads`` (multipart; 201 first time, 200 + duplicate
for a known upload_id; every file checked against the manifest), ``GET /api/v1/models/latest``
and ``GET /api/v1/models/{version}/file``. Modes: ``up``; ``down`` (503 to everything);
``busy`` (429 with Retry-After); ``lose_response`` (store, then answer 500 as if the response was
lost). ``tokens`` are the accepted bearer tokens; ``devices`` (token -> device id) makes the stub
answer ``GET /api/v1/whoami`` and refuse (403) a manifest whose device is not the token's, as the
real server does.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from msmine import wire


class StubState:
    def __init__(self, tokens: set[str], devices: dict[str, str] | None = None) -> None:
        self.tokens = tokens
        self.devices = dict(devices or {})
        self.whoami = True  # False: an older server without GET /api/v1/whoami (404)
        self.mode = "up"
        self.retry_after = 1
        self.records: dict[str, dict] = {}  # upload_id -> {"manifest", "files"}
        self.created: dict[str, int] = {}  # upload_id -> number of 201 answers
        self.requests: list[tuple[str, int]] = []  # (path, status)
        self.models: dict[str, bytes] = {}  # version -> ONNX bytes
        self.latest: str | None = None
        self.lock = threading.Lock()

    def publish(self, version: str, data: bytes) -> None:
        with self.lock:
            self.models[version] = data
            self.latest = version


def _parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = part.get_payload(decode=True)
    return parts


class _Handler(BaseHTTPRequestHandler):
    state: StubState

    def log_message(self, fmt, *args) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: dict | bytes, headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        with self.state.lock:
            self.state.requests.append((self.path, status))

    def _gate(self) -> bool:
        st = self.state
        if st.mode == "down":
            self._reply(503, {"detail": "down"})
            return False
        if st.mode == "busy":
            self._reply(429, {"detail": "busy"}, {"Retry-After": str(st.retry_after)})
            return False
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in st.tokens:
            self._reply(401, {"detail": "bad token"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._gate():
            return
        st = self.state
        if self.path == wire.WHOAMI_PATH and st.devices and st.whoami:
            token = self.headers.get("Authorization", "")[7:]
            self._reply(200, {"role": "device", "device_id": st.devices.get(token), "name": st.devices.get(token)})
            return
        if self.path == wire.MODELS_LATEST_PATH:
            if st.latest is None:
                self._reply(404, {"detail": "no model"})
                return
            data = st.models[st.latest]
            self._reply(200, {"version": st.latest, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                              "metadata": {}})
            return
        for version, data in st.models.items():
            if self.path == wire.MODEL_FILE_PATH.format(version=version):
                self._reply(200, data)
                return
        self._reply(404, {"detail": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != wire.UPLOAD_PATH:
            self._reply(404, {"detail": "not found"})
            return
        if not self._gate():
            return
        try:
            parts = _parse_multipart(self.headers["Content-Type"], body)
            manifest = wire.parse_manifest(parts[wire.MANIFEST_PART])
            for part in wire.FILE_PARTS:
                wire.verify_file(manifest, part, parts[part])
        except (KeyError, wire.WireError) as exc:
            self._reply(422, {"detail": str(exc)})
            return
        st = self.state
        owner = st.devices.get(self.headers.get("Authorization", "")[7:])
        if owner and manifest["device_id"] != owner:
            self._reply(403, {"detail": f"this token belongs to device {owner!r}, not to manifest.device_id "
                                        f"{manifest['device_id']!r}"})
            return
        uid = manifest["upload_id"]
        with st.lock:
            duplicate = uid in st.records
            if not duplicate:
                st.records[uid] = {"manifest": manifest, "files": {p: parts[p] for p in wire.FILE_PARTS}}
                st.created[uid] = st.created.get(uid, 0) + 1
        if st.mode == "lose_response":
            self._reply(500, {"detail": "response lost"})
            return
        self._reply(200 if duplicate else 201, {"upload_id": uid, "duplicate": duplicate})


class StubServer:
    """``with StubServer(tokens={"t"}) as srv: srv.url, srv.state``."""

    def __init__(self, tokens: set[str] | None = None, port: int = 0, devices: dict[str, str] | None = None) -> None:
        self.state = StubState(tokens or {"secret"}, devices)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
