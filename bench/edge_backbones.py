"""Throughput per backbone and resolution on the device: the table of docs/edge.md.

    .venv/bin/python bench/edge_backbones.py build      # untrained checkpoints at every size (seconds)
    .venv/bin/python bench/edge_backbones.py export     # msmine export of each (fp32; the trained ones fp32/fp16/int8)
    .venv/bin/python bench/edge_backbones.py measure    # bench/bench_edge.py on each exported model
    .venv/bin/python bench/edge_backbones.py table      # docs/results/edge_backbones.csv rows + a Markdown table
    .venv/bin/python bench/edge_backbones.py all        # the four in order

Throughput does not depend on the weights, so every backbone (small, lite0, lite1, lite2) x task x
input size (H x W 256x320, 384x480, 480x640) without a trained checkpoint gets one built at that size
by ``build_model`` with random weights (``configs/<task>_lite0.yaml`` / ``<task>_small.yaml``, backbone
and input size overridden), saved as an ``msmine train`` checkpoint and exported with ``msmine
export`` (the same parity gate on real MSRS pairs). The trained checkpoints (``--det-ckpt``,
``--seg-ckpt``: Lite0 at 320x256) are exported in fp32, fp16 and int8 (INT8 calibrated on MSRS
*train* pairs, the fidelity gate on the test split: the Spearman of the score against fp32 is read
from ``<model>.fidelity.json``).

``measure`` runs ``bench/bench_edge.py --model M --clip C --rss-duration 0`` once per model (each
call prefixed by ``--wrap``, e.g. a script that keeps other jobs off the CPU during the measurement)
and keeps its JSON (``--out``) under ``--work``; a model already measured is skipped (``--force`` to
redo). Exports run under ``nice -n 15``. ``--only`` restricts any step to model names containing
one of the given strings (e.g. ``--only detect_lite0_256x320``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BACKBONES = ("small", "lite0", "lite1", "lite2")
SIZES = ((256, 320), (384, 480), (480, 640))  # H x W: 320x256, 480x384, 640x480 in W x H
DATE = "2026-12-02"


@dataclass(frozen=True)
class Item:
    """One model to measure."""

    task: str
    backbone: str
    hw: tuple[int, int]
    precision: str = "fp32"
    weights: str = "random"  # "random" (built at this size, untrained) or "trained" (a checkpoint of msmine train)

    @property
    def name(self) -> str:
        return f"{self.task}_{self.backbone}_{self.hw[0]}x{self.hw[1]}_{self.weights}_{self.precision}"

    @property
    def stem(self) -> str:  # one checkpoint / fp32 export for every precision
        return f"{self.task}_{self.backbone}_{self.hw[0]}x{self.hw[1]}_{self.weights}"


def items(args) -> list[Item]:
    out = [Item("detect", b, hw) for b in BACKBONES for hw in SIZES]
    out += [Item("segment", b, hw) for b in args.seg_backbones for hw in SIZES]
    for task, ckpt in (("detect", args.det_ckpt), ("segment", args.seg_ckpt)):
        if ckpt:
            out += [Item(task, "lite0", (256, 320), p, "trained") for p in ("fp32", "fp16", "int8")]
    if args.only:
        out = [i for i in out if any(s in i.name for s in args.only)]
    return out


def paths(args, item: Item) -> dict[str, Path]:
    work = Path(args.work)
    if item.weights == "trained":
        ckpt = Path(args.det_ckpt if item.task == "detect" else args.seg_ckpt)
    else:
        ckpt = work / "ckpt" / f"{item.stem}.pt"
    suffix = "" if item.precision == "fp32" else f"-{item.precision}"
    model = work / "models" / f"{item.stem}{suffix}.onnx"
    return {"ckpt": ckpt, "model": model, "fidelity": model.with_suffix(".fidelity.json"),
            "bench": work / "bench" / f"{item.name}.json", "log": work / "logs" / f"{item.name}.log"}


def build(args) -> None:
    """An untrained ``msmine train`` checkpoint for every random-weights item (the recipe's architecture)."""
    from msmine.config import load_config
    from msmine.train.checkpoint import save_checkpoint
    from msmine.train.config import TrainConfig
    from msmine.train.models import build_model

    for item in items(args):
        p = paths(args, item)
        if item.weights != "random" or item.precision != "fp32" or (p["ckpt"].is_file() and not args.force):
            continue
        family = "small" if item.backbone == "small" else "lite0"
        cfg = load_config(TrainConfig, REPO / "configs" / f"{item.task}_{family}.yaml",
                          [f"model.backbone={item.backbone}", f"model.input_size=[{item.hw[0]},{item.hw[1]}]",
                           "model.pretrained="])
        import torch

        torch.manual_seed(0)
        model = build_model(cfg.model).eval()
        save_checkpoint(p["ckpt"], model, train_config=cfg)
        print(f"built {p['ckpt']} ({sum(v.numel() for v in model.parameters()) / 1e6:.2f} M parameters)")


def run_logged(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join(cmd), flush=True)
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO).returncode
    tail = log.read_text().strip().splitlines()[-2:]
    print(f"  -> rc {rc}: " + " | ".join(tail), flush=True)
    return rc


