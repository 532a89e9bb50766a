"""Estimate the visible->thermal homography of a camera pair.

Three sources, one result (:class:`calibration.registration_io.Registration`):

* a calibration target seen by both cameras (checkerboard, or symmetric / asymmetric circle grid;
  a heated target often appears inverted in the thermal image, so the thermal image is tried as is
  and inverted),
* a CSV / YAML file of point correspondences,
* nothing but the images (ECC from the identity, for cameras that are already nearly aligned).

The estimate is then refined with ECC (``cv2.findTransformECC``, ``MOTION_HOMOGRAPHY``) on
gradient-magnitude images, coarse to fine. Cross-modality ECC has a weak, broad optimum on
ordinary scenes, so a refinement that moves the image corners by more than ``max_refine_shift_px``
or whose gradient correlation stays below ``min_ecc_correlation`` is rejected (logged) and the
initial estimate is kept; with a target, ECC is restricted to the target's area, where both
modalities show the same strong edges. ECC alone (no target, no points) refuses low-correlation
results instead of writing a wrong registration.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from msmine.calibration.registration_io import Registration, corner_rms, transform_points
from msmine.errors import UserError

log = logging.getLogger(__name__)

TARGETS = ("checkerboard", "circles", "acircles")


@dataclass
class RegisterConfig:
    """Settings of ``msmine calibrate register``."""

    target: str = "checkerboard"  # calibration target: checkerboard | circles | acircles
    pattern: tuple[int, int] = (9, 6)  # inner corners (checkerboard) or circles per row, per column
    refine: bool = True  # refine the estimate with ECC on gradient-magnitude images
    ecc_levels: int = 3  # pyramid levels of the ECC refinement (coarse to fine, factor 2)
    ecc_iterations: int = 200  # ECC iterations per level
    ecc_eps: float = 1e-6  # ECC convergence threshold on the correlation increment
    gradient_sigma: float = 1.5  # Gaussian blur (pixels) before the Sobel gradient magnitude
    max_refine_shift_px: float = 4.0  # reject an ECC refinement that moves the image corners further
    min_ecc_correlation: float = 0.7  # reject an ECC result whose gradient correlation is lower


# ---------------------------------------------------------------- images


def read_image(path: str | Path, gray: bool = False) -> np.ndarray:
    """Read an image as RGB (H x W x 3) or grayscale (H x W) uint8; UserError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot decode image: {path}")
    return img if gray else img[:, :, ::-1].copy()


def to_gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def gradient_magnitude(img: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Blurred Sobel gradient magnitude as float32 scaled to [0, 1]: shared by both modalities."""
    g = cv2.GaussianBlur(to_gray(img).astype(np.float32), (0, 0), sigma)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    return mag / max(float(mag.max()), 1e-6)


# ---------------------------------------------------------------- targets


def detect_target(img: np.ndarray, target: str, pattern: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel target points [N, 2] in the image, or None if the target is not found."""
    if target not in TARGETS:
        raise UserError(f"unknown calibration target {target!r}; expected one of {', '.join(TARGETS)}")
    gray = to_gray(img)
    pattern = (int(pattern[0]), int(pattern[1]))
    if target == "checkerboard":
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCorners(gray, pattern, flags=flags)
        if not found:
            return None
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
        corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria)
        return corners.reshape(-1, 2).astype(np.float64)
    flags = cv2.CALIB_CB_SYMMETRIC_GRID if target == "circles" else cv2.CALIB_CB_ASYMMETRIC_GRID
    found, centers = cv2.findCirclesGrid(gray, pattern, flags=flags)
    if not found:
        return None
    return centers.reshape(-1, 2).astype(np.float64)


