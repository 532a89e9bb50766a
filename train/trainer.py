"""A small training loop with hooks (in the spirit of detectron2's ``TrainerBase``).

``Trainer.train(num_steps)`` runs steps over an endless, epoch-seeded data order; hooks get
``before_train(trainer)``, ``after_step(trainer, loss, parts)``, ``after_epoch(trainer)`` and
``after_train(trainer)``. The learning rate follows a linear warm-up then a cosine decay over the
steps of the current ``train`` call.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from msmine.errors import UserError
from msmine.train.batching import EpochBatchSampler, collate, model_inputs
from msmine.train.config import TrainConfig
from msmine.train.losses import build_detection_targets, model_loss

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed torch's default generator, which ``nn.Module`` weight initialisation draws from.

    Everything else (data order, augmentation, random selection) uses its own seeded generator.
    """
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    raise UserError(f"optim.name must be adamw or sgd, got {o.name!r}")


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    def __init__(self, model, cfg: TrainConfig, train_set, device: torch.device, hooks=(), optimizer=None):
        self.model = model.to(device)
        self.cfg = cfg
        self.train_set = train_set
        self.device = device
        self.hooks = list(hooks)
        self.optimizer = optimizer or make_optimizer(model, cfg)
        self.step = 0  # global step (kept across train() calls and resume)
        self.epoch = 0
        self.amp = cfg.amp and device.type == "cuda"
        self.last_loss = float("nan")

    def _batches(self):
        """Endless (batch, ends_epoch) pairs from one DataLoader; epoch e's order is seeded by (seed, e)."""
        sampler = EpochBatchSampler(len(self.train_set), self.cfg.batch_size, self.cfg.seed, self.epoch)
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.cfg.data.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.cfg.data.workers > 0 else None,
        )
        per_epoch = sampler.batches_per_epoch
        for j, batch in enumerate(loader):
            yield batch, j % per_epoch == per_epoch - 1

    def run_step(self, batch: dict, lr: float) -> tuple[float, dict]:
        model = self.model
        model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        visible, thermal = model_inputs(batch, self.device)
        if model.task == "detect":
            batch["targets"] = {
                b: build_detection_targets(model.anchors, batch["boxes"][b], batch["labels"][b])
                for b in ("visible", "thermal", "fused")
            }
        elif batch["mask"] is not None:
            batch["mask"] = batch["mask"].to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            outputs = model(visible, thermal)
        loss, parts = model_loss(outputs, batch, model.anchors, model.task, self.cfg.branch_weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        return float(loss.detach()), parts

    def train(self, num_steps: int, progress: bool = False, schedule_total: int = 0, schedule_offset: int = 0) -> float:
        """Run ``num_steps`` steps; returns the mean loss of the last 10% of steps.

        The learning-rate schedule spans ``schedule_total`` steps (default ``num_steps``) starting at
        ``schedule_offset`` (used when resuming).
        """
        if num_steps <= 0:
            return float("nan")
        total = schedule_total or num_steps
        for hook in self.hooks:
            if hasattr(hook, "before_train"):
                hook.before_train(self)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=num_steps, desc="train", leave=False)
        recent: list[float] = []
        batches = self._batches()
        try:
            for i in range(num_steps):
                batch, ends_epoch = next(batches)
                warmup = min(self.cfg.optim.warmup_steps, total // 4)
                loss, parts = self.run_step(batch, lr_at(schedule_offset + i, total, self.cfg.optim.lr, warmup))
                if not np.isfinite(loss):
                    raise UserError(f"training diverged (loss {loss}) at step {self.step}; lower optim.lr")
                self.step += 1
                self.last_loss = loss
                recent.append(loss)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}")
                if self.cfg.log_every and self.step % self.cfg.log_every == 0:
                    log.debug("step %d loss %.4f %s", self.step, loss, parts)
                for hook in self.hooks:
                    if hasattr(hook, "after_step"):
                        hook.after_step(self, loss, parts)
                if ends_epoch:
                    self.epoch += 1
                    for hook in self.hooks:
                        if hasattr(hook, "after_epoch"):
                            hook.after_epoch(self)
        finally:
            batches.close()  # shuts the DataLoader's workers down
            if bar is not None:
                bar.close()
        for hook in self.hooks:
            if hasattr(hook, "after_train"):
                hook.after_train(self)
        tail = recent[-max(1, len(recent) // 10):]
        return float(np.mean(tail))