def export(args) -> None:
    for item in items(args):
        p = paths(args, item)
        if p["model"].is_file() and not args.force:
            continue
        p["model"].parent.mkdir(parents=True, exist_ok=True)
        cmd = ["nice", "-n", "15", str(REPO / ".venv/bin/msmine"), "export", str(p["ckpt"]), "--out", str(p["model"]),
               "--precision", item.precision, "--calib-data", args.calib_data, "--exporter", "torchscript"]
        if item.precision != "fp32":
            cmd += ["--calib-pairs", str(args.calib_pairs)]
        run_logged(cmd, p["log"].with_suffix(".export.log"))


def settings(args, item: Item) -> tuple[str, int, int]:
    """(clip, raw-session pairs, repeats): the default 320x256 on the long clip, the larger sizes on the short
    one (one measurement of a slow model must fit in a few minutes)."""
    if item.hw == SIZES[0]:
        return args.clip, args.raw_limit, args.repeats
    return args.clip_large, args.raw_limit_large, args.repeats_large


def rejected_int8(args) -> None:
    """An INT8 model the fidelity gate rejected is deleted by ``msmine export``; for its size and throughput
    rebuild it exactly as the export did (the same FP32 reference, the same MSRS train calibration pairs)
    as ``<model>-int8.rejected.onnx``. Its fidelity figures stay those of the export's report."""
    from msmine.calibration.int8_reader import PairCalibrationReader, calibration_batches
    from msmine.export.precision import quantize_int8
    from msmine.model_contract import read_onnx_metadata

    for item in items(args):
        p = paths(args, item)
        if item.precision != "int8" or p["model"].is_file() or not p["fidelity"].is_file():
            continue
        if json.loads(p["fidelity"].read_text())["passed"]:
            continue
        reference = p["model"].with_name(p["model"].stem + ".fp32.onnx")
        rejected = rejected_path(p["model"])
        if rejected.is_file() and not args.force:
            continue
        input_size = read_onnx_metadata(reference)[0].input_size
        batches = calibration_batches(args.calib_data, input_size, args.calib_pairs, "train")
        quantize_int8(reference, rejected, PairCalibrationReader(batches))
        print(f"rebuilt the rejected INT8 model {rejected}")


def rejected_path(model: Path) -> Path:
    return model.with_name(model.stem + ".rejected.onnx")


def model_file(p: dict[str, Path]) -> Path:
    """The gated model, or the rebuilt INT8 model its gate rejected."""
    return p["model"] if p["model"].is_file() else rejected_path(p["model"])


def measure(args) -> None:
    for item in items(args):
        p = paths(args, item)
        if p["bench"].is_file() and not args.force:
            continue
        model = model_file(p)
        if not model.is_file():
            print(f"skip {item.name}: no model {p['model']}")
            continue
        p["bench"].parent.mkdir(parents=True, exist_ok=True)
        clip, limit, repeats = settings(args, item)
        cmd = [*args.wrap.split(), sys.executable, str(REPO / "bench/bench_edge.py"), "--model", str(model),
               "--clip", clip, "--limit", str(limit), "--rss-duration", "0", "--repeats", str(repeats),
               "--out", str(p["bench"])]
        run_logged(cmd, p["log"].with_suffix(".bench.log"))


def model_size(ckpt: Path, cache: dict) -> tuple[float, float]:
    """(convolution GMAC per pair, parameters in millions) of a checkpoint's model (torch forward hooks)."""
    key = str(ckpt)
    if key not in cache:
        import torch

        from msmine.train.checkpoint import load_checkpoint

        torch.set_num_threads(1)
        model, _ = load_checkpoint(ckpt)
        total = [0]

        def hook(m, _inputs, out):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

        hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        h, w = model.input_size
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w), torch.zeros(1, 1, h, w))
        for handle in hooks:
            handle.remove()
        cache[key] = (total[0] / 1e9, sum(v.numel() for v in model.parameters()) / 1e6)
    return cache[key]