def detect_target_pair(visible: np.ndarray, thermal: np.ndarray, target: str, pattern: tuple[int, int]):
    """Target points in both images; the thermal image is also tried inverted (a heated target).

    Returns (visible_points, thermal_points, thermal_inverted). A checkerboard's corner order can
    flip between two views (180 degree ambiguity); the order that gives the smaller homography
    residual is kept.
    """
    pts_v = detect_target(visible, target, pattern)
    if pts_v is None:
        raise UserError(f"{target} {pattern[0]}x{pattern[1]} not found in the visible image")
    gray_t = to_gray(thermal)
    inverted = False
    pts_t = detect_target(gray_t, target, pattern)
    if pts_t is None:
        pts_t = detect_target(255 - gray_t, target, pattern)
        inverted = pts_t is not None
    if pts_t is None:
        raise UserError(f"{target} {pattern[0]}x{pattern[1]} not found in the thermal image (tried inverted too)")
    if len(pts_v) != len(pts_t):
        raise UserError(f"target point counts differ: visible {len(pts_v)}, thermal {len(pts_t)}")
    return pts_v, _match_order(pts_v, pts_t, pattern, _size(visible), _size(thermal)), inverted


def _match_order(pts_v, pts_t, pattern, visible_size, thermal_size) -> np.ndarray:
    """Reorder the thermal grid points to correspond to the visible ones.

    A symmetric grid can be found in another order in the other view (rotated by 180 degrees or
    mirrored, e.g. when the thermal image is inverted). Every order fits a homography; the right one
    is the upright camera pair's: the homography closest to a plain rescaling of the image.
    """
    cols, rows = int(pattern[0]), int(pattern[1])
    grid = pts_t.reshape(rows, cols, 2) if rows * cols == len(pts_t) else None
    candidates = [pts_t, pts_t[::-1]]
    if grid is not None:
        candidates += [grid[::-1].reshape(-1, 2), grid[:, ::-1].reshape(-1, 2)]
    scale = np.diag([thermal_size[0] / visible_size[0], thermal_size[1] / visible_size[1], 1.0])
    fits = [(_fit(pts_v, cand), cand) for cand in candidates]
    best_rms = min(rms for (_, rms), _ in fits)
    plausible = [(hom, cand) for (hom, rms), cand in fits if rms <= 2 * best_rms + 0.5]
    hom, best = min(plausible, key=lambda hc: corner_rms(hc[0], scale, *visible_size))
    return best


# ---------------------------------------------------------------- correspondences


def _fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    hom, _ = cv2.findHomography(src, dst, 0)
    if hom is None:
        return np.eye(3), float("inf")
    err = transform_points(src, hom) - dst
    return hom, float(np.sqrt(np.mean(np.sum(err**2, axis=1))))


