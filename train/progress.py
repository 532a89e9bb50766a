"""Progress bars for training, caching and evaluation: shown on a terminal, silent in logs.

tqdm's ``disable=None`` turns the bar off when stderr is not a TTY, so a job whose output goes to
a file or a CI log gets the periodic log lines and no flood of carriage-return updates.
"""

from __future__ import annotations


def progress_bar(iterable=None, **kwargs):
    from tqdm import tqdm

    kwargs.setdefault("leave", False)
    kwargs.setdefault("disable", None)
    return tqdm(iterable, **kwargs)
