"""One strategy registry (msmine.strategies): every command's list is a view of it."""

from __future__ import annotations

import pytest

from msmine import strategies
from msmine.errors import UserError


def test_every_command_takes_its_names_from_the_registry():
    from msmine.edge_runtime.config import EdgeConfig, check_config
    from msmine.loop import cli_select, simulate
    from msmine.train import al

    assert al.STRATEGIES == strategies.NAMES
    assert simulate.POLICIES == strategies.DEVICE_NAMES
    assert cli_select.STRATEGIES == strategies.SCORE_NAMES
    for name in strategies.DEVICE_NAMES:
        check_config(EdgeConfig(score=name))
    with pytest.raises(UserError, match="inconsistency_diverse"):  # pool-only: a device cannot compute it
        check_config(EdgeConfig(score="inconsistency_diverse"))


def test_registry_views_and_one_line_errors():
    assert strategies.NAMES[:2] == ("random", "inconsistency")  # al seeds strategies by position: keep the order
    assert set(strategies.SCORE_NAMES) < set(strategies.DEVICE_NAMES) < set(strategies.NAMES)
    assert "random" not in strategies.SCORE_NAMES
    assert all(s.description and "\n" not in s.description for s in strategies.REGISTRY)
    assert strategies.parse_list(" random, entropy ") == ("random", "entropy")
    with pytest.raises(UserError, match=r"^--policies: unknown strategy 'psychic'; choose from random, "):
        strategies.parse_list("random,psychic", strategies.DEVICE_NAMES, "--policies")
    with pytest.raises(UserError, match="empty"):
        strategies.parse_list(" , ")
    assert strategies.get("combined").uses_model
    assert "entropy:" in strategies.describe()
