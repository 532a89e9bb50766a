"""`msmine evaluate --class-map`: an MSRS model evaluated on a person-only set whose class is named
differently (as LLVIP's pedestrians would be), issue 15 item 6."""

from __future__ import annotations

import json
import os

import pytest

from msmine.loop.cli import main
from tests.train_model.test_train_model_cli import trained  # noqa: F401 (module fixture, reused)


def person_only_copy(msrs_root, dest, n=6):
    """The first n MSRS test pairs, labels reduced to people, the class called 'pedestrian'."""
    dest.mkdir(parents=True)
    (dest / "classes.txt").write_text("0 pedestrian\n")
    names = sorted(p.stem for p in (msrs_root / "test" / "visible").glob("*.jpg"))[:n]
    for folder in ("visible", "infrared"):
        (dest / "test" / folder).mkdir(parents=True)
        for name in names:
            os.symlink(msrs_root / "test" / folder / f"{name}.jpg", dest / "test" / folder / f"{name}.jpg")
    for branch in ("visible", "infrared", "fusion"):
        (dest / "test" / "labels" / branch).mkdir(parents=True)
        for name in names:
            src = msrs_root / "test" / "labels" / branch / f"{name}.txt"
            lines = [ln for ln in (src.read_text().splitlines() if src.exists() else []) if ln.split()[:1] == ["0"]]
            (dest / "test" / "labels" / branch / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return dest


@pytest.mark.realdata
def test_evaluate_with_a_class_map(trained, msrs_root, tmp_path, capsys):  # noqa: F811
    data = person_only_copy(msrs_root, tmp_path / "llvip_like")
    rc = main(["evaluate", str(trained / "best.pt"), "--data", str(data), "--device", "cpu"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--class-map DATASET_CLASS=MODEL_CLASS" in err[0]
    out = tmp_path / "m.json"
    rc = main(["evaluate", str(trained / "best.pt"), "--data", str(data), "--device", "cpu",
               "--class-map", "pedestrian=person", "--out", str(out)])
    assert rc == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert 0.0 <= metrics["fused"]["all"]["AP50"] <= 1.0
    rc = main(["evaluate", str(trained / "best.pt"), "--data", str(data), "--device", "cpu",
               "--class-map", "pedestrian=dog"])
    assert rc == 1 and "model does not have" in capsys.readouterr().err
