"""`msmine train --init CKPT --class-map`: an MSRS model fine-tuned on a person-only set whose class is
named otherwise (issue 15, item 6): the model keeps the mapped classes, their head rows from --init."""

from __future__ import annotations

import os

import pytest
import torch

from msmine.loop.cli import main
from msmine.train.checkpoint import read_checkpoint, save_checkpoint
from msmine.train.config import ModelConfig
from msmine.train.data.class_map import fine_tune_classes, remap_detection_heads
from msmine.train.models import build_model

MSRS_NAMES = ["person", "bicycle", "car"]


def test_remapped_heads_give_the_init_models_logits_for_the_kept_classes():
    torch.manual_seed(0)
    old = build_model(ModelConfig(input_size=(64, 80), class_names=MSRS_NAMES, num_classes=3)).eval()
    target, rows = fine_tune_classes(["Pedestrian", "dog"], MSRS_NAMES, {"pedestrian": "car"})
    assert (target, rows) == (["car"], [2])  # dog maps to nothing: dropped
    new = build_model(ModelConfig(input_size=(64, 80), class_names=target, num_classes=1)).eval()
    new.load_state_dict(remap_detection_heads(old.state_dict(), rows, 3))
    v, t = torch.rand(2, 3, 64, 80), torch.rand(2, 1, 64, 80)
    with torch.no_grad():
        a, b = old(v, t), new(v, t)
    for branch in a:
        assert torch.allclose(b[branch]["logits"], a[branch]["logits"][..., [0, 3]], atol=1e-6)
        assert torch.equal(b[branch]["deltas"], a[branch]["deltas"])


def person_only(msrs_root, dest, n=4):
    """The first n MSRS pairs of train and test, labels reduced to people, the class called 'pedestrian'."""
    (dest).mkdir(parents=True)
    (dest / "classes.txt").write_text("0 pedestrian\n")
    for split in ("train", "test"):
        names = sorted(p.stem for p in (msrs_root / split / "visible").glob("*.jpg"))[:n]
        for folder in ("visible", "infrared"):
            (dest / split / folder).mkdir(parents=True)
            for name in names:
                os.symlink(msrs_root / split / folder / f"{name}.jpg", dest / split / folder / f"{name}.jpg")
        for branch in ("visible", "infrared", "fusion"):
            (dest / split / "labels" / branch).mkdir(parents=True)
            for name in names:
                src = msrs_root / split / "labels" / branch / f"{name}.txt"
                lines = [ln for ln in (src.read_text().splitlines() if src.exists() else []) if ln.split()[:1] == ["0"]]
                (dest / split / "labels" / branch / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return dest


@pytest.mark.realdata
def test_train_init_with_a_class_map(msrs_root, tmp_path, capsys):
    names = [ln.split()[-1] for ln in (msrs_root / "classes.txt").read_text().splitlines() if ln.strip()]
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=(128, 160), class_names=names, num_classes=len(names)))
    init = tmp_path / "msrs.pt"
    save_checkpoint(init, model, epoch=1, step=1)
    data = person_only(msrs_root, tmp_path / "llvip_like")
    quick = ["--set", "max_steps=1", "--set", "batch_size=2", "--set", "data.val_limit=2", "--device", "cpu"]
    rc = main(["train", "--data", str(data), "--init", str(init), "--out", str(tmp_path / "no"), *quick])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "give --class-map DATASET_CLASS=MODEL_CLASS" in err[-1]
    rc = main(["train", "--data", str(data), "--init", str(init), "--out", str(tmp_path / "ft"), *quick,
               "--class-map", "pedestrian=person", "--force"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    state = read_checkpoint(tmp_path / "ft" / "last.pt")
    assert state["class_names"] == ["person"] and state["model_config"]["num_classes"] == 1
    cls = state["model"]["heads.fused.cls.0.weight"]
    assert cls.shape[0] == model.state_dict()["heads.fused.cls.0.weight"].shape[0] // (len(names) + 1) * 2
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "fresh"), *quick, "--class-map", "pedestrian=person"])
    assert rc == 1 and "--class-map maps the dataset's classes onto an --init" in capsys.readouterr().err
