"""The server under attack (issue 16): a real uvicorn process gets unauthenticated and oversize bodies,
slow bodies and headers, a connection flood and a token-guessing run; in process, out-of-range
paging, security headers and the access log. Each prints the figure it measures."""

from __future__ import annotations

import logging
import select
import socket
import time
from pathlib import Path

import pytest
import requests

from msmine.server.config import ServerConfig
from tests.server.conftest import make_served
from tests.server.live_server import LiveServer, make_tokens

pytestmark = pytest.mark.timeout(120)

HEADER_TIMEOUT = 1.0
BODY_IDLE = 1.0
BODY_TOTAL = 1.5
CONN_CAP = 6
MIB = 1 << 20


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults") / "srv"
    tokens = make_tokens(root)
    server = LiveServer(root, (
        "--rate-limit", "0",
        "--set", f"header_timeout_s={HEADER_TIMEOUT}", "--set", f"body_idle_timeout_s={BODY_IDLE}",
        "--set", f"body_timeout_s={BODY_TOTAL}", "--set", "body_min_rate_kb=1",
        "--set", f"max_connections_per_client={CONN_CAP}",
    )).start()
    try:
        yield server, tokens
    finally:
        server.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def connect(server, sndbuf: int | None = None) -> socket.socket:
    """A loopback connection; ``sndbuf`` pins the client's send buffer (no kernel autotuning)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    return sock


def tcp_rmem_max() -> int:
    """The most a receiving socket's buffer can autotune to on this host (bytes)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 6 * MIB  # the Linux default


def head(path: str, *, length: int | None = None, token: str | None = None, chunked: bool = False,
         ctype: str = "application/json") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {ctype}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float) -> bytes:
    """What the server sent within ``timeout`` seconds (until it closes or the time is up)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and b'"}' in data:
                break
    except TimeoutError:
        pass
    except ConnectionResetError:
        pass
    return data


def closed_within(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """(the server closed the connection within ``timeout``, what it sent before)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def stream_until_refused(sock: socket.socket, chunk: bytes, max_bytes: int, seconds: float,
                         framing=lambda c: c) -> tuple[int, bytes]:
    """Send ``chunk`` repeatedly until the server answers or closes; returns (bytes sent, response)."""
    sent = 0
    deadline = time.monotonic() + seconds
    sock.setblocking(True)
    sock.settimeout(2)
    while sent < max_bytes and time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0)
        if ready:
            break
        try:
            sock.sendall(framing(chunk))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            break
        sent += len(chunk)
    return sent, read_response(sock, 3)


def test_unauthenticated_300mib_body_is_refused_before_it_is_read(live):
    server, _ = live
    pid = server.proc.pid
    before = rss_mib(pid)
    socks = [connect(server) for _ in range(3)]
    try:
        answers = []
        for s in socks:  # three concurrent 300 MiB declarations, no token
            s.sendall(head("/api/v1/batches", length=300 * MIB))
        for s in socks:
            answers.append(read_response(s, 3))  # before one byte of the body is sent
        assert all(a.startswith(b"HTTP/1.1 401") for a in answers), answers
        assert all(b"connection: close" in a.lower() for a in answers)
        # a client that streams its body anyway: the server has closed; nothing piles up in memory
        sent = [stream_until_refused(s, b"x" * MIB, 300 * MIB, 10)[0] for s in socks]
    finally:
        for s in socks:
            s.close()
    after = rss_mib(pid)
    print(f"\nunauthenticated 3 x 300 MiB: 401 before the body; sent before the close {[x // MIB for x in sent]} MiB;"
          f" server RSS {before:.0f} -> {after:.0f} MiB (+{after - before:.1f})")
    assert after - before < 50
    assert all(x < 300 * MIB for x in sent)
    # the same with a wrong token, a chunked body (no Content-Length) and the upload endpoint
    for path, token in (("/api/v1/batches", "msm_wrong"), ("/api/v1/uploads", None), ("/api/v1/labels", None)):
        with connect(server) as s:
            s.sendall(head(path, token=token, chunked=True))
            assert read_response(s, 3).startswith(b"HTTP/1.1 401"), path
    assert rss_mib(pid) - before < 50


