"""`msmine simulate`: the fleet simulation on real data - does mining pay at equal upload bandwidth?

K devices (real `edge-runtime` processes) each stream a disjoint share of the MSRS train pairs as
if captured on the road, all uploading to one collection server under the same per-device budget.
An oracle labels the uploaded pairs from the ground-truth files (the stand-in for the data team),
a retraining job pulls them with `msmine pull`, fine-tunes the current model, exports and
publishes it, and the devices fetch it from the server for the next round. The same fleet runs
with each upload policy (`random`, `entropy`, `inconsistency`, ..., or a score variant such as
`inconsistency.topk`, msmine.strategies), over several seeds; `--sampling-beta` makes the devices
power-sample within their budget (`edge-runtime --sampling-beta`).

``--config`` sets the training recipe of the initial model and of every round's fine-tuning (a
training YAML, or an active-learning YAML's ``train`` section such as the mining experiment's cheap
loop recipe, so the fleet and the pool experiment train alike); ``--set`` applies on top.

With ``--task segment`` the models are segmentation models: the devices upload each branch's
class-id mask with the pair, the oracle labels the uploads with the MSRS ground-truth masks
(``train/segmentation/<id>.png``) as a PNG-mask zip through the same label import, the pull writes
``segmentation/<id>.png`` (``msmine pull --task segment``) and the metric is the fused mIoU.

Writes OUT/simulation.csv (policy, seed, round, labelled, uploaded, uploaded_bytes, metrics; for
segmentation also uploaded_masks and labelled_masks: the pairs with a fused mask on the server and
the mask label sets imported), OUT/simulation.png (fused-branch AP50 and mAP per round, or fused
mIoU, mean +- std over seeds) and OUT/report.html (the curves and the top pairs mined by the last
policy's fleet).

Every step is a product command in its own process; this module only orchestrates (no torch).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from msmine import strategies
from msmine.errors import UserError
from msmine.metrics_format import flatten_metrics, format_metric

log = logging.getLogger(__name__)

POLICIES = strategies.DEVICE_NAMES  # the strategies a device computes per pair (msmine.strategies)
LABEL_DIRS = ("visible", "infrared", "fusion")
TASKS = ("detect", "segment")
CLASS_FILES = ("classes.txt", "segmentation_classes.txt")
PLOT_METRICS = {"detect": ("fused_AP50", "fused_mAP"), "segment": ("fused_mIoU",)}


@dataclass
class SimConfig:
    data: Path  # MSRS root (train/ and test/)
    out: Path  # output folder
    devices: int = 4  # devices in the fleet
    rounds: int = 3  # mining rounds
    policies: tuple[str, ...] = ("random", "entropy", "inconsistency")  # upload policies compared
    seeds: tuple[int, ...] = (0, 1, 2)  # seeds (initial set, shares, training)
    initial: int = 50  # labelled pairs of the initial model
    pairs_per_device: int = 60  # pairs each device streams per round
    budget_per_device: int = 10  # uploads per device per round (equal for every policy)
    train_steps: int = 400  # steps of the initial model
    finetune_steps: int = 200  # fine-tuning steps per round
    input_size: tuple[int, int] = (256, 320)  # model input (H, W)
    test_limit: int = 0  # evaluate on the first N test pairs (0 = all 361)
    train_overrides: tuple[str, ...] = ()  # extra `--set key=value` for msmine train
    sampling_beta: float = float("inf")  # devices power-sample within the budget (inf = best first)
    task: str = "detect"  # "detect" (boxes, YOLO labels) or "segment" (masks, PNG mask labels)
    exporter: str = "auto"  # msmine export --exporter (auto, dynamo, torchscript)
    train_config: Path | None = None  # msmine train --config (a training YAML, or an AL YAML's train section)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="MSRS root, e.g. ../shared/data/msrs")
    parser.add_argument("--task", choices=TASKS, default="detect",
                        help="detect (boxes; fused AP50/mAP) or segment (masks on the wire, PNG mask labels, "
                             "fused mIoU); default detect")
    parser.add_argument("--out", type=Path, default=Path("runs/simulate"), help="output folder")
    parser.add_argument("--devices", type=int, default=4, help="devices in the fleet (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="mining rounds (default 3)")
    parser.add_argument("--policies", "--strategies", dest="policies", default="random,entropy,inconsistency",
                        help=f"comma-separated upload strategies from {', '.join(POLICIES)}, optionally "
                             f"with .VARIANT ({', '.join(strategies.VARIANT_NAMES)})")
    parser.add_argument("--sampling-beta", type=float, default=float("inf"),
                        help="devices draw their uploads in proportion to score ** BETA (default inf: best first)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--initial", type=int, default=50, help="labelled pairs of the initial model (default 50)")
    parser.add_argument("--pairs-per-device", type=int, default=60, help="pairs each device streams per round")
    parser.add_argument("--budget-per-device", type=int, default=10, help="uploads per device per round")
    parser.add_argument("--train-steps", type=int, default=400, help="training steps of the initial model")
    parser.add_argument("--finetune-steps", type=int, default=200, help="fine-tuning steps per round")
    parser.add_argument("--input-size", default="256,320", help="model input H,W (default 256,320)")
    parser.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test pairs (0 = all)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                        help="ONNX exporter of each round's model (msmine export --exporter; default auto)")
    parser.add_argument("--config", type=Path, default=None,
                        help="training recipe for every msmine train of the simulation: a training YAML "
                             "(configs/detect_lite0.yaml) or an active-learning YAML, whose train section is "
                             "used (configs/al_detect_lite0_cached.yaml); --set and the simulation's own "
                             "settings (steps, input size, seed) apply on top")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra training setting passed to msmine train (repeatable)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    policies = strategies.parse_list(args.policies, POLICIES, "--policies")
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        h, w = (int(v) for v in args.input_size.split(","))
    except ValueError:
        raise UserError("--seeds must be integers like 0,1,2 and --input-size like 256,320") from None
    for name in ("devices", "rounds", "initial", "pairs_per_device", "budget_per_device", "train_steps",
                 "finetune_steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not seeds:
        raise UserError("--seeds is empty")
    if not args.sampling_beta >= 0:
        raise UserError(f"--sampling-beta must be >= 0 (inf = best first), got {args.sampling_beta}")
    data = args.data.resolve()
    needs = [data / "train" / "visible", data / "test" / "visible", data / "classes.txt"]
    if args.task == "segment":
        needs += [data / "train" / "segmentation", data / "test" / "segmentation", data / "segmentation_classes.txt"]
    for need in needs:
        if not need.exists():
            raise UserError(f"--data {args.data}: {need} not found (expected the MSRS layout)")
    return SimConfig(data=data, out=args.out.resolve(), devices=args.devices, rounds=args.rounds,
                     policies=policies, seeds=seeds, initial=args.initial, pairs_per_device=args.pairs_per_device,
                     budget_per_device=args.budget_per_device, train_steps=args.train_steps,
                     finetune_steps=args.finetune_steps, input_size=(h, w), test_limit=args.test_limit,
                     train_overrides=tuple(args.overrides), sampling_beta=args.sampling_beta, task=args.task,
                     exporter=args.exporter, train_config=args.config)


def training_recipe(path: Path, task: str, out: Path) -> Path:
    """``path`` as a training YAML for ``msmine train --config``, written under ``out``: a training
    config as it is, an active-learning config's ``train`` section; its task must be ``task``."""
    import yaml

    from msmine.config import load_config, save_config
    from msmine.train.config import ALConfig, TrainConfig

    try:
        tree = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        tree = None  # load_config says what is wrong with it
    cfg = load_config(ALConfig, path).train if isinstance(tree, dict) and "train" in tree \
        else load_config(TrainConfig, path)
    if cfg.model.task != task:
        raise UserError(f"--config {path}: a {cfg.model.task} recipe, but the simulation's --task is {task}")
    out.mkdir(parents=True, exist_ok=True)
    return save_config(cfg, out / "train_config.yaml")