def homography_from_points(src: np.ndarray, dst: np.ndarray, ransac_px: float = 3.0) -> tuple[np.ndarray, float]:
    """Least-squares homography src->dst (RANSAC to drop outliers when there are >= 8 points).

    Returns (H, rms reprojection error of the inliers in pixels).
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(src) < 4:
        raise UserError(f"a homography needs at least 4 point correspondences, got {len(src)}")
    if len(src) >= 8:
        hom, inliers = cv2.findHomography(src, dst, cv2.RANSAC, ransac_px)
        if hom is not None and inliers is not None and inliers.sum() >= 4:
            keep = inliers.ravel().astype(bool)
            if not keep.all():
                log.info("RANSAC dropped %d of %d correspondences as outliers", int((~keep).sum()), len(keep))
            src, dst = src[keep], dst[keep]
    hom, rms = _fit(src, dst)
    if not np.isfinite(rms):
        raise UserError("the point correspondences are degenerate (collinear or repeated points)")
    return hom / hom[2, 2], rms


def load_correspondences(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read point correspondences visible (x, y) -> thermal (x, y).

    CSV: one row per point, ``vx,vy,tx,ty`` (a header row is allowed).
    YAML: ``{visible: [[x, y], ...], thermal: [[x, y], ...]}`` or ``{points: [[vx, vy, tx, ty], ...]}``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"correspondence file not found: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        rows = []
        for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                values = [float(c) for c in row]
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise UserError(f"{path}:{lineno}: expected 4 numbers vx,vy,tx,ty, got {row!r}") from None
            if len(values) != 4:
                raise UserError(f"{path}:{lineno}: expected 4 numbers vx,vy,tx,ty, got {len(values)}")
            rows.append(values)
        arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
        return arr[:, :2], arr[:, 2:]
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"correspondence file {path} is not valid YAML: {exc}") from None
        try:
            if isinstance(data, dict) and "points" in data:
                arr = np.asarray(data["points"], dtype=np.float64).reshape(-1, 4)
                return arr[:, :2], arr[:, 2:]
            if isinstance(data, dict) and "visible" in data and "thermal" in data:
                vis = np.asarray(data["visible"], dtype=np.float64).reshape(-1, 2)
                th = np.asarray(data["thermal"], dtype=np.float64).reshape(-1, 2)
                if len(vis) != len(th):
                    raise UserError(f"{path}: {len(vis)} visible points but {len(th)} thermal points")
                return vis, th
        except (TypeError, ValueError) as exc:
            raise UserError(f"correspondence file {path}: points must be numbers: {exc}") from None
        raise UserError(f"correspondence file {path}: expected keys 'visible' + 'thermal' or 'points'")
    raise UserError(f"correspondence file {path}: expected a .csv, .yaml or .yml file")


# ---------------------------------------------------------------- ECC refinement


def refine_ecc(
    visible: np.ndarray,
    thermal: np.ndarray,
    hom_init: np.ndarray,
    cfg: RegisterConfig,
    thermal_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Refine a visible->thermal homography by ECC on gradient magnitudes, coarse to fine.

    The visible gradient image is the ECC template and the thermal one the input, so ECC's warp
    (template coordinates -> input coordinates) is the visible->thermal homography itself.
    ``thermal_mask`` (uint8, thermal frame) limits the pixels ECC compares. Returns (H, correlation);
    raises ``cv2.error`` subclasses as RuntimeError if ECC does not converge.
    """
    grad_v = gradient_magnitude(visible, cfg.gradient_sigma)
    grad_t = gradient_magnitude(thermal, cfg.gradient_sigma)
    th, tw = grad_t.shape
    if grad_v.shape != grad_t.shape:
        # ECC needs equal sizes: bring the visible template to the thermal size (and fold the scale in)
        vh, vw = grad_v.shape
        grad_v = cv2.resize(grad_v, (tw, th), interpolation=cv2.INTER_AREA)
        to_vis = np.diag([vw / tw, vh / th, 1.0])
    else:
        to_vis = np.eye(3)
    mask = np.full((th, tw), 255, np.uint8) if thermal_mask is None else thermal_mask
    warp = (np.asarray(hom_init, dtype=np.float64) @ to_vis).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.ecc_iterations, cfg.ecc_eps)
    corr = float("nan")
    for level in range(max(cfg.ecc_levels, 1) - 1, -1, -1):
        scale = 2**level
        size = (max(tw // scale, 8), max(th // scale, 8))
        down = np.diag([1.0 / scale, 1.0 / scale, 1.0]).astype(np.float32)
        up = np.diag([float(scale), float(scale), 1.0]).astype(np.float32)
        tmpl = cv2.resize(grad_v, size, interpolation=cv2.INTER_AREA)
        inp = cv2.resize(grad_t, size, interpolation=cv2.INTER_AREA)
        # compare only where both cameras see: the visible footprint under the current estimate
        footprint = cv2.warpPerspective(np.full(tmpl.shape, 255, np.uint8), down @ warp @ up, size,
                                        flags=cv2.INTER_NEAREST)
        footprint = cv2.erode(footprint, np.ones((5, 5), np.uint8))
        msk = cv2.bitwise_and(cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), footprint)
        try:
            corr, warp_l = cv2.findTransformECC(tmpl, inp, down @ warp @ up, cv2.MOTION_HOMOGRAPHY, criteria, msk, 5)
        except cv2.error as exc:
            raise RuntimeError(f"ECC did not converge at pyramid level {level}: {exc}") from None
        warp = up @ warp_l @ down
    hom = warp.astype(np.float64) @ np.linalg.inv(to_vis)
    return hom / hom[2, 2], float(corr)


def _guarded_refine(visible, thermal, hom, cfg: RegisterConfig, thermal_mask=None) -> tuple[np.ndarray, bool]:
    """ECC refinement that falls back to ``hom`` if ECC fails or drifts too far."""
    th, tw = thermal.shape[:2]
    try:
        refined, corr = refine_ecc(visible, thermal, hom, cfg, thermal_mask)
    except RuntimeError as exc:
        log.warning("ECC refinement skipped: %s", exc)
        return hom, False
    if not corr >= cfg.min_ecc_correlation:
        log.warning("ECC refinement rejected: gradient correlation %.3f < min_ecc_correlation=%.2f; keeping the "
                    "initial estimate", corr, cfg.min_ecc_correlation)
        return hom, False
    vh, vw = visible.shape[:2]
    shift = corner_rms(refined, hom, vw, vh)
    if not np.isfinite(shift) or shift > cfg.max_refine_shift_px:
        log.warning(
            "ECC refinement rejected: it moves the image corners by %.2f px (> max_refine_shift_px=%.1f); "
            "keeping the initial estimate", shift, cfg.max_refine_shift_px,
        )
        return hom, False
    log.info("ECC refinement: correlation %.3f, corners moved by %.2f px", corr, shift)
    return refined, True


def _hull_mask(points: np.ndarray, shape: tuple[int, int], margin: int = 15) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    return cv2.dilate(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))


