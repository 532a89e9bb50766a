"""``msmine export CHECKPOINT --out model.onnx``: ONNX with the score in the graph, gated.

    msmine export runs/det/best.pt --out model.onnx --calib-data ../shared/data/msrs
    msmine export runs/det/best.pt --out model-int8.onnx --precision int8 --calib-data ../shared/data/msrs
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint written by `msmine train` (.pt)")
    parser.add_argument("--out", required=True, help="output ONNX file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17, for TensorRT 8.5+)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32",
                        help="fp32 (default); fp16 or int8 also write the FP32 reference and a fidelity report")
    parser.add_argument("--calib-data", required=True,
                        help="real pairs: a dataset root with train/test splits (MSRS layout), a folder of pairs "
                             "(visible/, infrared/) or a clip folder; used by the parity gate and INT8 calibration")
    parser.add_argument("--eval-data", default="",
                        help="labelled dataset root for the fidelity gate (default: --calib-data)")
    parser.add_argument("--max-candidates", type=int, default=100, help="top-K candidates per branch (default: 100)")
    parser.add_argument("--no-score", action="store_true", help="leave the score outputs out (fp32 only)")
    parser.add_argument("--score-variant", default="paper",
                        help="also compute this score variant in the graph (output score_variant): topk, topk_level, "
                             "region, region_topk (default: paper, none added; the detection variants are computed "
                             "on the device)")
    parser.add_argument("--variant-k", type=int, default=50, help="k of the topk / region_topk variants (default: 50)")
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                        help="torch exporter: dynamo first, falling back to torchscript (default: auto)")
    parser.add_argument("--calib-pairs", type=int, default=64, help="INT8 calibration pairs (default: 64)")
    parser.add_argument("--quantize-heads", action="store_true",
                        help="int8: quantise the prediction convolutions too (default: they stay float, so the "
                             "logits the score reads are not quantised)")
    parser.add_argument("--int8-float-depth", type=int, default=None, metavar="D",
                        help="int8: keep the convolutions within D convolutions of the inputs in float (default: "
                             "9 for EfficientNet-Lite, its stem and blocks 0-2, where symmetric INT8 loses the "
                             "score; 1, the stems, for the others; 0 quantises every convolution)")
    parser.add_argument("--parity-pairs", type=int, default=4, help="real pairs in the parity gate (default: 4)")
    gate = parser.add_argument_group("fidelity gate (fp16 / int8)")
    gate.add_argument("--min-spearman", type=float, default=0.95, help="least Spearman of inconsistency (0.95)")
    gate.add_argument("--min-top-overlap", type=float, default=0.80, help="least top-10%% overlap (0.80)")
    gate.add_argument("--max-map-drop", type=float, default=1.0, help="most fused AP50 drop in points (1.0)")
    gate.add_argument("--fidelity-limit", type=int, default=0, help="evaluate the first N test pairs (0 = all)")
    gate.add_argument("--fidelity-split", default="test", help="split of --eval-data (default: test)")


def run(args: argparse.Namespace) -> int:
    from msmine.errors import UserError
    from msmine.export.fidelity import FidelityConfig
    from msmine.export.onnx_export import ExportConfig
    from msmine.export.parity import ParityTolerance
    from msmine.export.pipeline import PipelineConfig, run_export

    for name in ("calib_pairs", "parity_pairs", "max_candidates"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.int8_float_depth is not None and args.int8_float_depth < 0:
        raise UserError(f"--int8-float-depth must be >= 0, got {args.int8_float_depth}")
    if args.no_score and args.precision != "fp32":
        raise UserError("--no-score is for fp32 only (the fp16/int8 fidelity gate needs the score)")
    cfg = PipelineConfig(
        export=ExportConfig(opset=args.opset, max_candidates=args.max_candidates, with_score=not args.no_score,
                            exporter=args.exporter, score_variant=args.score_variant, variant_k=args.variant_k),
        precision=args.precision,
        calib_data=args.calib_data,
        eval_data=args.eval_data,
        parity_pairs=args.parity_pairs,
        calib_pairs=args.calib_pairs,
        quantize_heads=args.quantize_heads,
        int8_float_depth=args.int8_float_depth,
        parity=ParityTolerance(),
        fidelity=FidelityConfig(min_spearman=args.min_spearman, min_top_overlap=args.min_top_overlap,
                                max_map50_drop=args.max_map_drop, split=args.fidelity_split,
                                limit=args.fidelity_limit),
    )
    from msmine.metrics_format import format_metric

    result = run_export(args.checkpoint, args.out, cfg)
    worst = max(result.parity.max_abs_error.get(k, 0.0) for k in ("inconsistency", "entropy"))
    print(f"exported {result.model} ({args.precision}, {result.exporter} exporter, opset {args.opset}); "
          f"parity on {result.parity.pairs} real pairs: score error {worst:.2g} (<= 1e-4)")
    if result.fidelity is not None:
        f = result.fidelity
        print(f"fidelity vs fp32 on {f.pairs} pairs: Spearman {f.spearman:.4f}, top-10% overlap {format_metric(f.top_overlap)}, "
              f"{f.thresholds['metric']} {f.map50_reference:.2f} -> {f.map50_candidate:.2f} "
              f"(drop {f.map50_drop_points:.2f} points) -> {result.fidelity_path}")
    return 0
