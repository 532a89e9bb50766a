"""A framed TensorRT engine (:mod:`.engine_format`) run through pycuda.

TensorRT and pycuda come from the device (JetPack / NVIDIA's index), never from this project's
requirements, so both are imported here, lazily, when a runner is activated.

Threads: the device activates a runner in the main or the model-update thread and calls ``infer()``
and ``deactivate()`` from its inference thread. A CUDA context is current per thread, so the runner
holds the device's primary context (the one TensorRT's CUDA runtime calls use) and pushes it before,
and pops it after, every block of CUDA work in whichever thread calls, never relying on a context
left current by ``pycuda.autoinit`` in another thread (pycuda issue #242). A lock keeps ``infer()``
and ``deactivate()`` from overlapping.

Memory: pinned host buffers and device buffers for every input and output are allocated once, at
``activate()``, for the largest shape of the largest profile; ``infer()`` selects the optimisation
profile that covers the batch and copies asynchronously on one stream, allocating nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.inference.base import RunnerBase, TensorSpec, check_feeds
from msmine.inference.engine_format import Profile, profiles_from_header, read_engine, select_profile

log = logging.getLogger(__name__)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError("TensorRT is not installed: engines need the tensorrt and pycuda packages (tensorrt "
                        "comes with JetPack or NVIDIA's package index); or run the ONNX model with "
                        "--backend tensorrt/cuda/cpu") from None
    return trt


def import_pycuda():
    """pycuda's driver module, initialised; never ``pycuda.autoinit`` (its context is the main thread's only)."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise UserError("pycuda is not installed: pip install pycuda (the msmine[gpu] extra); TensorRT "
                        "engines need it") from None
    cuda.init()
    return cuda


