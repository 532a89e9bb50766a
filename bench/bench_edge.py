"""Edge runtime benchmark: pipeline throughput vs a raw onnxruntime session, mining cost, memory.

    .venv/bin/python bench/bench_edge.py                              # tiny contract model, clip 0113_1714
    .venv/bin/python bench/bench_edge.py --model runs/export/model.onnx --rss-duration 1800

Prints, for the same frames of a real M3SVD clip ($MSMINE_DATA/m3svd):
1. raw pairs/s: the model alone in an onnxruntime session over pre-decoded frames, made model input
   beforehand by the device's own preprocessing (msmine.feeds: any clip size, any model size)
   (batch 1 and the pipeline's micro-batch size; the better one is the reference);
2. end-to-end pairs/s: `edge-runtime` replaying the two files as fast as possible (decode, pairing,
   preprocessing, inference, scoring, selection, spool, detections JSON lines), and the ratio;
3. the mining path (score -> selector decision) per pair, as a fraction of the frame time (1/30 s)
   and of the per-pair processing time;
4. resident memory over a long run (the clip replayed in a loop; --rss-duration seconds).
Without --model a contract test model (msmine.model_contract.build_contract_model) is used, at the
clip's size or --model-size HxW; pass --conv-layers N to give it the compute of a small backbone
(N 3x3 convolutions at stride 8).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from msmine.edge_runtime.cameras import VideoSource  # noqa: E402
from msmine.edge_runtime.config import EdgeConfig  # noqa: E402
from msmine.edge_runtime.pipeline import EdgePipeline, _rss_bytes  # noqa: E402
from msmine.edge_runtime.runners import load_runner  # noqa: E402
from msmine.feeds import feeds  # noqa: E402
from msmine.model_contract import build_contract_model, read_onnx_metadata  # noqa: E402


def data_root() -> Path:
    return Path(os.environ.get("MSMINE_DATA", REPO.parent / "shared" / "data"))


def heavy_contract_model(path: Path, conv_layers: int, channels: int = 64,
                         size_hw: tuple[int, int] = (480, 640)) -> Path:
    """The contract test model plus ``conv_layers`` 3x3 convolutions on a stride-8 feature map,
    feeding the inconsistency, so its cost resembles a small backbone's."""
    import onnx
    from onnx import helper, numpy_helper

    build_contract_model(path, height=size_hw[0], width=size_hw[1])
    if conv_layers <= 0:
        return path
    model = onnx.load(path)
    g = model.graph
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Transpose", ["vf"], ["v_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["v_nchw", "w_stem"], ["f0"], strides=[8, 8], kernel_shape=[8, 8]),
    ]
    inits = [numpy_helper.from_array(rng.normal(0, 0.01, (channels, 3, 8, 8)).astype(np.float32), "w_stem")]
    for i in range(conv_layers):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.01, (channels, channels, 3, 3)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [f"f{i}", f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"f{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"f{conv_layers}"], ["feat"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["feat", "zero"], ["feat0"]),
        helper.make_node("Add", ["ad", "feat0"], ["ad2"]),
    ]
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    for node in g.node:  # the inconsistency now depends on the backbone (with weight 0: same values)
        if node.output and node.output[0] == "inconsistency":
            node.input[0] = "ad2"
    g.node.extend(nodes)
    g.initializer.extend(inits)
    onnx.save(model, path)
    return path


