"""TensorRT engines from the exported ONNX, built and cached per device; their GPU check.

Building only: the engine file format (framing, profiles) and the runner are the runtime layer's,
:mod:`msmine.inference` (``engine_format``, ``TensorRTRunner``), which the device imports too.
TensorRT and pycuda come from the device (JetPack / NVIDIA's index) and are imported lazily, inside
the functions that need them. No torch.

* **Profiles**: one optimisation profile per batch size the device uses; profile i covers the
  batches above the previous size up to its own size and is optimised for that size.
* **Cache key**: TensorRT version + GPU name + compute capability + model hash + precision +
  profiles, so a fleet of mixed devices never loads a wrong engine.
* **Engine file**: :func:`msmine.inference.engine_format.frame_engine`; the header carries the
  model's ``metadata_props`` and the build facts, so the device needs only that file.
* **GPU check**: :func:`check_engine` runs the engine (``TensorRTRunner``) and the ONNX model
  (``OnnxRuntimeRunner``, CPU) on the same feeds and reports the largest difference per output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.inference import OnnxRuntimeRunner, Profile, TensorRTRunner, read_engine, write_engine
from msmine.inference.trt_runner import import_pycuda, import_tensorrt

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- pure parts (tested without a GPU)


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is specific to."""

    trt_version: str  # tensorrt.__version__
    gpu_name: str  # e.g. "NVIDIA H100 80GB HBM3", "Orin"
    compute_capability: tuple[int, int]  # e.g. (9, 0)


def choose_profiles(batch_sizes) -> list[Profile]:
    """One profile per batch size the device uses, covering every batch from 1 to the largest.

    ``[1, 8, 32]`` -> (1, 1, 1), (2, 8, 8), (9, 32, 32): a batch of 5 runs in the profile tuned for 8.
    """
    try:
        sizes = sorted({int(b) for b in batch_sizes})
    except (TypeError, ValueError):
        raise UserError(f"batch sizes must be integers, got {batch_sizes!r}") from None
    if not sizes or sizes[0] < 1:
        raise UserError(f"batch sizes must be >= 1, got {batch_sizes!r}")
    profiles, low = [], 1
    for size in sizes:
        profiles.append(Profile(low, size, size))
        low = size + 1
    return profiles


def onnx_model_hash(path: str | Path) -> str:
    """sha256 of the ONNX file's bytes (first 16 hex digits): the model identity for the cache."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def engine_cache_key(device: DeviceInfo, model_hash: str, precision: str, profiles: list[Profile]) -> str:
    """A file-name-safe key; any difference in device, TensorRT, model or build settings changes it."""
    facts = {
        "trt": device.trt_version, "gpu": device.gpu_name, "cc": list(device.compute_capability),
        "model": model_hash, "precision": precision,
        "profiles": [[p.min_batch, p.opt_batch, p.max_batch] for p in profiles],
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    major, minor = device.compute_capability
    return f"{model_hash}-{precision}-trt{device.trt_version}-sm{major}{minor}-{_slug(device.gpu_name)}-{digest}"


class EngineCache:
    """Framed engines in a folder, one file per cache key."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def load(self, key: str) -> tuple[dict, bytes] | None:
        path = self.path(key)
        return read_engine(path) if path.is_file() else None

    def store(self, key: str, plan: bytes, header: dict) -> Path:
        return write_engine(self.path(key), plan, header)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


# ---------------------------------------------------------------- GPU parts (TensorRT + pycuda)


def current_device(device_index: int = 0) -> DeviceInfo:
    trt = import_tensorrt()
    cuda = import_pycuda()
    dev = cuda.Device(device_index)
    return DeviceInfo(str(trt.__version__), str(dev.name()), tuple(int(v) for v in dev.compute_capability()))


def build_engine(onnx_path: str | Path, precision: str, profiles: list[Profile], workspace_mb: int = 2048) -> bytes:
    """Serialized TensorRT plan from the ONNX model (fp16; int8 = the QDQ model, explicit quantisation)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # layers TensorRT leaves out of INT8 run in FP16
    if precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)  # QDQ nodes carry the scales: no calibrator
    for p in profiles:
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(int(d) for d in tensor.shape[1:])
            profile.set_shape(tensor.name, (p.min_batch, *rest), (p.opt_batch, *rest), (p.max_batch, *rest))
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(plan)


def get_engine(onnx_path: str | Path, cache_dir: str | Path, batch_sizes=(1,), precision: str | None = None,
               device: DeviceInfo | None = None) -> Path:
    """The cached engine file for this model on this device, built on a miss."""
    meta = read_onnx_metadata(onnx_path)
    precision = precision or meta.get("msmine.precision", "fp32")
    profiles = choose_profiles(batch_sizes)
    device = device or current_device()
    key = engine_cache_key(device, onnx_model_hash(onnx_path), precision, profiles)
    cache = EngineCache(cache_dir)
    if cache.path(key).is_file():
        log.info("engine cache hit: %s", cache.path(key))
        return cache.path(key)
    log.info("building a TensorRT %s engine for %s on %s (this takes minutes)", precision, onnx_path, device.gpu_name)
    plan = build_engine(onnx_path, precision, profiles)
    header = {"metadata": meta, "precision": precision, "profiles": [[p.min_batch, p.opt_batch, p.max_batch]
              for p in profiles], "trt_version": device.trt_version, "gpu": device.gpu_name,
              "compute_capability": list(device.compute_capability), "cache_key": key}
    return cache.store(key, plan, header)


def check_engine(engine_path: str | Path, onnx_path: str | Path, feeds: Mapping[str, np.ndarray],
                 device_index: int = 0) -> dict[str, float]:
    """The GPU check: output name -> largest absolute difference between the engine (TensorRT) and
    the ONNX model (onnxruntime, CPU) on ``feeds``; both through the runtime layer's runners."""
    with TensorRTRunner(engine_path, device_index=device_index) as engine, \
            OnnxRuntimeRunner(onnx_path, backend="cpu") as reference:
        got, want = engine.infer(feeds), reference.infer(feeds)
    missing = sorted(set(want) - set(got))
    if missing:
        raise UserError(f"engine {engine_path} lacks output(s) {', '.join(missing)} of {onnx_path}")
    return {name: float(np.max(np.abs(got[name].astype(np.float64) - want[name].astype(np.float64)), initial=0.0))
            for name in want}
