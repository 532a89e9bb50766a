"""Why does (or doesn't) inconsistency beat random? Look at what the score selects from the pool.

    .venv/bin/python bench/al_diagnostics.py --data ../shared/data/msrs --initial 50 --steps 80 [--checkpoint CKPT]

Trains a cycle-0 model on ``initial`` random pairs (as ``msmine al`` does; or loads --checkpoint),
scores the 1,083-pair pool, and prints for the top-b pairs of each score versus random b pairs:
night fraction, objects per pair (fusion labels), the cross-modality LABEL disagreement
(|#visible boxes - #infrared boxes|, i.e. what the score tries to detect), how many picks are
near-duplicates; an alternative aggregation (mean of the 50 most inconsistent anchors) is included;
near-duplicates (frame ids within 2 of another pick), and the Spearman correlation between each
score and the label disagreement / object count over the pool.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy.stats import spearmanr

from msmine import selector
from msmine.train.batching import IndexedSubset, evaluation_view
from msmine.train.config import TrainConfig
from msmine.train.evaluate import score_pool
from msmine.train.models import build_model
from msmine.train.trainer import Trainer, seed_everything
from msmine.train.workspace import fit_model_to_dataset, open_split, prepared_pairs


@torch.no_grad()
def topk_inconsistency(model, pairs, k: int = 50) -> np.ndarray:
    """Alternative aggregation: mean of the k most inconsistent anchors of each image."""
    from msmine.train.batching import collate, model_inputs
    from msmine.train.scoring import branch_probabilities, inconsistency

    model.eval()
    out = []
    loader = torch.utils.data.DataLoader(pairs, batch_size=32, collate_fn=collate)
    for batch in loader:
        v, t = model_inputs(batch, torch.device("cpu"))
        probs = branch_probabilities(model(v, t), model.task, model.score_kind)
        per_anchor = inconsistency(probs["visible"], probs["thermal"], model.score_kind)
        out.append(per_anchor.topk(k, dim=1).values.mean(dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def near_duplicates(ids: list[str]) -> int:
    nums = sorted(int(i[:-1]) for i in ids)
    return sum(1 for a, b in zip(nums, nums[1:]) if b - a <= 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--initial", type=int, default=50)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--b", type=int, default=50)
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    cfg.batch_size = 16
    dataset = open_split(args.data, "train")
    fit_model_to_dataset(cfg, dataset)
    pairs = prepared_pairs(dataset, cfg, train=True)
    rng = np.random.default_rng(0)
    initial = sorted(int(i) for i in rng.choice(len(dataset), args.initial, replace=False))
    if args.checkpoint:
        from msmine.train.checkpoint import load_checkpoint

        model, _ = load_checkpoint(args.checkpoint)
    else:
        seed_everything(0)
        model = build_model(cfg.model)
        Trainer(model, cfg, IndexedSubset(pairs, initial), torch.device("cpu")).train(args.steps)
    pool = [i for i in range(len(dataset)) if i not in set(initial)]
    inter, intra = score_pool(model, IndexedSubset(evaluation_view(pairs), pool), torch.device("cpu"), 32)
    ann = [dataset.annotations(i) for i in pool]
    night = np.array([bool(a.is_night) for a in ann])
    objects = np.array([len(a.labels["fused"]) for a in ann])
    disagree = np.array([abs(len(a.labels["visible"]) - len(a.labels["thermal"])) for a in ann])
    ids = [a.id for a in ann]
    topk = topk_inconsistency(model, IndexedSubset(evaluation_view(pairs), pool))
    scores = {"inconsistency": inter, "entropy": intra, "combined": selector.combined(inter, intra),
              "inconsistency_top50_anchors": topk}
    report: dict = {"pool": len(pool), "b": args.b, "pool_means": {
        "night": float(night.mean()), "objects": float(objects.mean()), "label_disagreement": float(disagree.mean())}}
    picks = {name: selector.select_top(s, args.b)[0] for name, s in scores.items()}
    picks["random"] = [int(i) for i in np.random.default_rng(1).choice(len(pool), args.b, replace=False)]
    for name, sel in picks.items():
        sel = list(sel)
        report[name] = {
            "night": float(night[sel].mean()),
            "objects": float(objects[sel].mean()),
            "label_disagreement": float(disagree[sel].mean()),
            "near_duplicates": near_duplicates([ids[i] for i in sel]),
            "empty_pairs": int((objects[sel] == 0).sum()),
        }
        if name in scores:
            report[name]["spearman_vs_disagreement"] = float(spearmanr(scores[name], disagree).statistic)
            report[name]["spearman_vs_objects"] = float(spearmanr(scores[name], objects).statistic)
            report[name]["spearman_vs_night"] = float(spearmanr(scores[name], night).statistic)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
