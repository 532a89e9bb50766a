"""The training loop: steps over an endless, epoch-seeded data order, with hooks.

Modelled on detectron2's ``engine/train_loop.py``: a :class:`HookBase` gets ``before_train``,
``before_step``, ``after_step``, ``after_epoch`` and ``after_train`` (the last in a ``finally``, so
hooks release what they hold even when a step fails); each hook reaches the loop through its
``trainer`` attribute (``trainer.step``, ``trainer.epoch``, ``trainer.last_loss``,
``trainer.last_parts``). The learning rate follows a linear warm-up then a cosine decay over the
steps of the current ``train`` call (or the span given as ``schedule_total``).

Under ``torchrun`` (a :class:`Distributed` with ``world > 1``) the model is wrapped in
DistributedDataParallel and every rank draws a disjoint share of each epoch's seeded permutation
(what ``DistributedSampler`` does, kept in the epoch-seeded order so one process trains exactly as
before); ``cfg.batch_size`` stays the global batch. :func:`msmine.train.fit.fit` drives this loop.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from msmine.errors import UserError
from msmine.train.batching import EpochBatchSampler, collate, model_inputs
from msmine.train.config import TrainConfig
from msmine.train.losses import build_detection_targets, loss_options, model_loss

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
    """The optimizer of ``cfg.optim``. With ``optim.backbone_lr_mult`` != 1 the pretrained backbone
    and the rest get their own groups (each with an ``lr_scale`` the step applies); otherwise one group,
    in ``model.parameters()`` order, as checkpoints of earlier runs expect."""
    o = cfg.optim
    params = model.parameters()
    if getattr(o, "backbone_lr_mult", 1.0) != 1.0:
        from msmine.train.models import parameter_groups

        params = parameter_groups(model, o.backbone_lr_mult)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    raise UserError(f"optim.name must be adamw or sgd, got {o.name!r}")


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


class ShardedEpochBatchSampler(EpochBatchSampler):
    """:class:`EpochBatchSampler` split over ``world`` ranks: rank r takes batches r, r + world, ...
    of every epoch's global batches (the same seeded permutation on every rank, disjoint shares).
    With ``world == 1`` it is exactly :class:`EpochBatchSampler`.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start_epoch: int = 0, rank: int = 0, world: int = 1):
        super().__init__(size, batch_size, seed, start_epoch)
        self.rank, self.world = rank, world
        self.batch_size = max(1, min(batch_size, size // world))

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.size // (self.batch_size * self.world))

    def __iter__(self):
        if self.world == 1:
            yield from super().__iter__()
            return
        epoch = self.start_epoch
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
            for j in range(self.batches_per_epoch):
                start = (j * self.world + self.rank) * self.batch_size
                yield [(epoch, int(i)) for i in order[start : start + self.batch_size]]
            epoch += 1


def per_rank_batch(batch_size: int, world: int) -> int:
    if world > 1 and (batch_size % world or batch_size < 2 * world):
        raise UserError(f"batch_size {batch_size} does not split over {world} processes with at least 2 pairs "
                        f"each (batch norm needs 2); use a multiple of {world}, at least {2 * world}")
    return batch_size // world


def steps_per_epoch(pairs: int, batch_size: int, world: int = 1) -> int:
    """Steps of one pass over ``pairs`` (what the sampler calls an epoch; the last partial batch is dropped)."""
    return ShardedEpochBatchSampler(max(1, pairs), per_rank_batch(batch_size, world), 0, world=world).batches_per_epoch


class HookBase:
    """Override any of these; ``self.trainer`` is the running :class:`Trainer`."""

    trainer: Trainer

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        """Runs in a ``finally``: also after a failed or interrupted step."""

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass


class Trainer:
    def __init__(self, model, cfg: TrainConfig, train_set, device: torch.device, hooks=(), optimizer=None,
                 dist: Distributed | None = None):
        self.model = model.to(device)  # the plain module (attributes, checkpoints, evaluation)
        self.cfg = cfg
        self.train_set = train_set
        self.device = device
        self.dist = dist or Distributed()
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)
        self.optimizer = optimizer or make_optimizer(model, cfg)
        self.step = 0  # global step (kept across train() calls and resume)
        self.epoch = 0
        self.amp = cfg.amp and device.type == "cuda"
        self.last_loss = float("nan")
        self.last_parts: dict = {}
        self.forward = self.model  # what the step calls: the DDP wrapper when distributed
        if self.dist.world > 1:
            if len(train_set) < 2 * self.dist.world:  # batch norm needs 2 pairs per process
                raise UserError(f"{len(train_set)} training pairs cannot be shared by {self.dist.world} processes "
                                f"(at least 2 each)")
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=ids)

    def register_hooks(self, hooks) -> None:
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def _call(self, name: str) -> None:
        for hook in self.hooks:
            getattr(hook, name)()

    def _batches(self):
        """Endless (batch, ends_epoch) pairs from one DataLoader; epoch e's order is seeded by (seed, e)."""
        sampler = ShardedEpochBatchSampler(len(self.train_set), per_rank_batch(self.cfg.batch_size, self.dist.world),
                                           self.cfg.seed, self.epoch, self.dist.rank, self.dist.world)
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
            group["lr"] = lr * group.get("lr_scale", 1.0)
        visible, thermal = model_inputs(batch, self.device)
        if model.task == "detect":
            batch["targets"] = {
                b: build_detection_targets(model.anchors, batch["boxes"][b], batch["labels"][b])
                for b in ("visible", "thermal", "fused")
            }
        elif batch["mask"] is not None:
            batch["mask"] = batch["mask"].to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            outputs = self.forward(visible, thermal)
        loss, parts = model_loss(outputs, batch, model.anchors, model.task, self.cfg.branch_weights,
                                 **loss_options(model))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        return float(loss.detach()), parts

    def train(self, num_steps: int, schedule_total: int = 0, schedule_offset: int = 0) -> float:
        """Run ``num_steps`` steps; returns the mean loss of the last 10% of steps.

        The learning-rate schedule spans ``schedule_total`` steps (default ``num_steps``) starting at
        ``schedule_offset`` (used when resuming).
        """
        if num_steps <= 0:
            return float("nan")
        total = schedule_total or num_steps
        recent: list[float] = []
        batches = self._batches()
        try:
            self._call("before_train")
            for i in range(num_steps):
                batch, ends_epoch = next(batches)
                self._call("before_step")
                warmup = min(self.cfg.optim.warmup_steps, total // 4)
                loss, parts = self.run_step(batch, lr_at(schedule_offset + i, total, self.cfg.optim.lr, warmup))
                if not np.isfinite(loss):
                    raise UserError(f"training diverged (loss {loss}) at step {self.step}; lower optim.lr")
                self.step += 1
                self.last_loss, self.last_parts = loss, parts
                recent.append(loss)
                self._call("after_step")
                if ends_epoch:
                    self.epoch += 1
                    self._call("after_epoch")
        finally:
            batches.close()  # shuts the DataLoader's workers down
            self._call("after_train")
        tail = recent[-max(1, len(recent) // 10):]
        return float(np.mean(tail))
