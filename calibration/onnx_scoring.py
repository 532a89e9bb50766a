"""Score camera pairs with an exported msmine ONNX model in onnxruntime (no torch)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from msmine.calibration.pairs import to_model_inputs
from msmine.errors import UserError

log = logging.getLogger(__name__)


def read_metadata(session) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


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
    meta = read_metadata(session)
    if "msmine.input_size" not in meta:
        raise UserError(f"{path} is not an msmine model (no msmine.input_size metadata)")
    input_size = tuple(int(v) for v in json.loads(meta["msmine.input_size"]))
    return session, input_size


def score_pairs(session, input_size, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], output: str = "inconsistency"):
    """Run the model on each pair; -> (ids, scores of the named [N] output)."""
    names = [o.name for o in session.get_outputs()]
    if output not in names:
        raise UserError(f"the model has no output {output!r}; outputs: {', '.join(names)}")
    ids, scores = [], []
    for pair_id, visible, thermal in pairs:
        (value,) = session.run([output], to_model_inputs(visible, thermal, input_size))
        ids.append(pair_id)
        scores.append(float(np.asarray(value).ravel()[0]))
    if not scores:
        raise UserError("no pairs to score")
    log.info("scored %d pairs", len(scores))
    return ids, np.asarray(scores, dtype=np.float64)
