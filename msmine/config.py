"""Typed dataclass configs, overridable from a YAML file and ``--set key=value``.

    cfg = load_config(TrainConfig, yaml_path="cfg.yaml", overrides=["optim.lr=0.01", "epochs=3"])
    save_config(cfg, out_dir / "config.yaml")

Nested dataclasses are addressed with dots. Values given with ``--set`` are parsed as YAML scalars
(``3`` -> int, ``0.1`` -> float, ``true`` -> bool, ``[1, 2]`` -> list) and then checked against the
field's type. Unknown keys and ill-typed values raise :class:`msmine.errors.UserError`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from msmine.errors import UserError

T = TypeVar("T")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(f"config key {key!r}: {value!r} does not fit {typ}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"config key {key!r}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise UserError(f"config key {key!r}: expected a mapping, got {value!r}")
        return _from_dict(typ, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {key!r}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UserError(f"config key {key!r}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        item = args[0] if args else Any
        seq = [_coerce(v, item, key) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key {key!r}: expected true/false, got {value!r}")
        return value
    if typ is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"config key {key!r}: expected a string, got {value!r}")
        return str(value)
    return value


def _from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"unknown config key(s): {', '.join(prefix + u for u in unknown)}; known: {', '.join(sorted(names))}")
    base = cls()
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], prefix + name)
        else:
            kwargs[name] = getattr(base, name)
    return cls(**kwargs)


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.01"`` -> ``("optim.lr", 0.01)``."""
    if "=" not in text:
        raise UserError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return key, value


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from its defaults, then a YAML file, then ``key=value`` overrides."""
    tree: dict = dataclasses.asdict(cls())
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
        _merge(tree, loaded)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_path(tree, key, value)
    return _from_dict(cls, tree)


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def config_to_dict(cfg: Any) -> dict:
    def convert(v):
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v

    return convert(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML beside the outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
