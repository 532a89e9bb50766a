"""`msmine pretrain` on real pairs, tiny: 4 MSRS train pairs + 2 M3SVD clip frames, 2 steps (one,
then --resume for the second); its pretrain.pt initialises `msmine train --init` for both lite
recipes and `model.pretrained` (what `msmine al` builds its models with); test images are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from msmine.errors import UserError
from msmine.loop.cli import main

pytestmark = pytest.mark.realdata
CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TINY = ["--set", "model.input_size=[64,96]", "--set", "model.patch_size=16", "--set", "batch_size=2",
        "--set", "data.limit=4", "--set", "data.clip_stride=100", "--set", "bn_recalibration_batches=1",
        "--device", "cpu"]
PARAM = (".weight", ".bias")  # parameters (unchanged by a step at lr 0); running statistics do change


@pytest.fixture(scope="module")
def pretrained(msmine_data, tmp_path_factory, one_thread):
    """OUT after 1 step, then --resume to step 2; -> (OUT, the step-1 last.pt)."""
    out = tmp_path_factory.mktemp("pretrain")
    sources = ["--data", str(msmine_data / "msrs" / "train"), "--data", str(msmine_data / "m3svd" / "0111_1716")]
    args = ["pretrain", *sources, "--out", str(out), "--config", str(CONFIGS / "pretrain_lite0.yaml"), *TINY]
    assert main([*args, "--set", "max_steps=1"]) == 0
    first = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert main([*args, "--set", "max_steps=2", "--resume"]) == 0
    return out, first


def test_pretrain_writes_a_backbone_checkpoint_and_resumes(pretrained):
    import json

    from msmine.train.models.efficientnet_lite import read_state_dict

    out, first = pretrained
    report = json.loads((out / "pretrain.json").read_text())
    assert report["pairs"] == 6 and report["steps"] == 2  # 4 MSRS pairs + frames 0 and 100 of the clip
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert first["step"] == 1 and last["step"] == 2
    assert last["history"][0] == first["history"][0] and len(last["history"]) == 2  # resumed, not restarted
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in last["history"])
    deep = "visible_backbone._blocks.15._project_conv.weight"  # the last block (stride 32)
    assert not torch.equal(last["model"][deep], first["model"][deep])  # the resumed step trained

    ckpt = torch.load(out / "pretrain.pt", map_location="cpu", weights_only=True)
    assert ckpt["kind"] == "backbone" and ckpt["backbone"] == "lite0" and ckpt["step"] == 2
    assert ckpt["fusion_strides"] == [4, 8, 16, 32] and ckpt["init"] == "imagenet"
    assert {k.split(".", 1)[0] for k in ckpt["model"]} == {"visible_backbone", "thermal_backbone", "fusion"}
    imagenet, _ = read_state_dict("imagenet", "lite0")
    key = deep.split(".", 1)[1]
    assert not torch.equal(ckpt["model"][deep], imagenet[key])  # it moved off ImageNet
    assert torch.equal(ckpt["model"][deep], last["model"][deep])
    # the config's freeze_stages: 2 keeps the stems at ImageNet (the thermal one averaged over RGB)
    assert torch.equal(ckpt["model"]["visible_backbone._conv_stem.weight"], imagenet["_conv_stem.weight"])
    assert torch.equal(ckpt["model"]["thermal_backbone._conv_stem.weight"],
                       imagenet["_conv_stem.weight"].mean(dim=1, keepdim=True))
    # batch-norm statistics re-estimated on unmasked pairs (not those of the masked training batches)
    bn = "thermal_backbone._blocks.15._bn2.running_mean"
    assert not torch.allclose(ckpt["model"][bn], last["model"][bn])


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_pretrain_output_initialises_train_init(pretrained, msrs_root, tmp_path, task):
    from msmine.train.checkpoint import read_checkpoint

    out, _ = pretrained
    pre = torch.load(out / "pretrain.pt", map_location="cpu", weights_only=True)["model"]
    run = tmp_path / task
    # lr 0: two real steps that leave every parameter where --init put it
    rc = main(["train", "--data", str(msrs_root), "--config", str(CONFIGS / f"{task}_lite0.yaml"), "--out", str(run),
               "--init", str(out / "pretrain.pt"), "--device", "cpu", "--set", "max_steps=2",
               "--set", "model.input_size=[64,96]", "--set", "batch_size=2", "--set", "data.limit=4",
               "--set", "data.val_split=", "--set", "optim.lr=0", "--set", "optim.weight_decay=0"])
    assert rc == 0
    trained = read_checkpoint(run / "last.pt")
    assert trained["step"] == 2 and trained["task"] == task
    assert trained["model_config"]["pretrained"] == str(out / "pretrain.pt")
    weights = trained["model"]
    streams = [k for k in pre if k.startswith(("visible_backbone.", "thermal_backbone.")) and k.endswith(PARAM)]
    assert len(streams) > 200
    assert all(torch.equal(weights[k], pre[k]) for k in streams)
    strides = [8, 16, 32] if task == "detect" else [4, 8, 16, 32]
    for level, stride in enumerate(strides):  # fusion levels matched by stride
        src = [4, 8, 16, 32].index(stride)
        key = "merge.0.weight"
        assert torch.equal(weights[f"fusion.{level}.{key}"], pre[f"fusion.{src}.{key}"])


def test_model_pretrained_builds_al_models_and_mismatches_are_one_line(pretrained, msrs_root, capsys):
    from msmine.config import load_config
    from msmine.train.checkpoint import load_checkpoint
    from msmine.train.config import ALConfig
    from msmine.train.models import build_model

    out, _ = pretrained
    path = str(out / "pretrain.pt")
    pre = torch.load(path, map_location="cpu", weights_only=True)["model"]
    # `msmine al --set model.pretrained=...`: every AL model is build_model(cfg.train.model)
    cfg = load_config(ALConfig, CONFIGS / "al_segment.yaml",
                      ["train.model.backbone=lite0", f"train.model.pretrained={path}", "train.model.input_size=[64,96]"])
    model = build_model(cfg.train.model)
    assert torch.equal(model.state_dict()["thermal_backbone._conv_stem.weight"],
                       pre["thermal_backbone._conv_stem.weight"])
    cfg.train.model.backbone = "lite1"
    with pytest.raises(UserError, match="model.backbone=lite1"):
        build_model(cfg.train.model)
    cfg.train.model.backbone = "small"
    with pytest.raises(UserError, match="only supported with model.backbone=vgg16 or lite"):
        build_model(cfg.train.model)
    with pytest.raises(UserError, match="backbone-only checkpoint"):
        load_checkpoint(path)  # msmine evaluate / export need a whole model
    rc = main(["train", "--data", str(msrs_root), "--config", str(CONFIGS / "detect_lite0.yaml"), "--out", str(out / "x"),
               "--init", path, "--set", "model.backbone=lite2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("error: --init") and "EfficientNet-Lite0" in err[-1]


def test_pretrain_refuses_test_images(msmine_data, tmp_path, capsys):
    from msmine.train.data.unlabelled import collect_pairs

    msrs = msmine_data / "msrs"
    rc = main(["pretrain", "--data", str(msrs / "test"), "--out", str(tmp_path / "a"), *TINY])
    assert rc == 1 and "test split" in capsys.readouterr().err
    # a folder of pairs holding a test image under its MSRS id
    pid = sorted(p.stem for p in (msrs / "test" / "visible").iterdir())[0]
    for cam in ("visible", "infrared"):
        (tmp_path / "mixed" / cam).mkdir(parents=True)
        (tmp_path / "mixed" / cam / f"{pid}.jpg").symlink_to(msrs / "test" / cam / f"{pid}.jpg")
    with pytest.raises(UserError, match=f"share ids with the test set .*first: {pid}"):
        collect_pairs([str(tmp_path / "mixed")], test_sets=[str(msrs / "test")])
    # a dataset root: every split but test
    pairs = collect_pairs([str(msrs)])
    assert len(pairs) == len(list((msrs / "train" / "visible").iterdir()))
    assert not {p.pair_id for p in pairs} & {p.stem for p in (msrs / "test" / "visible").iterdir()}


def test_pretrain_sources_pulled_layout_clip_spec_and_clip_root(msmine_data, tmp_path):
    from msmine.train.data.unlabelled import UnlabelledPairs, collect_pairs

    msrs, m3svd = msmine_data / "msrs", msmine_data / "m3svd"
    # what `msmine pull` writes: DIR/train/{visible,infrared}/<upload_id>.png (here: links to MSRS jpgs)
    ids = sorted(p.stem for p in (msrs / "train" / "visible").iterdir())[:2]
    for cam in ("visible", "infrared"):
        (tmp_path / "pulled" / "train" / cam).mkdir(parents=True)
        for i in ids:
            (tmp_path / "pulled" / "train" / cam / f"u-{i}.jpg").symlink_to(msrs / "train" / cam / f"{i}.jpg")
    clip = m3svd / "0111_1716"
    spec = f"visible={clip / 'visible.mp4'},thermal={clip / 'infrared.mp4'}"
    refs = collect_pairs([str(tmp_path / "pulled"), spec], clip_stride=50)
    assert [r.pair_id for r in refs] == ["u-" + i for i in ids] + [f"0111_1716#{f:06d}" for f in (0, 50, 100, 150)]
    pairs = UnlabelledPairs(refs[1:3], (64, 96))
    assert pairs.visible.shape == (2, 64, 96, 3) and pairs.thermal.shape == (2, 64, 96, 1)
    assert pairs.visible[1].std() > 5 and pairs.thermal[1].std() > 5  # a real decoded frame, not blank
    every_clip = collect_pairs([str(m3svd)], clip_stride=1000)  # a folder of clip folders: frame 0 of each
    assert sorted(r.pair_id for r in every_clip) == sorted(f"{d.name}#000000" for d in m3svd.iterdir() if d.is_dir())
