"""``fit()``: the one way the project trains a model (``msmine train``, ``msmine al``, ``msmine simulate``).

    result = fit(cfg, train_pairs, out=Path("runs/det"), val_pairs=val_pairs, progress=True)

It builds the model (seeded; from ``--init`` weights when given), resumes from ``OUT/last.pt``,
runs :class:`msmine.train.trainer.Trainer` with the standard hooks (logging, progress, periodic
``last.pt``, validation every ``eval_every`` epochs with ``best.pt``) plus the caller's, validates
at the end, and returns a :class:`FitResult`. A fine-tuned model (``init``) is first validated as
it is; ``best.pt`` is only written for a model at least that good, otherwise ``FitResult.refused``
holds one line with both figures (``force=True`` writes it anyway, with a warning).

Under ``torchrun`` (``WORLD_SIZE > 1``) ``fit`` joins the process group (nccl on CUDA, gloo on CPU),
trains one DistributedDataParallel model with each rank on its share of every batch, and only
rank 0 validates and writes checkpoints and logs::

    torchrun --nproc_per_node 2 -m msmine.loop.cli train --data DIR --out runs/ddp --device cpu
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from msmine.errors import UserError
from msmine.metrics_format import flatten_metrics, format_flat, format_metric
from msmine.train.config import TrainConfig
from msmine.train.trainer import (
    Distributed,
    HookBase,
    Trainer,
    resolve_device,
    seed_everything,
    steps_per_epoch,
)

log = logging.getLogger(__name__)

__all__ = ["FitResult", "HookBase", "fit", "main_metric", "read_init", "steps_for"]


def main_metric(task: str) -> str:
    """The metric that picks ``best.pt`` and guards a fine-tune: fused AP50 (detect) or fused mIoU (segment)."""
    return "fused_AP50" if task == "detect" else "fused_mIoU"


def steps_for(epochs: int, pairs: int, batch_size: int, world: int = 1) -> int:
    """Steps of ``epochs`` passes over ``pairs`` (the sampler's epoch: full batches only)."""
    return max(0, epochs) * steps_per_epoch(pairs, batch_size, world)


@dataclass
class FitResult:
    steps: int  # global step at the end
    epochs: int  # completed epochs
    final_loss: float  # mean loss of the last 10% of this call's steps (NaN when no step ran)
    seconds: float  # training time of this call
    device: str
    metric: str  # the metric behind best.pt and the guard
    val: dict = field(default_factory=dict)  # nested metrics of the final model on the validation set
    history: list[dict] = field(default_factory=list)  # one row per validation (epoch, step, flat metrics)
    best_value: float | None = None  # best validation value of a written best.pt (None: no validation)
    baseline: float | None = None  # the --init model's value before training (None: no --init/validation)
    refused: str | None = None  # why best.pt was not written (the retrained model is worse than --init)
    written: list[Path] = field(default_factory=list)
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained module (plain, not DDP)


def setup_distributed(device_name: str) -> tuple[Distributed, torch.device, bool]:
    """(this rank, its device, whether this call created the process group) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    device = resolve_device(device_name)
    if world <= 1:
        return Distributed(), device, False
    import torch.distributed as td

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = False
    if not td.is_initialized():
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
    return Distributed(td.get_rank(), td.get_world_size()), device, created


def read_init(path, cfg: TrainConfig) -> dict | None:
    """Read a ``--init`` checkpoint and take its architecture into ``cfg.model`` (training settings stay).

    A backbone-only checkpoint (``msmine pretrain``'s ``pretrain.pt``) keeps ``cfg.model`` (task,
    heads, input size from the config) and becomes ``cfg.model.pretrained``: its two streams and
    fusion load when the model is built, the necks and heads start fresh; returns None (no whole
    model to validate first). A config with another backbone is a UserError.
    """
    from msmine.train.checkpoint import is_backbone_checkpoint, model_config_from_dict, read_checkpoint

    state = read_checkpoint(path, map_location="cpu", allow_backbone=True)
    if is_backbone_checkpoint(state):
        from msmine.train.models.backbone_checkpoint import check_backbone_fits

        check_backbone_fits(state, cfg.model.backbone, f"--init {path}")
        cfg.model.pretrained = str(path)
        log.info("--init %s: backbone-only checkpoint (msmine pretrain, step %s); the %s model follows the config, "
                 "its backbones and fusion load from the checkpoint", path, state.get("step"), cfg.model.task)
        return None
    cfg.model = model_config_from_dict(state["model_config"])
    cfg.model.pretrained = ""
    state["path"] = str(path)
    return state


def check_init_classes(init: dict, cfg: TrainConfig, dataset) -> None:
    names = dataset.segmentation_classes if cfg.model.task == "segment" else dataset.class_names
    if list(names or []) != list(cfg.model.class_names):
        raise UserError(f"--init {init.get('path', '')}: its classes {list(cfg.model.class_names)} differ from the "
                        f"dataset's {list(names or [])}")


# -- the standard hooks ---------------------------------------------------------------------------


class LogHook(HookBase):
    """The loss every ``log_every`` steps: debug on a terminal (the progress bar shows it), info otherwise
    (a log file gets a line per ``log_every`` steps instead of a flood of progress-bar redraws)."""

    def __init__(self, every: int, total: int, tty: bool):
        self.every, self.total, self.level = every, total, logging.DEBUG if tty else logging.INFO

    def after_step(self) -> None:
        tr = self.trainer
        if self.every and tr.step % self.every == 0:
            log.log(self.level, "step %d/%d loss %.4f", tr.step, self.total, tr.last_loss)


class ProgressHook(HookBase):
    def __init__(self, steps: int):
        self.steps, self.bar = steps, None

    def before_train(self) -> None:
        from msmine.train.progress import progress_bar

        self.bar = progress_bar(total=self.steps, desc="train")

    def after_step(self) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.trainer.last_loss:.3f}")

    def after_train(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CurveHook(HookBase):
    """``OUT/curve.csv``: one row per step (step, epoch, loss, lr) - the training curve beside the run
    (appended to on ``--resume``); validation rows are in ``metrics.json``'s ``history``."""

    def __init__(self, path: Path, append: bool):
        self.path, self.append, self.file = path, append, None

    def before_train(self) -> None:
        if not self.append and self.path.exists():
            self.path.unlink()  # an earlier run's curve
        self.append = True  # a second train() call of this fit continues the file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self.file = self.path.open("a", buffering=1)
        if new:
            self.file.write("step,epoch,loss,lr\n")

    def after_step(self) -> None:
        tr = self.trainer
        lr = tr.optimizer.param_groups[-1]["lr"]
        self.file.write(f"{tr.step},{tr.epoch},{tr.last_loss:.6g},{lr:.6g}\n")

    def after_train(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class PeriodicCheckpoint(HookBase):
    """``last.pt`` every ``every`` epochs (rank 0)."""

    def __init__(self, run: _Run, every: int):
        self.run, self.every = run, every

    def after_epoch(self) -> None:
        if self.every and self.trainer.epoch % self.every == 0:
            self.run.save_last()


class EvalHook(HookBase):
    """Validation (and best.pt) every ``every`` epochs; the other ranks wait for rank 0."""

    def __init__(self, run: _Run, every: int):
        self.run, self.every = run, every

    def after_epoch(self) -> None:
        if self.every and self.trainer.epoch % self.every == 0:
            self.run.validate()


# -- one run --------------------------------------------------------------------------------------


class _Run:
    """The state one ``fit`` call shares with its hooks: where to write, the best value so far."""

    def __init__(self, cfg: TrainConfig, trainer: Trainer, out: Path | None, val_pairs, force: bool):
        self.cfg, self.trainer, self.out, self.val_pairs, self.force = cfg, trainer, out, val_pairs, force
        self.metric = main_metric(cfg.model.task)
        self.best = float("-inf")  # best validated value so far (written or not)
        self.best_written: float | None = None
        self.baseline: float | None = None
        self.history: list[dict] = []
        self.last_metrics: dict = {}
        self.written: set[Path] = set()
        self.validated_at = -1  # the step of the latest validation (every rank)

    @property
    def main(self) -> bool:
        return self.trainer.dist.main

    def _extra(self) -> dict:
        return {"best_value": self.best, "baseline_value": self.baseline, "best_metric": self.metric}

    def save_last(self) -> None:
        from msmine.train.checkpoint import save_checkpoint

        if self.out is not None and self.main:
            tr = self.trainer
            self.written.add(save_checkpoint(self.out / "last.pt", tr.model, tr.optimizer, tr.epoch, tr.step,
                                             self.cfg, extra=self._extra()))

    def save_best(self, value: float | None) -> None:
        from msmine.train.checkpoint import save_checkpoint

        if self.out is not None and self.main:
            tr = self.trainer
            extra = {"best_metric": self.metric, "baseline_value": self.baseline}
            if value is not None:
                extra["best_value"] = value
            self.written.add(save_checkpoint(self.out / "best.pt", tr.model, None, tr.epoch, tr.step, self.cfg,
                                             extra=extra))
            self.best_written = value

    def evaluate(self) -> dict:
        """Nested metrics of the current model on the validation pairs (rank 0; {} on the others)."""
        from msmine.train.evaluate import evaluate_model

        metrics = {}
        if self.main:
            cfg = self.cfg
            metrics = evaluate_model(self.trainer.model, self.val_pairs, self.trainer.device,
                                     batch_size=max(8, cfg.batch_size), cfg=cfg, progress=True,
                                     workers=cfg.data.workers)
        self.trainer.dist.barrier()
        return metrics

    def validate(self) -> dict:
        metrics = self.evaluate()
        self.validated_at = self.trainer.step
        if not self.main:
            return metrics
        tr = self.trainer
        flat = flatten_metrics(metrics)
        self.history.append({"epoch": tr.epoch, "step": tr.step, **flat})
        self.last_metrics = metrics
        value = flat.get(self.metric, float("nan"))
        log.info("step %d: %s", tr.step, format_flat(flat, [self.metric]))
        if value == value and value > self.best:
            self.best = value
            if self.baseline is None or value >= self.baseline or self.force:
                self.save_best(value)
        return metrics


def settle_class_weights(model, cfg: TrainConfig, train_pairs, main: bool = True) -> None:
    """``model.seg_loss=wce`` without explicit weights: ENet weights from ``train_pairs``' masks.

    Computed once, when a model first trains, and written into the model's config (so checkpoints
    and every later fine-tuning cycle keep them) and into ``cfg.model``.
    """
    mcfg = getattr(model, "config", None)
    if model.task != "segment" or getattr(mcfg, "seg_loss", "ce") != "wce" or tuple(mcfg.seg_class_weights or ()):
        return
    from msmine.train.batching import mask_pixel_counts
    from msmine.train.losses import enet_class_weights

    counts = mask_pixel_counts(train_pairs, mcfg.num_classes)
    if counts.sum() == 0:
        raise UserError("model.seg_loss=wce: the training pairs have no mask pixels to weigh the classes by")
    weights = enet_class_weights(counts)
    mcfg.seg_class_weights = weights
    cfg.model.seg_class_weights = weights
    if main:
        log.info("wce class weights (ENet, from %d training masks): %s", len(train_pairs),
                 ", ".join(f"{n} {w:.2f}" for n, w in zip(mcfg.class_names, weights)))


def fit(cfg: TrainConfig, train_pairs, *, model=None, init: dict | None = None, steps: int | None = None,
        out: Path | None = None, resume: bool = False, val_pairs=None, force: bool = False, hooks=(),
        progress: bool = False, device: torch.device | None = None) -> FitResult:
    """Train on ``train_pairs`` (a PreparedPairs or a subset view of one) and return what happened.

    model: continue this module (``msmine al``'s fine-tuning cycles); default: a new one built from
      ``cfg.model`` after ``seed_everything(cfg.seed)``, with the weights of ``init`` (:func:`read_init`).
    steps: default ``cfg.max_steps``, else ``cfg.epochs`` passes over the pairs (:func:`steps_for`).
    out: where ``last.pt`` / ``best.pt`` go (None: nothing is written). resume: continue ``out/last.pt``.
    val_pairs: validation pairs (evaluated every ``cfg.eval_every`` epochs and at the end).
    """
    from msmine.train.checkpoint import read_checkpoint
    from msmine.train.models import build_model

    dist, auto_device, created = setup_distributed(cfg.device if device is None else device.type)
    device = device if device is not None and dist.world == 1 else auto_device
    try:
        if model is None:
            seed_everything(cfg.seed)
            model = build_model(cfg.model)
            if init is not None:
                try:
                    model.load_state_dict(init["model"])
                except RuntimeError as exc:
                    raise UserError(f"--init {init.get('path', '')} does not match its model config: "
                                    f"{str(exc)[:300]}") from None
                if dist.main:
                    log.info("fine-tuning from %s (step %s)", init.get("path", "a checkpoint"), init.get("step"))
        settle_class_weights(model, cfg, train_pairs, dist.main)
        if cfg.data.feature_cache_mb > 0:
            from msmine.train.models.prefix_cache import enable_prefix_cache

            if not enable_prefix_cache(model, cfg.data.feature_cache_mb) and dist.main:
                log.warning("data.feature_cache_mb has no effect: the model has no frozen stages "
                            "(model.freeze_stages with a lite backbone)")
        out = Path(out) if out is not None else None
        trainer = Trainer(model, cfg, train_pairs, device, dist=dist)
        run = _Run(cfg, trainer, out, val_pairs, force)
        total = steps if steps is not None else (
            cfg.max_steps if cfg.max_steps > 0 else steps_for(cfg.epochs, len(train_pairs), cfg.batch_size, dist.world))
        last_path = out / "last.pt" if out is not None else None
        if resume:
            if last_path is None or not last_path.is_file():
                raise UserError(f"--resume: no checkpoint to resume from at {last_path}")
            state = read_checkpoint(last_path, map_location="cpu")
            model.load_state_dict(state["model"])
            model.to(device)
            if state.get("optimizer"):
                trainer.optimizer.load_state_dict(state["optimizer"])
            trainer.step, trainer.epoch = int(state["step"]), int(state["epoch"])
            run.best = float(state.get("best_value", float("-inf")))
            run.baseline = state.get("baseline_value")
            if dist.main:
                log.info("resumed from %s at step %d (epoch %d)", last_path, trainer.step, trainer.epoch)
        elif out is not None and dist.main and (out / "best.pt").exists():
            (out / "best.pt").unlink()  # an earlier run's; this run writes its own (or, refused, none)
        if init is not None and val_pairs is not None and not resume:
            flat = flatten_metrics(run.evaluate())
            if dist.main:
                value = flat.get(run.metric, float("nan"))
                run.baseline = value if value == value else None  # undefined (no ground truth): no guard
                log.info("--init model before training: %s", format_flat(flat, [run.metric]))

        remaining = total - trainer.step
        tty = sys.stderr.isatty()
        if dist.main:
            trainer.register_hooks([LogHook(cfg.log_every, total, tty)])
            if progress and tty:
                trainer.register_hooks([ProgressHook(max(0, remaining))])
            if out is not None:
                trainer.register_hooks([PeriodicCheckpoint(run, cfg.checkpoint_every),
                                        CurveHook(out / "curve.csv", append=resume)])
        if val_pairs is not None:
            trainer.register_hooks([EvalHook(run, cfg.eval_every)])
        trainer.register_hooks(hooks)
        started = time.perf_counter()
        final_loss = float("nan")
        if remaining > 0:
            if dist.main:
                log.info("training %d steps (%d per epoch) on %s%s, %d pairs", remaining,
                         steps_per_epoch(len(train_pairs), cfg.batch_size, dist.world), device,
                         f" x {dist.world} processes" if dist.world > 1 else "", len(train_pairs))
            final_loss = trainer.train(remaining, schedule_total=total, schedule_offset=trainer.step)
        seconds = time.perf_counter() - started
        if dist.world > 1:  # parameters agree through DDP; make the buffers (batch-norm statistics) rank 0's too
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, 0)
        run.save_last()
        refused = None
        if val_pairs is None:
            run.save_best(None)
        else:
            if run.validated_at != trainer.step:  # the epoch hook may just have validated this model
                run.validate()
            if dist.main and run.baseline is not None and run.best < run.baseline:
                figures = (f"{run.metric} {format_metric(run.best)} after training < {format_metric(run.baseline)} "
                           f"of the --init model on the validation set")
                if force:
                    log.warning("%s; --force: best.pt written anyway", figures)
                else:
                    refused = (f"retrained model is worse than the one it replaces: {figures}; best.pt not "
                               f"written (last.pt kept; --force writes it anyway)")
        dist.barrier()
        return FitResult(steps=trainer.step, epochs=trainer.epoch, final_loss=final_loss, seconds=round(seconds, 2),
                         device=str(device), metric=run.metric, val=run.last_metrics, history=run.history,
                         best_value=run.best_written, baseline=run.baseline, refused=refused,
                         written=sorted(run.written), model=model)
    finally:
        if created:
            torch.distributed.destroy_process_group()
