"""``msmine pretrain``: self-supervised pre-training of both streams and the fusion on unlabelled pairs.

    msmine pretrain --data ../shared/data/msrs/train --data ../shared/data/m3svd \\
        --config configs/pretrain_lite0.yaml --out runs/pretrain
    msmine train --data ../shared/data/msrs --config configs/segment_lite0.yaml --init runs/pretrain/pretrain.pt \\
        --out runs/seg_pre

``--data`` (repeatable, added to ``data.sources``): a folder of pairs (``visible/`` + ``infrared/``),
a dataset root (every split but ``test``; e.g. what ``msmine pull`` wrote), a clip folder
(``visible.mp4`` + ``infrared.mp4``), a folder of clip folders (``m3svd/``), or
``visible=SRC,thermal=SRC``. Test splits are refused (:mod:`msmine.train.data.unlabelled`).

Writes ``OUT/config.yaml``, ``OUT/last.pt`` (every ``checkpoint_every`` steps; ``--resume``
continues it), ``OUT/pretrain.pt`` (backbone-only: ``msmine train --init`` or
``--set model.pretrained=`` for ``msmine train`` and ``msmine al``), ``OUT/pretrain.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    from msmine.train.workspace import add_config_arguments

    parser.add_argument("--data", action="append", default=[], metavar="SOURCE",
                        help="unlabelled pairs (repeatable): pair folder, dataset root, clip folder(s), "
                             "or visible=SRC,thermal=SRC")
    parser.add_argument("--out", required=True, help="output directory (pretrain.pt, last.pt, config, report)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_config_arguments(parser)


def run(args) -> int:
    from msmine.config import load_config, save_config
    from msmine.train.pretrain import PretrainConfig, pretrain, write_report
    from msmine.train.workspace import apply_thread_limit

    apply_thread_limit()
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    cfg = load_config(PretrainConfig, args.config, overrides)
    cfg.data.sources = [*cfg.data.sources, *args.data]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    result = pretrain(cfg, out, resume=args.resume, progress=True)
    report = write_report(out, result, cfg)
    log.info("pre-trained %d steps in %.1f s (%.3f s/step) on %d pairs, %s", result.steps, result.seconds,
             result.seconds_per_step, result.pairs, result.device)
    print(f"wrote {', '.join(str(p) for p in [*result.written, report])}")
    return 0
