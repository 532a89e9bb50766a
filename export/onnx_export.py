"""PyTorch model -> ONNX file that follows the contract in docs/architecture.md.

``export_onnx(model, meta, out, cfg)`` wraps the model (:class:`export.wrapper.ExportWrapper`),
exports it with ``torch.onnx.export`` (the dynamo exporter first; the TorchScript exporter when the
dynamo one fails or cannot produce the requested opset), fixes the declared output shapes (dynamic
batch only) and writes the ``metadata_props`` the device needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from msmine import __version__
from msmine.errors import UserError
from msmine.export.graph import ensure_node_names, set_metadata, set_output_shapes
from msmine.export.wrapper import ExportWrapper
from msmine.model_contract import INPUT_NAMES, PRECISIONS, VARIANT_KEY, ModelMetadata  # noqa: F401 (PRECISIONS: re-exported)

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "dynamo", "torchscript")
SCORE_DEFINITIONS = {
    "categorical": "Jensen-Shannon divergence in bits between the visible and thermal branches' class "
    "distributions (background + classes), per anchor (per pixel for segmentation); mean over the anchors of a location -> per-level "
    "maps; image score = mean over levels of each level's mean (scale-balanced). entropy: the fused "
    "branch's categorical entropy / log2(number of classes incl. background), scale-balanced the same way.",
    "binary": "I = H((p_v + p_t)/2) - (H(p_v) + H(p_t))/2 in bits on the foreground probability "
    "(1 - p_background), per anchor (per pixel for segmentation); mean over the anchors of a location -> per-level maps; image "
    "score = mean over levels of each level's mean (scale-balanced). entropy: the fused branch's binary "
    "entropy, scale-balanced the same way.",
}


@dataclass
class ExportConfig:
    """Settings of ``msmine export``."""

    opset: int = 17  # ONNX opset (17 suits TensorRT 8.5+)
    max_candidates: int = 100  # K: top-K candidates per branch before NMS
    with_score: bool = True  # compute inconsistency / entropy / maps in the graph
    exporter: str = "auto"  # auto (dynamo, falls back to torchscript) | dynamo | torchscript
    example_batch: int = 2  # batch size of the example inputs traced (the batch axis stays dynamic)
    score_variant: str = "paper"  # paper | topk | topk_level | region | region_topk: adds the score_variant output
    variant_k: int = 50  # k of the topk / topk_level / region_topk variants


@dataclass
class ExportResult:
    path: Path  # the ONNX file written
    exporter: str  # which torch exporter produced it: dynamo or torchscript
    wrapper: ExportWrapper  # the exported torch module (for the parity check)
    metadata: dict  # the metadata_props written


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 of the model's parameters and buffers (names + bytes), first 16 hex digits."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def build_metadata(model, meta: dict, wrapper: ExportWrapper, precision: str = "fp32") -> dict[str, str]:
    """The contract's ``metadata_props`` (strings; JSON where structured)."""
    norm = dict(getattr(model, "normalization", None) or meta.get("normalization") or {})
    norm.update({
        "input_dtype": "uint8",
        "layout": "NHWC",
        "scale": 1.0 / 255.0,
        "order": "x / 255, then (x - mean) / std per channel, inside the graph",
        "resize": "letterbox",
        "pad_value": 0,
    })
    step, epoch = meta.get("step"), meta.get("epoch")
    version = meta.get("model_version") or f"{getattr(model.config, 'backbone', 'model')}-epoch{epoch}-step{step}"
    return ModelMetadata(
        task=model.task,
        class_names=list(model.class_names),
        input_size=tuple(int(v) for v in model.input_size),
        levels=len(wrapper.level_shapes),
        max_candidates=wrapper.max_candidates,
        normalization=norm,
        score=SCORE_DEFINITIONS[wrapper.score_kind] if wrapper.with_score else "none (exported with --no-score)",
        model_version=str(version),
        model_hash=weights_hash(model),
        version=__version__,
        precision=precision,
    ).to_props()


def example_inputs(model, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = model.input_size
    gen = torch.Generator().manual_seed(0)
    vis = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=gen)
    th = torch.randint(0, 256, (batch, h, w, 1), dtype=torch.uint8, generator=gen)
    return vis, th


