"""The selection strategies: one registry, one word ("strategy"), used by every command.

A strategy decides which pairs are worth labelling. ``per_pair`` strategies score one pair on its
own, so the device can compute them as frames arrive (``edge-runtime --score``, ``msmine simulate
--policies``); the others need the whole pool at once (``msmine al``). ``uses_model`` strategies
score the model's predictions (``msmine select`` scores saved predictions, so it offers only those).

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


# Order matters: ``msmine al`` seeds each strategy's random generator by its position here.
REGISTRY: tuple[Strategy, ...] = (
    Strategy("random", "a seeded uniform draw (the baseline every strategy must beat)", per_pair=True,
             uses_model=False),
    Strategy("inconsistency", "the paper: visible-vs-thermal branch disagreement (JS divergence)", per_pair=True,
             uses_model=True),
    Strategy("entropy", "fused-branch uncertainty (entropy of the fused prediction)", per_pair=True,
             uses_model=True),
    Strategy("combined", "inconsistency + weight x entropy (selector.combined, weight 0.5)", per_pair=True,
             uses_model=True),
    Strategy("inconsistency_diverse", "inconsistency, best pair of each k-means cluster of thumbnails "
             "(pool only: avoids runs of near-identical video frames)", per_pair=False, uses_model=True),
)

BY_NAME: dict[str, Strategy] = {s.name: s for s in REGISTRY}
NAMES: tuple[str, ...] = tuple(BY_NAME)  # every strategy (msmine al)
DEVICE_NAMES: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.per_pair)  # edge-runtime, simulate
SCORE_NAMES: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.per_pair and s.uses_model)  # msmine select


def get(name: str, among: tuple[str, ...] = NAMES, flag: str = "--strategy") -> Strategy:
    """The strategy called ``name`` if it is one of ``among``; otherwise a one-line UserError naming ``flag``."""
    if name not in among:
        raise UserError(f"{flag}: unknown strategy {name!r}; choose from {', '.join(among)}")
    return BY_NAME[name]


def parse_list(text: str, among: tuple[str, ...] = NAMES, flag: str = "--strategies") -> tuple[str, ...]:
    """``"random, entropy"`` -> ("random", "entropy"); unknown or no names are a UserError naming ``flag``."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise UserError(f"{flag}: empty list; choose from {', '.join(among)}")
    for name in names:
        get(name, among, flag)
    return names


def describe(among: tuple[str, ...] = NAMES) -> str:
    """``name: description`` lines (for --help texts and docs)."""
    return "; ".join(f"{name}: {BY_NAME[name].description}" for name in among)
