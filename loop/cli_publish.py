"""``msmine publish RUN_DIR|CHECKPOINT|MODEL.onnx --server URL --token T --name NAME``: a model into the registry.

    msmine publish runs/det2 --server http://127.0.0.1:8080 --token $TEAM_TOKEN --name det-2 --calib-data $D

A run directory (its ``best.pt``) or a checkpoint is exported first (``msmine export``'s pipeline and
gates, to ``--out``, default ``RUN_DIR/NAME.onnx``), unless ``--model FILE.onnx`` names its export
already made (its weights hash must be the checkpoint's); an exported ``.onnx`` alone is published
as it is (it records no validation figure).
``NAME`` is the one name of the model everywhere: the registry's version, the model version inside
the ONNX file (``msmine.model_version``, rewritten in a copy when an ONNX file says otherwise), so the
devices' logs and manifests and the gallery's pairs all show it.

The validation a run recorded (``msmine train``'s best value of its main metric: fused AP50 for
detection, fused mIoU for segmentation, and which set it was measured on) goes into the registry
record's metadata. A model that validates worse than the currently published model of the same task
is refused with one line naming both figures, unless ``--force``; so is a model without a recorded
figure when the published one has one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from msmine.errors import UserError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a training run directory (its best.pt), a checkpoint (.pt) or an exported "
                                       "model (.onnx)")
    parser.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("MSMINE_TOKEN"),
                        help="data-team token (default: $MSMINE_TOKEN)")
    parser.add_argument("--name", required=True,
                        help="the model's one name: registry version, model version in the file, shown by devices "
                             "and the gallery (letters, digits, . _ + -; not 'latest')")
    parser.add_argument("--calib-data", default="",
                        help="real pairs for the export's parity gate (needed to publish a run or checkpoint)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32",
                        help="export precision of a run or checkpoint (default: fp32)")
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                        help="torch exporter of a run or checkpoint (msmine export --exporter; default: auto)")
    parser.add_argument("--model", default="", metavar="FILE.onnx",
                        help="the run's model as `msmine export` already wrote it (no second export)")
    parser.add_argument("--out", default="", help="where the exported ONNX goes (default: RUN_DIR/NAME.onnx)")
    parser.add_argument("--force", action="store_true",
                        help="publish even when the model validates worse than the published one of its task")


@dataclass(frozen=True)
class Validation:
    """A run's recorded validation: ``metric`` (e.g. fused_AP50) = ``value`` on ``where``."""

    metric: str
    value: float
    where: str = ""


def checkpoint_of(source: Path) -> Path | None:
    """The checkpoint behind ``source`` (a run directory's best.pt, or the .pt itself); None for an ONNX file."""
    if source.is_dir():
        best = source / "best.pt"
        if best.is_file():
            return best
        metrics = _read_json(source / "metrics.json")
        why = f" (its metrics.json: {metrics['refused']})" if metrics and metrics.get("refused") else ""
        raise UserError(f"no best.pt in {source}{why}")
    if not source.is_file():
        raise UserError(f"not found: {source}")
    if source.suffix == ".onnx":
        return None
    return source


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_validation(checkpoint: Path) -> tuple[str, Validation | None]:
    """(task, the best validation value ``msmine train`` recorded in ``checkpoint``; None when it ran without one)."""
    from msmine.train.checkpoint import read_checkpoint

    state = read_checkpoint(checkpoint)
    value, metric = state.get("best_value"), state.get("best_metric")
    task = str(state.get("task", ""))
    if value is None or metric is None or float(value) != float(value) or float(value) == float("-inf"):
        return task, None
    run = _read_json(checkpoint.parent / "metrics.json") or {}
    return task, Validation(str(metric), float(value), str(run.get("val_set") or ""))


def published_validation(metadata: dict) -> Validation | None:
    got = metadata.get("validation") if isinstance(metadata, dict) else None
    if not isinstance(got, dict):
        return None
    try:
        return Validation(str(got["metric"]), float(got["value"]), str(got.get("where", "")))
    except (KeyError, TypeError, ValueError):
        return None


def guard(name: str, task: str, new: Validation | None, current, force: bool) -> str | None:
    """Why ``name`` must not replace ``current`` (the published ModelInfo of its task), or None.

    ``--force`` turns the refusal into a warning."""
    from msmine.metrics_format import format_metric

    if current is None or current.version == name:
        return None
    old = published_validation(current.metadata)
    if old is None:
        return None
    if new is None:
        why = (f"{name} has no recorded validation, the published {task} model {current.version} has "
               f"{old.metric} {format_metric(old.value)}")
    elif new.metric != old.metric:
        why = (f"{name} records {new.metric}, the published {task} model {current.version} {old.metric}: "
               "they cannot be compared")
    elif new.value < old.value:
        sets = "" if new.where == old.where else f" (validated on {new.where or '?'} vs {old.where or '?'})"
        why = (f"{name} validates worse than the published {task} model {current.version}: {new.metric} "
               f"{format_metric(new.value)} < {format_metric(old.value)}{sets}")
    else:
        return None
    if force:
        log.warning("%s; publishing anyway (--force)", why)
        return None
    return f"refused: {why}; --force publishes it anyway"