def table(args) -> None:
    rows = []
    cache_path = Path(args.work) / "model_sizes.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    for item in items(args):
        p = paths(args, item)
        base = [item.backbone, item.task, f"{item.hw[0]}x{item.hw[1]}", item.precision, item.weights]
        if p["ckpt"].is_file() and item.precision == "fp32":
            gmac, params = model_size(p["ckpt"], cache)
            rows.append([*base, "conv_gmac_per_pair", f"{gmac:.3f}"])
            rows.append([*base, "params_m", f"{params:.2f}"])
        if model_file(p).is_file():
            rows.append([*base, "file_mb", f"{model_file(p).stat().st_size / 1e6:.2f}"])
        if p["bench"].is_file():
            b = json.loads(p["bench"].read_text())
            rows.append([*base, "e2e_pairs_per_s", f"{b['e2e_pairs_per_s']:.1f}"])
            rows.append([*base, "raw_pairs_per_s", f"{b['raw_pairs_per_s']:.1f}"])
            rows.append([*base, "cpu_ms_per_pair_e2e", f"{b['cpu_ms_per_pair_e2e']:.2f}"])
        if item.precision != "fp32" and p["fidelity"].is_file():
            f = json.loads(p["fidelity"].read_text())
            rows.append([*base, "fidelity_spearman", f"{f['spearman']:.4f}"])
            rows.append([*base, "fidelity_top10_overlap", f"{f['top_overlap']:.3f}"])
            rows.append([*base, "fidelity_" + f["thresholds"]["metric"].replace(" ", "_") + "_drop_points", f"{f['map50_drop_points']:.2f}"])
            rows.append([*base, "fidelity_passed", str(int(bool(f["passed"])))])
    cache_path.write_text(json.dumps(cache, indent=1) + "\n")
    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [
        f"# Throughput of exported models in edge-runtime on the shared 2-core development CPU, {DATE}.",
        f"# bench/bench_edge.py --model M --clip C --limit N --rss-duration 0 --repeats R (best of the repeats; end "
        "to end over the whole clip, the raw onnxruntime session over its first N pairs; 2 threads, micro-batch 4): "
        f"input 256x320 C={args.clip} (560 pairs) N={args.raw_limit} R={args.repeats}; 384x480 and 480x640 "
        f"C={args.clip_large} (151 pairs) N={args.raw_limit_large} R={args.repeats_large}.",
        "# Made by: .venv/bin/python bench/edge_backbones.py all --wrap /work/tools/quiet.sh "
        "(measurements with the other jobs paused); exports: msmine export CKPT --out M --precision P "
        f"--calib-data {args.calib_data} --exporter torchscript (int8: calibrated on MSRS train pairs, "
        "fidelity gate on the 361 test pairs).",
        "# weights: random = the recipe's architecture built at this size, untrained (throughput does not depend "
        "on the weights); trained = runs/models/{det,seg}_cpu_imagenet_all_s0/best.pt.",
        "# input_hw is H x W; metrics: e2e_pairs_per_s (edge-runtime end to end: decode, pairing, preprocessing, "
        "inference, score, selection, spool, outputs), raw_pairs_per_s (onnxruntime session alone), "
        "cpu_ms_per_pair_e2e (CPU time of all threads per pair: robust to other jobs), file_mb, conv_gmac_per_pair "
        "(multiply-accumulates of the convolutions, both streams and all branches), params_m, fidelity_* (vs the "
        "fp32 reference; an int8 model the gate rejected: speed measured on the export's file before the gate deleted it, size on an identical rebuild, bench/edge_backbones.py rejected_int8).",
    ]
    with out.open("w", newline="") as fh:
        fh.write("\n".join(header) + "\n")
        w = csv.writer(fh)
        w.writerow(["backbone", "task", "input_hw", "precision", "weights", "metric", "value"])
        w.writerows(rows)
    print(f"wrote {out} ({len(rows)} rows)")
    print(markdown(rows))


