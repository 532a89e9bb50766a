"""TensorRT engines from the exported ONNX, cached per device, and a pycuda runner.

Thin on purpose: TensorRT and pycuda come from the device (JetPack / NVIDIA's index) and are
imported lazily, inside the functions that need them. This module imports neither torch nor
anything else of ours but ``msmine.errors``, so the device can use it.

* **Profiles**: one optimisation profile per batch size the device uses; profile i covers the
  batches above the previous size up to its own size and is optimised for that size.
* **Cache key**: TensorRT version + GPU name + compute capability + model hash + precision +
  profiles, so a fleet of mixed devices never loads a wrong engine.
* **Framing**: an engine file is ``MAGIC | uint32 little-endian header length | JSON header | plan``;
  the header carries the model's ``metadata_props`` and the build facts, so the metadata travels
  with the engine and the runtime needs only that file.
* **Runner**: ``activate()`` / ``infer({name: array})`` / ``deactivate()`` (the runner protocol),
  with pinned host buffers, device buffers, a CUDA stream and async copies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msmine.errors import UserError

log = logging.getLogger(__name__)

MAGIC = b"MSMINE-TRT\x00\x01"
_HEADER_LEN = struct.Struct("<I")
MAX_HEADER_BYTES = 16 * 1024 * 1024


# ---------------------------------------------------------------- pure parts (tested without a GPU)


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is specific to."""

    trt_version: str  # tensorrt.__version__
    gpu_name: str  # e.g. "NVIDIA H100 80GB HBM3", "Orin"
    compute_capability: tuple[int, int]  # e.g. (9, 0)


@dataclass(frozen=True)
class Profile:
    """A TensorRT optimisation profile over the batch axis."""

    min_batch: int
    opt_batch: int
    max_batch: int

    def covers(self, batch: int) -> bool:
        return self.min_batch <= batch <= self.max_batch


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


def select_profile(profiles: list[Profile], batch: int) -> int:
    """Index of the profile that serves ``batch`` (the smallest one that covers it)."""
    for index, profile in enumerate(profiles):
        if profile.covers(batch):
            return index
    raise UserError(f"batch {batch} exceeds the engine's largest profile ({profiles[-1].max_batch})")


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


def frame_engine(plan: bytes, header: dict) -> bytes:
    """MAGIC | header length | JSON header | serialized plan."""
    blob = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _HEADER_LEN.pack(len(blob)) + blob + bytes(plan)