def export_for_publish(checkpoint: Path, out: Path, calib_data: str, precision: str, exporter: str = "auto") -> Path:
    from msmine.export.onnx_export import ExportConfig
    from msmine.export.pipeline import PipelineConfig, run_export

    if not calib_data:
        raise UserError(f"publishing {checkpoint} exports it first: pass --calib-data DIR (real pairs for the "
                        "export's parity gate, e.g. the MSRS root), or publish an exported .onnx")
    cfg = PipelineConfig(export=ExportConfig(exporter=exporter), precision=precision, calib_data=calib_data)
    result = run_export(checkpoint, out, cfg)
    return result.model


def check_export_of(model: Path, checkpoint: Path) -> None:
    """``model`` must be an export of ``checkpoint`` (same weights hash), else one line."""
    from msmine.export.onnx_export import weights_hash
    from msmine.model_contract import read_onnx_metadata
    from msmine.train.checkpoint import load_checkpoint

    if model.suffix != ".onnx":
        raise UserError(f"--model must be an exported .onnx file, got {model}")
    meta, _, _ = read_onnx_metadata(model)
    expected = weights_hash(load_checkpoint(checkpoint)[0])
    if meta.model_hash != expected:
        raise UserError(f"--model {model} is not an export of {checkpoint} (weights hash {meta.model_hash or '?'}, "
                        f"the checkpoint's {expected}); export it again or leave --model out")


def named_model_bytes(model: Path, name: str) -> bytes:
    """The file's bytes with ``msmine.model_version`` = ``name`` (rewritten in a copy when it differs)."""
    import onnx

    from msmine.model_contract import Key, read_onnx_metadata

    meta, _, _ = read_onnx_metadata(model)
    if meta.model_version == name:
        return model.read_bytes()
    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == Key.MODEL_VERSION:
            prop.value = name
            break
    else:
        entry = proto.metadata_props.add()
        entry.key, entry.value = Key.MODEL_VERSION, name
    log.info("model version in %s is %r; publishing a copy named %r", model, meta.model_version, name)
    with tempfile.TemporaryDirectory(prefix="msmine-publish-") as tmp:
        path = Path(tmp) / model.name
        onnx.save(proto, str(path))
        return path.read_bytes()


def run(args: argparse.Namespace) -> int:
    from msmine.client import ServerClient
    from msmine.metrics_format import format_metric
    from msmine.model_contract import read_onnx_metadata
    from msmine.wire import VERSION_RE

    if not args.token:
        raise UserError("--token (or $MSMINE_TOKEN) is required: a data-team token")
    if not VERSION_RE.match(args.name) or args.name == "latest":
        raise UserError(f"--name must match {VERSION_RE.pattern} and not be 'latest', got {args.name!r}")
    source = Path(args.source)
    checkpoint = checkpoint_of(source)
    client = ServerClient(args.server, args.token)
    if checkpoint is not None:
        task, validation = recorded_validation(checkpoint)
    else:
        task, validation = read_onnx_metadata(source)[0].task, None
    # the guard first: a refused model is not exported (and a bad token or server fails before the export)
    current = next((m for m in client.list_models() if m.metadata.get("task") == task), None)
    refused = guard(args.name, task, validation, current, args.force)
    if refused:
        raise UserError(refused)
    if checkpoint is None:
        if args.model:
            raise UserError("--model goes with a run directory or checkpoint (whose validation it is published with)")
        model = source
    elif args.model:
        model = Path(args.model)
        check_export_of(model, checkpoint)
    else:
        out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / f"{args.name}.onnx"
        model = export_for_publish(checkpoint, out, args.calib_data, args.precision, args.exporter)
    meta, _, _ = read_onnx_metadata(model)
    data = named_model_bytes(model, args.name)
    metadata = {
        "name": args.name, "task": meta.task, "class_names": list(meta.class_names),
        "input_size": list(meta.input_size), "precision": meta.precision, "weights_hash": meta.model_hash,
        "source": str(source), "validation": asdict(validation) if validation is not None else None,
    }
    result = client.publish_model(args.name, data, metadata)
    figure = f"{validation.metric} {format_metric(validation.value)}" if validation else "no recorded validation"
    state = "published" if result.created else "already published (same file)"
    print(f"{state}: {args.name} ({meta.task}, {figure}) at {client.base_url}, sha256 {result.model.sha256[:12]}, "
          f"{result.model.bytes} bytes; devices polling the registry switch to it")
    return 0
