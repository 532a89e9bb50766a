"""The selection strategies: one registry, one word ("strategy"), used by every command.

A strategy decides which pairs are worth labelling. ``per_pair`` strategies score one pair on its
own, so the device can compute them as frames arrive (``edge-runtime --score``, ``msmine simulate
--policies``); the others need the whole pool at once (``msmine al``). ``uses_model`` strategies
score the model's predictions (``msmine select`` scores saved predictions, so it offers only those).

A score *variant* says how the per-prediction inconsistency becomes one image score (``VARIANTS``,
the same names as ``selector.VARIANTS``; ``paper`` is the seed paper's scale-balanced mean and the
default). Strategies whose score is the inconsistency (``takes_variant``) accept one, written
``strategy.variant`` wherever a strategy is named (``msmine al --strategies inconsistency.topk``,
``edge-runtime --score inconsistency.detection_max``, ``msmine simulate --policies``), or on the
device as ``--score-variant``; ``strategy:variant`` is read the same. ``inconsistency.paper`` is
``inconsistency``. The dotted name is what curves, logs and upload manifests record (the wire's
policy names allow ``[a-z0-9_.-]``).

Pure Python (no numpy, no torch): the device, the server and the training side all import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from msmine.errors import UserError


@dataclass(frozen=True)
class Strategy:
    name: str  # the name users type
    description: str  # one line, shown in help and docs
    per_pair: bool  # a score of one pair alone: the device can compute it while streaming
    uses_model: bool  # scores the model's predictions (False: a random draw)
    takes_variant: bool = False  # its score is the inconsistency: a score variant applies (``name.variant``)


@dataclass(frozen=True)
class Variant:
    name: str  # as in selector.VARIANTS
    description: str  # one line
    tasks: tuple[str, ...]  # the tasks it is defined for
    in_graph: bool  # the exported ONNX graph computes it (else the device computes it from the graph's maps)


# Order matters: ``msmine al`` seeds each strategy's random generator by its position here.
REGISTRY: tuple[Strategy, ...] = (
    Strategy("random", "a seeded uniform draw (the baseline every strategy must beat)", per_pair=True,
             uses_model=False),
    Strategy("inconsistency", "the paper: visible-vs-thermal branch disagreement (JS divergence)", per_pair=True,
             uses_model=True, takes_variant=True),
    Strategy("entropy", "fused-branch uncertainty (entropy of the fused prediction)", per_pair=True,
             uses_model=True),
    Strategy("combined", "inconsistency + weight x entropy (selector.combined, weight 0.5)", per_pair=True,
             uses_model=True, takes_variant=True),
    Strategy("inconsistency_diverse", "inconsistency, best pair of each k-means cluster of thumbnails "
             "(pool only: avoids runs of near-identical video frames)", per_pair=False, uses_model=True,
             takes_variant=True),
    Strategy("random_dedup", "random with the same near-duplicate removal as the other strategies "
             "(pool only; needs msmine al --dedupe-window)", per_pair=False, uses_model=False),
)

# The selector's variants (selector.VARIANTS, same order; a test keeps them equal).
VARIANTS: tuple[Variant, ...] = (
    Variant("paper", "the paper: mean within each level, then over levels (scale-balanced)", ("detect", "segment"),
            in_graph=True),
    Variant("topk", "mean of the k highest map cells over all levels (MI-AOD)", ("detect", "segment"), in_graph=True),
    Variant("topk_level", "mean of the k highest cells of each level, then over levels", ("detect", "segment"),
            in_graph=True),
    Variant("detection_sum", "class-weighted sum over fused detections >= floor of the cells their boxes cover "
            "(PPAL)", ("detect",), in_graph=False),
    Variant("detection_max", "the same, the maximum over detections (AL-MDN)", ("detect",), in_graph=False),
    Variant("region", "class-weighted mean over the fused branch's predicted classes of each class's mean "
            "(Cai et al.)", ("segment",), in_graph=True),
    Variant("region_topk", "the same with each class's k highest pixels", ("segment",), in_graph=True),
)
VARIANT_BY_NAME: dict[str, Variant] = {v.name: v for v in VARIANTS}
VARIANT_NAMES: tuple[str, ...] = tuple(VARIANT_BY_NAME)
DEFAULT_VARIANT = "paper"

BY_NAME: dict[str, Strategy] = {s.name: s for s in REGISTRY}
NAMES: tuple[str, ...] = tuple(BY_NAME)  # every strategy (msmine al)
DEVICE_NAMES: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.per_pair)  # edge-runtime, simulate
SCORE_NAMES: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.per_pair and s.uses_model)  # msmine select


def get(name: str, among: tuple[str, ...] = NAMES, flag: str = "--strategy") -> Strategy:
    """The strategy called ``name`` if it is one of ``among``; otherwise a one-line UserError naming ``flag``."""
    if name not in among:
        raise UserError(f"{flag}: unknown strategy {name!r}; choose from {', '.join(among)}")
    return BY_NAME[name]


def get_variant(name: str, task: str | None = None, flag: str = "--score-variant") -> Variant:
    """The score variant called ``name`` (defined for ``task`` when given); else a one-line UserError."""
    valid = [v.name for v in VARIANTS if task is None or task in v.tasks]
    if name not in valid:
        where = f" for {task}" if task and name in VARIANT_BY_NAME else ""
        raise UserError(f"{flag}: unknown score variant {name!r}{where}; choose from {', '.join(valid)}")
    return VARIANT_BY_NAME[name]


@dataclass(frozen=True)
class Spec:
    """A strategy with its score variant, as ``strategy[.variant]`` names it."""

    strategy: Strategy
    variant: str = DEFAULT_VARIANT

    @property
    def name(self) -> str:
        """``inconsistency.topk``; the default variant is left out (``inconsistency``)."""
        return self.strategy.name if self.variant == DEFAULT_VARIANT else f"{self.strategy.name}.{self.variant}"


def parse_spec(text: str, among: tuple[str, ...] = NAMES, flag: str = "--strategy", task: str | None = None) -> Spec:
    """``"inconsistency.topk"`` (or ``"inconsistency:topk"``) -> Spec(inconsistency, "topk"); a one-line
    UserError naming ``flag`` otherwise."""
    name, _, variant = str(text).strip().replace(":", ".").partition(".")
    strategy = get(name.strip(), among, flag)
    variant = variant.strip() or DEFAULT_VARIANT
    get_variant(variant, task, flag)
    if variant != DEFAULT_VARIANT and not strategy.takes_variant:
        takes = ", ".join(s.name for s in REGISTRY if s.takes_variant and s.name in among)
        raise UserError(f"{flag}: strategy {strategy.name!r} has no score variant ('.{variant}'); "
                        f"variants apply to {takes}")
    return Spec(strategy, variant)


def parse_list(text: str, among: tuple[str, ...] = NAMES, flag: str = "--strategies",
               task: str | None = None) -> tuple[str, ...]:
    """``"random, entropy, inconsistency:topk"`` -> ("random", "entropy", "inconsistency.topk"); unknown or
    no names are a UserError naming ``flag``."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise UserError(f"{flag}: empty list; choose from {', '.join(among)}")
    specs = [parse_spec(name, among, flag, task) for name in names]
    out = tuple(s.name for s in specs)
    if len(set(out)) != len(out):
        raise UserError(f"{flag}: a strategy is named twice in {text!r}")
    return out


