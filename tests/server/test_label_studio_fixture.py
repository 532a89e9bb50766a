"""The Label Studio fixture fails loudly when Label Studio is missing; it skips only when a developer
says so (MSMINE_NO_LABEL_STUDIO=1), never in CI."""

from __future__ import annotations

import pytest

from tests import labelstudio


@pytest.fixture
def missing(monkeypatch, tmp_path):
    monkeypatch.setattr(labelstudio, "LS_BIN", tmp_path / "no-venv" / "bin" / "label-studio")
    monkeypatch.delenv("MSMINE_NO_LABEL_STUDIO", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return monkeypatch


def test_missing_label_studio_fails(missing):
    with pytest.raises(pytest.fail.Exception, match="Label Studio is not installed .*setup.sh"):
        labelstudio.require_label_studio()


def test_missing_label_studio_skips_only_when_asked_and_not_in_ci(missing):
    missing.setenv("MSMINE_NO_LABEL_STUDIO", "1")
    with pytest.raises(pytest.skip.Exception, match="MSMINE_NO_LABEL_STUDIO=1"):
        labelstudio.require_label_studio()
    missing.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        labelstudio.require_label_studio()


def test_installed_label_studio_is_required_quietly(monkeypatch, tmp_path):
    fake = tmp_path / "bin" / "label-studio"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setattr(labelstudio, "LS_BIN", fake)
    labelstudio.require_label_studio()  # neither fails nor skips