# -- data plumbing --------------------------------------------------------------------------------


def train_ids(data: Path) -> list[str]:
    return sorted(p.stem for p in (data / "train" / "visible").iterdir() if p.suffix.lower() in (".jpg", ".png"))


def _image(data: Path, split: str, modality: str, pair_id: str) -> Path:
    for ext in (".jpg", ".png"):
        path = data / split / modality / f"{pair_id}{ext}"
        if path.is_file():
            return path
    raise UserError(f"{data / split / modality}: no image for pair {pair_id}")


def link_pairs(data: Path, ids: list[str], root: Path, with_labels: bool = True, task: str = "detect") -> Path:
    """An MSRS-layout folder of symbolic links to the given pairs (no copies of the data); the labels
    are the YOLO files (``detect``) or the ``segmentation/<id>.png`` masks (``segment``)."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    if not (root / "classes.txt").exists():
        shutil.copyfile(data / "classes.txt", root / "classes.txt")
    for modality in ("visible", "infrared"):
        (root / "train" / modality).mkdir(parents=True, exist_ok=True)
    if with_labels and task == "segment":
        if not (root / "segmentation_classes.txt").exists():
            shutil.copyfile(data / "segmentation_classes.txt", root / "segmentation_classes.txt")
        (root / "train" / "segmentation").mkdir(parents=True, exist_ok=True)
    elif with_labels:
        for sub in LABEL_DIRS:
            (root / "train" / "labels" / sub).mkdir(parents=True, exist_ok=True)
    for pair_id in ids:
        for modality in ("visible", "infrared"):
            src = _image(data, "train", modality, pair_id)
            dst = root / "train" / modality / src.name
            if not dst.exists():
                dst.symlink_to(src)
        if with_labels and task == "segment":
            dst = root / "train" / "segmentation" / f"{pair_id}.png"
            if not dst.exists():
                dst.symlink_to(data / "train" / "segmentation" / f"{pair_id}.png")
        elif with_labels:
            for sub in LABEL_DIRS:
                dst = root / "train" / "labels" / sub / f"{pair_id}.txt"
                if not dst.exists():
                    dst.symlink_to(data / "train" / "labels" / sub / f"{pair_id}.txt")
    return root


def merge_datasets(sources: list[Path], root: Path) -> Path:
    """One MSRS-layout training folder linking every pair of the given folders."""
    if root.exists():
        shutil.rmtree(root)
    for src in sources:
        root.mkdir(parents=True, exist_ok=True)
        for name in CLASS_FILES:  # the first source's class lists
            if (src / name).is_file() and not (root / name).exists():
                shutil.copyfile(src / name, root / name)
        for path in (src / "train").rglob("*"):
            if path.is_file():
                dst = root / "train" / path.relative_to(src / "train")
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    dst.symlink_to(path.resolve())
    return root


def pixel_key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


# -- the oracle (stand-in for the data team) ------------------------------------------------------


def oracle_label(server: str, team_token: str, data: Path, candidates: list[str], task: str = "detect") -> int:
    """Label every unlabelled pair on the server from the MSRS ground truth; returns how many.

    ``detect``: the three YOLO files of each pair as a zip of ``<modality>/<upload_id>.txt``;
    ``segment``: its ``segmentation/<id>.png`` class-id mask as ``fusion/<upload_id>.png`` with the
    dataset's ``segmentation_classes.txt`` (the import maps the ids by name onto the model's classes).
    """
    return oracle_import(server, team_token, data, candidates, task)[0]


def oracle_import(server: str, team_token: str, data: Path, candidates: list[str], task: str = "detect"
                  ) -> tuple[int, int]:
    """:func:`oracle_label`, also returning the mask label sets the server stored (0 for detection)."""
    from msmine.client import PairFilter, ServerClient

    client = ServerClient(server, team_token, timeout=120.0)
    by_pixels = {}
    for pair_id in candidates:
        img = cv2.imread(str(_image(data, "train", "visible", pair_id)), cv2.IMREAD_COLOR)
        by_pixels[pixel_key(img)] = pair_id
    pending = list(client.iter_pairs(PairFilter(labelled=False), page_size=500))
    buf = io.BytesIO()
    labelled = 0
    with zipfile.ZipFile(buf, "w") as zf:
        for item in pending:
            raw = client.pair_file(item.upload_id, "visible")
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            pair_id = by_pixels.get(pixel_key(img)) if img is not None else None
            if pair_id is None:
                log.warning("oracle: uploaded pair %s matches no streamed MSRS pair", item.upload_id[:12])
                continue
            if task == "segment":
                zf.write(data / "train" / "segmentation" / f"{pair_id}.png", f"fusion/{item.upload_id}.png")
            else:
                for sub in LABEL_DIRS:
                    text = (data / "train" / "labels" / sub / f"{pair_id}.txt").read_text()
                    zf.writestr(f"{sub}/{item.upload_id}.txt", text)
            labelled += 1
        if task == "segment":
            zf.write(data / "segmentation_classes.txt", "segmentation_classes.txt")
    if not labelled:
        return 0, 0
    if task == "segment":
        got = client.post_labels(buf.getvalue(), "masks.zip", fmt="zip", modality="auto")
        return labelled, got.masks
    client.post_labels(buf.getvalue(), "labels.zip", fmt="yolo", modality="auto")
    return labelled, 0


# -- one simulation run ---------------------------------------------------------------------------


def read_metrics(path: Path) -> dict[str, float]:
    """The flat metrics of an ``msmine evaluate --out`` file."""
    return flatten_metrics(json.loads(path.read_text())["metrics"])


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.logs = cfg.out / "logs"
        self.recipe: Path | None = None  # the --config written as a training YAML (run())

    # product commands -------------------------------------------------------------------------

    def _train(self, data: Path, out: Path, steps: int, seed: int, init: Path | None, label: str) -> Path:
        from msmine.loop.orchestrate import MSMINE, run_step

        h, w = self.cfg.input_size
        cmd = [*MSMINE, "train", "--data", str(data), "--task", self.cfg.task, "--out", str(out),
               "--set", f"max_steps={steps}", "--set", f"model.input_size=[{h},{w}]", "--set", f"seed={seed}",
               "--set", "data.val_split=", "--set", "device=cpu"]
        if init is not None:
            cmd += ["--init", str(init)]
        if self.recipe is not None:
            cmd += ["--config", str(self.recipe)]
        for extra in self.cfg.train_overrides:
            cmd += ["--set", extra]
        run_step(cmd, self.logs / f"{label}.train.log", f"training ({label})")
        return out / "last.pt"

    def _evaluate(self, checkpoint: Path, label: str) -> dict[str, float]:
        from msmine.loop.orchestrate import MSMINE, run_step

        out = checkpoint.parent / "test_metrics.json"
        cmd = [*MSMINE, "evaluate", str(checkpoint), "--data", str(self.cfg.data), "--split", "test",
               "--out", str(out), "--device", "cpu"]
        if self.cfg.test_limit:
            cmd += ["--limit", str(self.cfg.test_limit)]
        run_step(cmd, self.logs / f"{label}.evaluate.log", f"evaluation ({label})")
        return read_metrics(out)

    def _export(self, checkpoint: Path, calib: Path, label: str) -> Path:
        from msmine.loop.orchestrate import MSMINE, run_step

        model = checkpoint.parent / "model.onnx"
        cmd = [*MSMINE, "export", str(checkpoint), "--out", str(model), "--calib-data", str(calib),
               "--parity-pairs", "2"]
        if self.cfg.exporter != "auto":
            cmd += ["--exporter", self.cfg.exporter]
        run_step(cmd, self.logs / f"{label}.export.log", f"export ({label})")
        return model

    def _publish(self, server: str, team_token: str, model: Path, version: str) -> None:
        from msmine.client import ServerClient

        ServerClient(server, team_token, timeout=120.0).publish_model(version, model)

    def _run_fleet(self, server: str, tokens: list[str], policy: str, seed: int, round_dir: Path,
                   frames: list[list[str]], label: str) -> list[dict]:
        """One round: every device streams its frames concurrently and uploads within its budget."""
        from msmine.loop.orchestrate import EDGE_RUNTIME, parse_edge_summary

        procs = []
        for k, ids in enumerate(frames):
            cam = link_pairs(self.cfg.data, ids, round_dir / f"device{k}", with_labels=False) / "train"
            log_file = self.logs / f"{label}.device{k}.log"
            cmd = [*EDGE_RUNTIME, "--cameras", f"visible={cam / 'visible'},thermal={cam / 'infrared'}",
                   "--model", "", "--server", server, "--token", tokens[k], "--device-id", f"device{k}",
                   "--budget", f"{self.cfg.budget_per_device}/run", "--score", policy, "--seed", str(seed * 100 + k),
                   "--decision-delay", "inf", "--suppression-gap", "0", "--no-adaptive-threshold",
                   "--threshold", "0", "--buffer-size", str(self.cfg.budget_per_device),
                   "--spool-dir", str(round_dir / f"spool{k}"), "--detections", "", "--threads", "1",
                   "--drain-timeout", "120"]
            if self.cfg.sampling_beta != float("inf"):
                cmd += ["--sampling-beta", str(self.cfg.sampling_beta)]
            out = open(log_file, "w")
            procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                           env={**os.environ, "PYTHONUNBUFFERED": "1"}), out, log_file))
        summaries = []
        for proc, out, log_file in procs:
            rc = proc.wait()
            out.close()
            text = log_file.read_text(errors="replace")
            if rc != 0:
                last = (text.strip().splitlines() or ["(no output)"])[-1]
                raise UserError(f"edge-runtime failed (exit {rc}): {last} (log: {log_file})")
            summaries.append(parse_edge_summary(text))
        return summaries

    # the loop ---------------------------------------------------------------------------------

    def run(self) -> Path:
        from msmine.loop.orchestrate import ServerProcess, create_token

        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        if cfg.train_config is not None:
            self.recipe = training_recipe(cfg.train_config, cfg.task, cfg.out)
        ids = train_ids(cfg.data)
        need = cfg.initial + cfg.devices * cfg.rounds * cfg.pairs_per_device
        if need > len(ids):
            raise UserError(f"the simulation needs {need} train pairs (initial + devices x rounds x pairs), "
                            f"the data has {len(ids)}")
        rows: list[dict] = []
        csv_path = cfg.out / "simulation.csv"
        for seed in cfg.seeds:
            rng = np.random.default_rng(seed)
            order = [ids[i] for i in rng.permutation(len(ids))]
            initial, stream = order[: cfg.initial], order[cfg.initial:need]
            shares = [stream[k::cfg.devices] for k in range(cfg.devices)]
            seed_dir = cfg.out / f"seed{seed}"
            initial_data = link_pairs(cfg.data, initial, seed_dir / "initial_data", task=cfg.task)
            print(f"seed {seed}: training the initial model on {cfg.initial} labelled pairs", flush=True)
            ckpt0 = self._train(initial_data, seed_dir / "round0", cfg.train_steps, seed, None, f"s{seed}.round0")
            metrics0 = self._evaluate(ckpt0, f"s{seed}.round0")
            model0 = self._export(ckpt0, initial_data, f"s{seed}.round0")
            extra0 = {"uploaded_masks": 0, "labelled_masks": 0} if cfg.task == "segment" else {}
            for policy in cfg.policies:
                rows.append({"policy": policy, "seed": seed, "round": 0, "labelled": cfg.initial, "uploaded": 0,
                             "uploaded_bytes": 0, "wall_s": 0.0, **extra0, **metrics0})
            for policy in cfg.policies:
                run_dir = seed_dir / policy
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                server_root = run_dir / "server"
                server_root.mkdir(parents=True)
                tokens = [create_token(server_root, device=f"device{k}") for k in range(cfg.devices)]
                team = create_token(server_root, team=True)
                checkpoint, labelled, uploaded, uploaded_bytes = ckpt0, cfg.initial, 0, 0
                labelled_masks = 0
                with ServerProcess(server_root, self.logs / f"s{seed}.{policy}.server.log") as server:
                    self._publish(server.url, team, model0, "r0")
                    for r in range(1, cfg.rounds + 1):
                        t0 = time.monotonic()
                        label = f"s{seed}.{policy}.round{r}"
                        lo, hi = (r - 1) * cfg.pairs_per_device, r * cfg.pairs_per_device
                        frames = [share[lo:hi] for share in shares]
                        self._run_fleet(server.url, tokens, policy, seed, run_dir / f"round{r}", frames, label)
                        streamed = [i for f in frames for i in f]
                        newly, new_masks = oracle_import(server.url, team, cfg.data, streamed, cfg.task)
                        labelled_masks += new_masks
                        pulled = run_dir / f"round{r}" / "pulled"
                        from msmine.loop.orchestrate import MSMINE, run_step

                        run_step([*MSMINE, "pull", "--server", server.url, "--token", team, "--labelled",
                                  "--task", cfg.task, "--out", str(pulled)],
                                 self.logs / f"{label}.pull.log", f"pull ({label})")
                        train_data = merge_datasets([initial_data, pulled], run_dir / f"round{r}" / "train_data")
                        checkpoint = self._train(train_data, run_dir / f"round{r}" / "model", cfg.finetune_steps,
                                                 seed, checkpoint, label)
                        metrics = self._evaluate(checkpoint, label)
                        model = self._export(checkpoint, train_data, label)
                        self._publish(server.url, team, model, f"r{r}")
                        client = server.client(team)
                        listed = list(client.iter_pairs(page_size=500))
                        uploaded = len(listed)
                        details = [client.get_pair(it.upload_id) for it in listed]
                        uploaded_bytes = sum(sum(f["bytes"] for f in d.files.values()) for d in details)
                        labelled += newly
                        row = {"policy": policy, "seed": seed, "round": r, "labelled": labelled,
                               "uploaded": uploaded, "uploaded_bytes": uploaded_bytes,
                               "wall_s": round(time.monotonic() - t0, 1)}
                        if cfg.task == "segment":
                            row["uploaded_masks"] = sum("fused" in (d.raw.get("masks") or {}) for d in details)
                            row["labelled_masks"] = labelled_masks
                        rows.append({**row, **metrics})
                        metric = PLOT_METRICS[cfg.task][0]
                        print(f"  seed {seed} {policy:13s} round {r}: labelled {labelled}, uploaded {uploaded} "
                              f"({uploaded_bytes / 1e6:.1f} MB), {metric.replace('_', ' ')} "
                              f"{format_metric(metrics.get(metric))}", flush=True)
                        write_csv(csv_path, rows)
                    if policy == cfg.policies[-1] and seed == cfg.seeds[-1]:
                        self._report(server.url, team, rows)
        write_csv(csv_path, rows)
        plot(rows, cfg.out / "simulation.png", PLOT_METRICS[cfg.task])
        return csv_path

    def _report(self, server: str, team: str, rows: list[dict]) -> None:
        from msmine.loop.report import fetch_top_pairs, write_report

        plot(rows, self.cfg.out / "simulation.png", PLOT_METRICS[self.cfg.task])
        pairs = fetch_top_pairs(server, team, 6)
        facts = {"devices": self.cfg.devices, "rounds": self.cfg.rounds, "policies": ", ".join(self.cfg.policies),
                 "seeds": ", ".join(map(str, self.cfg.seeds)), "budget per device and round": self.cfg.budget_per_device,
                 "pairs per device and round": self.cfg.pairs_per_device, "initial labelled": self.cfg.initial}
        title = "msmine fleet simulation on MSRS"
        if self.cfg.task == "segment":
            facts["task"] = "segment (masks on the wire, PNG mask labels, fused mIoU)"
            title += " (segmentation)"
        write_report(self.cfg.out / "report.html", title, facts, pairs,
                     curves_png=self.cfg.out / "simulation.png")


def write_csv(path: Path, rows: list[dict]) -> None:
    fixed = ["policy", "seed", "round", "labelled", "uploaded", "uploaded_bytes", "wall_s"]
    fixed += [k for k in ("uploaded_masks", "labelled_masks") if any(k in r for r in rows)]  # segmentation
    metric_cols = sorted({k for r in rows for k in r} - set(fixed))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fixed + metric_cols)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def plot(rows: list[dict], path: Path, metrics: tuple[str, ...] = ("fused_AP50", "fused_mAP")) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    policies = sorted({r["policy"] for r in rows})
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(5 * (len(metrics) + 1), 4))
    for ax, metric in zip(axes, metrics):
        for policy in policies:
            rounds = sorted({r["round"] for r in rows if r["policy"] == policy})
            means, stds = [], []
            for rd in rounds:
                vals = [r[metric] for r in rows if r["policy"] == policy and r["round"] == rd and metric in r]
                means.append(np.mean(vals) if vals else np.nan)
                stds.append(np.std(vals) if vals else np.nan)
            means, stds = np.array(means), np.array(stds)
            ax.plot(rounds, means, marker="o", label=policy)
            ax.fill_between(rounds, means - stds, means + stds, alpha=0.2)
        ax.set_xticks(sorted({r["round"] for r in rows}))
        ax.set_xlabel("round")
        ax.set_ylabel(metric + " (MSRS test)")
        ax.grid(alpha=0.3)
        ax.legend()
    ax = axes[-1]
    for policy in policies:
        rounds = sorted({r["round"] for r in rows if r["policy"] == policy})
        mb = [np.mean([r["uploaded_bytes"] / 1e6 for r in rows if r["policy"] == policy and r["round"] == rd])
              for rd in rounds]
        ax.plot(rounds, mb, marker="o", label=policy)
    ax.set_xticks(sorted({r["round"] for r in rows}))
    ax.set_xlabel("round")
    ax.set_ylabel("MB uploaded (cumulative)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    started = time.monotonic()
    csv_path = Simulation(cfg).run()
    print(f"wrote {csv_path}, {cfg.out / 'simulation.png'}, {cfg.out / 'report.html'} "
          f"in {time.monotonic() - started:.0f} s")
    return 0
