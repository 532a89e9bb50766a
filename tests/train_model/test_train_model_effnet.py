"""EfficientNet-Lite: the ImageNet weights load for real, fail loudly on a mismatch, initialise the
thermal stream, and the dual-stream Lite0 model trains on real MSRS pairs and exports with parity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from msmine.errors import UserError
from msmine.train.config import ModelConfig, TrainConfig
from msmine.train.models import build_model
from msmine.train.models.efficientnet_lite import (
    LITE_NORMALIZATION,
    EfficientNetLite,
    load_lite_weights,
    pretrained_lite,
    read_state_dict,
    stage_specs,
)

# ImageNet-1k classes a road scene plausibly shows: vehicles, wheels, two-wheelers, street furniture.
ROAD_SCENE = {
    407,  # ambulance
    436,  # beach wagon
    444,  # tandem bicycle
    468,  # cab
    479,  # car wheel
    511,  # convertible
    555,  # fire engine
    569,  # garbage truck
    581,  # grille
    609,  # jeep
    627,  # limousine
    637,  # mailbox
    654,  # minibus
    656,  # minivan
    665,  # moped
    670,  # motor scooter
    671,  # mountain bike
    675,  # moving van
    704,  # parking meter
    717,  # pickup
    733,  # pole
    734,  # police van
    751,  # racer
    757,  # recreational vehicle
    779,  # school bus
    817,  # sports car
    829,  # streetcar
    864,  # tow truck
    867,  # trailer truck
    870,  # tricycle
    874,  # trolleybus
    880,  # unicycle
    919,  # street sign
    920,  # traffic light
}
DAY_FRAMES = ("00093D", "00109D", "00112D")  # MSRS train day frames with traffic in view
SIZE = (128, 160)  # export test
TRAIN_SIZE = (64, 96)  # training test: small, the machine is shared
SEG_NAMES = [f"c{i}" for i in range(9)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine two spinning OpenMP threads are ~10x slower
    than one for these small tensors."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lite0_state():
    state, _ = read_state_dict("imagenet", "lite0")
    return state


def _frames(msrs_root) -> torch.Tensor:
    imgs = []
    for name in DAY_FRAMES:
        bgr = cv2.imread(str(msrs_root / "train" / "visible" / f"{name}.jpg"))
        assert bgr is not None, name
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (320, 240), interpolation=cv2.INTER_AREA)
        imgs.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    mean = torch.tensor(LITE_NORMALIZATION["visible"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(LITE_NORMALIZATION["visible"]["std"]).view(1, 3, 1, 1)
    return (torch.stack(imgs) - mean) / std


def _top5(net, x) -> list[list[int]]:
    with torch.no_grad():
        return net.eval()(x).topk(5, dim=1).indices.tolist()


@pytest.mark.realdata
@pytest.mark.parametrize("tf_same", [False, True])  # symmetric padding (default) and TF's exact SAME
def test_pretrained_lite0_sees_a_road_scene(msrs_root, lite0_state, tf_same):
    net = EfficientNetLite("lite0", tf_same=tf_same)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(4.65e6, rel=0.01)
    load_lite_weights(net, lite0_state)
    x = _frames(msrs_root)
    top5 = _top5(net, x)
    hits = [sum(c in ROAD_SCENE for c in t) for t in top5]
    assert all(t[0] in ROAD_SCENE for t in top5), top5
    assert min(hits) >= 3, top5  # most of each frame's top 5 are traffic classes

    # Scrambled weights (each tensor's values permuted) must not pass the same check.
    gen = torch.Generator().manual_seed(0)
    scrambled = {k: v.flatten()[torch.randperm(v.numel(), generator=gen)].view_as(v) if v.is_floating_point() else v
                 for k, v in lite0_state.items()}
    bad = EfficientNetLite("lite0", tf_same=tf_same)
    load_lite_weights(bad, scrambled)
    bad_top5 = _top5(bad, x)
    assert bad_top5 != top5
    assert sum(c in ROAD_SCENE for t in bad_top5 for c in t) < sum(hits) // 2


def test_variants_follow_the_lite_scaling():
    # Lite keeps the first and last stage (1 block each); Lite1/2 deepen the rest, Lite2 widens.
    assert [s.repeats for s in stage_specs("lite0")] == [1, 2, 2, 3, 3, 4, 1]
    assert [s.repeats for s in stage_specs("lite2")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.out_channels for s in stage_specs("lite2")] == [16, 24, 48, 88, 120, 208, 352]
    feats = EfficientNetLite("lite0", num_classes=0, out_strides=(4, 8, 16, 32))
    assert feats.out_channels == [24, 40, 112, 320]
    with torch.no_grad():
        out = feats.eval()(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in out] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_key_or_shape_mismatch_is_one_clear_error(lite0_state):
    state = dict(lite0_state)
    del state["_blocks.3._depthwise_conv.weight"]
    state["_blocks.3._se_reduce.weight"] = torch.zeros(4, 144, 1, 1)
    state["_blocks.5._project_conv.weight"] = torch.zeros(80, 999, 1, 1)
    with pytest.raises(UserError) as err:
        load_lite_weights(EfficientNetLite("lite0"), state, "bad.pth")
    msg = str(err.value)
    assert "bad.pth" in msg and "\n" not in msg
    assert "1 missing: _blocks.3._depthwise_conv.weight" in msg
    assert "1 unexpected: _blocks.3._se_reduce.weight" in msg
    assert "_blocks.5._project_conv.weight: file (80, 999, 1, 1) vs model (80, 240, 1, 1)" in msg
    # Lite1 weights into a Lite0 architecture: refused, never half-loaded.
    lite1, _ = read_state_dict("imagenet", "lite1")
    with pytest.raises(UserError, match=r"missing|unexpected"):
        load_lite_weights(EfficientNetLite("lite0", num_classes=0), lite1)
    # The feature extractor drops only the classifier head, which must be there.
    trunk = {k: v for k, v in lite0_state.items() if not k.startswith(("_fc.", "_conv_head.", "_bn1."))}
    with pytest.raises(UserError, match="classifier head"):
        load_lite_weights(EfficientNetLite("lite0", num_classes=0), trunk)


def test_thermal_stream_starts_from_the_averaged_rgb_stem(lite0_state):
    model = build_model(ModelConfig(backbone="lite0", input_size=SIZE, pretrained="imagenet"))
    stem = lite0_state["_conv_stem.weight"]
    assert torch.equal(model.visible_backbone._conv_stem.weight, stem)
    assert model.thermal_backbone._conv_stem.weight.shape == (32, 1, 3, 3)
    assert torch.allclose(model.thermal_backbone._conv_stem.weight, stem.mean(dim=1, keepdim=True))
    for key in ("_blocks.7._depthwise_conv.weight", "_blocks.15._bn2.running_var"):
        assert torch.equal(model.thermal_backbone.state_dict()[key], lite0_state[key])
    scratch = build_model(ModelConfig(backbone="lite0", input_size=SIZE))
    assert not torch.equal(scratch.visible_backbone._conv_stem.weight, stem)


def _lite_cfg(task: str, size=SIZE) -> TrainConfig:
    cfg = TrainConfig()
    cfg.model = ModelConfig(task=task, backbone="lite0", input_size=size, pretrained="imagenet",
                            anchor_spacing="geometric", scales_per_octave=3, aspect_ratios=(0.4, 1.0, 2.0),
                            anchor_scales=(0.04, 0.64), cls_loss="focal", box_loss="giou")
    cfg.data.augment = False
    return cfg


@pytest.mark.realdata
@pytest.mark.parametrize("task", ["detect", "segment"])
def test_lite0_dual_stream_shapes_and_training_on_real_pairs(msrs_root, task):
    from msmine.train.batching import collate, model_inputs
    from msmine.train.losses import build_detection_targets, loss_options, model_loss
    from msmine.train.models import parameter_groups
    from msmine.train.scoring import score_outputs
    from msmine.train.workspace import fit_model_to_dataset, open_split, prepared_pairs

    cfg = _lite_cfg(task, TRAIN_SIZE)
    cfg.model.freeze_stages = 3  # exercised here: stem + stages 1-3 (to stride 8) frozen, BN statistics kept
    dataset = open_split(msrs_root, "train", limit=2)
    fit_model_to_dataset(cfg, dataset)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    pairs = prepared_pairs(dataset, cfg, train=True)
    batch = collate([pairs[i] for i in range(len(pairs))])
    v, t = model_inputs(batch, "cpu")

    model.eval()
    with torch.no_grad():
        out = model(v, t)
    n = v.shape[0]
    assert list(out) == ["visible", "thermal", "fused"]
    if task == "detect":
        assert [s[:2] for s in model.level_shapes] == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
        a = sum(h * w * k for h, w, k in model.level_shapes)
        assert model.anchors.shape == (a, 4) and model.level_shapes[0][2] == 9
        for o in out.values():
            assert o["logits"].shape == (n, a, 4) and o["deltas"].shape == (n, a, 4)
        # focal prior: every anchor starts as background with probability ~0.99
        assert float(torch.softmax(out["fused"]["logits"], -1)[..., 0].mean()) > 0.9
        batch["targets"] = {b: build_detection_targets(model.anchors, batch["boxes"][b], batch["labels"][b])
                            for b in ("visible", "thermal", "fused")}
    else:
        assert model.level_shapes == [(16, 24, 1)]  # stride 4
        for o in out.values():
            assert o["logits"].shape == (n, 9, 16, 24)
    scores = score_outputs(out, model.level_shapes, task)
    assert scores["inconsistency"].shape == (n,) and [tuple(m.shape[1:]) for m in scores["maps"]] == \
        [s[:2] for s in model.level_shapes]

    groups = parameter_groups(model, 0.1)
    assert [g["lr_scale"] for g in groups] == [0.1, 1.0]
    frozen = model.visible_backbone._blocks[0]._depthwise_conv.weight
    assert not frozen.requires_grad and all(p is not frozen for g in groups for p in g["params"])
    before = frozen.clone()
    opt = torch.optim.AdamW(groups, lr=3e-3, weight_decay=0.0)
    for g in opt.param_groups:
        g["lr"] = 3e-3 * g["lr_scale"]
    model.train()
    assert not model.visible_backbone._bn0.training  # frozen stem keeps its ImageNet statistics
    losses = []
    for _ in range(6):
        loss, _ = model_loss(model(v, t), batch, model.anchors, task, **loss_options(model))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-2:]) < 0.75 * losses[0], losses
    assert torch.equal(frozen, before)


@pytest.mark.realdata
def test_lite0_exports_through_msmine_export_with_parity(msrs_root, tmp_path):
    import onnx
    import onnxruntime as ort

    from msmine.calibration.int8_reader import calibration_batches
    from msmine.export.wrapper import ExportWrapper
    from msmine.loop.cli import main
    from msmine.train.checkpoint import load_checkpoint, save_checkpoint

    cfg = _lite_cfg("detect")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ckpt = save_checkpoint(tmp_path / "lite0.pt", model, epoch=0, step=0)
    out = tmp_path / "lite0.onnx"
    rc = main(["export", str(ckpt), "--out", str(out), "--calib-data", str(msrs_root), "--max-candidates", "20",
               "--exporter", "torchscript", "--parity-pairs", "2"])
    assert rc == 0  # the export's own parity gate passed on 2 real pairs
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["msmine.levels"] == "5" and '"mean": [0.498' in meta["msmine.normalization"]

    loaded, _ = load_checkpoint(ckpt)  # rebuilt from the checkpoint alone (no ImageNet reload)
    feeds = calibration_batches(msrs_root, SIZE, limit=2, split="test", batch_size=2)[0]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds)))
    wrapper = ExportWrapper(loaded, max_candidates=20).eval()
    with torch.no_grad():
        ref = dict(zip(wrapper.names, wrapper(torch.from_numpy(feeds["visible"]), torch.from_numpy(feeds["thermal"]))))
    assert names == wrapper.names
    np.testing.assert_allclose(got["inconsistency"], ref["inconsistency"].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["inconsistency_map_0"], ref["inconsistency_map_0"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["fused_detections"][..., 4], ref["fused_detections"][..., 4].numpy(), atol=1e-4)


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_lite1_and_lite2_weights_load_by_key(variant):
    net = pretrained_lite(variant, num_classes=0, out_strides=(8, 16, 32))
    state, _ = read_state_dict("imagenet", variant)
    assert torch.equal(net._blocks[-1]._project_conv.weight, state[f"_blocks.{len(net._blocks) - 1}._project_conv.weight"])
    with torch.no_grad():
        feats = net.eval()(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == net.out_channels


def test_detection_loss_options():
    from msmine.train.anchors import anchors_per_location, encode_boxes, make_anchors
    from msmine.train.losses import focal_loss, giou, multibox_loss

    box = torch.tensor([0.1, 0.1, 0.3, 0.5])
    assert float(giou(box, box)) == pytest.approx(1.0)
    assert float(giou(box, torch.tensor([0.6, 0.6, 0.8, 0.9]))) < 0  # disjoint: penalised by the hull
    # focal loss down-weights confident anchors far more than CE does
    logits = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])
    fl = focal_loss(logits, torch.tensor([[0, 0]]))
    assert fl[0, 0] < 0.01 * fl[0, 1]

    assert anchors_per_location((0.4, 1.0, 2.0), "geometric", 3) == 9
    anchors = make_anchors([(4, 4), (2, 2)], (64, 64), (0.1, 0.4), (1.0,), "geometric", 2)
    assert anchors.shape == (4 * 4 * 2 + 2 * 2 * 2, 4)
    assert torch.allclose(anchors[:2, 3], torch.tensor([0.1, 0.1 * 2 ** 0.5]))  # sizes within the octave
    gt = torch.tensor([[0.2, 0.2, 0.45, 0.5]])
    classes = torch.zeros(1, anchors.shape[0], dtype=torch.long)
    classes[0, :3] = 1
    target = encode_boxes(anchors, gt.expand(anchors.shape[0], 4))[None]
    perfect = target.clone()
    off = target + 0.5
    for cls_loss in ("ce", "focal"):
        for box_loss in ("smooth_l1", "giou"):
            good, _ = multibox_loss(torch.zeros(1, anchors.shape[0], 2), perfect, classes, target, anchors, cls_loss, box_loss)
            bad, parts = multibox_loss(torch.zeros(1, anchors.shape[0], 2), off, classes, target, anchors, cls_loss, box_loss)
            assert bad > good and parts["box"] > 0
    # the old configs' losses are unchanged by default
    cfg = ModelConfig()
    assert (cfg.cls_loss, cfg.box_loss, cfg.anchor_spacing, cfg.backbone) == ("ce", "smooth_l1", "linear", "small")
