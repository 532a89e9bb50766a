"""The held-out validation carve keeps neighbouring video frames on one side (contiguous blocks)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from msmine.errors import UserError
from msmine.train.workspace import carve, frame_order, open_split

DATA = Path(os.environ.get("MSMINE_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


class Ids:
    """A dataset stand-in: only ids and subset()."""

    def __init__(self, ids):
        self.ids = list(ids)

    def __len__(self):
        return len(self.ids)

    def subset(self, indices):
        return Ids([self.ids[i] for i in indices])


def number(pair_id: str) -> int:
    return int(re.search(r"\d+", pair_id).group())


def test_frame_order_sorts_by_frame_number_not_by_text():
    ids = ["00010N", "00002D", "7", "00100D", "00003N"]
    assert [ids[i] for i in frame_order(ids)] == ["00002D", "00003N", "7", "00010N", "00100D"]


def test_carve_holds_out_whole_blocks_of_neighbouring_frames():
    ids = [f"{i:05d}{'D' if i % 3 else 'N'}" for i in range(1, 401)]
    train, held = carve(Ids(ids[::-1]), 0.25, seed=3, block=20)
    assert len(held) == 100 and len(train) == 300
    assert not set(train.ids) & set(held.ids)
    held_numbers = sorted(number(i) for i in held.ids)
    # 100 held frames in blocks of 20 -> exactly 5 runs of consecutive frame numbers
    runs = 1 + sum(1 for a, b in zip(held_numbers, held_numbers[1:]) if b != a + 1)
    assert runs <= 5
    # a different seed holds out different blocks; the same seed the same ones
    assert carve(Ids(ids), 0.25, seed=3, block=20)[1].ids == sorted(held.ids, key=number)
    assert carve(Ids(ids), 0.25, seed=4, block=20)[1].ids != sorted(held.ids, key=number)


def test_carve_refuses_bad_fractions_and_tiny_sets():
    with pytest.raises(UserError, match="--val-fraction"):
        carve(Ids(["1", "2"]), 1.0, 0)
    with pytest.raises(UserError, match="cannot hold out"):
        carve(Ids(["1"]), 0.5, 0)


def test_carve_on_real_msrs_leaves_few_train_neighbours():
    pool = open_split(DATA / "msrs", "train")
    train, held = carve(pool, 0.2, 0)
    assert len(held) == round(0.2 * len(pool)) and len(train) + len(held) == len(pool)
    trained = {number(i) for i in train.ids}
    touching = sum(1 for i in held.ids if number(i) - 1 in trained or number(i) + 1 in trained)
    # only the two ends of each 40-frame block can touch a training frame
    assert touching <= 2 * (len(held) // 40 + 1)
