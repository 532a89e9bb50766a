"""A built-in synthetic visible + thermal camera pair: a meaningful stand-in for real cameras.

Warm people, bicycles and cars move across a street; the thermal image shows them bright on a
cooler background, the visible image shows them in day colours. Scenes change in *episodes*
(a few seconds each) with a condition that makes one modality fail, so the model's branches
really disagree sometimes and mining has events to find:

* ``day``       both modalities see every object;
* ``night``     the visible image is dark and noisy: the visible camera sees nothing;
* ``glare``     a saturated bloom (sun, headlights) hides the objects under it in visible;
* ``smoke``     a low-contrast haze hides the objects in visible (long-wave infrared sees through);
* ``crossover`` thermal crossover: objects are at the background's temperature, invisible in thermal.

Everything is a deterministic function of ``(seed, t)``, so the visible and thermal "cameras" can
render in separate threads and still show the same scene. Rendering is OpenCV drawing on cached
backgrounds (well under 2 ms a frame at 640x480).

:func:`synthetic_dataset` makes labelled pairs (boxes per modality and fused) for training a tiny
model; :func:`write_msrs_layout` writes them in the MSRS dataset layout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

CLASS_NAMES = ("person", "bicycle", "car")
CONDITIONS = ("day", "night", "glare", "smoke", "crossover")
CONDITION_P = (0.4, 0.2, 0.15, 0.15, 0.1)
HORIZON = 0.45  # fraction of the height where the road starts


@dataclass(frozen=True)
class _Object:
    cls: int  # class id (0 person, 1 bicycle, 2 car)
    x0: float  # centre x at the episode's start, in widths
    vx: float  # horizontal speed, widths per second
    y: float  # bottom of the object, in heights (depth: lower = closer = larger)
    colour: tuple[int, int, int]  # visible body colour (BGR)
    temp: int  # thermal body intensity


@dataclass(frozen=True)
class _Episode:
    condition: str
    objects: tuple[_Object, ...]
    glare: tuple[float, float, float]  # glare centre x, y (fractions) and radius (fraction of width)
    sky: tuple[int, int, int]  # visible sky colour
    road: int  # visible road grey level
    bg_temp: int  # thermal background (road) intensity
    buildings: tuple[tuple[float, float, float, int], ...]  # x, width, height (fractions), grey


class SyntheticPair(NamedTuple):
    visible: np.ndarray  # H x W x 3 uint8, BGR
    thermal: np.ndarray  # H x W uint8
    boxes_visible: np.ndarray  # [M, 4] float32, x1 y1 x2 y2 normalised: objects the visible image shows
    boxes_thermal: np.ndarray  # same, objects the thermal image shows
    boxes_fused: np.ndarray  # every object
    labels_visible: np.ndarray  # [M] int64 class ids
    labels_thermal: np.ndarray
    labels_fused: np.ndarray
    condition: str  # day | night | glare | smoke | crossover


def _size_tuple(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    w, h = size
    return int(w), int(h)


class SyntheticScene:
    """The scene shared by the two synthetic cameras. ``size`` is (width, height)."""

    def __init__(self, seed: int = 0, size: int | tuple[int, int] = (640, 480), episode_s: float = 4.0) -> None:
        self.seed = int(seed)
        self.width, self.height = _size_tuple(size)
        self.episode_s = float(episode_s)
        noise_rng = np.random.default_rng([self.seed, 1 << 20])
        self._noise = [noise_rng.integers(0, 40, (self.height, self.width, 3), dtype=np.uint8) for _ in range(4)]
        self._fpn = noise_rng.integers(0, 8, (self.height, self.width), dtype=np.uint8)

    # -- scene state ---------------------------------------------------------------------------

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a handful of episodes per scene, freed with it
    def episode(self, k: int) -> _Episode:
        rng = np.random.default_rng([self.seed, k])
        condition = CONDITIONS[int(rng.choice(len(CONDITIONS), p=CONDITION_P))]
        objects = []
        for _ in range(int(rng.integers(1, 5))):
            cls = int(rng.choice(3, p=(0.5, 0.2, 0.3)))
            direction = 1.0 if rng.random() < 0.5 else -1.0
            speed = {0: 0.03, 1: 0.08, 2: 0.15}[cls] * float(rng.uniform(0.6, 1.4))
            objects.append(_Object(
                cls=cls,
                x0=float(rng.uniform(0.1, 0.9)),
                vx=direction * speed,
                y=float(rng.uniform(HORIZON + 0.15, 0.98)),
                colour=tuple(int(c) for c in rng.integers(30, 230, 3)),
                temp=int(rng.integers(190, 240)) if cls != 2 else int(rng.integers(150, 200)),
            ))
        buildings = tuple(
            (float(rng.uniform(0, 1)), float(rng.uniform(0.08, 0.2)), float(rng.uniform(0.1, 0.35)), int(rng.integers(70, 170)))
            for _ in range(int(rng.integers(2, 6)))
        )
        return _Episode(
            condition=condition,
            objects=tuple(objects),
            glare=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.15, 0.3))),
            sky=tuple(int(c) for c in rng.integers(150, 240, 3)),
            road=int(rng.integers(80, 130)),
            bg_temp=int(rng.integers(60, 110)),
            buildings=buildings,
        )

    def condition_at(self, t: float) -> str:
        return self.episode(int(t // self.episode_s)).condition

    def _boxes(self, ep: _Episode, t_in: float) -> list[tuple[int, tuple[int, int, int, int], _Object]]:
        """(class, pixel box x1 y1 x2 y2, object) for every object at least partly in view."""
        w, h = self.width, self.height
        out = []
        for obj in ep.objects:
            scale = (obj.y - HORIZON) / (1 - HORIZON)  # 0 at the horizon, 1 at the bottom
            oh = {0: 0.45, 1: 0.4, 2: 0.35}[obj.cls] * h * scale
            ow = {0: 0.35, 1: 0.9, 2: 1.8}[obj.cls] * oh
            cx = (obj.x0 + obj.vx * t_in) * w
            x1, x2 = int(cx - ow / 2), int(cx + ow / 2)
            y2 = int(obj.y * h)
            y1 = int(y2 - oh)
            vis_w = min(x2, w - 1) - max(x1, 0)
            if ow < 4 or oh < 4 or vis_w < 0.3 * ow:
                continue
            out.append((obj.cls, (x1, y1, x2, y2), obj))
        out.sort(key=lambda item: item[2].y)  # far objects first, near ones drawn over them
        return out

    def _split(self, t: float) -> tuple[_Episode, float]:
        k = int(t // self.episode_s)
        return self.episode(k), t - k * self.episode_s

    # -- backgrounds (cached per episode) ------------------------------------------------------

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def _visible_background(self, ep: _Episode) -> np.ndarray:
        w, h = self.width, self.height
        img = np.empty((h, w, 3), np.uint8)
        hy = int(HORIZON * h)
        img[:hy] = ep.sky
        img[hy:] = ep.road
        for x, bw, bh, grey in ep.buildings:
            cv2.rectangle(img, (int(x * w), int(hy - bh * h)), (int((x + bw) * w), hy), (grey, grey, grey + 10), -1)
        for i in range(0, w, max(w // 8, 1)):  # lane markings
            cv2.line(img, (i, int(0.75 * h)), (i + w // 16, int(0.75 * h)), (230, 230, 230), max(h // 120, 1))
        return img

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def _thermal_background(self, ep: _Episode) -> np.ndarray:
        w, h = self.width, self.height
        img = np.empty((h, w), np.uint8)
        hy = int(HORIZON * h)
        img[:hy] = 25  # cold sky
        img[hy:] = ep.bg_temp
        for x, bw, bh, _ in ep.buildings:
            cv2.rectangle(img, (int(x * w), int(hy - bh * h)), (int((x + bw) * w), hy), ep.bg_temp + 15, -1)
        return cv2.add(img, self._fpn)

    # -- rendering -----------------------------------------------------------------------------

    def render_visible(self, t: float) -> np.ndarray:
        ep, t_in = self._split(t)
        img = self._visible_background(ep).copy()
        for cls, box, obj in self._boxes(ep, t_in):
            _draw_object(img, cls, box, obj.colour, (40, 40, 40), (200, 170, 150))
        noise = self._noise[int(t * 30) % len(self._noise)]
        if ep.condition == "night":
            img = cv2.add(cv2.convertScaleAbs(img, alpha=0.1), noise)
        elif ep.condition == "glare":
            gx, gy, gr = ep.glare
            centre, r = (int(gx * self.width), int(gy * self.height)), int(gr * self.width)
            for frac, level in ((1.6, 200), (1.3, 225), (1.0, 255)):
                cv2.circle(img, centre, int(r * frac), (level, level, level), -1)
        elif ep.condition == "smoke":
            img = cv2.addWeighted(img, 0.12, noise, 0.5, 150)
        return img

    def render_thermal(self, t: float) -> np.ndarray:
        ep, t_in = self._split(t)
        img = self._thermal_background(ep).copy()
        for cls, box, obj in self._boxes(ep, t_in):
            if ep.condition == "crossover":
                body = ep.bg_temp + 6
                _draw_object(img, cls, box, body, body + 4, body + 3)
            else:
                _draw_object(img, cls, box, obj.temp, 120 if cls == 2 else obj.temp, min(obj.temp + 15, 255))
        return cv2.GaussianBlur(img, (5, 5), 0)

    def labels(self, t: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per modality (visible, thermal, fused): normalised x1 y1 x2 y2 boxes and class ids at ``t``."""
        ep, t_in = self._split(t)
        w, h = self.width, self.height
        out: dict[str, list] = {"visible": [], "thermal": [], "fused": []}
        gx, gy, gr = ep.glare
        for cls, (x1, y1, x2, y2), _ in self._boxes(ep, t_in):
            box = (max(x1, 0) / w, max(y1, 0) / h, min(x2, w - 1) / w, min(y2, h - 1) / h)
            out["fused"].append((box, cls))
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            under_glare = np.hypot(cx - gx * w, cy - gy * h) < 1.6 * gr * w
            visible_fails = ep.condition in ("night", "smoke") or (ep.condition == "glare" and under_glare)
            if not visible_fails:
                out["visible"].append((box, cls))
            if ep.condition != "crossover":
                out["thermal"].append((box, cls))
        return {
            k: (np.array([b for b, _ in v], np.float32).reshape(-1, 4), np.array([c for _, c in v], np.int64))
            for k, v in out.items()
        }


