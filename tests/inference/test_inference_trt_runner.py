"""The TensorRT runner driven through a fake CUDA/TensorRT binding, from a worker thread as the
device's inference thread calls it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from msmine.errors import UserError
from msmine.inference import Profile, TensorRTRunner, write_engine
from tests.inference.fake_gpu import LogicError, simple_spec

PLAN = b"fake plan: two profiles"


def engine_file(tmp_path, rec, profiles=((1, 1, 1), (2, 8, 8)), plan=PLAN, name="m.engine"):
    rec.specs[plan] = simple_spec(profiles)
    header = {"metadata": {"msmine.task": "detect"}, "profiles": [list(p) for p in profiles]}
    return write_engine(tmp_path / name, plan, header)


def feeds(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"visible": rng.integers(0, 256, (batch, 4, 6, 3), dtype=np.uint8),
            "thermal": rng.integers(0, 256, (batch, 4, 6, 1), dtype=np.uint8)}


def in_thread(fn, *args):
    """Run ``fn(*args)`` in a new thread -> (thread name, result); re-raise what it raised.

    Names, not idents: a finished thread's ident is reused by the next one."""
    box: dict = {}

    def target():
        box["ident"] = threading.current_thread().name
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    worker = threading.Thread(target=target)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    if "error" in box:
        raise box["error"]
    return box["ident"], box.get("result")


def calls_between_push_and_pop(rec, thread):
    """The thread's events, split into the blocks between each push and its pop."""
    blocks, current = [], None
    for ident, op, *_ in rec.events:
        if ident != thread:
            continue
        if op == "push":
            assert current is None, "pushed twice without a pop"
            current = []
        elif op == "pop":
            assert current is not None, "popped without a push"
            blocks.append(current)
            current = None
        else:
            assert current is not None or op in ("init", "retain_primary_context", "detach"), f"{op} outside push/pop"
            if current is not None:
                current.append(op)
    assert current is None, "the context was left current in the thread"
    return blocks


def test_the_fake_refuses_cuda_calls_without_a_current_context(fake_gpu):
    import pycuda.driver as cuda

    with pytest.raises(LogicError, match="no currently active context"):
        cuda.mem_alloc(16)
    ctx = cuda.Device(0).make_context()  # current in this thread only
    cuda.mem_alloc(16)
    with pytest.raises(LogicError):
        in_thread(cuda.mem_alloc, 16)  # what pycuda.autoinit + an inference thread did (pycuda #242)
    ctx.pop()


def test_infer_from_a_worker_thread_pushes_and_pops_the_context_around_every_call(tmp_path, fake_gpu):
    runner = TensorRTRunner(engine_file(tmp_path, fake_gpu))
    runner.activate()  # main thread (the device activates in main or in the model-update thread)
    assert fake_gpu.stack() == [], "activate() left the context current in the main thread"
    assert runner.name == "tensorrt[Fake GPU]"

    def work():
        return [runner.infer(feeds(batch, seed)) for seed, batch in enumerate((1, 8, 3, 8, 1))]

    worker, results = in_thread(work)
    blocks = calls_between_push_and_pop(fake_gpu, worker)
    assert len(blocks) == 5  # one push/pop per infer() call
    for block in blocks:
        assert block[-1] == "synchronize" and "execute_async_v3" in block
    assert not fake_gpu.ops("error"), fake_gpu.ops("error")
    for (seed, batch), out in zip(enumerate((1, 8, 3, 8, 1)), results):
        means = feeds(batch, seed)["visible"].reshape(batch, -1).astype(np.float64).mean(axis=1)
        np.testing.assert_allclose(out["inconsistency"], means, rtol=1e-6)
        assert out["inconsistency_map_0"].shape == (batch, 2, 3)
        np.testing.assert_allclose(out["inconsistency_map_0"][:, 1, 2], means + 1, rtol=1e-6)
    _, _ = in_thread(runner.deactivate)  # the device deactivates from its inference thread
    assert fake_gpu.live == {}, "device buffers were not freed"
    assert fake_gpu.ops("detach") and fake_gpu.stack() == []
    runner.activate()  # again, after a deactivate (the plan is read again)
    assert runner.infer(feeds(2))["inconsistency"].shape == (2,)
    runner.deactivate()


