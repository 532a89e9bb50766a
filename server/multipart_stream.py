"""Streaming ``multipart/form-data`` reader with limits, for uploads that must be rejected early.

Checks ``Content-Length`` against the body limit before reading anything, counts the bytes actually
received (a client may lie or send chunked), enforces a limit per part, refuses unknown or repeated
part names, and reports a body that ends before the closing boundary as truncated. Part names come
from ``Content-Disposition``; client file names are kept only for messages, never used for storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from msmine.server.blobs import BlobWriter


@dataclass
class Part:
    name: str  # form field name
    filename: str | None  # client-supplied file name (never used for storage)
    data: bytearray = field(default_factory=bytearray)  # content when kept in memory
    writer: BlobWriter | None = None  # streamed sink for large parts
    size: int = 0  # bytes received
    complete: bool = False  # closing boundary of the part seen


class _State:
    def __init__(self, part_limits: dict[str, int], sinks: dict[str, Callable[[], BlobWriter]]) -> None:
        self.part_limits = part_limits
        self.sinks = sinks
        self.parts: dict[str, Part] = {}
        self.current: Part | None = None
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.ended = False

    def on_part_begin(self) -> None:
        self.current = None
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self.headers.get(b"content-disposition", b"").decode("latin-1"))
        if disposition != b"form-data" or b"name" not in options:
            raise HTTPException(400, "multipart part without 'Content-Disposition: form-data; name=...'")
        name = options[b"name"].decode("latin-1")
        if name not in self.part_limits:
            raise HTTPException(400, f"unexpected multipart part {name!r}; expected {sorted(self.part_limits)}")
        if name in self.parts:
            raise HTTPException(400, f"multipart part {name!r} sent twice")
        filename = options.get(b"filename")
        part = Part(name=name, filename=filename.decode("latin-1") if filename is not None else None)
        if name in self.sinks:
            part.writer = self.sinks[name]()
        self.parts[name] = part
        self.current = part

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.current
        if part is None:
            raise HTTPException(400, "multipart data outside a part")
        part.size += end - start
        limit = self.part_limits[part.name]
        if part.size > limit:
            raise HTTPException(413, f"multipart part {part.name!r} is larger than {limit} bytes")
        if part.writer is not None:
            part.writer.write(data[start:end])
        else:
            part.data += data[start:end]

    def on_part_end(self) -> None:
        if self.current is not None:
            self.current.complete = True
        self.current = None

    def on_end(self) -> None:
        self.ended = True


def _abort_writers(parts: dict[str, Part]) -> None:
    for part in parts.values():
        if part.writer is not None:
            part.writer.abort()


async def read_multipart(
    request: Request,
    *,
    max_body: int,
    part_limits: dict[str, int],
    required: tuple[str, ...] = (),
    sinks: dict[str, Callable[[], BlobWriter]] | None = None,
) -> dict[str, Part]:
    """Parse the request body; raise HTTPException (400/413/415) with a message on any problem.

    Parts named in ``sinks`` stream into a :class:`BlobWriter` (aborted on failure); others are kept
    in memory. The caller must commit or abort the writers of the returned parts.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise HTTPException(415, "body must be multipart/form-data with a boundary")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HTTPException(400, f"invalid Content-Length {length!r}")
        if int(length) > max_body:
            raise HTTPException(413, f"body of {int(length)} bytes is larger than the limit of {max_body} bytes")
    state = _State(part_limits, sinks or {})
    callbacks = {name: getattr(state, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end", "on_end")}
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise HTTPException(413, f"body is larger than the limit of {max_body} bytes")
            if chunk and not state.ended:
                parser.write(chunk)
        if not state.ended:
            raise HTTPException(400, "truncated multipart body: the closing boundary never arrived")
        missing = [name for name in required if name not in state.parts]
        if missing:
            raise HTTPException(400, f"multipart body is missing part(s): {', '.join(missing)}")
    except FormParserError as exc:
        _abort_writers(state.parts)
        raise HTTPException(400, f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        _abort_writers(state.parts)
        raise HTTPException(400, "client disconnected before the body was complete") from None
    except BaseException:
        _abort_writers(state.parts)
        raise
    return state.parts
