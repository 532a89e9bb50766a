"""The device ranks by the named score variant, samples within the budget when asked (seeded),
normalises within day / night strata from illumination or capture time, and records what it
ranked by in the manifest."""

from __future__ import annotations

import json
import sqlite3
import time
from types import SimpleNamespace

import numpy as np
import pytest

from msmine import selector
from msmine.edge_runtime.config import EdgeConfig, check_config, score_spec
from msmine.edge_runtime.pipeline import EdgePipeline, ScorePolicy, stratum_of
from msmine.errors import UserError
from tests.edge_runtime.test_edge_pipeline import config, lines


def _kept(tmp_path):
    with sqlite3.connect(tmp_path / "spool" / "index.sqlite") as db:
        return [json.loads(r[0]) for r in db.execute("SELECT manifest FROM items")]


def test_the_device_ranks_by_the_named_variant_and_records_it(tmp_path, small_model):
    cfg = config(tmp_path, small_model, n=40, score="inconsistency", score_variant="topk", variant_k=3)
    EdgePipeline.from_config(cfg).run()
    dets = lines(tmp_path / "det.jsonl")
    scores = np.array([d["score"] for d in dets])
    paper = np.array([d["inconsistency"] for d in dets])
    # top-k of the |grey(v) - t| map >= its mean >= |mean(v) - mean(t)| (the model's paper score)
    assert np.all(scores >= paper - 1e-6) and np.mean(scores > paper + 1e-4) > 0.9
    kept = _kept(tmp_path)
    assert {m["selection"]["policy"] for m in kept} == {"inconsistency.topk"}
    assert sorted(m["selection"]["score"] for m in kept) == pytest.approx(sorted(scores)[-3:])


def test_score_policy_equals_the_selector_on_the_models_outputs(small_model):
    from msmine.edge_runtime.runners import load_runner

    runner = load_runner(small_model, "cpu", 1)
    rng = np.random.default_rng(0)
    feeds = {"visible": rng.integers(0, 256, (1, 120, 160, 3), dtype=np.uint8),
             "thermal": rng.integers(0, 256, (1, 120, 160, 1), dtype=np.uint8)}
    out = {k: v[0] for k, v in runner.infer(feeds).items()}
    result = SimpleNamespace(model=runner.info, outputs=out, inconsistency=float(out["inconsistency"]))
    maps = [out[name] for name in runner.info.map_names]
    for variant, params in (("topk", selector.VariantParams(k=4)), ("topk_level", selector.VariantParams(k=2))):
        policy = ScorePolicy("inconsistency", variant=variant, params=params)
        assert policy(result) == pytest.approx(selector.frame_score(variant, maps, params=params), abs=1e-7)
    det = ScorePolicy("inconsistency", variant="detection_max", params=selector.VariantParams(floor=0.0))
    assert 0.0 < det(result) <= 1.0 and det.name == "inconsistency.detection_max"


def test_power_sampling_is_seeded_and_not_plain_top(tmp_path, small_model):
    def kept_ids(beta, seed, run):
        cfg = config(tmp_path / run, small_model, n=40, sampling_beta=beta, seed=seed)
        EdgePipeline.from_config(cfg).run()
        return sorted(round(m["selection"]["score"], 6) for m in _kept(tmp_path / run))

    top = kept_ids(float("inf"), 0, "top")
    first = kept_ids(1.0, 0, "a")
    assert kept_ids(1.0, 0, "b") == first  # the same seed, the same draw
    draws = [first] + [kept_ids(1.0, s, f"s{s}") for s in (1, 2)]
    assert any(d != top for d in draws)  # sampled in proportion to score, not the plain top 3


def test_strata_from_illumination_or_capture_time_never_file_names():
    cfg = EdgeConfig(normalize_strata="illumination", night_luminance=0.25)
    dark = SimpleNamespace(prepared=SimpleNamespace(visible=np.full((48, 64, 3), 20, np.uint8)))
    bright = SimpleNamespace(prepared=SimpleNamespace(visible=np.full((48, 64, 3), 180, np.uint8)))
    assert stratum_of(dark, cfg) == "night" and stratum_of(bright, cfg) == "day"
    tcfg = EdgeConfig(normalize_strata="time", night_hours="19-7")
    at = lambda hour: SimpleNamespace(prepared=SimpleNamespace(pair=SimpleNamespace(  # noqa: E731
        visible=SimpleNamespace(wall=time.mktime((2026, 6, 1, hour, 30, 0, 0, 0, -1))))))
    assert [stratum_of(at(h), tcfg) for h in (3, 6, 7, 12, 18, 19, 23)] == \
        ["night", "night", "day", "day", "day", "night", "night"]
    assert stratum_of(dark, EdgeConfig()) is None


def test_normalised_strata_run_and_keep_the_raw_score_in_the_manifest(tmp_path, small_model):
    cfg = config(tmp_path, small_model, n=30, normalize_strata="illumination", night_luminance=0.5)
    summary = EdgePipeline.from_config(cfg).run()
    assert summary["kept"] == 3
    dets = {round(d["score"], 9) for d in lines(tmp_path / "det.jsonl")}
    assert all(round(m["selection"]["score"], 9) in dets for m in _kept(tmp_path))