def test_oversize_authenticated_json_body_gets_413_while_streaming(live):
    server, tokens = live
    limit = int(ServerConfig().max_json_kb * 1024)
    before = rss_mib(server.proc.pid)
    # declared too large: refused before reading
    with connect(server) as s:
        s.sendall(head("/api/v1/batches", length=limit + 1, token=tokens["team"]))
        assert read_response(s, 3).startswith(b"HTTP/1.1 413")
    # an upload declaring more than max_upload_mb, with a valid device token
    with connect(server) as s:
        s.sendall(head("/api/v1/uploads", length=300 * MIB, token=tokens["pole-1"],
                       ctype="multipart/form-data; boundary=b0undary"))
        assert read_response(s, 3).startswith(b"HTTP/1.1 413")
    # chunked, no length: counted as it arrives, refused once past the limit
    # What the client can have pushed before the 413 reaches it: what the server read (the limit),
    # plus what sat in the kernel's buffers on both sides (the client's pinned send buffer, which
    # Linux doubles, and the server's receive buffer, which autotunes up to tcp_rmem's maximum).
    sndbuf = 128 * 1024
    max_bytes = 64 * MIB
    chunk = b" " * 65536
    with connect(server, sndbuf=sndbuf) as s:
        s.sendall(head("/api/v1/batches", token=tokens["team"], chunked=True))
        sent, answer = stream_until_refused(s, chunk, max_bytes, 10,
                                            framing=lambda c: b"%x\r\n%s\r\n" % (len(c), c))
    after = rss_mib(server.proc.pid)
    buffered = 2 * sndbuf + tcp_rmem_max()
    print(f"\noversize JSON ({limit // 1024} KiB limit): 413 after {sent // 1024} KiB sent "
          f"(kernel buffers up to {buffered // 1024} KiB); server RSS {before:.0f} -> {after:.0f} MiB")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < max_bytes, "the server read the whole stream before refusing it"
    assert sent <= limit + buffered + len(chunk)  # + the chunk in flight when the answer came
    assert after - before < 50
    # a body within the limit is still served
    resp = requests.post(server.url + "/api/v1/batches", json={"k": 1}, timeout=10,
                         headers={"Authorization": f"Bearer {tokens['team']}"})
    assert resp.status_code == 201


SLOW_MULTIPART = b'--b0undary\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n{"schema": 2}' + b" " * 50