def decode(path: Path, grey: bool, limit: int = 0) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while not limit or len(frames) < limit:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None] if grey else cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def model_feeds(vis: list[np.ndarray], thr: list[np.ndarray],
                input_size: tuple[int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decoded frames (RGB, grey H x W x 1) -> the model's per-pair inputs, made as the device makes them."""
    made = [feeds(v, t, input_size, rgb=True) for v, t in zip(vis, thr)]
    return [f.visible for f in made], [f.thermal for f in made]


def cpu_seconds() -> float:
    """CPU time of this process, all threads (robust to other processes sharing the machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def raw_pairs_per_s(model: Path, vis: list, thr: list, batch: int, threads: int, spin: bool) -> tuple[float, float]:
    """(pairs/s, CPU ms per pair) of the model alone."""
    runner = load_runner(model, "cpu", threads, spin=spin)
    n = len(vis)
    runner.infer({"visible": np.stack(vis[:batch]), "thermal": np.stack(thr[:batch])})  # warm-up
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(0, n, batch):
        runner.infer({"visible": np.stack(vis[i:i + batch]), "thermal": np.stack(thr[i:i + batch])})
    return n / (time.perf_counter() - t0), 1000 * (cpu_seconds() - c0) / n


class LoopingSource:
    """A video file replayed in a loop with a continuing media clock (for the memory run)."""

    live = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"loop({path})"
        self.fps = 30.0
        self._src = VideoSource(str(path), live=False)
        self._offset = 0.0
        self._last = 0.0

    def read(self):
        item = self._src.read()
        if item is None:
            self._src.close()
            self._src = VideoSource(str(self.path), live=False)
            self._offset = self._last + 1 / self.fps
            item = self._src.read()
        image, t = item
        self._last = self._offset + t
        return image, self._last

    def close(self) -> None:
        self._src.close()


def throughput(args, cfg: EdgeConfig, model: Path, vis: list, thr: list, tmp: Path) -> dict:
    """Raw session vs end-to-end, measured back to back --repeats times (the machine is shared)."""
    rows = []
    cpu = {"raw": [], "e2e": []}
    for rep in range(args.repeats):
        raw = {}
        for b in sorted({1, args.max_batch}):
            raw[b], cpu_ms = raw_pairs_per_s(model, vis, thr, b, args.threads, args.ort_spin)
            if b == args.max_batch:
                cpu["raw"].append(cpu_ms)
        cfg.spool_dir = str(tmp / f"spool{rep}")
        c0 = cpu_seconds()
        summary = EdgePipeline.from_config(cfg).run()
        cpu["e2e"].append(1000 * (cpu_seconds() - c0) / summary["pairs"])
        e2e = summary["pairs"] / summary["elapsed_s"]
        rows.append((raw, e2e, summary))
        print(f"repeat {rep}: raw " + ", ".join(f"batch {b} {v:.1f}" for b, v in raw.items())
              + f" pairs/s; end-to-end {e2e:.1f} pairs/s; ratio {e2e / max(raw.values()):.3f}; CPU ms/pair raw "
              f"{cpu['raw'][-1]:.2f}, end-to-end {cpu['e2e'][-1]:.2f}")
    ratios = sorted(e2e / max(raw.values()) for raw, e2e, _ in rows)
    best_raw = max(max(raw.values()) for raw, _, _ in rows)
    best_e2e = max(e2e for _, e2e, _ in rows)
    summary = rows[-1][2]
    print(f"best raw onnxruntime session: {best_raw:8.1f} pairs/s")
    print(f"best end-to-end edge-runtime: {best_e2e:8.1f} pairs/s  ({summary['pairs']} pairs, kept {summary['kept']}, "
          f"unpaired {sum(summary['unpaired'].values())})")
    print(f"ratio end-to-end / raw: median of back-to-back pairs {ratios[len(ratios) // 2]:.3f}, "
          f"best/best {best_e2e / best_raw:.3f}   (target >= 0.9)")
    cpu_raw, cpu_e2e = min(cpu["raw"]), min(cpu["e2e"])
    print(f"CPU time per pair (all threads, least of the repeats): raw {cpu_raw:.2f} ms, end-to-end {cpu_e2e:.2f} ms "
          f"(decode, pairing, preprocessing, selection, spool, outputs included); CPU-bound ratio "
          f"{cpu_raw / cpu_e2e:.3f}: the throughput ratio on a dedicated CPU the model saturates")
    mining_s = summary["mining_us_per_pair"] / 1e6
    print(f"mining path per pair:         {summary['mining_us_per_pair']:8.1f} us = {100 * mining_s * 30:.3f} % of the "
          f"frame time at 30 fps, {100 * mining_s * best_e2e:.3f} % of the per-pair processing time (target <= 1 %)")
    return {"pairs": summary["pairs"], "raw_pairs_per_s": best_raw, "e2e_pairs_per_s": best_e2e,
            "ratio_median": ratios[len(ratios) // 2], "ratio_best": best_e2e / best_raw,
            "mining_us_per_pair": summary["mining_us_per_pair"], "cpu_ms_per_pair_raw": cpu_raw,
            "cpu_ms_per_pair_e2e": cpu_e2e, "ratio_cpu_bound": cpu_raw / cpu_e2e}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="0113_1714", help="M3SVD clip name")
    ap.add_argument("--model", help="exported ONNX model (default: a contract test model at 640x480)")
    ap.add_argument("--conv-layers", type=int, default=0, help="backbone stand-in depth for the default model")
    ap.add_argument("--model-size", help="input size HxW of the default model (default: the clip's)")
    ap.add_argument("--limit", type=int, default=0, help="raw session: only the first N pairs of the clip (0 = all)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--max-batch", type=int, default=4, help="the pipeline's micro-batch size")
    ap.add_argument("--ort-spin", action="store_true", help="let onnxruntime threads spin (both measurements)")
    ap.add_argument("--rss-realtime", action="store_true", help="pace the memory run at 30 fps (a live-like load)")
    ap.add_argument("--rss-stress", action="store_true",
                    help="memory run with the candidate buffer always full: random scores, fixed threshold 0.5, "
                         "no suppression (the worst case of what the selector holds)")
    ap.add_argument("--skip-throughput", action="store_true", help="only the memory run")
    ap.add_argument("--out", help="also write the figures as JSON to this file")
    ap.add_argument("--repeats", type=int, default=2, help="alternating raw / end-to-end measurements")
    ap.add_argument("--rss-duration", type=float, default=60.0, help="seconds of the looped memory run (0 = skip)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    clip = data_root() / "m3svd" / args.clip
    tmp = Path(tempfile.mkdtemp(prefix="bench_edge_"))
    vis, thr = decode(clip / "visible.mp4", False, args.limit), decode(clip / "infrared.mp4", True, args.limit)
    if not vis or not thr:
        raise SystemExit(f"no frames in {clip}")
    clip_hw = vis[0].shape[:2]
    if args.model:
        model = Path(args.model)
    else:
        size = tuple(int(v) for v in args.model_size.lower().split("x")) if args.model_size else clip_hw
        model = heavy_contract_model(tmp / "model.onnx", args.conv_layers, size_hw=size)
    input_size = read_onnx_metadata(model)[0].input_size
    vis, thr = model_feeds(vis, thr, input_size)  # the raw session gets exactly what the device feeds
    print(f"clip {args.clip}: {len(vis)} pairs {clip_hw[1]}x{clip_hw[0]}; model {model.name} "
          f"({input_size[1]}x{input_size[0]} input); onnxruntime threads {args.threads}, "
          f"spinning {'on' if args.ort_spin else 'off'}; {os.cpu_count()} CPUs visible, "
          f"{len(os.sched_getaffinity(0))} usable")

    cfg = EdgeConfig(cameras=f"visible={clip / 'visible.mp4'},thermal={clip / 'infrared.mp4'}", model=str(model),
                     spool_dir=str(tmp / "spool"), detections=str(tmp / "det.jsonl"), threads=args.threads,
                     max_batch=args.max_batch, device_id="bench", ort_spin=args.ort_spin)
    result: dict = {"clip": args.clip, "model": str(model)}
    if not args.skip_throughput:
        result.update(throughput(args, cfg, model, vis, thr, tmp))
    del vis, thr
    if args.rss_duration > 0:
        cfg_long = EdgeConfig(**{**cfg.__dict__, "spool_dir": str(tmp / "spool_long"), "detections": str(tmp / "long.jsonl"),
                                 "spool_max_bytes": "200M", "realtime": args.rss_realtime})
        if args.rss_stress:
            cfg_long.score, cfg_long.adaptive_threshold, cfg_long.threshold = "random", False, 0.5
            cfg_long.suppression_gap_s = 0.0
        openers = {"visible": lambda: LoopingSource(clip / "visible.mp4"),
                   "thermal": lambda: LoopingSource(clip / "infrared.mp4")}
        pipeline = EdgePipeline.from_config(cfg_long, openers=openers)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.wait(max(args.rss_duration / 60, 1.0)):
                samples.append((time.monotonic() - t0, _rss_bytes()))

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        long_summary = pipeline.run(duration_s=args.rss_duration)
        stop.set()
        th.join()
        warm = [r for t, r in samples if t >= 0.1 * args.rss_duration] or [r for _, r in samples]
        growth = 100 * (warm[-1] - warm[0]) / warm[0]
        print(f"memory run {args.rss_duration:.0f} s: {long_summary['pairs']} pairs; RSS after warm-up "
              f"{warm[0] / 2**20:.1f} MiB -> end {warm[-1] / 2**20:.1f} MiB (growth {growth:+.2f} %, target < 5 %), "
              f"max {max(warm) / 2**20:.1f} MiB")
        result.update({"rss_duration_s": args.rss_duration, "rss_growth_pct": growth, "rss_mib": [r / 2**20 for r in warm]})
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
