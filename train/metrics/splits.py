"""Index splits for reporting metrics by condition."""

from __future__ import annotations

from collections.abc import Sequence


def split_day_night(is_night: Sequence[bool | None]) -> dict[str, list[int]]:
    """{"all": every index, "day": is_night False, "night": is_night True}; None (unknown) is only in "all"."""
    return {
        "all": list(range(len(is_night))),
        "day": [i for i, flag in enumerate(is_night) if flag is False],
        "night": [i for i, flag in enumerate(is_night) if flag is True],
    }
