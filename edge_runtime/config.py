"""The device's typed configuration and the parsers for its compact command-line values.

``EdgeConfig`` holds every setting of one ``edge-runtime`` run. It loads from defaults, a YAML file
(``--config``) and ``--set key=value`` through :func:`msmine.config.load_config`; explicit flags win.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from msmine.errors import UserError
from msmine.strategies import DEVICE_NAMES as DEVICE_STRATEGIES
from msmine.wire import DEVICE_ID_RE

BUDGET_WINDOWS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "day": 86400.0, "d": 86400.0,
    "run": math.inf,  # a fixed total for the whole run: the bucket never refills
}
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass
class EdgeConfig:
    cameras: str = ""  # "visible=SRC,thermal=SRC" (V4L2 index or /dev/videoN, URL, video file, image folder, synthetic)
    model: str = ""  # path of the exported ONNX model (or .engine/.plan); empty: fetch the latest from --server
    backend: str = "auto"  # auto | cpu | cuda | tensorrt
    threads: int = 0  # onnxruntime intra-op threads (0 = onnxruntime's default)
    ort_spin: bool = False  # let idle onnxruntime threads spin-wait (faster alone; steals CPU from capture on small CPUs)
    max_batch: int = 4  # micro-batch size when pairs queue up in front of the model
    realtime: bool = False  # replay files at their own frame rate (default: as fast as possible)
    duration_s: float = 0.0  # stop after this many seconds (0 = until end of file / signal)
    pair_tolerance_ms: float = 25.0  # two frames pair when their capture times differ by at most this
    registration: str = ""  # YAML from `msmine calibrate register` (visible -> thermal homography)
    reopen_backoff_s: float = 1.0  # first wait before reopening a lost camera (doubles up to 30 s)
    stall_timeout_s: float = 3.0  # a live camera with no frame for this long is reopened
    budget: str = "100/hour"  # upload budget N/s | N/min | N/hour | N/day | N/run
    decision_delay_s: float = 2.0  # a candidate waits this long for a better one (inf = until the end)
    suppression_gap_s: float = 1.0  # above-threshold frames closer than this are one event (0 = off)
    buffer_size: int = 32  # bounded candidate buffer
    adaptive_threshold: bool = True  # track a threshold admitting target_rate_factor x the budget rate
    target_rate_factor: float = 2.0  # candidates per budgeted upload the adaptive threshold admits
    threshold: float = 0.0  # initial (or, when not adaptive, fixed) score threshold
    threshold_file: str = ""  # threshold.yaml from `msmine calibrate threshold`: its threshold, fixed (adaptive off)
    score: str = "inconsistency"  # inconsistency | entropy | combined | random, optionally .VARIANT (msmine.strategies)
    score_variant: str = ""  # image score variant: paper | topk | topk_level | detection_sum | detection_max | region | region_topk ("" = the one in --score, else paper)
    variant_k: int = 50  # k of the topk / topk_level / region_topk variants
    variant_floor: float = 0.5  # confidence floor of the detection_sum / detection_max variants
    class_weights: str = ""  # detection_* / region* variants: NAME=W,... or W,W,... in the model's class order ("" = all 1)
    sampling_beta: float = math.inf  # power sampling within the budget: a token goes by score ** beta (inf = best first)
    normalize_strata: str = "off"  # rank by the z-score within day / night: off | illumination | time
    night_luminance: float = 0.25  # illumination strata: night when the visible image's mean luminance is below this
    night_hours: str = "19-7"  # time strata: local capture hours START-END counted as night
    combined_weight: float = 0.5  # combined = inconsistency + weight x entropy
    seed: int = 0  # seed of the random score policy
    spool_dir: str = ""  # where kept pairs are written durably before upload (default: $XDG_STATE_HOME/msmine/spool)
    spool_max_bytes: str = "2G"  # spool size cap (suffix k/M/G); lowest-scoring pairs are evicted first
    image_format: str = "png"  # png (lossless) | jpeg
    jpeg_quality: int = 95  # JPEG quality when image_format is jpeg
    server: str = ""  # collection server base URL (empty: spool only)
    token: str = ""  # device token (default: $MSMINE_TOKEN)
    device_id: str = ""  # device id in manifests (default: the token's device, asked from the server; else the host name)
    resend_refused: bool = False  # at start, re-send pairs the server refused (after fixing the token or device id)
    upload_kbps: float = 0.0  # upload bandwidth cap in kilobits/s (0 = none)
    upload_timeout_s: float = 30.0  # HTTP timeout of one upload
    backoff_max_s: float = 300.0  # longest wait between upload retries while the server is down
    drain_timeout_s: float = 10.0  # at stop, keep uploading the spool this long before exiting
    model_poll_s: float = 300.0  # poll the server for a newer model this often (0 = never)
    model_dir: str = ""  # where downloaded models go (default: <spool_dir>/models)
    detections: str = "-"  # fused detections as JSON lines: "-" stdout, a file path, unix:/path.sock, "" off
    det_threshold: float = 0.25  # detection score threshold for the JSON lines and pre-annotations
    nms_iou: float = 0.5  # class-wise NMS IoU threshold
    metrics_port: int = 0  # Prometheus endpoint port (0 = off)
    metrics_host: str = "127.0.0.1"  # Prometheus endpoint address
    location: str = ""  # optional "lat,lon" put in every manifest


def parse_budget(text: str) -> tuple[int, float]:
    """``"100/hour"`` -> ``(100, 3600.0)``; ``"5/run"`` -> ``(5, inf)``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*([A-Za-z]+)\s*", str(text))
    if not m or m.group(2).lower() not in BUDGET_WINDOWS:
        raise UserError(
            f"bad --budget {text!r}: expected N/s, N/min, N/hour, N/day or N/run with N a whole number, e.g. 100/hour"
        )
    return int(m.group(1)), BUDGET_WINDOWS[m.group(2).lower()]