def _export_dynamo(wrapper, inputs, path: Path, opset: int) -> None:
    """torch.export-based exporter. It emits opset >= 18 reliably; an older requested opset is
    reached with onnx's version converter after torch's constant folding (converting inside torch
    fails on the Reduce ops' axes)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    with _quiet_loggers("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        program = torch.onnx.export(
            wrapper, inputs, None, dynamo=True, opset_version=max(opset, 18), verbose=False,
            input_names=list(INPUT_NAMES), output_names=wrapper.names,
            dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
        )
    proto = program.model_proto
    got = {o.domain: o.version for o in proto.opset_import}.get("")
    if got != opset:
        from onnx import version_converter

        proto = version_converter.convert_version(proto, opset)
        if opset < 18:  # the converter keeps an opset-18 attribute on the Reduce ops it rewrote
            for node in proto.graph.node:
                if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
                    kept = [a for a in node.attribute if a.name != "noop_with_empty_axes" or a.i != 0]
                    del node.attribute[:]
                    node.attribute.extend(kept)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The dynamo exporter logs every graph pass at INFO: keep that out of the CLI."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_torchscript(wrapper, inputs, path: Path, opset: int) -> None:
    axes = {n: {0: "batch"} for n in (*INPUT_NAMES, *wrapper.names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, inputs, str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
            input_names=list(INPUT_NAMES), output_names=wrapper.names, dynamic_axes=axes,
        )


def export_onnx(model, meta: dict, out: str | Path, cfg: ExportConfig | None = None, precision: str = "fp32") -> ExportResult:
    """Export ``model`` (eval mode) to ``out`` as ONNX with the score in the graph.

    ``precision``: "fp32", or "fp16" (the network in half precision; inputs, outputs and the score
    subgraph stay float32). INT8 is made from the FP32 file (:func:`export.precision.quantize_int8`).
    """
    cfg = cfg or ExportConfig()
    if cfg.exporter not in EXPORTERS:
        raise UserError(f"exporter must be one of {', '.join(EXPORTERS)}, got {cfg.exporter!r}")
    if cfg.max_candidates < 1:
        raise UserError(f"--max-candidates must be >= 1, got {cfg.max_candidates}")
    if not 13 <= cfg.opset <= 23:
        raise UserError(f"--opset must be between 13 and 23, got {cfg.opset}")
    if precision not in ("fp32", "fp16"):
        raise UserError(f"export_onnx makes fp32 or fp16 models, got {precision!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    try:
        wrapper = ExportWrapper(model, cfg.max_candidates, cfg.with_score, network_dtype=dtype,
                                score_variant=cfg.score_variant, variant_k=cfg.variant_k).eval()
    except ValueError as exc:
        raise UserError(f"--score-variant: {exc}") from None
    inputs = example_inputs(model, cfg.example_batch)
    with torch.no_grad():
        reference = wrapper(*inputs)
    shapes = {name: tuple(t.shape) for name, t in zip(wrapper.names, reference)}

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        used = None
        if cfg.exporter in ("auto", "dynamo"):
            try:
                with torch.no_grad():
                    _export_dynamo(wrapper, inputs, raw, cfg.opset)
                used = "dynamo"
            except Exception as exc:  # the dynamo exporter fails in many ways; fall back when allowed
                if cfg.exporter == "dynamo":
                    raise UserError(f"the dynamo ONNX exporter failed: {type(exc).__name__}: {str(exc)[:300]}") from None
                log.info("dynamo exporter not usable (%s: %s); using the TorchScript exporter",
                         type(exc).__name__, str(exc)[:200])
        if used is None:
            try:
                with torch.no_grad():
                    _export_torchscript(wrapper, inputs, raw, cfg.opset)
            except (RuntimeError, ValueError) as exc:  # e.g. an opset this exporter does not support
                raise UserError(f"ONNX export at opset {cfg.opset} failed: {type(exc).__name__}: "
                                f"{str(exc)[:300]}") from None
            used = "torchscript"
        proto = onnx.load(str(raw))
    ensure_node_names(proto)
    set_output_shapes(proto, shapes)
    metadata = build_metadata(model, meta, wrapper, precision)
    if wrapper.score_variant != "paper":  # the device checks this before it reads the output (edge ScorePolicy)
        metadata[VARIANT_KEY] = json.dumps({"name": wrapper.score_variant, "k": wrapper.variant_k})
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    log.info("exported %s with the %s exporter (opset %d, %d nodes)", out, used, cfg.opset, len(proto.graph.node))
    return ExportResult(out, used, wrapper, metadata)
