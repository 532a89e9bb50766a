"""Strategy specs (strategy.variant) are one vocabulary for msmine al, edge-runtime and simulate."""

from __future__ import annotations

import argparse

import pytest

from msmine import strategies
from msmine.errors import UserError


def test_specs_parse_print_and_refuse_in_one_line():
    assert strategies.parse_list("random, inconsistency:topk,inconsistency.detection_max,combined.topk_level") == (
        "random", "inconsistency.topk", "inconsistency.detection_max", "combined.topk_level")
    assert strategies.parse_list("inconsistency.paper") == ("inconsistency",)  # the paper's is the default
    with pytest.raises(UserError, match=r"^--strategies: unknown score variant 'best'; choose from paper, topk, "):
        strategies.parse_list("inconsistency.best")
    with pytest.raises(UserError, match=r"unknown score variant 'region' for detect; choose from paper, topk, "
                                        r"topk_level, detection_sum, detection_max$"):
        strategies.parse_list("inconsistency.region", task="detect")
    with pytest.raises(UserError, match=r"strategy 'entropy' has no score variant"):
        strategies.parse_list("entropy.topk")
    with pytest.raises(UserError, match="named twice"):
        strategies.parse_list("inconsistency,inconsistency.paper")
    assert "detection_max:" in strategies.describe_variants("detect")
    assert "region:" not in strategies.describe_variants("detect")


def test_simulate_takes_specs_and_passes_power_sampling(msrs_root, tmp_path):
    from msmine.loop import simulate

    parser = argparse.ArgumentParser()
    simulate.add_arguments(parser)
    args = parser.parse_args(["--data", str(msrs_root), "--out", str(tmp_path), "--policies",
                              "random,inconsistency.topk", "--sampling-beta", "2"])
    cfg = simulate.config_from_args(args)
    assert cfg.policies == ("random", "inconsistency.topk") and cfg.sampling_beta == 2.0
    args.sampling_beta = -1.0
    with pytest.raises(UserError, match="--sampling-beta"):
        simulate.config_from_args(args)