def parse_size(text: str | int) -> int:
    """``"2G"`` -> 2147483648 bytes; plain integers are bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?\s*", str(text))
    if not m:
        raise UserError(f"bad size {text!r}: expected bytes or a number with k/M/G/T, e.g. 2G")
    value = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    if value <= 0:
        raise UserError(f"bad size {text!r}: must be positive")
    return value


def parse_location(text: str) -> dict[str, float] | None:
    if not text:
        return None
    try:
        lat, lon = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"bad --location {text!r}: expected LAT,LON, e.g. 48.11,-1.68") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UserError(f"bad --location {text!r}: latitude must lie in [-90, 90], longitude in [-180, 180]")
    return {"lat": lat, "lon": lon}


def default_spool_dir() -> Path:
    """The per-user state directory's spool: ``$XDG_STATE_HOME/msmine/spool`` or ``~/.local/state/msmine/spool``."""
    state = os.environ.get("XDG_STATE_HOME") or ""
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "msmine" / "spool"


def default_device_id() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64]
    return name or "edge"


def apply_threshold_file(cfg: EdgeConfig) -> EdgeConfig:
    """With ``threshold_file``: the calibrated threshold, fixed (no adaptation); its score must be cfg.score."""
    if not cfg.threshold_file:
        return cfg
    from msmine.calibration_files import load_threshold

    calibrated = load_threshold(cfg.threshold_file)
    if cfg.normalize_strata != "off":
        raise UserError(f"threshold file {cfg.threshold_file} holds a threshold on raw scores, but "
                        f"--normalize-strata {cfg.normalize_strata} ranks by z-scores; use one of them")
    ranked = score_spec(cfg).name  # with a score variant: inconsistency.topk, not the paper's scale
    if calibrated.score_key in DEVICE_STRATEGIES and calibrated.score_key != ranked:
        raise UserError(f"threshold file {cfg.threshold_file} was calibrated on {calibrated.score_key!r} scores, "
                        f"but --score is {ranked!r}")
    return dataclasses.replace(cfg, threshold=calibrated.threshold, adaptive_threshold=False)


