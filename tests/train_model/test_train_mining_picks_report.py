"""bench/mining_picks_report.py on a real (smoke) mining run: every strategy's first picks, in pick
order, as the paper's Fig. 5 panels through the rebuilt cycle-0 model, in one self-contained HTML and
a compact PNG; a strategy still running is read from the resume state; one-line errors otherwise."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[2]
STRATEGIES = ["random", "entropy", "inconsistency.topk"]  # random first: mining_experiment adds it


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def smoke_run(msrs_root, tmp_path_factory, one_thread):
    """One bench/mining_experiment.py --smoke run (2 seeds, 4 + 4 + 4 labelled), shared by the tests;
    20 pairs and the 'all' split only, to keep it short."""
    out = tmp_path_factory.mktemp("mining") / "run"
    rc = _load("mining_experiment").main([
        "--smoke", "--data", str(msrs_root), "--device", "cpu", "--out", str(out), "--csv", str(out / "cmp.csv"),
        "--strategies", "entropy,inconsistency.topk", "--set", "data.limit=20", "--set", "eval_splits=[all]"])
    assert rc == 0
    return out


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="strategy" data-strategy="([^"]+)">(.*?)</section>', page, re.S))


@pytest.mark.realdata
def test_report_shows_each_strategys_first_picks_as_fig5_panels(smoke_run, msrs_root, tmp_path, capsys):
    report = _load("mining_picks_report")
    page_path, png = tmp_path / "picks.html", tmp_path / "docs" / "picks.png"
    rc = report.main([str(smoke_run), "--data", str(msrs_root), "--seed", "1", "--per-strategy", "3",
                      "--html", str(page_path), "--png", str(png), "--png-pairs", "2"])
    assert rc == 0
    assert capsys.readouterr().out.strip().startswith(f"wrote {page_path} (9 picks of 3 strategies)")
    page = page_path.read_text()
    sections = _sections(page)
    assert list(sections) == STRATEGIES  # one row group per strategy, in run order
    night = dict(zip(*_pool(msrs_root)))
    for name, body in sections.items():
        labelled = json.loads((smoke_run / f"labelled_{name}_seed1.json").read_text())
        picks = labelled[4:7]  # the first selection (4 -> 8), its first 3 picks, in pick order
        rows = body.split('<div class="pair">')[1:]
        assert len(rows) == 3
        assert re.findall(r"<code>([^<]+)</code>", body) == picks
        scores = []
        for pid, row in zip(picks, rows):
            assert f"&middot; {'night' if night[pid] else 'day'} &middot;" in row.split("</div>")[0]
            imgs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', row)
            assert len(imgs) == 3  # visible, thermal, inconsistency map
            decoded = [cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR) for b in imgs]
            assert all(d is not None and d.ndim == 3 and d.shape == decoded[0].shape for d in decoded)
            h, w = decoded[0].shape[:2]
            assert w == 80 and h == 60  # the 64x80 input without its letterbox padding (MSRS is 4:3)
            m = re.search(r"score: (random draw|[^&]* ([0-9.]+)) &middot;", row)
            assert m is not None
            scores.append(None if m.group(1) == "random draw" else float(m.group(2)))
        if name == "random":
            assert scores == [None] * 3
        else:  # plain top-b: the rebuilt cycle-0 model ranks its picks as the run did
            assert all(a >= b - 1e-6 for a, b in zip(scores, scores[1:])), (name, scores)
    assert "near-duplicates" in page and "labelled_entropy_seed1.json" in page
    montage = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert montage is not None and montage.shape[1] <= 1600 and png.stat().st_size < 600_000
    assert montage.shape[0] > 3 * 40  # three strategy rows of panels


def _pool(msrs_root):
    from msmine.train.data import open_dataset

    ds = open_dataset(msrs_root, split="train")
    return list(ds.ids), list(ds.is_night)


def _run_without_picks_file(smoke_run, tmp_path, strategy: str):
    """A copy of the smoke run's seed 0 without ``strategy``'s picks file: (folder, the removed
    picks, the seed's state dict to edit and save back)."""
    import torch

    run = tmp_path / "run"
    shutil.copytree(smoke_run / "state", run / "state")
    for f in smoke_run.glob("labelled_*_seed0.json"):
        shutil.copy(f, run / f.name)
    path = run / f"labelled_{strategy}_seed0.json"
    picks_file = json.loads(path.read_text())
    path.unlink()
    return run, picks_file, torch.load(run / "state" / "seed0.pt", weights_only=False)


@pytest.mark.realdata
def test_a_strategy_still_running_is_read_from_the_state(smoke_run, msrs_root, tmp_path, capsys):
    """Interrupted after entropy's cycle 1: no picks file, the state at cycle 1. Selection 1 comes
    from the state (the same picks as the file had); selection 2 is refused in one line."""
    import torch

    report = _load("mining_picks_report")
    run, picks_file, state = _run_without_picks_file(smoke_run, tmp_path, "entropy")
    entropy = state["strategies"]["entropy"]
    entropy.update(cycle=1, labelled=entropy["labelled"][:8])
    torch.save(state, run / "state" / "seed0.pt")

    assert report.main([str(run), "--data", str(msrs_root), "--strategies", "entropy", "--per-strategy", "4"]) == 0
    page = (run / "picks.html").read_text()
    assert list(_sections(page)) == ["entropy"] and "state/seed0.pt (cycle 1)" in page
    assert re.findall(r"<code>([^<]+)</code>", page) == picks_file[4:8]
    capsys.readouterr()
    assert report.main([str(run), "--data", str(msrs_root), "--cycle", "2"]) == 1
    assert capsys.readouterr().err.strip() == ("error: strategy entropy (seed 0): no picks file "
                                               "labelled_entropy_seed0.json and the state has not passed cycle 2 "
                                               "(at cycle 1 of 2)")


@pytest.mark.realdata
def test_replay_makes_the_first_selection_again(smoke_run, msrs_root, tmp_path, capsys):
    """--replay: a strategy not started yet gets selection 1 made again from model0 (select_next with
    the run's generator); the recorded strategies are checked against their replay: all agree."""
    import torch

    report = _load("mining_picks_report")
    run, picks_file, state = _run_without_picks_file(smoke_run, tmp_path, "inconsistency.topk")
    del state["strategies"]["inconsistency.topk"]
    torch.save(state, run / "state" / "seed0.pt")

    argv = [str(run), "--data", str(msrs_root), "--strategies", ",".join(STRATEGIES), "--per-strategy", "4"]
    assert report.main(argv) == 1
    assert "--strategies: inconsistency.topk not run for seed 0" in capsys.readouterr().err
    assert report.main(argv + ["--replay"]) == 0
    page = (run / "picks.html").read_text()
    assert page.count(" = replay</td>") == 2 and page.count("<td>replayed from model0</td>") == 1
    assert re.findall(r"<code>([^<]+)</code>", _sections(page)["inconsistency.topk"]) == picks_file[4:8]
    assert report.main(argv + ["--replay", "--cycle", "2"]) == 1
    assert "--replay: only selection 1" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.parametrize("args, message", [
    (["{tmp}/nope"], "OUT {tmp}/nope: no such run folder"),
    (["{tmp}"], "OUT {tmp}: no state/run.json"),
    (["{run}", "--seed", "4"], "--seed 4: not run in {run} (seeds run: 0, 1)"),
    (["{run}", "--cycle", "3"], "--cycle 3: the run has selections 1..2 (sizes [4, 8, 12])"),
    (["{run}", "--strategies", "random,combined"], "--strategies: combined not run for seed 0"),
    (["{run}", "--per-strategy", "0"], "--per-strategy and --png-pairs must be >= 1"),
    (["{run}", "--data", "{tmp}"], "cannot tell the dataset format of {tmp}"),
])
def test_errors_are_one_line(smoke_run, msrs_root, tmp_path, capsys, args, message):
    report = _load("mining_picks_report")
    fill = {"tmp": str(tmp_path), "run": str(smoke_run)}
    argv = [a.format(**fill) for a in args]
    if "--data" not in argv:
        argv += ["--data", str(msrs_root)]
    assert report.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message.format(**fill) in err and "\n" not in err


@pytest.mark.realdata
def test_segmentation_panels_show_the_branches_masks(msrs_root):
    """A segmentation model's picks are drawn with each branch's class mask (no boxes)."""
    import torch

    from msmine.loop.report import fig5_panels
    from msmine.train.batching import PreparedPairs
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model
    from msmine.train.workspace import open_split

    report = _load("mining_picks_report")
    ds = open_split(msrs_root, "train", limit=2)
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="segment", backbone="small", input_size=(64, 80), pretrained="",
                                    num_classes=len(ds.segmentation_classes),
                                    class_names=list(ds.segmentation_classes))).eval()
    view = PreparedPairs(ds, (64, 80), train=False)
    drawn = report.render(model, view, [0, 1], torch.device("cpu"), 0.3)
    for d in drawn:
        assert d["predictions"] == {} and set(d["masks"]) == {"visible", "thermal", "fused"}
        assert all(m.shape == d["images"]["visible"].shape[:2] == (60, 80) for m in d["masks"].values())
        panels = fig5_panels(d["images"], d["predictions"], list(ds.segmentation_classes), d["masks"])
        fg = d["masks"]["visible"] != 0  # id 0 (unlabelled) stays clear; other classes are painted
        vis = panels[0][0].astype(int)
        assert np.array_equal(vis[~fg], d["images"]["visible"][~fg])
        assert fg.any() and (vis[fg] != d["images"]["visible"][fg]).any()
