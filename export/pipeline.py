"""``msmine export`` as a library call: checkpoint -> gated FP32 / FP16 / INT8 ONNX.

1. load the checkpoint (``train.checkpoint.load_checkpoint``);
2. export FP32 (the reference; beside the output as ``<name>.fp32.onnx`` for FP16/INT8);
3. parity gate on real pairs (onnxruntime vs PyTorch);
4. FP16 (network in half precision) or INT8 (QDQ, calibrated on real pairs), then the fidelity gate
   on the labelled split; its JSON report is written beside the model (``<name>.fidelity.json``).
A failed gate removes the model it rejected and raises UserError.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msmine.errors import UserError
from msmine.export.fidelity import FidelityConfig, FidelityReport, enforce, fidelity_report, write_report
from msmine.export.onnx_export import PRECISIONS, ExportConfig, ExportResult, export_onnx
from msmine.export.parity import ParityReport, ParityTolerance, check_parity
from msmine.sources import is_camera_pair

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    """Everything ``msmine export`` needs beyond the checkpoint and the output path."""

    export: ExportConfig = field(default_factory=ExportConfig)  # ONNX export settings
    precision: str = "fp32"  # fp32 | fp16 | int8
    calib_data: str = ""  # real pairs: a dataset root (train/test splits) or a folder of pairs / a clip
    eval_data: str = ""  # labelled dataset root for the fidelity gate (default: calib_data)
    parity_pairs: int = 4  # real pairs in the parity check (one batch: also checks batch > 1)
    calib_pairs: int = 64  # real pairs for INT8 calibration
    calib_split: str = "train"  # split of calib_data used for INT8 calibration
    quantize_heads: bool = False  # INT8: quantise the prediction convs too (off: the logits stay float)
    int8_float_depth: int | None = None  # INT8: convolutions this deep stay float (precision.leading_convs; None: per backbone)
    parity: ParityTolerance = field(default_factory=ParityTolerance)  # parity tolerances
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)  # fidelity thresholds


@dataclass
class PipelineResult:
    model: Path  # the model written (at the requested precision)
    reference: Path  # the FP32 model (same as model for fp32)
    exporter: str  # dynamo or torchscript
    parity: ParityReport
    fidelity: FidelityReport | None = None
    fidelity_path: Path | None = None


def _parity_batch(source: str, input_size, count: int) -> dict[str, np.ndarray]:
    from msmine.calibration.int8_reader import calibration_batches

    try:
        return calibration_batches(source, input_size, limit=count, split="test", batch_size=count)[0]
    except UserError:  # a dataset root without a test split: its train split is real pairs too
        return calibration_batches(source, input_size, limit=count, split="train", batch_size=count)[0]


def _remove(path: Path) -> None:
    if path.exists():
        path.unlink()


def run_export(checkpoint: str | Path, out: str | Path, cfg: PipelineConfig) -> PipelineResult:
    from msmine.train.checkpoint import load_checkpoint

    if cfg.precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    if not cfg.calib_data:
        raise UserError("export needs real pairs for its gates: pass --calib-data DIR (e.g. an MSRS root)")
    if not is_camera_pair(cfg.calib_data) and not Path(cfg.calib_data).exists():
        raise UserError(f"--calib-data not found: {cfg.calib_data}")
    if cfg.precision != "fp32" and not cfg.export.with_score:
        raise UserError("FP16/INT8 export needs the score outputs for its fidelity gate: drop --no-score")
    out = Path(out)
    if out.suffix != ".onnx":
        raise UserError(f"--out must end in .onnx, got {out}")
    model, meta = load_checkpoint(checkpoint)
    meta.setdefault("model_version", f"{Path(checkpoint).stem}-epoch{meta.get('epoch')}-step{meta.get('step')}")
    reference = out if cfg.precision == "fp32" else out.with_name(out.stem + ".fp32.onnx")

    result: ExportResult = export_onnx(model, meta, reference, cfg.export)
    batch = _parity_batch(cfg.calib_data, model.input_size, cfg.parity_pairs)
    try:
        parity = check_parity(result.wrapper, reference, batch, cfg.parity)
    except UserError:
        _remove(reference)
        raise
    log.info("parity gate passed on %d real pairs (%s exporter)", parity.pairs, result.exporter)
    outcome = PipelineResult(out, reference, result.exporter, parity)
    if cfg.precision == "fp32":
        return outcome

    if cfg.precision == "fp16":
        export_onnx(model, meta, out, cfg.export, precision="fp16")
    else:
        from msmine.calibration.int8_reader import PairCalibrationReader, calibration_batches
        from msmine.export.precision import default_float_depth, quantize_int8

        depth = cfg.int8_float_depth
        if depth is None:
            depth = default_float_depth(model.config.backbone)
        batches = calibration_batches(cfg.calib_data, model.input_size, cfg.calib_pairs, cfg.calib_split)
        quantize_int8(reference, out, PairCalibrationReader(batches), float_heads=not cfg.quantize_heads,
                      float_depth=depth)
    eval_root = cfg.eval_data or cfg.calib_data
    try:
        report = fidelity_report(reference, out, eval_root, cfg.fidelity)
    except UserError as exc:
        _remove(out)
        raise UserError(f"the fidelity gate needs a labelled dataset (--eval-data, split "
                        f"{cfg.fidelity.split!r}): {exc}") from None
    report_path = write_report(report, out.with_name(out.stem + ".fidelity.json"))
    log.info("fidelity (%s vs fp32, %d pairs): Spearman %.4f, top-%d%% overlap %.3f, %s %.2f -> %.2f",
             cfg.precision, report.pairs, report.spearman, round(100 * cfg.fidelity.top_fraction),
             report.top_overlap, report.thresholds["metric"], report.map50_reference, report.map50_candidate)
    outcome.fidelity, outcome.fidelity_path = report, report_path
    if not report.passed:
        _remove(out)
    enforce(report)
    return outcome
