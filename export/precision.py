"""INT8 (explicit QDQ) variant of an exported FP32 model, the score subgraph kept in float32.

(FP16 is exported directly from PyTorch with the network in half precision and the score in
float32: see ``export_onnx(..., precision="fp16")``. onnxconverter-common's graph conversion
produced invalid graphs here, with a type mismatch where a node consumes a graph output.)

INT8: ``onnxruntime.quantization.quantize_static(quant_format=QuantFormat.QDQ)``, calibrated on
  real pairs with both inputs fed, symmetric signed INT8 activations and per-channel weights (the
  QDQ form TensorRT consumes as is), the score subgraph and each branch's first convolution in
  ``nodes_to_exclude``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import onnx

from msmine.export.graph import CONV_OPS, ensure_node_names, get_metadata, score_subgraph_nodes, set_metadata
from msmine.model_contract import Key

log = logging.getLogger(__name__)


def _stride(batches: int, most: int = 4) -> int:
    """The largest divisor of ``batches`` up to ``most`` (onnxruntime needs the stride to divide them)."""
    return max(d for d in range(1, min(most, max(batches, 1)) + 1) if batches % d == 0)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantiser logs every node at INFO on the root logger: keep that out of the CLI."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _load_named(path: str | Path) -> onnx.ModelProto:
    return ensure_node_names(onnx.load(str(path)))


def leading_convs(model: onnx.ModelProto, depth: int = 1) -> list[str]:
    """Names of the convolutions at most ``depth`` convolutions from the inputs (counted along the
    longest path; 1 = the stems, the convolutions no other convolution feeds).

    They see the normalised camera images, whose few channels carry all the signal, at the highest
    resolution. Symmetric INT8 on them costs most of the rank agreement of the score, for a sliver of
    the compute: the stems on the tiny test model (Spearman 0.945 quantised, 0.975 in float); on
    EfficientNet-Lite0 detection also its first MBConv blocks (Spearman 0.479 with only the stems in
    float, 0.978 with blocks 0-2, depth 9; 64 MSRS test pairs; docs/export.md)."""
    if depth < 0:
        raise ValueError(f"depth: expected >= 0, got {depth}")
    tensor_depth: dict[str, int] = {}  # convolutions on the longest path from the inputs to a tensor
    names = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        d = max((tensor_depth.get(i, 0) for i in node.input), default=0)
        if node.op_type in CONV_OPS:
            d += 1
            if d <= depth:
                names.append(node.name)
        for out in node.output:
            tensor_depth[out] = d
    return names


def default_float_depth(backbone: str) -> int:
    """``msmine export --int8-float-depth``'s default for a backbone: EfficientNet-Lite keeps its stem and
    MBConv blocks 0-2 (stride <= 4; 9 convolutions deep, about 14 % of Lite0's multiply-adds) in float,
    the only setting measured to pass the fidelity gate (docs/export.md); the other backbones their stems."""
    return 9 if str(backbone).startswith("lite") else 1


def quantize_int8(fp32_path: str | Path, out_path: str | Path, reader, per_channel: bool = True,
                  float_heads: bool = True, float_depth: int = 1) -> Path:
    """Static INT8 QDQ quantisation calibrated by ``reader`` (yields {"visible", "thermal"} batches).

    ``float_heads``: keep the prediction convolutions in float too (default), so the logits the score
    reads are never quantised; False quantises them (smaller, and faster on some CPUs).
    ``float_depth``: keep the convolutions within this many convolutions of the inputs in float
    (:func:`leading_convs`; 0 quantises them all; :func:`default_float_depth` per backbone).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        except Exception as exc:  # pre-processing is an optimisation; quantise the plain model without it
            log.info("quantisation pre-processing skipped (%s: %s)", type(exc).__name__, str(exc)[:200])
            onnx.save(onnx.load(str(fp32_path)), str(prepared))
        model = _load_named(prepared)
        meta = get_metadata(onnx.load(str(fp32_path), load_external_data=False))
        exclude = score_subgraph_nodes(model, include_heads=float_heads)
        exclude += [name for name in leading_convs(model, float_depth) if name not in exclude]
        onnx.save(model, str(prepared))
        log.info("INT8: %d nodes, %d score/post-processing nodes kept in float", len(model.graph.node), len(exclude))
        with _quiet_root_logger():
            quantize_static(
                str(prepared), str(out_path), reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=exclude,
                # ranges are computed per stride of batches and merged (a min/max union: the same
                # result), so the calibrator's per-batch outputs never pile up for many pairs
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               "CalibStridedMinMax": _stride(len(reader))},
            )
    quantized = onnx.load(str(out_path))
    set_metadata(quantized, {**meta, Key.PRECISION: "int8"})
    onnx.save(quantized, str(out_path))
    return out_path