def _draw_object(img: np.ndarray, cls: int, box: tuple[int, int, int, int], body, dark, head) -> None:
    """Draw a person, a bicycle (with rider) or a car in the box; colours are BGR tuples or grey ints."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    cx = (x1 + x2) // 2
    if cls == 0:
        r = max(bh // 10, 1)
        cv2.circle(img, (cx, y1 + r), r, head, -1)
        cv2.ellipse(img, (cx, y1 + 2 * r + (bh - 2 * r) // 2), (max(bw // 2, 1), max((bh - 2 * r) // 2, 1)), 0, 0, 360, body, -1)
    elif cls == 1:
        r = max(bh // 5, 1)
        cv2.circle(img, (x1 + r, y2 - r), r, dark, max(r // 4, 1))
        cv2.circle(img, (x2 - r, y2 - r), r, dark, max(r // 4, 1))
        cv2.line(img, (x1 + r, y2 - r), (cx, y2 - 2 * r), dark, max(r // 4, 1))
        cv2.line(img, (x2 - r, y2 - r), (cx, y2 - 2 * r), dark, max(r // 4, 1))
        hr = max(bh // 10, 1)
        cv2.circle(img, (cx, y1 + hr), hr, head, -1)
        cv2.rectangle(img, (cx - bw // 8, y1 + 2 * hr), (cx + bw // 8, y2 - 2 * r), body, -1)
    else:
        r = max(bh // 5, 1)
        cv2.rectangle(img, (x1, y1 + bh // 3), (x2, y2 - r // 2), body, -1)
        cv2.rectangle(img, (x1 + bw // 5, y1), (x2 - bw // 5, y1 + bh // 3), body, -1)
        cv2.rectangle(img, (x1 + bw // 4, y1 + bh // 12), (x2 - bw // 4, y1 + bh // 3), dark, -1)
        cv2.circle(img, (x1 + bw // 5, y2 - r), r, dark, -1)
        cv2.circle(img, (x2 - bw // 5, y2 - r), r, dark, -1)


def synthetic_dataset(n: int, size: int | tuple[int, int] = (320, 240), seed: int = 0) -> list[SyntheticPair]:
    """``n`` labelled synthetic pairs (``size`` = (width, height) or one int), one per episode."""
    scene = SyntheticScene(seed=seed, size=size)
    rng = np.random.default_rng([seed, 7])
    pairs = []
    for i in range(n):
        t = (i + float(rng.uniform(0.05, 0.95))) * scene.episode_s
        labels = scene.labels(t)
        pairs.append(SyntheticPair(
            visible=scene.render_visible(t),
            thermal=scene.render_thermal(t),
            boxes_visible=labels["visible"][0],
            boxes_thermal=labels["thermal"][0],
            boxes_fused=labels["fused"][0],
            labels_visible=labels["visible"][1],
            labels_thermal=labels["thermal"][1],
            labels_fused=labels["fused"][1],
            condition=scene.condition_at(t),
        ))
    return pairs


def write_msrs_layout(pairs: list[SyntheticPair], root: str | Path, split: str = "train") -> Path:
    """Write pairs in the MSRS layout (``classes.txt``, images, YOLO labels per modality)."""
    root = Path(root)
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    for sub in ("visible", "infrared", "labels/visible", "labels/infrared", "labels/fusion"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pairs):
        name = f"{i:05d}{'N' if p.condition == 'night' else 'D'}"
        cv2.imwrite(str(root / split / "visible" / f"{name}.png"), p.visible)
        cv2.imwrite(str(root / split / "infrared" / f"{name}.png"), p.thermal)
        for folder, boxes, labels in (
            ("visible", p.boxes_visible, p.labels_visible),
            ("infrared", p.boxes_thermal, p.labels_thermal),
            ("fusion", p.boxes_fused, p.labels_fused),
        ):
            lines = [
                f"{c} {(b[0] + b[2]) / 2:.6f} {(b[1] + b[3]) / 2:.6f} {b[2] - b[0]:.6f} {b[3] - b[1]:.6f}"
                for b, c in zip(boxes, labels)
            ]
            (root / split / "labels" / folder / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return root
