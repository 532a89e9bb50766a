"""Image, mask and image-size readers (OpenCV; errors name the file)."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from msmine.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise UserError(f"missing {what}: {path}")


def read_visible(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB. Grey images are expanded to three channels."""
    path = Path(path)
    _require_file(path, "visible image")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"cannot decode visible image (corrupt or unsupported): {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_thermal(path: Path) -> np.ndarray:
    """H x W x 1 uint8. Colour-encoded thermal files are converted to grey; 16-bit (raw radiometric)
    files are stretched per image from their min..max to 0..255."""
    path = Path(path)
    _require_file(path, "thermal image")
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if grey is None:
        raise UserError(f"cannot decode thermal image (corrupt or unsupported): {path}")
    if grey.dtype != np.uint8:
        grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX, dtype=cv2.CV_8U)
    return grey[:, :, None]


def read_mask(path: Path) -> np.ndarray:
    """H x W uint8 class ids from a single-channel 8-bit PNG."""
    path = Path(path)
    _require_file(path, "segmentation mask")
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise UserError(f"cannot decode segmentation mask (corrupt or unsupported): {path}")
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise UserError(
            f"segmentation mask must be a single-channel 8-bit image of class ids, got shape "
            f"{mask.shape} dtype {mask.dtype}: {path}"
        )
    return mask


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    return None


def _jpeg_size(fh) -> tuple[int, int] | None:
    fh.seek(0)
    if fh.read(2) != b"\xff\xd8":
        return None
    while True:
        byte = fh.read(1)
        while byte and byte != b"\xff":
            byte = fh.read(1)
        while byte == b"\xff":
            byte = fh.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            continue
        length_bytes = fh.read(2)
        if len(length_bytes) != 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = fh.read(5)
            if len(data) != 5:
                return None
            height, width = struct.unpack(">HH", data[1:5])
            return height, width
        fh.seek(length - 2, 1)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image, from the PNG/JPEG header when possible (no decoding)."""
    path = Path(path)
    _require_file(path, "image")
    with open(path, "rb") as fh:
        head = fh.read(32)
        size = _png_size(head) or _jpeg_size(fh)
    if size is not None and size[0] > 0 and size[1] > 0:
        return size
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"cannot decode image (corrupt or unsupported): {path}")
    return int(image.shape[0]), int(image.shape[1])


def find_image(folder: Path, stem: str) -> Path | None:
    """The image `folder/stem.<ext>` for any known extension, or None."""
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def list_images(folder: Path) -> dict[str, Path]:
    """stem -> path for the images directly inside `folder` (sorted by stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"missing image folder: {folder}")
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
            if entry.stem in found:
                raise UserError(f"two images with the same id {entry.stem!r} in {folder}")
            found[entry.stem] = entry
    return found
