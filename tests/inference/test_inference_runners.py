"""The runners behind one protocol: onnxruntime on a contract model, and the device's load_runner on
a TensorRT engine through the fake binding (activated in one thread, run and released in another,
as the device's pipeline does)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from msmine.errors import UserError
from msmine.inference import OnnxRuntimeRunner, TensorRTRunner, open_runner, write_engine
from msmine.model_contract import build_contract_model, expected_inconsistency, sample_metadata
from tests.inference.fake_gpu import FakeEngineSpec, FakeTensor


def pair_feeds(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return {"visible": rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8),
            "thermal": rng.integers(0, 256, (batch, height, width, 1), dtype=np.uint8)}


def test_onnxruntime_runner_protocol(tmp_path):
    path = build_contract_model(tmp_path / "m.onnx", height=32, width=48, levels=2, k=5)
    runner = open_runner(path, backend="cpu", threads=1)
    assert isinstance(runner, OnnxRuntimeRunner)
    with runner:
        assert runner.name == "onnxruntime[CPUExecutionProvider]"
        assert runner.input_names == ["visible", "thermal"]
        assert runner.output_names[:2] == ["inconsistency", "entropy"] and "fused_detections" in runner.output_names
        assert runner.metadata["msmine.task"] == "detect"
        assert runner.max_batch is None  # dynamic batch axis
        feeds = pair_feeds(3, 32, 48)
        out = runner.infer(feeds)
        assert set(out) == set(runner.output_names)
        for i in range(3):
            assert out["inconsistency"][i] == pytest.approx(expected_inconsistency(feeds["visible"][i], feeds["thermal"][i]),
                                                            abs=1e-6)
        with pytest.raises(UserError, match="lack input.*thermal"):
            runner.infer({"visible": feeds["visible"]})
    with pytest.raises(RuntimeError, match="activate"):
        runner.infer(feeds)


def test_open_runner_by_suffix_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="model file not found"):
        open_runner(tmp_path / "nope.onnx")
    engine = write_engine(tmp_path / "m.plan", b"P", {"metadata": {}})
    assert isinstance(open_runner(engine), TensorRTRunner)


def contract_engine(tmp_path, rec, height=32, width=48, k=5, profiles=((1, 1, 1), (2, 8, 8))):
    """A framed engine whose fake TensorRT plan has the contract's inputs and outputs."""
    f32, u8 = np.dtype("float32"), np.dtype("uint8")
    tensors = [FakeTensor("visible", u8, (-1, height, width, 3), True),
               FakeTensor("thermal", u8, (-1, height, width, 1), True),
               FakeTensor("inconsistency", f32, (-1,), False), FakeTensor("entropy", f32, (-1,), False),
               FakeTensor("inconsistency_map_0", f32, (-1, height // 8, width // 8), False)]
    tensors += [FakeTensor(f"{b}_detections", f32, (-1, k, 6), False) for b in ("fused", "visible", "thermal")]
    plan = b"contract plan"
    rec.specs[plan] = FakeEngineSpec(tensors, [tuple(p) for p in profiles])
    meta = sample_metadata(height, width, levels=1, k=k, version="engine-v2", precision="fp16").to_props()
    return write_engine(tmp_path / "model.engine", plan, {"metadata": meta, "profiles": [list(p) for p in profiles]})


def test_device_load_runner_runs_an_engine_from_its_inference_thread(tmp_path, fake_gpu):
    from msmine.edge_runtime.runners import ModelRunner, load_runner

    runner = load_runner(contract_engine(tmp_path, fake_gpu))  # main thread, as the pipeline does
    assert isinstance(runner, ModelRunner)
    info = runner.info
    assert (info.version, info.task, info.input_size, info.levels, info.max_candidates, info.precision) == (
        "engine-v2", "detect", (32, 48), 1, 5, "fp16")
    assert runner.name == "tensorrt[Fake GPU]" and runner.max_batch == 8
    got = {}

    def inference_thread():
        got["out"] = runner.infer(pair_feeds(8, 32, 48))
        runner.deactivate()

    worker = threading.Thread(target=inference_thread)
    worker.start()
    worker.join(timeout=30)
    assert set(got["out"]) >= {"inconsistency", "entropy", "fused_detections"}
    assert got["out"]["fused_detections"].shape == (8, 5, 6)
    assert not fake_gpu.ops("error") and fake_gpu.live == {}


def test_device_refuses_an_engine_that_breaks_the_contract_and_releases_it(tmp_path, fake_gpu):
    from msmine.edge_runtime.runners import load_runner

    path = contract_engine(tmp_path, fake_gpu)
    spec = fake_gpu.specs[b"contract plan"]
    spec.tensors[:] = [t for t in spec.tensors if t.name != "entropy"]
    with pytest.raises(UserError, match="lacks output.*entropy"):
        load_runner(path)
    assert fake_gpu.live == {} and fake_gpu.ops("detach")


def test_device_runs_a_batch_above_the_engines_largest_profile_in_chunks(tmp_path, fake_gpu):
    """--max-batch 8 on an engine built for [1, 4]: batches of 8 run as 4 + 4, not fail."""
    from msmine.edge_runtime.runners import load_runner

    runner = load_runner(contract_engine(tmp_path, fake_gpu, profiles=((1, 1, 1), (2, 4, 4))))
    feeds = pair_feeds(9, 32, 48, seed=3)
    out = runner.infer(feeds)
    means = feeds["visible"].reshape(9, -1).astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(out["inconsistency"], means, rtol=1e-6)
    assert out["fused_detections"].shape == (9, 5, 6)
    assert [batch for *_, batch in fake_gpu.ops("execute")] == [4, 4, 1]
    runner.deactivate()
