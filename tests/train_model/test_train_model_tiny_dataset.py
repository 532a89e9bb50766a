"""A user's own tiny MSRS-layout dataset (no masks, no day/night): train, evaluate, clear errors."""

from __future__ import annotations

import json

import cv2
import numpy as np

from msmine.loop.cli import main


def make_dataset(root, pairs: int = 3):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("person\ncar\n")
    for split in ("train", "test"):
        for sub in ("visible", "infrared", "labels/visible", "labels/infrared", "labels/fusion"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(pairs):
            stem = f"pair{i}"
            cv2.imwrite(str(root / split / "visible" / f"{stem}.jpg"), rng.integers(0, 255, (120, 160, 3), np.uint8))
            cv2.imwrite(str(root / split / "infrared" / f"{stem}.jpg"), rng.integers(0, 255, (120, 160), np.uint8))
            for sub in ("visible", "infrared", "fusion"):
                (root / split / "labels" / sub / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.2 0.3 0.1 0.1\n")
    return root


def test_train_and_evaluate_on_a_users_dataset(tmp_path, capsys):
    data = make_dataset(tmp_path / "mine")
    out = tmp_path / "run"
    rc = main(["train", "--data", str(data), "--task", "detect", "--out", str(out), "--device", "cpu",
               "--set", "max_steps=2", "--set", "batch_size=2", "--set", "model.input_size=[64,96]"])
    assert rc == 0
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["val"]["fused"]) == ["all"]  # no day/night information in this dataset
    from msmine.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(out / "best.pt")
    assert meta["class_names"] == ["person", "car"] and model.anchors.shape[1] == 4
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.pt"), "--data", str(data), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["branch", "split", "mAP", "AP50", "AP75", "LAMR"]
    table = printed.index("per-class AP50")  # per-class AP, one column per class name
    assert printed[table + 1].split() == ["branch", "split", "person", "car"]
    assert all(len(cell) == 5 for cell in printed[table + 2].split()[2:])  # 0.123: one format

    assert main(["train", "--data", str(data), "--task", "segment", "--out", str(tmp_path / "seg")]) == 1
    assert "segmentation" in capsys.readouterr().err
    assert main(["evaluate", str(out / "best.pt"), "--data", str(data), "--split", "nope"]) == 1
    assert "error:" in capsys.readouterr().err
