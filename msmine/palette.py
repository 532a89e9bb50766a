"""The one colour table of every picture msmine draws: the gallery (served as JSON by
``GET /api/v1/palette``) and the reports (``loop/report.py``) both read it, so a branch or a class
has the same colour everywhere.

* :data:`BRANCH_COLOURS`: the three branches' boxes and legends (``#rrggbb``);
* :data:`LABEL_COLOUR`: imported labels (ground truth), boxes and mask outlines;
* :func:`class_colour`: mask overlays, class id -> colour; a background class (``unlabelled``,
  ``background`` ... at id 0) is drawn transparent (:func:`is_background`).

Standard library only.
"""

from __future__ import annotations

BRANCH_COLOURS = {"fused": "#ffd23f", "visible": "#3ddc84", "thermal": "#3fc1ff"}
LABEL_COLOUR = "#ffffff"
# class id -> colour (cycled past the end): Tableau 20, strong shades first, readable on images
CLASS_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
BACKGROUND_NAMES = ("unlabelled", "unlabeled", "background", "_background_", "void", "none")
MASK_ALPHA = 0.45  # opacity of a mask overlay


def class_colour(class_id: int) -> str:
    return CLASS_COLOURS[int(class_id) % len(CLASS_COLOURS)]


def is_background(class_id: int, class_names: list[str]) -> bool:
    """Id 0 named like a background class: not painted in mask overlays."""
    return int(class_id) == 0 and bool(class_names) and class_names[0].strip().lower() in BACKGROUND_NAMES


def hex_to_bgr(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` -> OpenCV's (b, g, r)."""
    c = colour.lstrip("#")
    return int(c[4:6], 16), int(c[2:4], 16), int(c[0:2], 16)


def branch_bgr(branch: str) -> tuple[int, int, int]:
    return hex_to_bgr(BRANCH_COLOURS[branch])


def palette_json() -> dict:
    """What the gallery reads (``GET /api/v1/palette``)."""
    return {"branches": dict(BRANCH_COLOURS), "label": LABEL_COLOUR, "classes": list(CLASS_COLOURS),
            "background_names": list(BACKGROUND_NAMES), "mask_alpha": MASK_ALPHA}
