"""GPU figures (H100/H200 class): training steps, pool scoring and vgg16 inference latency/throughput.

    python3 bench/gpu_bench.py --data gpu_carry/msrs --out gpu_bench.json

Measures, on CUDA:
* a training step (bf16 autocast) of the vgg16 model at 640x512, batch 8, and of the small model
  at 320x256, batch 8 and 32 (synthetic pairs with a few boxes each);
* scoring the 1,083-pair MSRS train pool (forward + in-graph score) with vgg16 at 640x512 and
  with the small model at 320x256 (pairs decoded beforehand; the timing includes batching, the
  host-to-device copy, the forward pass and the score);
* vgg16 forward + score at 640x512: latency at batch 1 and throughput at batch 32, in PyTorch
  eager, CUDA graphs (torch.cuda.CUDAGraph capture/replay) and FP16 (eager and CUDA graphs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from msmine.train.config import ModelConfig, TrainConfig
from msmine.train.models import build_model
from msmine.train.scoring import score_outputs

DEVICE = torch.device("cuda")


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def time_calls(fn, warmup: int = 3, repeats: int = 20) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def synthetic_batch(n: int, size, rng: torch.Generator):
    h, w = size
    boxes, labels = [], []
    for _ in range(n):
        xy = torch.rand(4, 2, generator=rng) * 0.7
        wh = torch.rand(4, 2, generator=rng) * 0.2 + 0.03
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(0, 3, (4,), generator=rng))
    return {
        "visible": torch.randint(0, 255, (n, h, w, 3), dtype=torch.uint8, generator=rng),
        "thermal": torch.randint(0, 255, (n, h, w, 1), dtype=torch.uint8, generator=rng),
        "boxes": {b: boxes for b in ("visible", "thermal", "fused")},
        "labels": {b: labels for b in ("visible", "thermal", "fused")},
        "mask": None,
    }


def bench_train_step(backbone: str, size, batch: int) -> float:
    from msmine.train.trainer import Trainer

    cfg = TrainConfig()
    cfg.model = ModelConfig(backbone=backbone, input_size=size)
    cfg.batch_size = batch
    model = build_model(cfg.model)
    trainer = Trainer(model, cfg, [], DEVICE)
    data = synthetic_batch(batch, size, torch.Generator().manual_seed(0))
    return time_calls(lambda: trainer.run_step(dict(data), 1e-4), warmup=3, repeats=10)


def bench_pool_scoring(backbone: str, size, data_dir: str, dry_run: bool = False) -> dict:
    from msmine.train.evaluate import score_pool
    from msmine.train.workspace import open_split, prepared_pairs

    cfg = TrainConfig()
    cfg.model = ModelConfig(backbone=backbone, input_size=size)
    dataset = open_split(data_dir, "train", limit=8 if dry_run else 0)
    t0 = time.perf_counter()
    pairs = prepared_pairs(dataset, cfg, train=False)
    decode = time.perf_counter() - t0
    model = build_model(cfg.model).to(DEVICE).eval()
    t0 = time.perf_counter()
    inter, _ = score_pool(model, pairs, DEVICE, batch_size=64, amp=True)
    _sync()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    inter, _ = score_pool(model, pairs, DEVICE, batch_size=64, amp=True)
    _sync()
    return {"pairs": len(inter), "seconds": round(time.perf_counter() - t0, 3), "first_call_seconds": round(first, 3),
            "decode_letterbox_seconds": round(decode, 3)}


def graph_time(fn, repeats: int) -> float | None:
    """Capture ``fn`` in a CUDA graph and time its replay (None on the CPU)."""
    if DEVICE.type != "cuda":
        return None
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_calls(graph.replay, warmup=3, repeats=repeats)


def bench_inference(size=(512, 640), batches=(1, 32)) -> dict:
    model = build_model(ModelConfig(backbone="vgg16", input_size=size)).to(DEVICE).eval()
    shapes = model.level_shapes
    results = {}

    def forward(m, v, t):
        out = m(v, t)
        s = score_outputs(out, shapes, "detect", "categorical")
        return s["inconsistency"], s["entropy"], out["fused"]["logits"], out["fused"]["deltas"]

    for precision in ("fp32", "fp16"):
        m = model if precision == "fp32" else build_model(ModelConfig(backbone="vgg16", input_size=size)).to(DEVICE).eval().half()
        dtype = torch.float32 if precision == "fp32" else torch.float16
        if DEVICE.type == "cpu" and precision == "fp16":
            continue
        for batch in batches:
            v = torch.rand(batch, 3, *size, device=DEVICE, dtype=dtype)
            t = torch.rand(batch, 1, *size, device=DEVICE, dtype=dtype)
            with torch.no_grad():
                eager = time_calls(lambda m=m, v=v, t=t: forward(m, v, t), warmup=3, repeats=10 if batch > 1 else 30)
                graphed = graph_time(lambda m=m, v=v, t=t: forward(m, v, t), 10 if batch > 1 else 30)
            for mode, sec in (("eager", eager), ("cuda_graph", graphed)):
                if sec is None:
                    continue
                key = f"vgg16_{precision}_{mode}_batch{batch}"
                results[key] = {"ms_per_batch": round(sec * 1000, 3), "pairs_per_s": round(batch / sec, 1)}
            if DEVICE.type == "cuda":
                torch.cuda.empty_cache()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="MSRS root (a downscaled copy is fine)")
    parser.add_argument("--out", required=True, help="JSON file for the figures")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks the script)")
    args = parser.parse_args()
    global DEVICE
    if args.dry_run:
        DEVICE = torch.device("cpu")
        torch.set_num_threads(2)
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu (dry run)"
    figures: dict = {"device": name, "torch": torch.__version__}
    big, small, batches = ((512, 640), (256, 320), (1, 32)) if not args.dry_run else ((64, 64), (64, 64), (1, 2))

    def record(name, fn):
        t0 = time.perf_counter()
        try:
            figures[name] = fn()
        except Exception as exc:  # a benchmark failing must not lose the others' figures
            figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{name}: {figures[name]}  ({time.perf_counter() - t0:.1f} s)", flush=True)
        with open(args.out, "w") as fh:
            json.dump(figures, fh, indent=2)

    record("train_step_vgg16_640x512_b8_s", lambda: round(bench_train_step("vgg16", big, 8), 4))
    record("train_step_small_320x256_b8_s", lambda: round(bench_train_step("small", small, 8), 4))
    record("train_step_small_320x256_b32_s", lambda: round(bench_train_step("small", small, 32), 4))
    record("pool_scoring_vgg16_640x512", lambda: bench_pool_scoring("vgg16", big, args.data, args.dry_run))
    record("pool_scoring_small_320x256", lambda: bench_pool_scoring("small", small, args.data, args.dry_run))
    record("inference_vgg16_640x512", lambda: bench_inference(big, batches))


if __name__ == "__main__":
    main()