class TensorRTRunner(RunnerBase):
    """Runs a framed engine: ``activate()``, ``infer({"visible": ..., "thermal": ...})``, ``deactivate()``.

    The file is read and checked at construction (no GPU needed): ``header``, ``metadata`` and
    ``profiles`` are known before ``activate()``; after it, the profiles are the engine's own.
    """

    def __init__(self, path: str | Path, device_index: int = 0) -> None:
        self.path = Path(path)
        self.device_index = device_index
        self.header, self._plan = read_engine(self.path)
        self.metadata: dict[str, str] = dict(self.header.get("metadata", {}))
        self.profiles: list[Profile] = profiles_from_header(self.header, str(self.path))
        self.name = "tensorrt (inactive)"
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.active = False
        self._lock = threading.Lock()

    @property
    def max_batch(self) -> int:
        return max(p.max_batch for p in self.profiles)

    # ------------------------------------------------------------------ lifecycle

    def activate(self) -> None:
        with self._lock:
            if self.active:
                return
            trt = import_tensorrt()
            cuda = import_pycuda()
            if self._plan is None:  # activated before: the plan was let go (it can be 100 MB on a Jetson)
                self.header, self._plan = read_engine(self.path)
            device = cuda.Device(self.device_index)
            ctx = device.retain_primary_context()
            ctx.push()
            try:
                self._trt, self._cuda, self._ctx = trt, cuda, ctx
                self._setup(trt, cuda)
                self.name = f"tensorrt[{device.name()}]"
            except BaseException:
                self._release()
                cuda.Context.pop()
                ctx.detach()
                raise
            cuda.Context.pop()
            self._plan = None  # TensorRT holds the engine now
            self.active = True
        log.info("TensorRT engine %s active on %s: profiles %s, %d buffers", self.path.name, self.name,
                 [(p.min_batch, p.opt_batch, p.max_batch) for p in self.profiles], len(self._buffers))

    def _setup(self, trt, cuda) -> None:
        """Deserialize, read the IO tensors and profiles, allocate the buffers (context is current)."""
        self._buffers: dict[str, tuple] = {}  # name -> (pinned host array, device allocation)
        self._engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self._plan)
        if self._engine is None:
            raise UserError(f"{self.path}: TensorRT cannot deserialize it on this device (built for another "
                            "TensorRT version or GPU?)")
        engine = self._engine
        self._context = engine.create_execution_context()
        self._stream = cuda.Stream()
        self.inputs, self.outputs = [], []
        self._dtypes: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            self._dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = [int(d) if int(d) >= 0 else None for d in engine.get_tensor_shape(name)]
            spec = TensorSpec(name, self._dtypes[name].name, shape)
            (self.inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(spec)
        if not self.inputs:
            raise UserError(f"{self.path}: the engine has no inputs")
        first = self.inputs[0].name
        profiles = []
        for index in range(engine.num_optimization_profiles):
            low, opt, high = (tuple(s) for s in engine.get_tensor_profile_shape(first, index))
            profiles.append(Profile(int(low[0]), int(opt[0]), int(high[0])))
        if profiles and profiles != self.profiles:
            log.warning("%s: header profiles %s differ from the engine's %s; using the engine's",
                        self.path.name, self.profiles, profiles)
            self.profiles = profiles
        # buffers for the largest shape: the last profile's max for the inputs, and what TensorRT
        # computes from those for the outputs
        largest = max(range(len(self.profiles)), key=lambda i: self.profiles[i].max_batch)
        self._context.set_optimization_profile_async(largest, self._stream.handle)
        self._profile = largest
        for spec in self.inputs:
            high = tuple(int(d) for d in engine.get_tensor_profile_shape(spec.name, largest)[2])
            self._context.set_input_shape(spec.name, high)
            self._allocate(spec.name, high)
        for spec in self.outputs:
            self._allocate(spec.name, tuple(int(d) for d in self._context.get_tensor_shape(spec.name)))

    def _allocate(self, name: str, shape: tuple[int, ...]) -> None:
        size = max(int(np.prod(shape)), 1)
        old = self._buffers.pop(name, None)
        if old is not None:
            old[1].free()
        host = self._cuda.pagelocked_empty(size, self._dtypes[name])
        self._buffers[name] = (host, self._cuda.mem_alloc(host.nbytes))

    def _buffer(self, name: str, size: int):
        if self._buffers[name][0].size < size:  # a shape beyond the profiles' max: TensorRT refused it already
            log.warning("%s: growing the %s buffer to %d elements", self.path.name, name, size)
            self._allocate(name, (size,))
        return self._buffers[name]

    def _release(self) -> None:
        """Free what ``_setup`` made (the context is current)."""
        for host, dev in getattr(self, "_buffers", {}).values():
            dev.free()
            base = getattr(host, "base", None)
            if hasattr(base, "free"):
                base.free()
        self._buffers = {}
        self._context = self._engine = self._stream = None

    def deactivate(self) -> None:
        with self._lock:
            if not self.active:
                return
            self.active = False
            self._ctx.push()
            try:
                self._release()
            finally:
                self._cuda.Context.pop()
                self._ctx.detach()
            self.name = "tensorrt (inactive)"


    # ------------------------------------------------------------------ inference

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if not self.active:
                raise RuntimeError("call activate() before infer()")
            batch = check_feeds(feeds, self.input_names, self.max_batch, self.path)
            profile = select_profile(self.profiles, batch)
            self._ctx.push()
            try:
                return self._infer(feeds, profile)
            finally:
                self._cuda.Context.pop()

    def _infer(self, feeds: Mapping[str, np.ndarray], profile: int) -> dict[str, np.ndarray]:
        cuda, context, stream = self._cuda, self._context, self._stream
        if profile != self._profile:
            context.set_optimization_profile_async(profile, stream.handle)
            self._profile = profile
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            if not context.set_input_shape(name, array.shape):
                raise UserError(f"{self.path}: input {name!r} of shape {array.shape} fits no profile of the engine")
            host, dev = self._buffer(name, array.size)
            host[: array.size] = array.ravel()
            cuda.memcpy_htod_async(dev, host[: array.size], stream)
            context.set_tensor_address(name, int(dev))
        shapes = {}
        for name in self.output_names:
            shapes[name] = tuple(int(d) for d in context.get_tensor_shape(name))
            _, dev = self._buffer(name, int(np.prod(shapes[name])))
            context.set_tensor_address(name, int(dev))
        if not context.execute_async_v3(stream.handle):
            raise RuntimeError(f"{self.path}: TensorRT execution failed (see its log above)")
        for name in self.output_names:
            host, dev = self._buffers[name]
            cuda.memcpy_dtoh_async(host[: int(np.prod(shapes[name]))], dev, stream)
        stream.synchronize()
        return {name: self._buffers[name][0][: int(np.prod(shapes[name]))].reshape(shapes[name]).copy()
                for name in self.output_names}
