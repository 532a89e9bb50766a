"""``msmine calibrate``: camera-pair registration and upload-threshold calibration.

    msmine calibrate register --visible V.png --thermal T.png [--target checkerboard --pattern 9x6]
                              [--points pts.csv] [--ecc-only] [--no-refine] --out registration.yaml
    msmine calibrate threshold --scores scores.csv --target-rate 100/hour --fps 30 --out threshold.yaml
    msmine calibrate threshold --model model.onnx --source DIR|CLIP|visible=SRC,thermal=SRC
                               [--registration registration.yaml] --target-rate 100/hour [--fps 30]

With ``--model`` the pairs are preprocessed exactly as ``edge-runtime`` does (:func:`msmine.feeds.feeds`:
the registration warp, the visible image brought to the thermal grid, the letterbox), so the
threshold applies to the scores the device computes. ``edge-runtime --threshold-file`` reads the
written file (:func:`msmine.calibration_files.load_threshold`).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from msmine.errors import UserError

log = logging.getLogger(__name__)


def _pattern(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"pattern must look like 9x6, got {text!r}") from None
    if cols < 2 or rows < 2:
        raise argparse.ArgumentTypeError(f"pattern needs at least 2x2 points, got {text!r}")
    return cols, rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="calibrate_command", metavar="{register,threshold}")
    sub.required = True

    reg = sub.add_parser("register", help="estimate the visible->thermal homography of a camera pair")
    reg.add_argument("--visible", required=True, help="visible image (shows the target, or the scene)")
    reg.add_argument("--thermal", required=True, help="thermal image of the same moment")
    reg.add_argument("--target", default="checkerboard", choices=["checkerboard", "circles", "acircles"],
                     help="calibration target seen by both cameras (default: checkerboard)")
    reg.add_argument("--pattern", type=_pattern, default=(9, 6),
                     help="inner corners (checkerboard) or circles, COLSxROWS (default: 9x6)")
    reg.add_argument("--points", help="CSV (vx,vy,tx,ty) or YAML file of point correspondences instead of a target")
    reg.add_argument("--ecc-only", action="store_true",
                     help="no target, no points: ECC from the identity (nearly aligned cameras only)")
    reg.add_argument("--no-refine", action="store_true", help="skip the ECC refinement")
    reg.add_argument("--max-refine-shift", type=float, default=4.0,
                     help="reject an ECC refinement that moves the image corners further (px, default 4)")
    reg.add_argument("--min-ecc-correlation", type=float, default=0.7,
                     help="reject an ECC result with a lower gradient correlation (default 0.7)")
    reg.add_argument("--out", default="registration.yaml", help="output YAML (default: registration.yaml)")

    thr = sub.add_parser("threshold", help="score threshold that yields a target upload rate")
    src = thr.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", help="recorded scores: .npy, .csv or .jsonl (column score/inconsistency)")
    src.add_argument("--model", help="an exported msmine ONNX model to score --source with")
    thr.add_argument("--source", help="with --model: the cameras as edge-runtime --cameras takes them "
                     "(visible=SRC,thermal=SRC: two video files or two image folders, paired by file name), "
                     "a folder of pairs (visible/ + infrared/), a dataset root, or a clip folder (visible.mp4 + infrared.mp4)")
    thr.add_argument("--registration", help="with --model: the registration.yaml the device uses "
                     "(msmine calibrate register), applied to the visible images before scoring")
    thr.add_argument("--split", default="test", help="with --source a dataset root: the split (default: test)")
    thr.add_argument("--limit", type=int, default=0, help="with --source: score at most N pairs (0 = all)")
    thr.add_argument("--column", help="score column / key / model output (default: score or inconsistency)")
    thr.add_argument("--target-rate", required=True, help="uploads per time, e.g. 100/hour, 5/min")
    thr.add_argument("--fps", type=float, default=None,
                     help="pair rate of the stream the scores come from (default: 30, or the clip's rate)")
    thr.add_argument("--save-scores", help="with --model: also write the computed scores (.csv)")
    thr.add_argument("--out", default="threshold.yaml", help="output YAML (default: threshold.yaml)")


def run(args: argparse.Namespace) -> int:
    if args.calibrate_command == "register":
        return _run_register(args)
    return _run_threshold(args)


def _run_register(args: argparse.Namespace) -> int:
    from msmine.calibration.register import (
        RegisterConfig,
        load_correspondences,
        read_image,
        register_by_ecc,
        register_from_points,
        register_from_target,
    )
    from msmine.calibration.registration_io import save_registration

    if args.max_refine_shift <= 0:
        raise UserError(f"--max-refine-shift must be positive, got {args.max_refine_shift}")
    cfg = RegisterConfig(target=args.target, pattern=args.pattern, refine=not args.no_refine,
                         max_refine_shift_px=args.max_refine_shift, min_ecc_correlation=args.min_ecc_correlation)
    visible = read_image(args.visible)
    thermal = read_image(args.thermal, gray=True)
    vsize, tsize = (visible.shape[1], visible.shape[0]), (thermal.shape[1], thermal.shape[0])
    if args.points:
        src, dst = load_correspondences(args.points)
        reg = register_from_points(src, dst, vsize, tsize, visible, thermal, cfg)
    elif args.ecc_only:
        reg = register_by_ecc(visible, thermal, cfg)
    else:
        reg = register_from_target(visible, thermal, cfg)
    out = save_registration(reg, args.out)
    rms = "n/a" if math.isnan(reg.rms_px) else f"{reg.rms_px:.3f} px"
    print(f"registration ({reg.method}): rms {rms} -> {out}")
    return 0


def _model_scores(args: argparse.Namespace) -> tuple[list[str], list[float], str, float | None]:
    import numpy as np

    from msmine.calibration.onnx_scoring import open_session, score_pairs
    from msmine.calibration.pairs import iter_pairs, source_fps
    from msmine.calibration_files import apply_registration, load_registration

    if not args.source:
        raise UserError("--model needs --source (visible=SRC,thermal=SRC, a folder of pairs or a clip folder)")
    warp = None
    if args.registration:
        reg = load_registration(args.registration)
        warp = lambda visible: apply_registration(visible, reg)  # noqa: E731
    session, input_size = open_session(args.model)
    key = args.column or "inconsistency"
    ids, scores = score_pairs(session, input_size, iter_pairs(args.source, args.split, args.limit), key, warp)
    fps = source_fps(args.source)
    if args.save_scores:
        path = Path(args.save_scores)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("id,score\n" + "".join(f"{i},{s:.17g}\n" for i, s in zip(ids, scores)))
        log.info("wrote %d scores to %s", len(scores), path)
    return ids, list(np.asarray(scores, dtype=float)), key, fps or None


def _run_threshold(args: argparse.Namespace) -> int:
    import numpy as np

    from msmine.calibration.threshold import load_scores, parse_rate, save_threshold, threshold_for_rate

    target = parse_rate(args.target_rate)
    fps = args.fps
    if args.scores:
        if args.source or args.registration:
            raise UserError("--source and --registration go with --model, not with --scores")
        scores, key = load_scores(args.scores, args.column)
        source = str(args.scores)
    else:
        _, score_list, key, clip_rate = _model_scores(args)
        scores = np.asarray(score_list)
        fps = fps or clip_rate
        source = f"{args.model} on {args.source}" + (f" registered by {args.registration}" if args.registration else "")
    result = threshold_for_rate(scores, target, fps if fps is not None else 30.0, key)
    result.source = source
    out = save_threshold(result, args.out)
    print(f"threshold {result.threshold:.6g} on {key}: {result.expected_per_hour:.1f} uploads/hour expected "
          f"(target {result.target_per_hour:g}/hour at {result.fps:g} fps, {result.n_scores} scores) -> {out}")
    return 0
