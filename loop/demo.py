"""`msmine demo`: the whole loop on an embedded default, in one command.

No camera, GPU, server or data needed. It (1) makes a labelled synthetic visible/thermal data set,
(2) trains a small three-branch model on it, (3) exports it to ONNX with the score in-graph,
(4) starts the collection server on loopback, (5) runs `edge-runtime` on the built-in `synthetic`
camera pair for a bounded time, mining and uploading, and (6) prints a summary and writes
`report.html`. With `--data DIR` (e.g. ../shared/data) it trains on real MSRS pairs and replays a
real M3SVD clip pair instead.

Every step is one of the product's own commands, run as a child process (the commands are
printed with `-v`), so the demo also shows how to run each part by hand. Logs go to OUT/logs/.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from msmine.errors import UserError

log = logging.getLogger(__name__)

STEPS = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--data", type=Path, default=None,
                        help="real data root with msrs/ and m3svd/ (e.g. ../shared/data); default: synthetic")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds the device runs (default 40)")
    parser.add_argument("--train-steps", type=int, default=300, help="training steps of the small model (default 300)")
    parser.add_argument("--train-pairs", type=int, default=240, help="synthetic training pairs (default 240)")
    parser.add_argument("--budget", default="20/min", help="the device's upload budget (default 20/min)")
    parser.add_argument("--clip", default="0113_1714", help="M3SVD clip replayed with --data (default 0113_1714)")
    parser.add_argument("--top", type=int, default=6, help="mined pairs shown in the report (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training and the synthetic cameras")
    parser.add_argument("--keep-serving", action="store_true",
                        help="keep the server (and its gallery) running at the end until Ctrl-C")


def _step(k: int, text: str) -> float:
    print(f"[{k}/{STEPS}] {text}", flush=True)
    return time.monotonic()


def _done(started: float, text: str = "") -> None:
    print(f"      done in {time.monotonic() - started:.0f} s{'  ' + text if text else ''}", flush=True)


def make_synthetic_data(root: Path, n_train: int, seed: int) -> Path:
    from msmine.edge_runtime.synthetic import synthetic_dataset, write_msrs_layout

    if root.exists():
        shutil.rmtree(root)
    write_msrs_layout(synthetic_dataset(n_train, size=(320, 240), seed=seed), root, split="train")
    write_msrs_layout(synthetic_dataset(max(n_train // 4, 8), size=(320, 240), seed=seed + 10_000), root, split="test")
    return root


def run(args: argparse.Namespace) -> int:
    from msmine.loop.orchestrate import (
        EDGE_RUNTIME,
        MSMINE,
        ServerProcess,
        create_token,
        parse_edge_summary,
        run_step,
    )
    from msmine.loop.report import fetch_top_pairs, write_report

    if args.duration <= 0:
        raise UserError(f"--duration must be > 0, got {args.duration}")
    if args.train_steps < 1 or args.train_pairs < 8:
        raise UserError("--train-steps must be >= 1 and --train-pairs >= 8")
    out: Path = args.out.resolve()
    logs = out / "logs"
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()

    # 1. data
    if args.data is None:
        t = _step(1, f"making {args.train_pairs} labelled synthetic visible/thermal pairs (night, glare, smoke, "
                     "thermal crossover)")
        data = make_synthetic_data(out / "data", args.train_pairs, args.seed)
        cameras = f"visible=synthetic?seed={args.seed + 1},thermal=synthetic?seed={args.seed + 1}"
        input_size = "[240,320]"
        train_limits: list[str] = []
        _done(t, f"-> {data}")
    else:
        data = (args.data / "msrs").resolve()
        clip = (args.data / "m3svd" / args.clip).resolve()
        for need in (data / "train", clip / "visible.mp4", clip / "infrared.mp4"):
            if not need.exists():
                raise UserError(f"--data {args.data}: {need} not found (expected msrs/ and m3svd/{args.clip}/)")
        t = _step(1, f"using real data: MSRS pairs in {data}, M3SVD clip {clip.name}")
        cameras = f"visible={clip / 'visible.mp4'},thermal={clip / 'infrared.mp4'}"
        input_size = "[256,320]"
        train_limits = ["--set", "data.val_limit=60"]
        _done(t)

    # 2. train
    t = _step(2, f"training a small three-branch model ({args.train_steps} steps on the CPU)")
    run_dir = out / "train"
    run_step([*MSMINE, "train", "--data", str(data), "--task", "detect", "--out", str(run_dir),
              "--set", f"max_steps={args.train_steps}", "--set", f"model.input_size={input_size}",
              "--set", f"seed={args.seed}", "--set", "device=cpu", *train_limits],
             logs / "train.log", "training")
    checkpoint = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else run_dir / "last.pt"
    _done(t, f"-> {checkpoint}")

    # 3. export
    t = _step(3, "exporting to ONNX with the inconsistency score in the graph (parity-checked)")
    model = out / "model.onnx"
    run_step([*MSMINE, "export", str(checkpoint), "--out", str(model), "--calib-data", str(data)],
             logs / "export.log", "export")
    _done(t, f"-> {model}")

    # 4. server
    t = _step(4, "starting the collection server on loopback")
    server_root = out / "server"
    if server_root.exists():
        shutil.rmtree(server_root)
    server_root.mkdir(parents=True)
    device_token = create_token(server_root, device="demo-cam-1")
    team_token = create_token(server_root, team=True)
    with ServerProcess(server_root, logs / "server.log") as server:
        _done(t, f"-> {server.url}  (gallery: {server.url}/?token={team_token})")

        # 5. device
        t = _step(5, f"running edge-runtime on the {'synthetic' if args.data is None else 'real clip'} camera "
                     f"pair for {args.duration:.0f} s (budget {args.budget})")
        spool = out / "spool"
        if spool.exists():
            shutil.rmtree(spool)
        edge_log = run_step(
            [*EDGE_RUNTIME, "--cameras", cameras, "--model", str(model), "--server", server.url,
             "--token", device_token, "--device-id", "demo-cam-1", "--duration", str(args.duration),
             "--budget", args.budget, "--spool-dir", str(spool), "--detections", str(out / "detections.jsonl"),
             "--realtime", "--decision-delay", "1.0", "--suppression-gap", "0.5"],
            logs / "edge-runtime.log", "edge-runtime", timeout=args.duration + 180)
        summary = parse_edge_summary(edge_log)
        _done(t)

        # 6. summary + report
        t = _step(6, "collecting what was mined and writing the report")
        pairs = fetch_top_pairs(server.url, team_token, args.top)
        facts = {
            "camera pairs seen": summary.get("pairs", "?"),
            "pairs per second": summary.get("pairs_per_s", "?"),
            "kept (spooled)": summary.get("kept", "?"),
            "uploaded": summary.get("uploaded", "?"),
            "upload budget": args.budget,
            "final score threshold": summary.get("threshold", "?"),
            "model": f"{model} ({summary.get('model', {}).get('runner', '?')})",
            "gallery": f"{server.url}/?token={team_token}",
            "whole demo": f"{time.monotonic() - t_all:.0f} s",
        }
        report = write_report(out / "report.html", "msmine demo: mined visible/thermal pairs", facts, pairs)
        _done(t, f"-> {report}")

        print()
        print(f"pairs seen {facts['camera pairs seen']}, kept {facts['kept (spooled)']}, "
              f"uploaded {facts['uploaded']} (budget {args.budget})")
        if pairs:
            print("top scores (bits): " + ", ".join(f"{p.score:.4f}" for p in pairs))
        print(f"report:  {report}")
        print(f"logs:    {logs}")
        if args.keep_serving:
            print(f"gallery: {server.url}/?token={team_token}   (Ctrl-C to stop)")
            try:
                while server.proc.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                print()
        else:
            print("(re-run with --keep-serving to browse the gallery)")
    return 0
