"""Builders for uploads in the server tests: real MSRS pairs or small synthetic ones, encoded by hand."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from msmine.wire import build_manifest

CLASS_NAMES = ["person", "bicycle", "car"]
MODEL_HASH = "ab" * 32


def encode(img: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise RuntimeError("encode failed")
    return buf.tobytes()


def synthetic_files(rng: np.random.Generator, size: tuple[int, int] = (96, 72)) -> dict[str, bytes]:
    """Visible (RGB), thermal (gray) and heat map of smooth random content: distinct dHash per call."""
    w, h = size
    coarse = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    visible = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    thermal = cv2.resize(rng.integers(0, 255, (6, 8), dtype=np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.resize(rng.integers(0, 255, (3, 4), dtype=np.uint8), (w // 4, h // 4))
    return {"visible": encode(visible), "thermal": encode(thermal), "heatmap": encode(heat)}


def msrs_files(msrs_root: Path, name: str, split: str = "train") -> dict[str, bytes]:
    """A real MSRS pair (JPEG bytes as stored) plus a heat map made from the thermal image."""
    visible = (msrs_root / split / "visible" / f"{name}.jpg").read_bytes()
    thermal = (msrs_root / split / "infrared" / f"{name}.jpg").read_bytes()
    gray = cv2.imdecode(np.frombuffer(thermal, np.uint8), cv2.IMREAD_GRAYSCALE)
    heat = cv2.applyColorMap(cv2.resize(gray, (80, 60)), cv2.COLORMAP_JET)
    return {"visible": visible, "thermal": thermal, "heatmap": encode(heat)}


def msrs_predictions(msrs_root: Path, name: str, split: str = "train") -> dict[str, list[dict]]:
    """Ground-truth boxes of each modality turned into 'predictions' (so the drawn boxes are real)."""
    out = {}
    for branch, folder in (("fused", "fusion"), ("visible", "visible"), ("thermal", "infrared")):
        dets = []
        path = msrs_root / split / "labels" / folder / f"{name}.txt"
        for line in path.read_text().splitlines():
            f = line.split()
            if len(f) != 5:
                continue
            c, cx, cy, w, h = int(f[0]), *map(float, f[1:])
            box = [max(0.0, cx - w / 2), max(0.0, cy - h / 2), min(1.0, cx + w / 2), min(1.0, cy + h / 2)]
            dets.append({"box": box, "score": 0.9, "class_id": c})
        out[branch] = dets
    return out


def manifest_for(files: dict[str, bytes], *, device_id: str = "pole-1", score: float = 0.5,
                 captured_at: float = 1_764_131_234.5, model_version: str = "v1",
                 image_size: tuple[int, int] = (96, 72), predictions: dict | None = None,
                 selection: dict | None = None) -> dict:
    """A manifest of schema 1, or of schema 2 when ``selection`` ({"policy", "score"}) is given."""
    if predictions is None:
        predictions = {"fused": [{"box": [0.1, 0.2, 0.4, 0.8], "score": 0.8, "class_id": 0}],
                       "visible": [{"box": [0.1, 0.2, 0.4, 0.8], "score": 0.7, "class_id": 0}],
                       "thermal": []}
    return build_manifest(
        device_id=device_id, captured_at={"visible": captured_at, "thermal": captured_at - 0.02},
        model_version=model_version, model_hash=MODEL_HASH, task="detect", score=score,
        image_size=image_size, class_names=CLASS_NAMES, files=files, predictions=predictions,
        **({"selection": selection} if selection is not None else {}),
    )


def multipart(fields: list[tuple[str, bytes, str | None]], boundary: str = "msmineboundary1234") -> tuple[bytes, str]:
    """Encode (name, content, filename) parts; returns (body, content type)."""
    chunks = []
    for name, data, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def upload_body(manifest_bytes: bytes, files: dict[str, bytes]) -> tuple[bytes, str]:
    return multipart([("manifest", manifest_bytes, "manifest.json"),
                      *[(p, files[p], f"{p}.bin") for p in ("visible", "thermal", "heatmap")]])


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest).encode()
