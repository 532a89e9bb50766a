"""msmine al's pool scoring under a variant (train.al.score_pool_variant) equals selector.frame_score on
the same model's maps, for both tasks, on real MSRS pairs (tiny random-init models)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from msmine import selector

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _setup(msrs_root, task):
    from msmine.train.batching import evaluation_view
    from msmine.train.config import TrainConfig
    from msmine.train.models import build_model
    from msmine.train.workspace import fit_model_to_dataset, open_split, prepared_pairs

    cfg = TrainConfig()
    cfg.model.task = task
    cfg.model.input_size = (64, 80)
    dataset = open_split(msrs_root, "train", limit=5)
    fit_model_to_dataset(cfg, dataset)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    return model, evaluation_view(prepared_pairs(dataset, cfg, train=False))


@pytest.mark.realdata
@pytest.mark.parametrize(("task", "variant"), [("detect", "topk"), ("detect", "detection_max"),
                                               ("segment", "region_topk"), ("segment", "paper")])
def test_pool_scores_under_a_variant_equal_the_selector(msrs_root, task, variant):
    from msmine.train import scoring
    from msmine.train.al import BatchOptions, score_pool_variant
    from msmine.train.batching import IndexedSubset, collate, model_inputs

    model, view = _setup(msrs_root, task)
    opts = BatchOptions(variant_k=6, variant_floor=0.0)
    got = score_pool_variant(model, view, [0, 2, 4], torch.device("cpu"), 2, "categorical", variant, opts,
                             features=True)
    assert got["features"].shape[0] == 3 and np.isfinite(got["features"]).all()
    assert got["inconsistency"].min() > 0  # the random-init model does detect (floor 0): not a vacuous 0 == 0
    batch = collate([IndexedSubset(view, [0, 2, 4])[i] for i in range(3)])
    with torch.no_grad():
        outputs = model(*model_inputs(batch, torch.device("cpu")))
    maps = [m.numpy() for m in scoring.score_outputs(outputs, model.level_shapes, task)["maps"]]
    params = selector.VariantParams(k=6, floor=0.0, num_classes=len(model.class_names))
    for i in range(3):
        kw = {}
        if task == "segment":
            kw["predicted"] = outputs["fused"]["logits"].argmax(dim=1)[i].numpy()
        elif variant.startswith("detection"):
            kw["detections"] = scoring.fused_detections(outputs["fused"], model.anchors, model.input_size)[i].numpy()
        want = selector.frame_score(variant, [m[i] for m in maps], params=params, **kw)
        assert got["inconsistency"][i] == pytest.approx(want, abs=1e-5)
