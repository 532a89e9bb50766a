"""msmine al's class weights (--class-weights) and appearance-hash dedupe (--dedupe-hash), on real
MSRS pairs: the counts behind ``inverse``, the weighted pool scores equal the selector's, the hash
constraint holds on the picks, and runs made before these options existed still resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from msmine import selector
from msmine.errors import UserError
from tests.train_model.test_train_al_variant_scoring import _setup

os.environ.setdefault("OMP_NUM_THREADS", "1")
pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_label_counts_and_inverse_weights(msrs_root, task):
    from msmine.train.al import BatchOptions, label_counts, resolve_class_weights
    from msmine.train.workspace import open_split

    dataset = open_split(msrs_root, "train", limit=40)
    classes = len(dataset.segmentation_classes if task == "segment" else dataset.class_names)
    counts = label_counts(dataset, range(40), task, classes)
    want = np.zeros(classes)
    for i in range(40):
        ann = dataset.annotations(i)
        ids = ann.mask.ravel() if task == "segment" else ann.labels["fused"]
        want += np.bincount(ids, minlength=classes)[:classes]
    assert np.array_equal(counts, want) and counts.sum() > 0
    opts = BatchOptions(class_weights="inverse")
    w = np.array(resolve_class_weights(opts, "region" if task == "segment" else "detection_max", dataset,
                                       list(range(40)), task, classes))
    assert w.mean() == pytest.approx(1.0) and (w > 0).all()
    seen = counts > 0
    assert w[np.argmax(counts)] == w[seen].min()  # the most frequent class weighs least
    assert w[np.argmin(np.where(seen, counts, np.inf))] == w[seen].max()
    assert resolve_class_weights(opts, "paper", dataset, [0], task, classes) is None  # no class weights there


@pytest.mark.parametrize(("task", "variant"), [("detect", "detection_sum"), ("segment", "region")])
def test_weighted_pool_scores_equal_the_selector(msrs_root, task, variant):
    from msmine.train import scoring
    from msmine.train.al import BatchOptions, score_pool_variant
    from msmine.train.batching import IndexedSubset, collate, model_inputs

    model, view = _setup(msrs_root, task)
    n = len(model.class_names)
    weights = tuple(float(i + 1) if i % 2 else 0.0 for i in range(n))  # odd classes count, rising
    opts = BatchOptions(variant_floor=0.0)
    got = score_pool_variant(model, view, [0, 1, 3], torch.device("cpu"), 3, "categorical", variant, opts,
                             class_weights=weights)["inconsistency"]
    plain = score_pool_variant(model, view, [0, 1, 3], torch.device("cpu"), 3, "categorical", variant,
                               opts)["inconsistency"]
    assert not np.allclose(got, plain)  # the weights change the score
    batch = collate([IndexedSubset(view, [0, 1, 3])[i] for i in range(3)])
    with torch.no_grad():
        outputs = model(*model_inputs(batch, torch.device("cpu")))
    maps = [m.numpy() for m in scoring.score_outputs(outputs, model.level_shapes, task)["maps"]]
    params = selector.VariantParams(floor=0.0, class_weights=weights, num_classes=n)
    for i in range(3):
        if task == "segment":
            kw = {"predicted": outputs["fused"]["logits"].argmax(dim=1)[i].numpy()}
        else:
            kw = {"detections": scoring.fused_detections(outputs["fused"], model.anchors, model.input_size)[i].numpy()}
        assert got[i] == pytest.approx(selector.frame_score(variant, [m[i] for m in maps], params=params, **kw),
                                       abs=1e-5)


def test_dedupe_hash_keeps_picks_apart(msrs_root):
    from msmine.phash import popcount64
    from msmine.train.al import BatchOptions, pool_meta, select_next
    from msmine.train.batching import evaluation_view
    from msmine.train.config import TrainConfig
    from msmine.train.workspace import open_split, prepared_pairs

    cfg = TrainConfig()
    cfg.model.input_size = (64, 80)
    dataset = open_split(msrs_root, "train", limit=60)  # runs of neighbouring video frames
    view = evaluation_view(prepared_pairs(dataset, cfg, train=False))
    meta = pool_meta(view)
    bits = 10

    def close(a, b):
        return int(popcount64(np.array([meta.hashes[a] ^ meta.hashes[b]], dtype=np.uint64))[0]) <= bits

    pool, labelled = list(range(5, 60)), [0, 1, 2, 3, 4]
    assert any(close(a, b) for a in pool for b in pool if a < b)  # the constraint has work to do
    opts = BatchOptions(dedupe_hash=bits)
    picks = select_next("random_dedup", None, view, pool, 10, np.random.default_rng(0), torch.device("cpu"),
                        "categorical", 4, False, options=opts, labelled=labelled, meta=meta)
    assert len(picks) == 10 and set(picks) <= set(pool)
    assert not any(close(a, b) for a in picks for b in picks + labelled if b != a)
    plain = select_next("random_dedup", None, view, pool, 10, np.random.default_rng(0), torch.device("cpu"),
                        "categorical", 4, False, options=BatchOptions(dedupe_window=0.5),  # a window that keeps all
                        labelled=labelled, meta=meta)
    assert any(close(a, b) for a in plain for b in plain + labelled if b != a)  # without it they are not apart
    with pytest.raises(UserError, match="--dedupe-hash"):
        BatchOptions(dedupe_hash=65)


def test_class_weight_specs_and_old_runs():
    from msmine.strategies import parse_class_weights
    from msmine.train.al import BatchOptions, finish_options, with_option_defaults

    names = ["person", "bicycle", "car"]
    assert parse_class_weights("none", names) == "none" and parse_class_weights("inverse", names) == "inverse"
    assert parse_class_weights("car=0.5, person=2", names) == (2.0, 1.0, 0.5)
    assert parse_class_weights("1,0,3", names) == (1.0, 0.0, 3.0)
    for bad, says in (("zebra=1", "unknown class 'zebra'; the model's classes: person, bicycle, car"),
                      ("1,2", "2 weights for 3 classes"), ("person=x", "'x' is not a number"),
                      ("person=-1", "finite and >= 0"), ("0,0,0", "every weight is 0"),
                      ("person=1,2", "mix of NAME=W and plain weights"), ("", "expected none, inverse")):
        with pytest.raises(UserError, match=says):
            parse_class_weights(bad, names)
    opts = finish_options(BatchOptions(), "car=2", names, ["random", "inconsistency.detection_max"])
    assert opts.class_weights == (1.0, 1.0, 2.0) and opts.plain  # weights change the score, not the batch rule
    with pytest.raises(UserError, match="none of the strategies"):
        finish_options(BatchOptions(), "car=2", names, ["random", "inconsistency"])
    with pytest.raises(UserError, match="random_dedup: expected --dedupe-window > 0 or --dedupe-hash"):
        finish_options(BatchOptions(), "none", names, ["random", "random_dedup"])
    # a run folder written before --class-weights / --dedupe-hash existed compares equal to today's key
    import json
    from dataclasses import asdict

    key = json.loads(json.dumps({"sizes": [4, 8], "options": asdict(BatchOptions())}, default=str))
    old = {"sizes": [4, 8], "options": {k: v for k, v in key["options"].items()
                                         if k not in ("class_weights", "dedupe_hash")}}
    assert old != key and with_option_defaults(old) == key