def markdown(rows: list[list[str]]) -> str:
    """The tables of docs/edge.md: end-to-end pairs/s (CPU ms per pair) per backbone, task and size in fp32,
    the convolution cost, and the trained models in each precision."""
    get = {tuple(r[:6]): r[6] for r in rows}
    sizes = [f"{h}x{w}" for h, w in SIZES]
    lines = ["| backbone | task | " + " | ".join(f"{w}x{h}" for h, w in SIZES) + " |", "|---|---|" + "---|" * len(SIZES)]
    gmac = []
    for task in ("detect", "segment"):
        for b in BACKBONES:
            cells = []
            for hw in sizes:
                cell = []
                for weights in ("random", "trained"):
                    key = (b, task, hw, "fp32", weights)
                    if (*key, "e2e_pairs_per_s") in get:
                        cpu = float(get[(*key, "cpu_ms_per_pair_e2e")])
                        cell.append(("*t* " if weights == "trained" else "") + f"{get[(*key, 'e2e_pairs_per_s')]} ({cpu:.0f} ms)")
                cells.append("; ".join(cell))
            if any(cells):
                lines.append(f"| {b} | {task} | " + " | ".join(cells) + " |")
            g = [get.get((b, task, hw, "fp32", "random", "conv_gmac_per_pair")) for hw in sizes]
            if all(g):
                gmac.append(f"{b} {task} " + " / ".join(f"{float(v):.2f}" for v in g))
    lines += ["", "GMAC per pair (320x256 / 480x384 / 640x480): " + "; ".join(gmac), ""]
    lines += ["| task | precision | file | end to end | raw session | CPU ms / pair | Spearman of the score vs fp32 "
              "| top-10 % overlap | fused AP50 / mIoU drop (points) | gate |", "|---|---|---|---|---|---|---|---|---|---|"]
    for task in ("detect", "segment"):
        for precision in ("fp32", "fp16", "int8"):
            key = ("lite0", task, "256x320", precision, "trained")
            if not any(k[:5] == key for k in get):
                continue

            def val(metric, fmt="{}", key=key):
                v = get.get((*key, metric))
                return fmt.format(v) if v is not None else "-"

            drop = next((v for k, v in get.items() if k[:5] == key and k[5].endswith("_drop_points")), "-")
            passed = get.get((*key, "fidelity_passed"))
            lines.append(f"| {task} | {precision} | {val('file_mb', '{} MB')} | {val('e2e_pairs_per_s')} pairs/s "
                         f"| {val('raw_pairs_per_s')} | {val('cpu_ms_per_pair_e2e')} | {val('fidelity_spearman')} "
                         f"| {val('fidelity_top10_overlap')} | {drop} | "
                         f"{'-' if passed is None else ('passed' if passed == '1' else '**rejected**')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["build", "export", "rejected_int8", "measure", "table", "all"])
    ap.add_argument("--work", default=str(REPO / "runs/edge_bench"), help="checkpoints, models, bench JSON, logs")
    ap.add_argument("--data", default=os.environ.get("MSMINE_DATA", str(REPO.parent / "shared/data")))
    ap.add_argument("--clip", default="0113_1714", help="M3SVD clip replayed by bench_edge.py (560 pairs)")
    ap.add_argument("--raw-limit", type=int, default=150, help="pairs of the raw-session measurement (bench_edge --limit)")
    ap.add_argument("--repeats", type=int, default=2, help="bench_edge.py --repeats at 320x256")
    ap.add_argument("--clip-large", default="0111_1716", help="the clip for 480x384 and 640x480 (151 pairs)")
    ap.add_argument("--raw-limit-large", type=int, default=100, help="raw-session pairs at 480x384 and 640x480")
    ap.add_argument("--repeats-large", type=int, default=1, help="bench_edge.py --repeats at 480x384 and 640x480")
    ap.add_argument("--calib-pairs", type=int, default=64, help="INT8 calibration pairs (MSRS train)")
    ap.add_argument("--seg-backbones", nargs="*", default=["small", "lite0"], help="backbones measured for segmentation")
    ap.add_argument("--det-ckpt", default=str(REPO / "runs/models/det_cpu_imagenet_all_s0/best.pt"))
    ap.add_argument("--seg-ckpt", default=str(REPO / "runs/models/seg_cpu_imagenet_all_s0/best.pt"))
    ap.add_argument("--wrap", default="", help="command prefix of each measurement (e.g. /work/tools/quiet.sh)")
    ap.add_argument("--csv", default=str(REPO / "docs/results/edge_backbones.csv"))
    ap.add_argument("--only", nargs="*", default=[], help="only the models whose name contains one of these")
    ap.add_argument("--force", action="store_true", help="redo what is already there")
    args = ap.parse_args()
    args.calib_data = str(Path(args.data) / "msrs")
    args.det_ckpt = args.det_ckpt if Path(args.det_ckpt).is_file() else ""
    args.seg_ckpt = args.seg_ckpt if Path(args.seg_ckpt).is_file() else ""
    steps = ["build", "export", "rejected_int8", "measure", "table"] if args.step == "all" else [args.step]
    for step in steps:
        globals()[step](args)


if __name__ == "__main__":
    main()