def test_buffers_are_allocated_once_not_per_inference(tmp_path, fake_gpu):
    with TensorRTRunner(engine_file(tmp_path, fake_gpu)) as runner:
        allocated = len(fake_gpu.ops("mem_alloc"))
        pinned = len(fake_gpu.ops("pagelocked_empty"))
        assert allocated == pinned == 4  # one device and one pinned host buffer per input and output
        in_thread(lambda: [runner.infer(feeds(b)) for b in (1, 8, 2, 8, 1, 5)])
        assert len(fake_gpu.ops("mem_alloc")) == allocated
        assert len(fake_gpu.ops("pagelocked_empty")) == pinned
        sizes = sorted(a.nbytes for a in fake_gpu.live.values())
        assert sizes == sorted([8 * 4 * 6 * 3, 8 * 4 * 6 * 1, 8 * 4, 8 * 2 * 3 * 4])  # for batch 8 (largest)


def test_the_profile_is_selected_by_batch_size(tmp_path, fake_gpu):
    """batch_sizes=[1, 8] -> profiles (1,1,1) and (2,8,8): batch 1 runs in profile 0, 8 in profile 1."""
    with TensorRTRunner(engine_file(tmp_path, fake_gpu)) as runner:
        assert runner.profiles == [Profile(1, 1, 1), Profile(2, 8, 8)] and runner.max_batch == 8

        def work():
            for batch in (1, 8, 8, 1, 5):
                runner.infer(feeds(batch))

        in_thread(work)
    executed = [(profile, batch) for _, _, profile, batch in fake_gpu.ops("execute")]
    assert executed == [(0, 1), (1, 8), (1, 8), (0, 1), (1, 5)]
    assert not fake_gpu.ops("execute_failed") and not fake_gpu.ops("shape_refused")


def test_a_batch_above_the_largest_profile_is_a_clear_error_before_any_cuda_call(tmp_path, fake_gpu):
    with TensorRTRunner(engine_file(tmp_path, fake_gpu)) as runner:
        before = len(fake_gpu.events)
        with pytest.raises(UserError, match=r"batch 9 exceeds the model's largest batch \(8\)"):
            runner.infer(feeds(9))
        assert fake_gpu.events[before:] == []
        with pytest.raises(UserError, match="lack input.*thermal"):
            runner.infer({"visible": feeds(1)["visible"]})
        with pytest.raises(UserError, match="one batch size"):
            runner.infer({"visible": feeds(2)["visible"], "thermal": feeds(3)["thermal"]})
        runner.infer(feeds(8))  # still usable


def test_profiles_come_from_the_engine_itself(tmp_path, fake_gpu):
    path = engine_file(tmp_path, fake_gpu, profiles=((1, 1, 1), (2, 4, 4)))
    write_engine(path, PLAN, {"metadata": {}, "profiles": [[1, 1, 1]]})  # the header says less
    with TensorRTRunner(path) as runner:
        assert runner.profiles == [Profile(1, 1, 1), Profile(2, 4, 4)]
        assert runner.infer(feeds(4))["inconsistency"].shape == (4,)


def test_an_engine_tensorrt_cannot_deserialize_is_a_user_error_and_releases_the_context(tmp_path, fake_gpu):
    path = write_engine(tmp_path / "other.engine", b"built for another GPU", {"metadata": {}})
    runner = TensorRTRunner(path)
    with pytest.raises(UserError, match="cannot deserialize"):
        runner.activate()
    assert fake_gpu.stack() == [] and fake_gpu.ops("detach") and not runner.active
    with pytest.raises(RuntimeError, match="activate"):
        runner.infer(feeds(1))


def test_a_second_runner_and_a_swap_across_threads(tmp_path, fake_gpu):
    """The device's model swap: the new runner is activated in the update thread while the old one
    serves the inference thread, which then deactivates the old one and uses the new one."""
    old = TensorRTRunner(engine_file(tmp_path, fake_gpu, name="old.engine"))
    old.activate()
    _, new = in_thread(lambda: TensorRTRunner(engine_file(tmp_path, fake_gpu, name="new.engine")).__enter__())

    def inference_thread():
        old.infer(feeds(2))
        old.deactivate()
        return new.infer(feeds(8))

    worker, out = in_thread(inference_thread)
    assert out["inconsistency"].shape == (8,)
    calls_between_push_and_pop(fake_gpu, worker)
    assert not fake_gpu.ops("error")
    new.deactivate()
    assert fake_gpu.live == {}