# ---------------------------------------------------------------- entry points


def _size(img: np.ndarray) -> tuple[int, int]:
    return int(img.shape[1]), int(img.shape[0])


def register_from_target(visible: np.ndarray, thermal: np.ndarray, cfg: RegisterConfig) -> Registration:
    """Homography from a target seen by both cameras, refined by ECC inside the target's area."""
    pts_v, pts_t, inverted = detect_target_pair(visible, thermal, cfg.target, cfg.pattern)
    hom, rms = homography_from_points(pts_v, pts_t)
    method = cfg.target + ("(inverted thermal)" if inverted else "")
    if cfg.refine:
        refined, accepted = _guarded_refine(visible, thermal, hom, cfg, _hull_mask(pts_t, thermal.shape[:2]))
        if accepted:
            hom, method = refined, method + "+ecc"
            err = transform_points(pts_v, hom) - pts_t
            rms = float(np.sqrt(np.mean(np.sum(err**2, axis=1))))
    return Registration(hom, _size(visible), _size(thermal), rms, method)


def register_from_points(
    src: np.ndarray, dst: np.ndarray, visible_size: tuple[int, int], thermal_size: tuple[int, int],
    visible: np.ndarray | None = None, thermal: np.ndarray | None = None, cfg: RegisterConfig | None = None,
) -> Registration:
    """Homography from point correspondences; ECC-refined when the images are given."""
    cfg = cfg or RegisterConfig()
    hom, rms = homography_from_points(src, dst)
    method = "points"
    if cfg.refine and visible is not None and thermal is not None:
        refined, accepted = _guarded_refine(visible, thermal, hom, cfg)
        if accepted:
            hom, method = refined, "points+ecc"
            err = transform_points(src, hom) - dst
            rms = float(np.sqrt(np.mean(np.sum(err**2, axis=1))))
    return Registration(hom, visible_size, thermal_size, rms, method)


def register_by_ecc(visible: np.ndarray, thermal: np.ndarray, cfg: RegisterConfig,
                    hom_init: np.ndarray | None = None) -> Registration:
    """ECC alone, from ``hom_init`` (identity + size scaling by default): nearly aligned cameras only.

    Raises UserError when the final gradient correlation is below ``min_ecc_correlation`` (ordinary
    visible/thermal scenes: too little shared structure). rms_px is not measurable without
    correspondences and is written as NaN.
    """
    (vw, vh), (tw, th) = _size(visible), _size(thermal)
    init = np.diag([tw / vw, th / vh, 1.0]) if hom_init is None else np.asarray(hom_init, dtype=np.float64)
    try:
        hom, corr = refine_ecc(visible, thermal, init, cfg)
    except RuntimeError as exc:
        raise UserError(f"ECC registration failed: {exc}") from None
    if not corr >= cfg.min_ecc_correlation:
        # measured on real MSRS pairs: the same modality reaches > 0.99, visible vs thermal scenes < 0.5
        # (and then drift by tens of pixels): refuse rather than write a wrong registration
        raise UserError(f"ECC registration failed: gradient correlation {corr:.3f} < {cfg.min_ecc_correlation} — the "
                        "images share too little structure to register without a target; use --target/--pattern "
                        "with a heated calibration target, or --points")
    log.info("ECC registration: correlation %.3f", corr)
    return Registration(hom, (vw, vh), (tw, th), float("nan"), "ecc")
