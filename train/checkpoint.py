"""Checkpoints: one ``torch.save`` dict with the weights and everything needed to rebuild the model.

Keys: model, model_config, task, class_names, input_size, normalization, epoch, step, optimizer,
msmine_version, train_config. ``load_checkpoint`` is what ``msmine evaluate`` and the exporter use.

A second kind, ``kind: "backbone"`` (``msmine pretrain``'s ``pretrain.pt``), holds only both
EfficientNet-Lite streams and the fusion (keys: kind, backbone, fusion_strides, model, step, ...):
no task, no heads. Only ``read_checkpoint(..., allow_backbone=True)`` returns one (``msmine train
--init``, ``model.pretrained``); everything that needs a whole model refuses it in one line.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import torch

from msmine import __version__
from msmine.config import config_to_dict
from msmine.errors import UserError
from msmine.train.config import ModelConfig

REQUIRED_KEYS = ("model", "model_config", "task", "class_names", "input_size")
BACKBONE_KIND = "backbone"  # msmine pretrain's output: both backbones + fusion, no task heads
BACKBONE_KEYS = ("kind", "backbone", "fusion_strides", "model")


def is_backbone_checkpoint(data) -> bool:
    return isinstance(data, dict) and data.get("kind") == BACKBONE_KIND


def _write_atomically(path: Path, payload: dict, extra: dict | None) -> Path:
    """``payload`` (+ ``extra``) to ``path`` via a temp file and a rename: never a half-written file."""
    if extra:
        payload.update(extra)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(path, model, optimizer=None, epoch: int = 0, step: int = 0, train_config=None,
                    extra: dict | None = None) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a corrupt file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": config_to_dict(model.config),
        "task": model.task,
        "class_names": list(model.class_names),
        "input_size": list(model.input_size),
        "normalization": model.normalization,
        "epoch": int(epoch),
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "msmine_version": __version__,
        "train_config": config_to_dict(train_config) if dataclasses.is_dataclass(train_config) else train_config,
    }
    return _write_atomically(path, payload, extra)


def save_backbone_checkpoint(path, state: dict, backbone: str, fusion_strides, step: int = 0,
                             extra: dict | None = None) -> Path:
    """Write a backbone-only checkpoint (``kind: backbone``): ``state`` holds ``visible_backbone.*``,
    ``thermal_backbone.*`` and ``fusion.<i>.*`` (level i at ``fusion_strides[i]``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": BACKBONE_KIND,
        "backbone": str(backbone),
        "fusion_strides": [int(s) for s in fusion_strides],
        "model": {k: v.detach().cpu() for k, v in state.items()},
        "step": int(step),
        "msmine_version": __version__,
    }
    return _write_atomically(path, payload, extra)


def model_config_from_dict(data: dict) -> ModelConfig:
    hints = typing.get_type_hints(ModelConfig)
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            continue
        if typing.get_origin(hints[key]) is tuple:
            value = tuple(value)
        kwargs[key] = value
    return ModelConfig(**kwargs)


def read_checkpoint(path, map_location="cpu", allow_backbone: bool = False) -> dict:
    """A whole-model checkpoint; with ``allow_backbone`` also a backbone-only one (``kind: backbone``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types (pickle, zip, EOF) for a bad file
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if is_backbone_checkpoint(data):
        if not allow_backbone:
            raise UserError(f"{path} is a backbone-only checkpoint (msmine pretrain: no task heads); train a model "
                            f"from it first: msmine train --init {path} (or --set model.pretrained={path})")
        if any(k not in data for k in BACKBONE_KEYS):
            raise UserError(f"{path} is a broken backbone checkpoint (expected keys {', '.join(BACKBONE_KEYS)})")
        return data
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED_KEYS):
        raise UserError(f"{path} is not an msmine checkpoint (expected keys {', '.join(REQUIRED_KEYS)})")
    return data


def load_checkpoint(path, map_location="cpu"):
    """-> (model in eval mode, meta dict without the weights)."""
    from msmine.train.models import build_model

    data = read_checkpoint(path, map_location)
    cfg = model_config_from_dict(data["model_config"])
    cfg.pretrained = ""  # the weights come from the checkpoint
    model = build_model(cfg)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not match its model config: {str(exc)[:300]}") from None
    model.eval()
    meta = {k: v for k, v in data.items() if k not in ("model", "optimizer")}
    return model, meta
