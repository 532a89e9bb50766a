"""A fake CUDA/TensorRT binding: small ``tensorrt`` and ``pycuda.driver`` modules for ``sys.modules``.

It keeps what the real ones enforce and what the runner must get right, and records every call:

* a CUDA context is current **per thread** (a thread-local stack, as in the driver API): every
  CUDA call (allocations, copies, streams, TensorRT's deserialise/execute) made in a thread with no
  context current raises ``LogicError`` - the failure of pycuda issue #242 that a context made by
  ``pycuda.autoinit`` in the main thread produces in an inference thread;
* an execution context has an active optimisation profile (0 when created, as in TensorRT); an
  input shape outside that profile is refused (``set_input_shape`` returns False) and
  ``execute_async_v3`` fails, so a runner that never selects a profile breaks above the first one;
* device memory is real bytes: copies move data, and "execution" writes, for every output and item
  ``i``, ``mean(first input[i]) + output index``, so results show the right slices were copied.
"""

from __future__ import annotations

import itertools
import threading
import types
from dataclasses import dataclass, field

import numpy as np


class LogicError(RuntimeError):
    """pycuda._driver.LogicError"""


@dataclass
class FakeTensor:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1: the batch axis
    is_input: bool


@dataclass
class FakeEngineSpec:
    tensors: list[FakeTensor]
    profiles: list[tuple[int, int, int]]  # batch (min, opt, max) per profile


def simple_spec(profiles=((1, 1, 1), (2, 8, 8)), height: int = 4, width: int = 6) -> FakeEngineSpec:
    return FakeEngineSpec(
        [FakeTensor("visible", np.dtype("uint8"), (-1, height, width, 3), True),
         FakeTensor("thermal", np.dtype("uint8"), (-1, height, width, 1), True),
         FakeTensor("inconsistency", np.dtype("float32"), (-1,), False),
         FakeTensor("inconsistency_map_0", np.dtype("float32"), (-1, 2, 3), False)],
        [tuple(p) for p in profiles],
    )


@dataclass
class Recorder:
    """Every call as (thread name, operation, details); the live allocations."""

    events: list = field(default_factory=list)
    live: dict = field(default_factory=dict)  # address -> FakeAllocation
    addresses: itertools.count = field(default_factory=lambda: itertools.count(0x1000, 0x1000))
    stacks: threading.local = field(default_factory=threading.local)
    specs: dict = field(default_factory=dict)  # plan bytes -> FakeEngineSpec
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stack(self) -> list:
        if not hasattr(self.stacks, "items"):
            self.stacks.items = []
        return self.stacks.items

    def record(self, op: str, *details) -> None:
        with self.lock:
            self.events.append((threading.current_thread().name, op, *details))

    def require_context(self, op: str) -> None:
        if not self.stack():
            self.record("error", op)
            raise LogicError(f"{op} failed: invalid device context - no currently active context?")
        self.record(op)

    def ops(self, op: str, thread: int | None = None) -> list:
        return [e for e in self.events if e[1] == op and (thread is None or e[0] == thread)]


