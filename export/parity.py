"""Parity gate: onnxruntime must reproduce the PyTorch outputs on real pairs.

Tolerances (absolute): the per-image scores ``inconsistency`` and ``entropy`` 1e-4; the per-level
maps 1e-4; the candidates' boxes and scores 1e-4 (a row may differ only where its score ties
another candidate's within the tolerance, since TopK may order ties differently) and their class
ids exactly; segmentation class maps: at least 99.9 % of the pixels equal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from msmine.errors import UserError
from msmine.model_contract import INPUT_NAMES, SCORE_OUTPUTS, non_finite

log = logging.getLogger(__name__)


@dataclass
class ParityTolerance:
    """Absolute tolerances of the parity gate."""

    score_atol: float = 1e-4  # inconsistency and entropy, per image
    map_atol: float = 1e-4  # inconsistency_map_<l>
    detection_atol: float = 1e-4  # boxes and scores of the top-K candidates
    segmentation_agreement: float = 0.999  # fraction of equal class ids in *_segmentation


@dataclass
class ParityReport:
    pairs: int  # how many real pairs were compared
    max_abs_error: dict = field(default_factory=dict)  # output name -> worst error (or disagreement)
    tolerance: dict = field(default_factory=dict)  # output name -> tolerance applied
    failures: list = field(default_factory=list)  # human-readable lines, empty when it passes

    @property
    def passed(self) -> bool:
        return not self.failures


def _tied(scores: np.ndarray, atol: float) -> np.ndarray:
    """Rows whose score lies within atol of another row's (TopK may order those differently)."""
    diffs = np.abs(scores[:, None] - scores[None, :])
    np.fill_diagonal(diffs, np.inf)
    return (diffs <= atol).any(axis=1)


def compare_candidates(ref: np.ndarray, got: np.ndarray, atol: float) -> float:
    """Worst error of [N, K, 6] candidates, ignoring row swaps among tied scores."""
    worst = float(np.abs(ref[..., 4] - got[..., 4]).max()) if ref.size else 0.0
    for r, g in zip(ref, got):
        row_err = np.maximum(np.abs(r[:, :4] - g[:, :4]).max(axis=1), np.where(r[:, 5] != g[:, 5], np.inf, 0.0))
        untied = ~_tied(r[:, 4], atol)
        if untied.any():
            worst = max(worst, float(row_err[untied].max()))
    return worst


def torch_outputs(wrapper, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outs = wrapper(*(torch.from_numpy(inputs[name]) for name in INPUT_NAMES))
    return {name: t.cpu().numpy() for name, t in zip(wrapper.names, outs)}


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], tol: ParityTolerance, pairs: int) -> ParityReport:
    report = ParityReport(pairs=pairs)
    for name, r in ref.items():
        if name not in got:
            report.failures.append(f"output {name!r} missing from the ONNX model")
            continue
        g = got[name]
        bad = non_finite({name: g})
        if bad:
            report.failures.append(f"{name}: {bad[name]} non-finite value(s) in the ONNX output")
            continue
        if r.shape != g.shape:
            report.failures.append(f"{name}: shape {g.shape} in ONNX vs {r.shape} in PyTorch")
            continue
        if name.endswith("_segmentation"):
            agree = float((r == g).mean())
            err, limit, ok = 1.0 - agree, 1.0 - tol.segmentation_agreement, agree >= tol.segmentation_agreement
        else:
            if name.endswith("_detections"):
                limit = tol.detection_atol
                err = compare_candidates(r, g, limit)
            else:
                limit = tol.score_atol if name in SCORE_OUTPUTS else tol.map_atol
                err = float(np.abs(r.astype(np.float64) - g).max()) if r.size else 0.0
            ok = err <= limit
        report.max_abs_error[name] = err
        report.tolerance[name] = limit
        if not ok:
            report.failures.append(f"{name}: max error {err:.3g} > tolerance {limit:.3g}")
    return report


def check_parity(wrapper, onnx_path, inputs: dict[str, np.ndarray], tol: ParityTolerance | None = None) -> ParityReport:
    """Run PyTorch and onnxruntime on the same batch of real pairs; UserError if they disagree."""
    import onnxruntime as ort

    tol = tol or ParityTolerance()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = torch_outputs(wrapper, inputs)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, inputs)))
    report = compare_outputs(ref, got, tol, pairs=int(inputs[INPUT_NAMES[0]].shape[0]))
    for name, err in report.max_abs_error.items():
        log.info("parity %-22s max error %.3g (tolerance %.3g)", name, err, report.tolerance[name])
    if not report.passed:
        raise UserError(f"parity gate failed for {onnx_path} on {report.pairs} real pairs: " + "; ".join(report.failures))
    return report
