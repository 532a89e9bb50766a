"""Score camera pairs with an exported msmine ONNX model in onnxruntime (no torch)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from msmine.calibration.pairs import to_model_inputs
from msmine.errors import UserError
from msmine.feeds import Warp
from msmine.model_contract import INCONSISTENCY, ModelMetadata

log = logging.getLogger(__name__)


def read_metadata(session) -> dict[str, str]:
    """The raw ``metadata_props`` of an onnxruntime session's model."""
    return dict(session.get_modelmeta().custom_metadata_map)


def session_metadata(session, where: str = "model") -> ModelMetadata:
    """The parsed contract metadata of an onnxruntime session's model (UserError when not an msmine model)."""
    return ModelMetadata.from_props(read_metadata(session), where)


def open_session(model_path: str | Path, threads: int = 0):
    """-> (onnxruntime session, model input size (H, W) from the model's metadata)."""
    import onnxruntime as ort

    path = Path(model_path)
    if not path.is_file():
        raise UserError(f"model not found: {path}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise UserError(f"cannot load ONNX model {path}: {exc}") from None
    return session, session_metadata(session, f"model {path}").input_size


def score_pairs(session, input_size, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], output: str = INCONSISTENCY,
                warp: Warp | None = None):
    """Run the model on each pair, preprocessed as the device does (``warp``: the registration);
    -> (ids, scores of the named [N] output)."""
    names = [o.name for o in session.get_outputs()]
    if output not in names:
        raise UserError(f"the model has no output {output!r}; outputs: {', '.join(names)}")
    ids, scores = [], []
    for pair_id, visible, thermal in pairs:
        (value,) = session.run([output], to_model_inputs(visible, thermal, input_size, warp))
        ids.append(pair_id)
        scores.append(float(np.asarray(value).ravel()[0]))
    if not scores:
        raise UserError("no pairs to score")
    log.info("scored %d pairs", len(scores))
    return ids, np.asarray(scores, dtype=np.float64)
