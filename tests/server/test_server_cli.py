"""`msmine token` and `msmine serve` argument handling (the server itself runs in other tests)."""

from __future__ import annotations

import json

import pytest

from msmine.errors import UserError
from msmine.loop.cli import main
from msmine.server.cli_serve import parse_rate
from msmine.server.config import ServerConfig
from msmine.server.context import open_stores
from msmine.server.tokens import hash_token


def test_token_create_list_revoke(tmp_path, capsys):
    root = tmp_path / "srv"
    assert main(["token", "create", "--root", str(root), "--device", "pole-17"]) == 0
    device_token = capsys.readouterr().out.strip()
    assert device_token.startswith("msm_") and len(device_token) > 40
    assert main(["token", "create", "--root", str(root), "--role", "data-team", "--name", "alice", "--json"]) == 0
    team = json.loads(capsys.readouterr().out)
    assert team["role"] == "data-team" and team["name"] == "alice"
    meta, _ = open_stores(root, ServerConfig())
    try:
        assert meta.find_token(hash_token(device_token)).device_id == "pole-17"
    finally:
        meta.close()
    assert main(["token", "list", "--root", str(root)]) == 0
    listing = capsys.readouterr().out
    assert "pole-17" in listing and "alice" in listing and device_token not in listing
    assert main(["token", "revoke", "--root", str(root), "--id", str(team["id"])]) == 0
    capsys.readouterr()
    assert main(["token", "revoke", "--root", str(root), "--id", str(team["id"])]) == 1
    assert "no active token" in capsys.readouterr().err


def test_token_create_rejects_bad_device_name(tmp_path, capsys):
    assert main(["token", "create", "--root", str(tmp_path / "s"), "--device", "../pole"]) == 1
    assert "device name must match" in capsys.readouterr().err


def test_parse_rate():
    assert parse_rate("120/min") == 120 and parse_rate("0") == 0 and parse_rate(" 30 / min ") == 30
    with pytest.raises(UserError):
        parse_rate("fast")


def test_serve_rejects_bad_config(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["serve", "--root", str(f)]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert main(["serve", "--root", str(tmp_path / "s"), "--set", "nonsense=1"]) == 1
    assert "unknown config key" in capsys.readouterr().err
    assert main(["serve", "--root", str(tmp_path / "s"), "--rate-limit", "lots"]) == 1
