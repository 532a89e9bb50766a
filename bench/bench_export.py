"""Export benchmarks (onnxruntime, CPU): the cost of the in-graph score, and INT8 vs FP32.

    .venv/bin/python bench/bench_export.py [--size 480x640] [--threads 2] [--iters 60]

1. The same model (small backbone, random init: latency does not depend on the weights) exported
   with and without the score outputs; batch 1; the two sessions run interleaved in one process
   (A, B, A, B, ...) so the machine's load affects both alike; median latencies and the overhead.
   Target: the in-graph score adds <= 2 %.
2. FP32 vs INT8 (QDQ, calibrated on 16 real MSRS pairs) latency, batch 1.
Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # CPU time = work, not spinning
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def interleaved(sessions: dict, feeds: dict, iters: int, warmup: int = 5):
    """Wall-clock and process-CPU latencies (ms) of each session, runs interleaved (order alternating).

    The CPU time (all threads of this process) is what a run costs; on a loaded, shared machine it
    is far steadier than the wall clock."""
    wall = {name: [] for name in sessions}
    cpu = {name: [] for name in sessions}
    names = list(sessions)
    for i in range(warmup + iters):
        for name in names if i % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            sessions[name].run(None, feeds)
            if i >= warmup:
                wall[name].append((time.perf_counter() - t0) * 1e3)
                cpu[name].append((time.process_time() - c0) * 1e3)
    return wall, cpu


def main() -> int:
    import torch

    from msmine.calibration.int8_reader import PairCalibrationReader, calibration_batches
    from msmine.export.onnx_export import ExportConfig, export_onnx
    from msmine.export.precision import quantize_int8
    from msmine.train.config import ModelConfig
    from msmine.train.models import build_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="480x640", help="model input HxW (default 480x640)")
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=args.backbone, input_size=(h, w))).eval()
    msrs = Path(os.environ.get("MSMINE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "msrs"
    feeds = calibration_batches(msrs, (h, w), limit=1, split="test")[0]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with_score = export_onnx(model, {}, tmp / "score.onnx", ExportConfig()).path
        without = export_onnx(model, {}, tmp / "noscore.onnx", ExportConfig(with_score=False)).path
        batches = calibration_batches(msrs, (h, w), limit=16, split="train")
        int8 = quantize_int8(with_score, tmp / "int8.onnx", PairCalibrationReader(batches))
        sessions = {"fp32 with score": _session(with_score, args.threads),
                    "fp32 without score": _session(without, args.threads),
                    "int8 with score": _session(int8, args.threads)}
        times, cpu = interleaved(sessions, feeds, args.iters)

    lat = {name: statistics.median(v) for name, v in times.items()}
    cpu_ms = {name: statistics.median(v) for name, v in cpu.items()}
    best = {name: min(v) for name, v in times.items()}
    base, scored = lat["fp32 without score"], lat["fp32 with score"]
    # paired ratio: the two runs of one iteration see the same machine load
    paired = statistics.median(a / b for a, b in zip(times["fp32 with score"], times["fp32 without score"]))
    cpu_ratio = cpu_ms["fp32 with score"] / cpu_ms["fp32 without score"]
    print(f"onnxruntime {__import__('onnxruntime').__version__}, CPU, {args.threads} threads, batch 1, "
          f"{args.backbone} backbone at {h}x{w}, median of {args.iters} interleaved runs")
    for name, ms in lat.items():
        print(f"  {name:<20} wall median {ms:8.2f} ms  best {best[name]:8.2f} ms   CPU time median {cpu_ms[name]:8.2f} ms")
    print(f"in-graph score overhead, CPU time: {100 * (cpu_ratio - 1):+.2f} % (target <= 2 %)")
    print(f"in-graph score overhead, wall: {100 * (paired - 1):+.2f} % (median of paired ratios; medians "
          f"{100 * (scored / base - 1):+.2f} %, best {100 * (best['fp32 with score'] / best['fp32 without score'] - 1):+.2f} %; "
          f"target <= 2 %)")
    print(f"INT8 vs FP32 (both with score): wall {scored / lat['int8 with score']:.2f}x "
          f"({lat['int8 with score']:.2f} ms vs {scored:.2f} ms), CPU time "
          f"{cpu_ms['fp32 with score'] / cpu_ms['int8 with score']:.2f}x "
          f"({cpu_ms['int8 with score']:.2f} ms vs {cpu_ms['fp32 with score']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