@pytest.mark.parametrize("path,who,ctype,body", [
    ("/api/v1/batches", "team", "application/json", b" " * 100),
    ("/api/v1/uploads", "pole-1", "multipart/form-data; boundary=b0undary", SLOW_MULTIPART),
])
def test_slow_body_is_closed_within_the_deadline(live, path, who, ctype, body):
    server, tokens = live
    with connect(server) as s:
        s.sendall(head(path, length=len(body), token=tokens[who], ctype=ctype))
        started = time.monotonic()
        answer = b""
        closed = False
        for i in range(8):  # 1 byte a second; the server must give up first
            try:
                s.sendall(body[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            done, data = closed_within(s, 1.0)
            answer += data
            if done:
                closed = True
                break
        elapsed = time.monotonic() - started
    print(f"\nslow body to {path} at 1 byte/s: answered {answer[:12]!r} and closed after {elapsed:.1f} s "
          f"(deadline {BODY_TOTAL} s + 1 s per KiB)")
    assert closed and answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < BODY_TOTAL + 2.5


def test_idle_body_and_unfinished_header_are_closed(live):
    server, tokens = live
    with connect(server) as s:  # headers, then silence
        s.sendall(head("/api/v1/batches", length=100, token=tokens["team"]))
        t0 = time.monotonic()
        closed, answer = closed_within(s, BODY_IDLE + 3)
        idle = time.monotonic() - t0
    assert closed and answer.startswith(b"HTTP/1.1 408")
    with connect(server) as s:  # an unfinished request head
        s.sendall(b"POST /api/v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        t0 = time.monotonic()
        closed, answer = closed_within(s, HEADER_TIMEOUT + 3)
        slow_head = time.monotonic() - t0
    print(f"\nidle body closed after {idle:.1f} s; unfinished header closed after {slow_head:.1f} s")
    assert closed and answer.startswith(b"HTTP/1.1 408")
    assert slow_head < HEADER_TIMEOUT + 2


def test_connections_per_client_are_capped(live):
    server, _ = live
    time.sleep(0.2)  # let connections of earlier tests close
    socks, refused = [], 0
    try:
        socks = [connect(server) for _ in range(CONN_CAP + 3)]  # all open well within the header deadline
        time.sleep(0.3)
        for s in socks:
            done, data = closed_within(s, 0.05)
            if done or data:
                assert data.startswith(b"HTTP/1.1 503"), data
                refused += 1
        print(f"\n{CONN_CAP + 3} connections from one address, cap {CONN_CAP}: {refused} refused with 503")
        assert refused >= 3
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200  # freed again


def test_access_log_of_the_live_server(live):
    server, tokens = live
    resp = requests.post(server.url + "/api/v1/batches", json={"k": 1}, timeout=10,
                         headers={"Authorization": f"Bearer {tokens['pole-1']}"})
    assert resp.status_code == 403
    time.sleep(0.3)
    text = server.log_path.read_text()
    assert "msmine.server.access" in text
    assert "POST /api/v1/batches 403 device:pole-1" in text
    assert "POST /api/v1/batches 401 -" in text


# in process -------------------------------------------------------------------------------------

def test_failed_auth_is_throttled_per_address(tmp_path):
    served = make_served(tmp_path / "srv", ServerConfig(rate_limit_per_min=0, auth_fail_limit=5,
                                                        auth_fail_window_s=60))
    with served.client as client:
        codes = [client.get("/api/v1/pairs", headers={"Authorization": f"Bearer msm_guess{i}"}).status_code
                 for i in range(8)]
        assert codes == [401] * 5 + [429] * 3, codes
        resp = client.get("/api/v1/pairs", headers={"Authorization": "Bearer msm_guess-more"})
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
        assert client.get("/api/v1/pairs").status_code == 429  # no token either, while throttled
        # a valid token from the same address is served
        assert client.get("/api/v1/pairs", headers=served.auth(served.team)).status_code == 200
    print(f"\nwrong tokens: {codes}")


def test_out_of_range_paging_is_422_not_500(served):
    auth = served.auth(served.team)
    resp = served.client.get("/api/v1/pairs", params={"offset": 10**20}, headers=auth)
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], str) and "offset" in resp.json()["detail"]
    for params in ({"offset": -1}, {"limit": 10**20}, {"limit": 0}, {"since": "1e400"}, {"since": "nan"},
                   {"min_score": "inf"}, {"max_score": "-inf"}, {"offset": "x"}):
        resp = served.client.get("/api/v1/pairs", params=params, headers=auth)
        assert 400 <= resp.status_code < 500, (params, resp.status_code, resp.text)
    for body in ('{"k": 100000000000000000000}', '{"k": 1, "filters": {"since": Infinity}}',
                 '{"k": 1, "filters": {"until": NaN}}', '{"k": 1, "hamming": 100000000000000000000}'):
        resp = served.client.post("/api/v1/batches", content=body, headers={**auth, "Content-Type": "application/json"})
        assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.text)


def test_security_headers_on_page_api_and_refusals(served):
    for path, headers in (("/", {}), ("/static/app.js", {}), ("/healthz", {}),
                          ("/api/v1/pairs", served.auth(served.team)), ("/api/v1/pairs", {})):
        resp = served.client.get(path, headers=headers)
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["X-Frame-Options"] == "DENY", path
        csp = resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
    assert "script-src 'self'" in served.client.get("/").headers["Content-Security-Policy"]


def test_access_log_records_refused_uploads(served, rng, caplog):
    with caplog.at_level(logging.INFO, logger="msmine.server.access"):
        resp, _ = served.upload_synthetic(rng, token=served.device2)  # manifest says pole-1
        assert resp.status_code == 403
        served.client.get("/?token=msm_secret-in-the-address")
    lines = [r.getMessage() for r in caplog.records if r.name == "msmine.server.access"]
    line = next(m for m in lines if "/api/v1/uploads" in m)
    assert "POST /api/v1/uploads 403 device:pole-2" in line and "in=" in line and "ms" in line
    assert not any("msm_secret" in m for m in lines)  # the query string is never logged


def test_failure_throttle_window_and_memory_bound():
    from msmine.server.ratelimit import FailureThrottle

    now = [0.0]
    throttle = FailureThrottle(2, 10.0, clock=lambda: now[0], max_keys=100)
    throttle.fail("a")
    assert throttle.blocked("a") == 0.0
    throttle.fail("a")
    assert throttle.blocked("a") == pytest.approx(10.0) and throttle.blocked("b") == 0.0
    now[0] = 9.5
    assert throttle.blocked("a") == pytest.approx(0.5)
    now[0] = 10.0
    assert throttle.blocked("a") == 0.0  # the window ended: the address may try again
    for i in range(1000):  # a flood of addresses keeps at most max_keys windows
        throttle.fail(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._windows) <= 101
    assert FailureThrottle(0, 10.0).blocked("a") == 0.0  # 0 disables
