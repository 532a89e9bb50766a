"""Model loading: the contract is checked, bad models give one clear UserError."""

import numpy as np
import pytest

from msmine.edge_runtime.runners import load_runner
from msmine.errors import UserError
from msmine.inference import OnnxRuntimeRunner, choose_providers
from tests.edge_runtime.contract_models import build_contract_model, expected_inconsistency


def test_runner_loads_contract_model_and_infers_a_batch(tmp_path):
    path = build_contract_model(tmp_path / "m.onnx", height=64, width=96, levels=2, k=5)
    runner = load_runner(path, "cpu")
    assert runner.name == "onnxruntime[CPUExecutionProvider]"
    info = runner.info
    assert (info.task, info.input_size, info.levels, info.max_candidates, info.version) == ("detect", (64, 96), 2, 5, "test-v1")
    assert len(info.sha256) == 64
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    thr = rng.integers(0, 256, (3, 64, 96, 1), dtype=np.uint8)
    out = runner.infer({"visible": vis, "thermal": thr})
    assert out["inconsistency"].shape == (3,)
    assert out["inconsistency_map_1"].shape == (3, 4, 6)
    assert out["fused_detections"].shape == (3, 5, 6)
    for i in range(3):
        assert out["inconsistency"][i] == pytest.approx(expected_inconsistency(vis[i], thr[i]), abs=1e-6)
    runner.deactivate()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop_outputs": ("inconsistency",)}, "lacks output.*inconsistency"),
        ({"drop_outputs": ("thermal_detections",)}, "thermal_detections"),
        ({"drop_outputs": ("inconsistency_map_1",)}, "inconsistency_map_1"),
        ({"drop_metadata": ("msmine.task",)}, "lacks msmine metadata msmine.task"),
        ({"drop_metadata": ("msmine.format", "msmine.levels")}, "msmine.format, msmine.levels"),
    ],
)
def test_models_breaking_the_contract_are_refused_with_a_clear_error(tmp_path, kwargs, message):
    path = build_contract_model(tmp_path / "bad.onnx", height=32, width=32, levels=2, **kwargs)
    with pytest.raises(UserError, match=message):
        load_runner(path, "cpu")


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(UserError, match="model file not found"):
        load_runner(tmp_path / "nope.onnx")
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load model"):
        load_runner(bad)


def test_provider_choice():
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])[0] == (
        "TensorrtExecutionProvider")
    assert choose_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(UserError, match="no CUDAExecutionProvider"):
        choose_providers("cuda", ["CPUExecutionProvider"])


def test_cuda_backend_without_cuda_is_a_user_error(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    path = build_contract_model(tmp_path / "m.onnx", height=32, width=32, levels=1)
    with pytest.raises(UserError, match="--backend cuda"):
        OnnxRuntimeRunner(path, backend="cuda").activate()


def test_tensorrt_engine_runner_needs_tensorrt(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installable from the registries here (DESIGN.md section 3)")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(UserError):
        load_runner(engine)


def test_engine_without_tensorrt_is_a_clear_error(tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(UserError, match="tensorrt"):
        load_runner(engine)