def score_spec(cfg: EdgeConfig):
    """The strategy and score variant the device ranks by (``msmine.strategies.Spec``): ``--score``
    (``name`` or ``name.variant``) with ``--score-variant``; a one-line UserError otherwise."""
    from msmine.strategies import DEFAULT_VARIANT, Spec, get_variant, parse_spec

    if cfg.score.replace(":", ".").partition(".")[0].strip() not in DEVICE_STRATEGIES:
        raise UserError(f"bad score {cfg.score!r}: expected one of {', '.join(DEVICE_STRATEGIES)} "
                        f"(optionally .VARIANT, a --score-variant)")
    spec = parse_spec(cfg.score, DEVICE_STRATEGIES, "--score")
    if cfg.score_variant:
        get_variant(cfg.score_variant)
        if spec.variant != DEFAULT_VARIANT and spec.variant != cfg.score_variant:
            raise UserError(f"--score {cfg.score} names variant {spec.variant!r} but --score-variant is "
                            f"{cfg.score_variant!r}; give one")
        spec = parse_spec(f"{spec.strategy.name}.{cfg.score_variant}", DEVICE_STRATEGIES, "--score-variant")
    return Spec(spec.strategy, spec.variant)


@functools.lru_cache(maxsize=8)
def parse_night_hours(text: str) -> tuple[int, int]:
    """``"19-7"`` -> (19, 7): local hours [19, 24) and [0, 7) are night."""
    m = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", str(text))
    if not m or not all(0 <= int(v) <= 23 for v in m.groups()) or m.group(1) == m.group(2):
        raise UserError(f"bad --night-hours {text!r}: expected START-END local hours in 0..23, e.g. 19-7")
    return int(m.group(1)), int(m.group(2))


def check_config(cfg: EdgeConfig) -> None:
    """Reject values a user can get wrong, with one line naming the value."""
    parse_budget(cfg.budget)
    score_spec(cfg)
    parse_night_hours(cfg.night_hours)
    if cfg.normalize_strata not in ("off", "illumination", "time"):
        raise UserError(f"bad normalize_strata {cfg.normalize_strata!r}: expected one of off, illumination, time")
    if not (cfg.sampling_beta >= 0):
        raise UserError(f"bad --sampling-beta {cfg.sampling_beta!r}: must be >= 0 (inf = best first)")
    if cfg.variant_k < 1 or not math.isfinite(cfg.variant_floor):
        raise UserError("bad --variant-k / --variant-floor: k must be >= 1, the floor a finite number")
    if cfg.class_weights.strip():
        from msmine.strategies import WEIGHTED_VARIANTS, parse_class_weights

        if score_spec(cfg).variant not in WEIGHTED_VARIANTS:
            raise UserError(f"--class-weights: applies to the {', '.join(WEIGHTED_VARIANTS)} score variants, "
                            f"not {score_spec(cfg).name!r}")
        if cfg.class_weights.strip() == "inverse":
            parse_class_weights("inverse", [], allow_inverse=False)
    if not 0 <= cfg.night_luminance <= 1:
        raise UserError(f"bad --night-luminance {cfg.night_luminance!r}: must lie in [0, 1]")
    parse_size(cfg.spool_max_bytes)
    parse_location(cfg.location)
    choices = {
        "backend": ("auto", "cpu", "cuda", "tensorrt"),
        "image_format": ("png", "jpeg"),
    }
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise UserError(f"bad {key} {getattr(cfg, key)!r}: expected one of {', '.join(allowed)}")
    if cfg.device_id and not DEVICE_ID_RE.match(cfg.device_id):
        raise UserError(f"bad --device-id {cfg.device_id!r}: use 1-64 of A-Z a-z 0-9 . _ -")
    if cfg.max_batch < 1:
        raise UserError(f"bad --max-batch {cfg.max_batch}: must be >= 1")
    if cfg.buffer_size < 1:
        raise UserError(f"bad --buffer-size {cfg.buffer_size}: must be >= 1")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise UserError(f"bad --jpeg-quality {cfg.jpeg_quality}: must lie in [1, 100]")
    for key in ("pair_tolerance_ms", "duration_s", "upload_kbps", "suppression_gap_s", "model_poll_s",
                "drain_timeout_s", "decision_delay_s"):
        value = getattr(cfg, key)
        if not value >= 0 or (math.isinf(value) and key != "decision_delay_s"):
            raise UserError(f"bad {key} {value!r}: must be a finite number >= 0")
    if not 0 <= cfg.nms_iou <= 1 or not 0 <= cfg.det_threshold <= 1:
        raise UserError("bad --nms-iou / --det-threshold: must lie in [0, 1]")
