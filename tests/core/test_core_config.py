"""Typed dataclass configs with YAML and --set overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from msmine.config import load_config, parse_override, save_config
from msmine.errors import UserError


@dataclass
class Optim:
    lr: float = 0.01  # learning rate
    steps: int = 100  # number of steps


@dataclass
class Example:
    name: str = "run"  # run name
    size: tuple[int, int] = (256, 320)  # H, W
    optim: Optim = field(default_factory=Optim)  # optimiser
    tags: list[str] = field(default_factory=list)  # free tags
    device: str | None = None  # cpu / cuda / None = auto


def test_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("optim:\n  lr: 0.1\nsize: [128, 160]\n")
    cfg = load_config(Example, path, ["optim.steps=7", "tags=[a, b]", "device=cuda"])
    assert cfg.optim.lr == 0.1 and cfg.optim.steps == 7
    assert cfg.size == (128, 160)
    assert cfg.tags == ["a", "b"] and cfg.device == "cuda"
    saved = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert yaml.safe_load(saved.read_text())["optim"] == {"lr": 0.1, "steps": 7}
    assert load_config(Example, saved) == cfg


def test_int_is_accepted_for_float():
    assert load_config(Example, None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], "unknown config key\\(s\\): optim.lrr"),
        (["optim.steps=abc"], "expected an integer"),
        (["size=[1, 2, 3]"], "expected 2 items"),
        (["noequals"], "key=value"),
        (["optim=3"], "expected a mapping"),
    ],
)
def test_bad_overrides_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(Example, None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(Example, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(Example, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(Example, listy)


def test_parse_override_types():
    assert parse_override("a=3") == ("a", 3)
    assert parse_override("a=0.5") == ("a", 0.5)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=") == ("a", "")