def make_modules(rec: Recorder) -> dict[str, types.ModuleType]:
    """``{"tensorrt": ..., "pycuda": ..., "pycuda.driver": ..., "pycuda.autoinit": ...}`` bound to ``rec``."""
    # ---------------------------------------------------------------- pycuda.driver
    cuda = types.ModuleType("pycuda.driver")
    cuda.LogicError = LogicError

    class Context:
        def __init__(self, device):
            self.device = device
            self.detached = False

        def push(self):
            rec.stack().append(self)
            rec.record("push")

        @staticmethod
        def pop():
            stack = rec.stack()
            if not stack:
                raise LogicError("cuCtxPopCurrent failed: invalid device context")
            stack.pop()
            rec.record("pop")

        def detach(self):
            self.detached = True
            rec.record("detach")

    class Device:
        def __init__(self, index):
            self.index = index

        def name(self):
            return "Fake GPU"

        def compute_capability(self):
            return (8, 7)

        def retain_primary_context(self):
            rec.record("retain_primary_context")
            return Context(self)

        def make_context(self):
            ctx = Context(self)
            ctx.push()
            return ctx

    class FakeAllocation:
        def __init__(self, nbytes):
            self.nbytes = nbytes
            self.data = np.zeros(nbytes, np.uint8)
            self.address = next(rec.addresses)
            rec.live[self.address] = self

        def __int__(self):
            return self.address

        def free(self):
            rec.require_context("free")
            rec.live.pop(self.address, None)

    class Stream:
        def __init__(self):
            rec.require_context("Stream")
            self.handle = 77

        def synchronize(self):
            rec.require_context("synchronize")

    def mem_alloc(nbytes):
        rec.require_context("mem_alloc")
        return FakeAllocation(int(nbytes))

    def pagelocked_empty(shape, dtype):
        rec.require_context("pagelocked_empty")
        return np.zeros(shape, dtype)

    def memcpy_htod_async(dev, host, stream=None):
        rec.require_context("memcpy_htod_async")
        raw = np.ascontiguousarray(host).view(np.uint8).ravel()
        dev.data[: raw.size] = raw

    def memcpy_dtoh_async(host, dev, stream=None):
        rec.require_context("memcpy_dtoh_async")
        raw = host.view(np.uint8).reshape(-1)
        raw[:] = dev.data[: raw.size]

    cuda.init = lambda: rec.record("init")
    cuda.Device, cuda.Context, cuda.Stream = Device, Context, Stream
    cuda.mem_alloc, cuda.pagelocked_empty = mem_alloc, pagelocked_empty
    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async

    pycuda = types.ModuleType("pycuda")
    pycuda.__path__ = []  # a package, so "import pycuda.driver" works
    pycuda.driver = cuda

    # ---------------------------------------------------------------- tensorrt
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0.fake"

    class Logger:
        WARNING = 2

        def __init__(self, level=None):
            self.level = level

    class TensorIOMode:
        INPUT = "INPUT"
        OUTPUT = "OUTPUT"

    class ExecutionContext:
        def __init__(self, engine):
            rec.require_context("create_execution_context")
            self.engine = engine
            self.profile = 0
            self.shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}

        def set_optimization_profile_async(self, index, stream_handle):
            rec.require_context("set_optimization_profile_async")
            rec.record("profile", index)
            if not 0 <= index < len(self.engine.spec.profiles):
                return False
            self.profile = index
            self.shapes.clear()  # input shapes must be set again after a profile switch
            return True

        def _fits(self, shape) -> bool:
            low, _, high = self.engine.spec.profiles[self.profile]
            return low <= shape[0] <= high

        def set_input_shape(self, name, shape):
            tensor = self.engine.by_name[name]
            shape = tuple(int(d) for d in shape)
            if not self._fits(shape) or shape[1:] != tensor.shape[1:]:
                rec.record("shape_refused", name, shape, self.profile)
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            tensor = self.engine.by_name[name]
            if tensor.is_input:
                return self.shapes.get(name, tensor.shape)
            batch = next((s[0] for s in self.shapes.values()), -1)
            return (batch, *tensor.shape[1:])

        def set_tensor_address(self, name, address):
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle):
            rec.require_context("execute_async_v3")
            inputs = [t for t in self.engine.spec.tensors if t.is_input]
            if any(t.name not in self.shapes or not self._fits(self.shapes[t.name]) for t in inputs):
                rec.record("execute_failed", self.profile)
                return False
            first = inputs[0]
            shape = self.shapes[first.name]
            count = int(np.prod(shape))
            data = rec.live[self.addresses[first.name]].data.view(first.dtype)[:count].reshape(shape)
            means = data.reshape(shape[0], -1).astype(np.float64).mean(axis=1)
            rec.record("execute", self.profile, shape[0])
            outputs = [t for t in self.engine.spec.tensors if not t.is_input]
            for index, tensor in enumerate(outputs):
                out_shape = self.get_tensor_shape(tensor.name)
                values = np.broadcast_to((means + index).reshape(-1, *([1] * (len(out_shape) - 1))), out_shape)
                raw = np.ascontiguousarray(values, tensor.dtype).view(np.uint8).ravel()
                rec.live[self.addresses[tensor.name]].data[: raw.size] = raw
            return True

    class Engine:
        def __init__(self, spec: FakeEngineSpec):
            self.spec = spec
            self.by_name = {t.name: t for t in spec.tensors}
            self.num_io_tensors = len(spec.tensors)
            self.num_optimization_profiles = len(spec.profiles)

        def get_tensor_name(self, i):
            return self.spec.tensors[i].name

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if self.by_name[name].is_input else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return self.by_name[name].dtype

        def get_tensor_shape(self, name):
            return self.by_name[name].shape

        def get_tensor_profile_shape(self, name, index):
            rest = self.by_name[name].shape[1:]
            return [(b, *rest) for b in self.spec.profiles[index]]

        def create_execution_context(self):
            return ExecutionContext(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, plan):
            rec.require_context("deserialize_cuda_engine")
            spec = rec.specs.get(bytes(plan))
            return None if spec is None else Engine(spec)

    trt.Logger, trt.TensorIOMode, trt.Runtime = Logger, TensorIOMode, Runtime
    trt.nptype = lambda dtype: np.dtype(dtype).type
    return {"tensorrt": trt, "pycuda": pycuda, "pycuda.driver": cuda}