def unframe_engine(data: bytes, source: str = "engine") -> tuple[dict, bytes]:
    """-> (header, plan); UserError for a file that is not a framed msmine engine or is truncated."""
    if not data.startswith(MAGIC):
        raise UserError(f"{source} is not an msmine TensorRT engine (bad magic)")
    offset = len(MAGIC)
    if len(data) < offset + _HEADER_LEN.size:
        raise UserError(f"{source} is truncated (no header length)")
    (length,) = _HEADER_LEN.unpack_from(data, offset)
    offset += _HEADER_LEN.size
    if length > MAX_HEADER_BYTES or len(data) < offset + length:
        raise UserError(f"{source} is truncated or corrupt (header of {length} bytes)")
    try:
        header = json.loads(data[offset:offset + length].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{source}: engine header is not JSON: {exc}") from None
    plan = data[offset + length:]
    if not plan:
        raise UserError(f"{source} holds no engine plan")
    return header, plan


class EngineCache:
    """Framed engines in a folder, one file per cache key."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def load(self, key: str) -> tuple[dict, bytes] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        return unframe_engine(path.read_bytes(), str(path))

    def store(self, key: str, plan: bytes, header: dict) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(frame_engine(plan, header))
        tmp.replace(path)
        return path


def unpack_engine(framed_path: str | Path, plan_path: str | Path) -> Path:
    """Write a framed engine as a bare plan + ``<plan>.json`` sidecar (the ONNX metadata_props): the
    two-file form ``edge_runtime.runners_trt`` reads today."""
    framed_path, plan_path = Path(framed_path), Path(plan_path)
    header, plan = unframe_engine(framed_path.read_bytes(), str(framed_path))
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(plan)
    sidecar = plan_path.with_suffix(plan_path.suffix + ".json")
    sidecar.write_text(json.dumps(header.get("metadata", {}), indent=1, sort_keys=True))
    return plan_path


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


# ---------------------------------------------------------------- GPU parts (TensorRT + pycuda)


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError("TensorRT is not installed (it comes with JetPack or NVIDIA's package index)") from None
    return trt


def _import_pycuda():
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise UserError("pycuda is not installed: pip install pycuda (the msmine[gpu] extra)") from None
    cuda.init()
    return cuda


def current_device(device_index: int = 0) -> DeviceInfo:
    trt = _import_tensorrt()
    cuda = _import_pycuda()
    dev = cuda.Device(device_index)
    return DeviceInfo(str(trt.__version__), str(dev.name()), tuple(int(v) for v in dev.compute_capability()))


def build_engine(onnx_path: str | Path, precision: str, profiles: list[Profile], workspace_mb: int = 2048) -> bytes:
    """Serialized TensorRT plan from the ONNX model (fp16; int8 = the QDQ model, explicit quantisation)."""
    trt = _import_tensorrt()
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


class TensorRTRunner:
    """Runs a framed engine: ``activate()``, ``infer({"visible": ..., "thermal": ...})``, ``deactivate()``."""

    def __init__(self, engine_path: str | Path, device_index: int = 0):
        self.engine_path = Path(engine_path)
        self.device_index = device_index
        self.header, self._plan = unframe_engine(self.engine_path.read_bytes(), str(self.engine_path))
        self.metadata: dict[str, str] = dict(self.header.get("metadata", {}))
        self.profiles = [Profile(*p) for p in self.header.get("profiles", [[1, 1, 1]])]
        self.active = False

    def activate(self) -> None:
        trt = _import_tensorrt()
        cuda = _import_pycuda()
        self._cuda, self._trt = cuda, trt
        self._ctx = cuda.Device(self.device_index).make_context()
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self._plan)
        if self._engine is None:
            self._ctx.pop()
            raise UserError(f"{self.engine_path}: TensorRT cannot deserialize it on this device")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._buffers: dict[str, tuple] = {}  # name -> (pinned host array, device allocation)
        self._profile = -1
        self.active = True

    def _buffer(self, name: str, shape: tuple[int, ...]):
        dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
        host, dev = self._buffers.get(name, (None, None))
        if host is None or host.size < int(np.prod(shape)):
            # sized for the largest batch of the profiles, so buffers are allocated once
            full = (self.profiles[-1].max_batch, *shape[1:])
            host = self._cuda.pagelocked_empty(int(np.prod(full)), dtype)
            dev = self._cuda.mem_alloc(host.nbytes)
            self._buffers[name] = (host, dev)
        return host, dev

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.active:
            raise RuntimeError("call activate() before infer()")
        batch = int(next(iter(feeds.values())).shape[0])
        profile = select_profile(self.profiles, batch)
        if profile != self._profile:
            self._context.set_optimization_profile_async(profile, self._stream.handle)
            self._profile = profile
        for name in self._inputs:
            array = np.ascontiguousarray(feeds[name])
            self._context.set_input_shape(name, array.shape)
            host, dev = self._buffer(name, array.shape)
            host[: array.size] = array.ravel()
            self._cuda.memcpy_htod_async(dev, host[: array.size], self._stream)
            self._context.set_tensor_address(name, int(dev))
        shapes = {}
        for name in self._outputs:
            shapes[name] = tuple(self._context.get_tensor_shape(name))
            _, dev = self._buffer(name, shapes[name])
            self._context.set_tensor_address(name, int(dev))
        self._context.execute_async_v3(self._stream.handle)
        results = {}
        for name in self._outputs:
            host, dev = self._buffers[name]
            size = int(np.prod(shapes[name]))
            self._cuda.memcpy_dtoh_async(host[:size], dev, self._stream)
            results[name] = host[:size]
        self._stream.synchronize()
        return {name: results[name].reshape(shapes[name]).copy() for name in self._outputs}

    def deactivate(self) -> None:
        if not self.active:
            return
        for _, dev in self._buffers.values():
            dev.free()
        self._buffers.clear()
        del self._context, self._engine
        self._ctx.pop()
        self.active = False

    def __enter__(self) -> TensorRTRunner:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()