def test_unknown_variant_or_strategy_is_one_line_naming_the_valid_ones():
    with pytest.raises(UserError, match=r"^--score-variant: unknown score variant 'best'; choose from paper, topk"):
        check_config(EdgeConfig(score_variant="best"))
    with pytest.raises(UserError, match=r"^bad score 'psychic.topk': expected one of random, inconsistency"):
        check_config(EdgeConfig(score="psychic.topk"))
    with pytest.raises(UserError, match="has no score variant"):
        check_config(EdgeConfig(score="random", score_variant="topk"))
    with pytest.raises(UserError, match="give one"):
        check_config(EdgeConfig(score="inconsistency.topk", score_variant="detection_max"))
    assert score_spec(EdgeConfig(score="inconsistency:region")).name == "inconsistency.region"
    with pytest.raises(UserError, match="--night-hours"):
        check_config(EdgeConfig(night_hours="25-3"))
    with pytest.raises(UserError, match="normalize_strata"):
        check_config(EdgeConfig(normalize_strata="filename"))


def test_a_paper_threshold_is_refused_for_a_variant(tmp_path):
    from msmine.calibration_files import ThresholdFile, save_threshold
    from msmine.edge_runtime.config import apply_threshold_file

    path = save_threshold(ThresholdFile(threshold=0.1, score_key="inconsistency"), tmp_path / "thr.yaml")
    assert apply_threshold_file(EdgeConfig(threshold_file=str(path))).threshold == 0.1
    with pytest.raises(UserError, match="calibrated on 'inconsistency' scores, but --score is 'inconsistency.topk'"):
        apply_threshold_file(EdgeConfig(threshold_file=str(path), score_variant="topk"))
    with pytest.raises(UserError, match="ranks by z-scores"):
        apply_threshold_file(EdgeConfig(threshold_file=str(path), normalize_strata="time"))


def test_class_weights_on_the_device_weight_the_detections_by_class(small_model):
    """--class-weights: resolved by the model's class names, equal to selector.frame_score with the
    same weights, and a class weighted 0 no longer counts (not a vacuous equality)."""
    from msmine.edge_runtime.runners import load_runner

    runner = load_runner(small_model, "cpu", 1)
    names = list(runner.info.class_names)
    rng = np.random.default_rng(1)
    feeds = {"visible": rng.integers(0, 256, (1, 120, 160, 3), dtype=np.uint8),
             "thermal": rng.integers(0, 256, (1, 120, 160, 1), dtype=np.uint8)}
    out = {k: v[0] for k, v in runner.infer(feeds).items()}
    result = SimpleNamespace(model=runner.info, outputs=out, inconsistency=float(out["inconsistency"]))
    floor = selector.VariantParams(floor=0.0)
    plain = ScorePolicy("inconsistency", variant="detection_sum", params=floor)
    weights = [0.0] * len(names)
    weights[0] = 2.0
    named = ScorePolicy("inconsistency", variant="detection_sum", params=floor, class_weights=f"{names[0]}=2,"
                        + ",".join(f"{n}=0" for n in names[1:]))
    listed = ScorePolicy("inconsistency", variant="detection_sum", params=floor,
                         class_weights=",".join(str(w) for w in weights))
    assert named.params_for(names).class_weights == tuple(weights)
    assert named(result) == pytest.approx(listed(result), abs=1e-12)
    maps = [out[name] for name in runner.info.map_names]
    from msmine.edge_runtime.postprocess import nms_detections  # the device's NMS, as ScorePolicy runs it

    cand = np.asarray(out["fused_detections"], dtype=np.float64).reshape(-1, 6)
    rows = np.array([[*d["box"], d["score"], d["class_id"]] for d in nms_detections(cand, 0.0, 0.5)
                     if d["class_id"] < len(names)]).reshape(-1, 6)
    want = selector.frame_score("detection_sum", maps, detections=rows,
                                params=selector.VariantParams(floor=0.0, class_weights=tuple(weights)))
    assert named(result) == pytest.approx(want, abs=1e-9)
    assert len({int(c) for c in rows[:, 5]}) > 1 and named(result) != pytest.approx(2 * plain(result))


def test_bad_class_weights_are_one_line(tmp_path, small_model):
    with pytest.raises(UserError, match="applies to the detection_sum"):
        check_config(EdgeConfig(score="inconsistency", class_weights="person=2"))
    with pytest.raises(UserError, match="needs a labelled set"):
        check_config(EdgeConfig(score="inconsistency.detection_max", class_weights="inverse"))
    cfg = config(tmp_path, small_model, n=4, score="inconsistency.detection_max", class_weights="zebra=2")
    with pytest.raises(UserError, match="unknown class 'zebra'; the model's classes: "):
        EdgePipeline.from_config(cfg)


def test_a_published_model_without_the_weighted_class_is_rejected(tmp_path, small_model, stub_server):
    """--class-weights naming a class: a new model that lacks it is kept out, the current one stays."""
    from msmine.edge_runtime.model_update import ModelFetcher, ModelUpdater
    from msmine.model_contract import build_contract_model

    cfg = config(tmp_path, small_model, n=4, score="inconsistency.detection_max", class_weights="person=2")
    pipeline = EdgePipeline.from_config(cfg)
    other = build_contract_model(tmp_path / "o.onnx", height=120, width=160, levels=2, class_names=["cat", "dog"])
    updater = ModelUpdater(ModelFetcher(stub_server.url, "tok", tmp_path / "models"), "0" * 64,
                           pipeline.install_model, 1.0)
    stub_server.state.publish("v2", other.read_bytes())
    assert not updater.check_once() and len(updater.failed) == 1 and pipeline._next_runner is None
    stub_server.state.publish("v3", small_model.read_bytes())
    assert updater.check_once() and pipeline._next_runner is not None
