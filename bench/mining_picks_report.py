"""The picks of each strategy of a mining experiment as the paper's Fig. 5 (issue 12, item 5).

    .venv/bin/python bench/mining_picks_report.py runs/mining/det_val_cached --data ../shared/data/msrs \\
        --seed 0 --per-strategy 4 --png docs/images/mining_picks_detect.png

Reads a ``bench/mining_experiment.py`` (or ``msmine al``) run folder ``OUT``: the run's settings
(``state/run.json``), the seed's resume state (``state/seed<S>.pt``: the cycle-0 model ``model0``
shared by every strategy, the initial set) and each strategy's picks (``labelled_<strategy>_seed<S>.json``,
in pick order; a strategy still running is read from the state once it has passed ``--cycle``).
The picks of selection ``--cycle`` are ``labelled[sizes[c-1]:sizes[c]]``. The first selection was
made by the cycle-0 model, which the state keeps, so with ``--cycle 1`` (the default) the panels show
what the choosing model saw: per pick the visible image with the visible branch's detections (masks
for segmentation), the thermal image with the thermal branch's, the inconsistency heat map (the
device's rendering) with the fused branch's, the pair id, day/night and its score under that
strategy (the exact score ``msmine.train.al.select_next`` ranks by; random strategies have none, the
paper's inconsistency is shown for every pick). Later selections were made by models the state does
not keep: ``--cycle 2`` and up show those picks through the cycle-0 model, and say so.

``--replay`` (selection 1 only): strategies that have not made their first selection yet (named in
``--strategies``) get it made again as the run makes it (the cycle-0 model, ``select_next`` or its
plain top-b with one scoring pass per score variant, the strategy's own generator); the recorded
strategies are replayed too and checked against their picks ("= replay" in the summary). It scores
the whole pool: minutes of CPU.

Writes one self-contained HTML (``--html``, default ``OUT/picks.html``) with a per-strategy summary
(night share and near-duplicate rate of the whole selection, against the pool's night share), and
optionally one compact PNG montage (``--png``: rows = strategies, ``--png-pairs`` pairs each, small
panels without labels, at most 1600 px wide, palette-quantised) for ``docs/images/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

log = logging.getLogger("mining_picks_report")

DUP_WINDOW = 3  # frames: bench/mining_experiment.py's --dup-window default
MAX_PNG_WIDTH = 1600


@dataclass
class Pick:
    strategy: str
    rank: int  # 1 = the first pick of the selection
    pair_id: str
    night: bool | None
    score: float | None  # under the strategy (None: a random draw)
    paper: float  # the paper's inconsistency (bits)
    images: dict[str, np.ndarray]  # visible / thermal / heatmap, BGR, the letterbox's content only
    predictions: dict[str, list[dict]]  # branch -> wire-format detections (boxes normalised to the images)
    masks: dict[str, np.ndarray]  # branch -> class ids (segmentation), same size as the images


@dataclass
class Selection:
    strategy: str
    ids: list[str]  # the whole selection, in pick order
    source: str  # the picks file, or the state


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mining_picks_report", description=__doc__.split("\n\n")[0])
    p.add_argument("out", metavar="OUT", help="the mining experiment's --out folder")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrs"), help="MSRS root (as the run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cycle", type=int, default=1, help="which selection (1 = the first, by the cycle-0 model)")
    p.add_argument("--per-strategy", type=int, default=4, help="picks shown per strategy, in pick order")
    p.add_argument("--strategies", default="", help="comma-separated subset, in this order (default: all of the run)")
    p.add_argument("--html", default="", help="the report (default OUT/picks.html)")
    p.add_argument("--png", default="", help="also a compact PNG montage here (docs/images/)")
    p.add_argument("--png-pairs", type=int, default=3, help="pairs per strategy in the montage")
    p.add_argument("--min-score", type=float, default=0.3, help="detections drawn from this confidence")
    p.add_argument("--replay", action="store_true",
                   help="make selection 1 again from model0 (for strategies not there yet; checked against the others)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    return p


# -- the run -----------------------------------------------------------------------------------
def load_run(out: Path, seed: int) -> tuple[dict, dict]:
    """(run.json, the seed's state); one-line errors for what is missing."""
    from msmine.errors import UserError
    from msmine.train.al import _load_state

    if not out.is_dir():
        raise UserError(f"OUT {out}: no such run folder")
    run_path = out / "state" / "run.json"
    if not run_path.is_file():
        raise UserError(f"OUT {out}: no state/run.json (not a bench/mining_experiment.py or msmine al run folder)")
    run = json.loads(run_path.read_text())
    if "config" not in run or "sizes" not in run:
        raise UserError(f"{run_path}: expected the run settings (sizes, config); got keys {', '.join(run)}")
    state_path = out / "state" / f"seed{seed}.pt"
    if not state_path.is_file():
        have = sorted(int(f.stem[4:]) for f in (out / "state").glob("seed*.pt") if f.stem[4:].isdigit())
        raise UserError(f"--seed {seed}: not run in {out} (seeds run: {', '.join(map(str, have)) or 'none'})")
    return run, _load_state(state_path)


def pool_ids(data: str, run: dict) -> tuple[object, object]:
    """The run's pool (the dataset its state's indices point into) and the training split."""
    from msmine.errors import UserError
    from msmine.train.workspace import AL_VAL_SEED, carve, open_split

    d = run["config"]["train"]["data"]
    train_all = open_split(data, d["train_split"], d["fmt"], d["limit"])
    pool = train_all
    if len(train_all) != run["pool"]:  # bench/mining_experiment.py holds validation blocks out of train
        from mining_experiment import VAL_FRACTION

        pool, _ = carve(train_all, VAL_FRACTION, AL_VAL_SEED)
        if len(pool) != run["pool"]:
            raise UserError(f"--data {data}: split {d['train_split']!r} gives a pool of {len(pool)} pairs, the run "
                            f"had {run['pool']} (another data folder or limit?)")
    return pool, train_all


def recorded(out: Path, seed: int, state: dict, name: str, ids: list[str]) -> tuple[list[str], str] | None:
    """(labelled ids in pick order, where from) of ``name``: its picks file, else the resume state."""
    path = out / f"labelled_{name}_seed{seed}.json"
    if path.is_file():
        return [str(i) for i in json.loads(path.read_text())], path.name
    st = state["strategies"].get(name)
    if st is not None:
        return [ids[i] for i in st["labelled"]], f"state/seed{seed}.pt (cycle {st['cycle']})"
    return None


def selections(out: Path, seed: int, state: dict, run: dict, cycle: int, names: list[str], ids: list[str],
               replayed: dict[str, list[str]] | None = None) -> list[Selection]:
    """Each strategy's picks of selection ``cycle`` (pick order): recorded, else ``replayed``."""
    from msmine.errors import UserError

    sizes = run["sizes"]
    lo, hi = sizes[cycle - 1], sizes[cycle]
    initial = sorted(ids[i] for i in state["initial"])
    replayed = replayed or {}
    result = []
    for name in names:
        got = recorded(out, seed, state, name, ids)
        if got is not None and len(got[0]) >= hi:
            labelled, source = got
            if sorted(labelled[:sizes[0]]) != initial:
                raise UserError(f"{source}: its first {sizes[0]} ids are not the seed's initial set in --data "
                                "(another data folder?)")
            if name in replayed:
                agree = replayed[name] == labelled[lo:hi]
                source += " = replay" if agree else " (the replay differs)"
                if not agree:
                    log.warning("%s: the replayed selection differs from the recorded one (%d of %d in common)",
                                name, len(set(replayed[name]) & set(labelled[lo:hi])), hi - lo)
            result.append(Selection(name, labelled[lo:hi], source))
        elif name in replayed:
            result.append(Selection(name, replayed[name], "replayed from model0"))
        else:
            st = state["strategies"].get(name)
            at = f"at cycle {st['cycle']} of {len(sizes) - 1}" if st is not None else "not started"
            hint = "; --replay makes selection 1 again from model0" if cycle == 1 else ""
            raise UserError(f"strategy {name} (seed {seed}): no picks file labelled_{name}_seed{seed}.json and the "
                            f"state has not passed cycle {cycle} ({at}){hint}")
    return result


def replay_first_selection(run: dict, state: dict, pool, names: list[str], seed: int, device) -> dict[str, list[str]]:
    """The first selection of each of ``names`` made again as ``ALRunner.run_seed`` makes it: the
    cycle-0 model, the pool less the initial set, ``select_next`` with the run's batch options and
    the strategy's own generator. Scores every pair of the pool (minutes on a CPU)."""
    from msmine import selector, strategies
    from msmine.train.al import STRATEGIES, BatchOptions, pool_meta, score_pool_variant, select_next
    from msmine.train.batching import PreparedPairs

    tcfg = run["config"]["train"]
    sizes = run["sizes"]
    known = {f.name for f in dataclasses.fields(BatchOptions)}
    options = BatchOptions(**{k: v for k, v in run.get("options", {}).items() if k in known})
    view = PreparedPairs(pool, tcfg["model"]["input_size"], train=False, cache=True)
    model = rebuild_model(run, state["model0"], device)
    cache_mb = int(tcfg["data"].get("feature_cache_mb", 0))
    if cache_mb > 0:  # the run's frozen-backbone cache: the later strategies' passes reuse the first's
        from msmine.train.models.prefix_cache import enable_prefix_cache

        enable_prefix_cache(model, cache_mb)
    initial = [int(i) for i in state["initial"]]
    taken = set(initial)
    unlabelled = [i for i in range(len(pool)) if i not in taken]
    meta = None if options.plain else pool_meta(view)
    ids = list(pool.ids)
    count = sizes[1] - sizes[0]
    kind, batch, workers = tcfg["model"]["score_kind"], max(16, int(tcfg["batch_size"])), int(tcfg["data"].get("workers", 0))
    scored: dict[str, dict] = {}  # variant -> the pool's scores (plain top-b: one pass serves every strategy of it)
    out = {}
    for name in names:
        spec = strategies.parse_spec(name, flag="strategy")
        base = spec.strategy.name
        rng = np.random.default_rng([seed, 1 + STRATEGIES.index(base) if base in STRATEGIES else 99])
        log.info("replaying %s's first selection over %d pairs", name, len(unlabelled))
        if options.plain and base in ("entropy", "inconsistency", "combined") and count < len(unlabelled):
            if spec.variant not in scored:  # select_next's plain top-b, its scoring shared between strategies
                scored[spec.variant] = score_pool_variant(model, view, unlabelled, device, batch, kind, spec.variant,
                                                          options, False, workers)
            values = np.asarray(strategy_scores(name, scored[spec.variant]), dtype=np.float64)
            picked, _ = selector.select_top(values, count, ids=list(unlabelled))
        else:
            picked = select_next(name, model, view, unlabelled, count, rng, device, kind, batch, False, workers,
                                 options=options, selection=0, labelled=list(initial), meta=meta)
        out[name] = [ids[i] for i in picked]
    return out


def rebuild_model(run: dict, weights: dict, device):
    """The run's model (its config, no pretrained download) with ``weights``, in eval mode."""
    from msmine.train.checkpoint import model_config_from_dict
    from msmine.train.models import build_model

    cfg = model_config_from_dict({**run["config"]["train"]["model"], "pretrained": ""})
    model = build_model(cfg)
    model.load_state_dict(weights)
    return model.eval().to(device)


# -- scores and panels -------------------------------------------------------------------------
def strategy_scores(strategy: str, scored: dict) -> np.ndarray | None:
    """What ``msmine.train.al.select_next`` ranks ``strategy`` by, from ``score_pool_variant``'s
    scores (None: a random draw)."""
    from msmine import selector, strategies

    spec = strategies.parse_spec(strategy, flag="strategy")
    name = spec.strategy.name
    inter, intra = scored["inconsistency"], scored["entropy"]
    if name in ("random", "random_dedup"):
        return None
    if name == "entropy":
        return intra
    if name == "combined":
        return selector.combined(inter, intra) if spec.variant == "paper" else inter + 0.5 * intra
    return inter


def _content(view, index: int, input_size) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the letterboxed image's content (the padding cut off)."""
    from msmine.train.postprocess import letterbox_params

    h, w = view.image_hw(index)
    scale, pad_x, pad_y = letterbox_params((h, w), input_size)
    rw = min(int(input_size[1]), max(1, round(w * scale)))
    rh = min(int(input_size[0]), max(1, round(h * scale)))
    return int(pad_x), int(pad_y), rw, rh


def render(model, view, indices: list[int], device, min_score: float) -> list[dict]:
    """Per index: images, predictions and masks of :class:`Pick` (one forward pass)."""
    import torch

    from msmine.edge_runtime.postprocess import heat_map
    from msmine.train import scoring
    from msmine.train.batching import IndexedSubset, collate, model_inputs
    from msmine.train.postprocess import detections_from_outputs, masks_from_logits

    size = tuple(model.input_size)
    batch = collate([IndexedSubset(view, indices)[j] for j in range(len(indices))])
    with torch.no_grad():
        outputs = model(*model_inputs(batch, device))
        maps = scoring.score_outputs(outputs, model.level_shapes, model.task, model.score_kind)["maps"]
    dets, masks = {}, {}
    for branch in ("visible", "thermal", "fused"):
        if model.task == "detect":
            dets[branch] = detections_from_outputs(outputs[branch], model.anchors, size, min_score,
                                                   scoring.DETECTION_NMS_IOU)
        else:
            masks[branch] = masks_from_logits(outputs[branch]["logits"], size).cpu().numpy()
    result = []
    for j, index in enumerate(indices):
        x, y, w, h = _content(view, index, size)
        sample = view.prepared(index)
        thermal = cv2.cvtColor(sample.thermal.reshape(sample.thermal.shape[:2]), cv2.COLOR_GRAY2BGR)
        heat = heat_map([m[j].float().cpu().numpy() for m in maps], (size[1], size[0]))
        full = {"visible": cv2.cvtColor(sample.visible, cv2.COLOR_RGB2BGR), "thermal": thermal, "heatmap": heat}
        predictions = {}
        for branch, per_image in dets.items():
            boxes, scores, classes = per_image[j]
            predictions[branch] = [
                {"box": [(b[0] - x) / w, (b[1] - y) / h, (b[2] - x) / w, (b[3] - y) / h], "score": float(s),
                 "class_id": int(c)} for b, s, c in zip(boxes.tolist(), scores.tolist(), classes.tolist())]
        result.append({"images": {k: v[y:y + h, x:x + w].copy() for k, v in full.items()},
                       "predictions": predictions,
                       "masks": {b: m[j][y:y + h, x:x + w].astype(np.uint8) for b, m in masks.items()}})
    return result


def build_picks(run: dict, state: dict, chosen: list[Selection], dataset, shown: int, device,
                min_score: float) -> dict[str, list[Pick]]:
    """The first ``shown`` picks of every selection, rendered through the cycle-0 model."""
    from msmine import strategies
    from msmine.train.al import BatchOptions, score_pool_variant
    from msmine.train.batching import PreparedPairs

    tcfg = run["config"]["train"]
    index_of = {pid: i for i, pid in enumerate(dataset.ids)}
    wanted = list(dict.fromkeys(pid for s in chosen for pid in s.ids[:shown]))
    subset = dataset.subset([index_of[pid] for pid in wanted])
    view = PreparedPairs(subset, tcfg["model"]["input_size"], train=False, cache=True)
    night = subset.is_night
    known = {f.name for f in dataclasses.fields(BatchOptions)}
    options = BatchOptions(**{k: v for k, v in run.get("options", {}).items() if k in known})
    model = rebuild_model(run, state["model0"], device)
    out: dict[str, list[Pick]] = {}
    for sel in chosen:
        positions = [wanted.index(pid) for pid in sel.ids[:shown]]
        variant = strategies.parse_spec(sel.strategy, flag="strategy").variant
        scored = score_pool_variant(model, view, positions, device, max(1, len(positions)), model.score_kind,
                                    variant, options)
        paper = score_pool_variant(model, view, positions, device, max(1, len(positions)), model.score_kind,
                                   "paper", options)["inconsistency"] if variant != "paper" else scored["inconsistency"]
        values = strategy_scores(sel.strategy, scored)
        drawn = render(model, view, positions, device, min_score)
        out[sel.strategy] = [
            Pick(sel.strategy, rank, wanted[p], night[p], None if values is None else float(values[k]), float(paper[k]),
                 d["images"], d["predictions"], d["masks"])
            for k, (rank, p, d) in enumerate(zip(range(1, len(positions) + 1), positions, drawn))]
    return out


# -- outputs -----------------------------------------------------------------------------------
def _day_night(night: bool | None) -> str:
    return "unknown" if night is None else ("night" if night else "day")


def score_label(strategy: str) -> str:
    from msmine import strategies

    spec = strategies.parse_spec(strategy, flag="strategy")
    name = spec.strategy.name
    if name in ("random", "random_dedup"):
        return "random draw"
    if name == "entropy":
        return "fused entropy"
    what = "inconsistency + 0.5 entropy" if name == "combined" else "inconsistency"
    return f"{what} ({spec.variant})"


def write_html(path: Path, title: str, facts: dict, summary: list[dict], picks: dict[str, list[Pick]],
               class_names: list[str], min_score: float, later_cycle: bool) -> Path:
    from msmine.loop.report import branch_legend, facts_table, fig5_panels, html_page, panel_row
    from msmine.palette import class_colour, is_background

    head = "".join(f"<th>{html.escape(k)}</th>" for k in summary[0]) if summary else ""
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in summary)
    any_masks = any(p.masks for items in picks.values() for p in items)
    legend = branch_legend() if not any_masks else "Masks (filled on the images, outlined on the heat map): " + ", ".join(
        f'<span style="color:{class_colour(c)}">{html.escape(n)}</span>' for c, n in enumerate(class_names)
        if not is_background(c, class_names)) + "."
    sections = []
    scored_by = "the cycle-0 model (not the model that chose them, which the run does not keep)" if later_cycle \
        else "the cycle-0 model, the one that chose them"
    for strategy, items in picks.items():
        blocks = []
        for p in items:
            score = "random draw" if p.score is None else f"{score_label(strategy)} {p.score:.4f}"
            caption = (f"<b>{html.escape(strategy)}</b> pick {p.rank} &middot; <code>{html.escape(p.pair_id)}</code>"
                       f" &middot; {_day_night(p.night)} &middot; score: {html.escape(score)} &middot; "
                       f"paper inconsistency {p.paper:.4f} bits")
            blocks.append(panel_row(caption, fig5_panels(p.images, p.predictions, class_names, p.masks, min_score)))
        sections.append(f'<section class="strategy" data-strategy="{html.escape(strategy)}">'
                        f"<h2>{html.escape(strategy)}</h2>{''.join(blocks)}</section>")
    body = f"""<h1>{html.escape(title)}</h1>
{facts_table(facts)}
<h2>The whole selection, per strategy</h2>
<table class="summary"><tr>{head}</tr>{rows}</table>
<p>Panels and scores by {scored_by}. {legend} The heat map is the per-prediction visible/thermal
disagreement averaged over the levels, scaled to the pair's own peak.</p>
{''.join(sections)}"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(title, body, ".summary td, .summary th { padding-right: 1.5em; }\n"))
    return path


def summarise(chosen: list[Selection], picks: dict[str, list[Pick]], night_of: dict[str, bool | None]
              ) -> tuple[list[dict], dict[str, str]]:
    """The summary table's rows (the whole selection of each strategy) and the montage's row labels."""
    from mining_experiment import duplicate_rate

    rows, short = [], {}
    for sel in chosen:
        n_night = sum(bool(night_of[i]) for i in sel.ids)
        rows.append({"strategy": sel.strategy, "picks": len(sel.ids), "night": f"{n_night} / {len(sel.ids)}",
                     f"near-duplicates (±{DUP_WINDOW} frames)": f"{duplicate_rate(sel.ids, DUP_WINDOW):.2f}",
                     "shown": len(picks[sel.strategy]), "from": sel.source})
        short[sel.strategy] = f"night {n_night}/{len(sel.ids)}"
    return rows, short


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4, colour=(230, 230, 230)) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def montage(picks: dict[str, list[Pick]], summary: dict[str, str], class_names: list[str], pairs: int,
            min_score: float) -> np.ndarray:
    """Rows = strategies, ``pairs`` pairs of three small panels each, labels at the left (BGR)."""
    from msmine.loop.report import PANELS, fig5_panels

    label_w, gap, cap_h, head_h = 150, 8, 16, 18
    pw = max(48, (MAX_PNG_WIDTH - label_w - pairs * gap) // (3 * pairs))
    first = next(p for items in picks.values() for p in items)
    ih, iw = first.images["visible"].shape[:2]
    ph = round(pw * ih / iw)
    width = label_w + pairs * (3 * pw + gap)
    height = head_h + len(picks) * (ph + cap_h + 4)
    canvas = np.full((height, width, 3), 17, np.uint8)
    for k in range(pairs):
        for j, (_, _, caption) in enumerate(PANELS):
            _text(canvas, caption.split(" + ")[0], (label_w + k * (3 * pw + gap) + j * pw + 3, head_h - 5), 0.35,
                  (170, 170, 170))
    for r, (strategy, items) in enumerate(picks.items()):
        top = head_h + r * (ph + cap_h + 4)
        _text(canvas, strategy, (4, top + 16), 0.45)
        _text(canvas, summary.get(strategy, ""), (4, top + 34), 0.35, (170, 170, 170))
        for k, p in enumerate(items[:pairs]):
            images = {n: cv2.resize(im, (pw, ph), interpolation=cv2.INTER_AREA) for n, im in p.images.items()}
            masks = {b: cv2.resize(m, (pw, ph), interpolation=cv2.INTER_NEAREST) for b, m in p.masks.items()}
            panels = fig5_panels(images, p.predictions, class_names, masks, min_score, labels=False)
            left = label_w + k * (3 * pw + gap)
            for j, (img, _) in enumerate(panels):
                canvas[top:top + ph, left + j * pw:left + (j + 1) * pw] = img
            score = "" if p.score is None else f" s={p.score:.3f}"
            _text(canvas, f"{p.pair_id} {_day_night(p.night)}{score}", (left + 2, top + ph + cap_h - 4), 0.35)
    return canvas


def write_png(path: Path, image: np.ndarray) -> int:
    """Palette-quantised PNG (a figure for the docs); returns its size in bytes."""
    from PIL import Image

    rgb = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    quantised = rgb.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    quantised.save(path, optimize=True)
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    from msmine.console import configure_logging, run_guarded

    args = build_parser().parse_args(argv)
    configure_logging(False)

    def run() -> int:
        from msmine.errors import UserError
        from msmine.train.trainer import resolve_device
        from msmine.train.workspace import apply_thread_limit

        apply_thread_limit()
        if args.per_strategy < 1 or args.png_pairs < 1:
            raise UserError("--per-strategy and --png-pairs must be >= 1")
        out = Path(args.out)
        run_cfg, state = load_run(out, args.seed)
        sizes = run_cfg["sizes"]
        if not 1 <= args.cycle < len(sizes):
            raise UserError(f"--cycle {args.cycle}: the run has selections 1..{len(sizes) - 1} (sizes {sizes})")
        names = list(state["strategies"])
        if args.strategies:
            wanted = [s.strip() for s in args.strategies.split(",") if s.strip()]
            unknown = [s for s in wanted if s not in names]
            if args.replay and unknown:  # not started yet: replayed, so they must be strategies
                from msmine import strategies

                strategies.parse_list(",".join(unknown), flag="--strategies")
            elif unknown:
                raise UserError(f"--strategies: {', '.join(unknown)} not run for seed {args.seed} "
                                f"(run: {', '.join(names) or 'none'})")
            names = wanted
        if not names:
            raise UserError(f"seed {args.seed}: no strategy has made a selection yet in {out}")
        if args.replay and args.cycle != 1:
            raise UserError("--replay: only selection 1 can be made again (by the cycle-0 model the state keeps)")
        pool, dataset = pool_ids(args.data, run_cfg)
        ids, nights = list(pool.ids), list(pool.is_night)
        device = resolve_device(args.device)
        replayed = replay_first_selection(run_cfg, state, pool, names, args.seed, device) if args.replay else None
        chosen = selections(out, args.seed, state, run_cfg, args.cycle, names, ids, replayed)
        picks = build_picks(run_cfg, state, chosen, dataset, args.per_strategy, device, args.min_score)
        model_cfg = run_cfg["config"]["train"]["model"]
        class_names = list(model_cfg["class_names"])
        summary, short = summarise(chosen, picks, dict(zip(ids, nights)))
        pool_night = sum(bool(n) for n in nights)
        metrics0 = state.get("metrics0", {})
        metric = next((m for m in ("fused_AP50", "fused_mIoU") if m in metrics0), None)
        facts = {"run": str(out), "seed": args.seed,
                 "selection": f"{args.cycle} ({sizes[args.cycle - 1]} -> {sizes[args.cycle]} labelled pairs)",
                 "model": f"{model_cfg['task']}, {model_cfg['backbone']}, input {model_cfg['input_size']}",
                 "pool": f"{len(ids)} pairs, {pool_night} night ({pool_night / max(len(ids), 1):.0%})"}
        if metric:
            facts["cycle-0 model"] = f"{metric} {metrics0[metric]:.3f} on the run's evaluation split"
        html_path = Path(args.html) if args.html else out / "picks.html"
        title = f"Mining picks: seed {args.seed}, selection {args.cycle}"
        write_html(html_path, title, facts, summary, picks, class_names, args.min_score, args.cycle > 1)
        line = (f"wrote {html_path} ({sum(map(len, picks.values()))} picks of {len(picks)} "
                f"strateg{'y' if len(picks) == 1 else 'ies'})")
        if args.png:
            size = write_png(Path(args.png), montage(picks, short, class_names, args.png_pairs, args.min_score))
            line += f" and {args.png} ({size / 1024:.0f} KB)"
        print(line)
        return 0

    return run_guarded(run)


if __name__ == "__main__":
    sys.exit(main())
