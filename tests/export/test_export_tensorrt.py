"""TensorRT engine building: what needs no GPU is tested here; the build and GPU check need one.

The engine file format and the runner are msmine.inference's (tests/inference)."""

from __future__ import annotations

import importlib.util

import pytest

from msmine.errors import UserError
from msmine.export.tensorrt import (
    DeviceInfo,
    EngineCache,
    check_engine,
    choose_profiles,
    current_device,
    engine_cache_key,
    get_engine,
    onnx_model_hash,
)
from msmine.inference import MAGIC, Profile, TensorRTRunner, select_profile

H100 = DeviceInfo("10.3.0", "NVIDIA H100 80GB HBM3", (9, 0))
ORIN = DeviceInfo("10.3.0", "Orin", (8, 7))


@pytest.mark.parametrize(
    "sizes, expected",
    [
        ([1], [Profile(1, 1, 1)]),
        ([1, 8, 32], [Profile(1, 1, 1), Profile(2, 8, 8), Profile(9, 32, 32)]),
        ((32, 8, 8, 1), [Profile(1, 1, 1), Profile(2, 8, 8), Profile(9, 32, 32)]),
        ([4], [Profile(1, 4, 4)]),
    ],
)
def test_choose_profiles(sizes, expected):
    assert choose_profiles(sizes) == expected


@pytest.mark.parametrize("batch, index", [(1, 0), (2, 1), (5, 1), (8, 1), (9, 2), (32, 2)])
def test_select_profile(batch, index):
    assert select_profile(choose_profiles([1, 8, 32]), batch) == index


def test_profile_errors():
    with pytest.raises(UserError, match="exceeds"):
        select_profile(choose_profiles([1, 8]), 9)
    for bad in ([], [0, 4], ["x"]):
        with pytest.raises(UserError, match="batch sizes"):
            choose_profiles(bad)


def test_cache_key_separates_devices_versions_models():
    profiles = choose_profiles([1, 8])
    base = engine_cache_key(H100, "abcd1234abcd1234", "int8", profiles)
    others = [
        engine_cache_key(ORIN, "abcd1234abcd1234", "int8", profiles),
        engine_cache_key(DeviceInfo("10.4.0", H100.gpu_name, (9, 0)), "abcd1234abcd1234", "int8", profiles),
        engine_cache_key(DeviceInfo(H100.trt_version, H100.gpu_name, (8, 9)), "abcd1234abcd1234", "int8", profiles),
        engine_cache_key(H100, "ffff1234abcd1234", "int8", profiles),
        engine_cache_key(H100, "abcd1234abcd1234", "fp16", profiles),
        engine_cache_key(H100, "abcd1234abcd1234", "int8", choose_profiles([1, 16])),
    ]
    assert len({base, *others}) == len(others) + 1
    assert base == engine_cache_key(H100, "abcd1234abcd1234", "int8", profiles)  # deterministic
    assert "/" not in base and " " not in base and "sm90" in base and "trt10.3.0" in base


def test_engine_cache_store_load(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    key = engine_cache_key(H100, "abcd", "fp16", choose_profiles([1]))
    assert cache.load(key) is None
    path = cache.store(key, b"PLAN", {"k": 1})
    assert path.name == f"{key}.engine" and path.read_bytes().startswith(MAGIC)
    header, plan = cache.load(key)
    assert plan == b"PLAN" and header["k"] == 1
    runner = TensorRTRunner(path)  # the runtime layer reads what the cache wrote, without a GPU
    assert runner.header == header and runner.profiles == [Profile(1, 1, 1)]


@pytest.mark.realdata
def test_model_hash_and_cache_hit_without_building(fp32_export, tmp_path):
    """A cached engine for this model/device is found without TensorRT being called."""
    model_hash = onnx_model_hash(fp32_export)
    assert len(model_hash) == 16 and model_hash == onnx_model_hash(fp32_export)
    key = engine_cache_key(H100, model_hash, "fp32", choose_profiles([1, 8]))
    EngineCache(tmp_path).store(key, b"PLAN", {"metadata": {}})
    assert get_engine(fp32_export, tmp_path, batch_sizes=[1, 8], device=H100).name == f"{key}.engine"


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT and pycuda are not installable here (no GPU; TensorRT "
                                          "comes from JetPack / NVIDIA's index): run on a device")
def test_build_and_run_engine(fp32_export, tmp_path, msrs_root):  # pragma: no cover - needs a GPU
    import numpy as np

    from msmine.calibration.int8_reader import calibration_batches

    path = get_engine(fp32_export, tmp_path, batch_sizes=[1, 4], precision="fp16")
    batch4 = calibration_batches(msrs_root, (128, 160), limit=4, split="test", batch_size=4)[0]
    diffs = check_engine(path, fp32_export, batch4)  # profile (2, 4, 4)
    assert diffs["inconsistency"] < 1e-2, diffs
    batch1 = {name: array[:1] for name, array in batch4.items()}  # profile (1, 1, 1)
    assert check_engine(path, fp32_export, batch1)["inconsistency"] < 1e-2
    with TensorRTRunner(path) as runner, pytest.raises(UserError, match="exceeds"):
        runner.infer({name: np.concatenate([array, array]) for name, array in batch4.items()})


def test_gpu_libraries_missing_is_a_user_error(tmp_path):
    if HAVE_TRT:
        pytest.skip("TensorRT is installed here")
    runner = TensorRTRunner(EngineCache(tmp_path).store("k", b"P", {}))
    with pytest.raises(UserError, match="TensorRT is not installed"):
        runner.activate()
    with pytest.raises(UserError, match="TensorRT is not installed"):
        current_device()  # what get_engine asks before building