def describe(among: tuple[str, ...] = NAMES) -> str:
    """``name: description`` lines (for --help texts and docs)."""
    return "; ".join(f"{name}: {BY_NAME[name].description}" for name in among)


def describe_variants(task: str | None = None) -> str:
    """``name: description`` of each score variant (for --help texts and docs)."""
    return "; ".join(f"{v.name}: {v.description}" for v in VARIANTS if task is None or task in v.tasks)


# Class weights of the class-weighted variants (detection_sum, detection_max, region, region_topk).
WEIGHTED_VARIANTS: tuple[str, ...] = ("detection_sum", "detection_max", "region", "region_topk")
CLASS_WEIGHT_MODES: tuple[str, ...] = ("none", "inverse")  # inverse: from the labelled set (msmine al only)


def parse_class_weights(text: str, class_names, flag: str = "--class-weights",
                        allow_inverse: bool = True) -> tuple[float, ...] | str:
    """``--class-weights``: ``none`` (every class 1), ``inverse`` (from the labelled set's class
    frequencies, recomputed at every selection: ``msmine al`` only), ``person=2,car=0.5`` (named
    classes; the others 1) or ``2,1,0.5`` (one weight per class, in the model's order). Returns the
    mode word or one weight per class (finite, >= 0, not all 0); anything else is a one-line UserError."""
    spec = str(text).strip()
    names = [str(n) for n in class_names]
    if spec in CLASS_WEIGHT_MODES:
        if spec == "inverse" and not allow_inverse:
            raise UserError(f"{flag}: 'inverse' needs a labelled set (msmine al); give the weights, "
                            f"e.g. {names[0] if names else 'person'}=2")
        return spec
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise UserError(f"{flag}: expected none, inverse, NAME=W,... or W,W,...; got {text!r}")
    named = all("=" in p for p in parts)
    if not named and any("=" in p for p in parts):
        raise UserError(f"{flag}: mix of NAME=W and plain weights in {text!r}; use one form")
    weights = [1.0] * len(names) if named else []
    for part in parts:
        key, _, value = part.rpartition("=") if named else ("", "", part)
        try:
            w = float(value)
        except ValueError:
            raise UserError(f"{flag}: {value!r} is not a number (in {text!r})") from None
        if not (w >= 0 and w != float("inf")):
            raise UserError(f"{flag}: weights must be finite and >= 0, got {value!r}")
        if named:
            key = key.strip()
            if key not in names:
                raise UserError(f"{flag}: unknown class {key!r}; the model's classes: {', '.join(names)}")
            weights[names.index(key)] = w
        else:
            weights.append(w)
    if not named and len(weights) != len(names):
        raise UserError(f"{flag}: {len(weights)} weights for {len(names)} classes ({', '.join(names)})")
    if not any(weights):
        raise UserError(f"{flag}: every weight is 0; at least one class must count")
    return tuple(weights)
