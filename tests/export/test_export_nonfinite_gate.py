"""Issue 16 item 5 (export part): a reduced-precision model with non-finite outputs fails the
fidelity gate with one line, so `msmine export` does not ship it."""

from __future__ import annotations

import pytest

from msmine.edge_runtime.synthetic import synthetic_dataset, write_msrs_layout
from msmine.errors import UserError
from msmine.export.fidelity import FidelityConfig, enforce, fidelity_report
from msmine.model_contract import build_contract_model

SIZE = (120, 160)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return write_msrs_layout(synthetic_dataset(12, size=(SIZE[1], SIZE[0]), seed=3),
                             tmp_path_factory.mktemp("syn"), split="test")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build_contract_model(tmp_path_factory.mktemp("m") / "ref.onnx", height=SIZE[0], width=SIZE[1], levels=2, k=6)


def _candidate(tmp_path, **kw):
    return build_contract_model(tmp_path / "cand.onnx", height=SIZE[0], width=SIZE[1], levels=2, k=6,
                                precision="fp16", **kw)


def test_a_faithful_candidate_passes(tmp_path, labelled, reference):
    report = fidelity_report(reference, _candidate(tmp_path), labelled, FidelityConfig(min_top_overlap=0.5))
    assert report.passed, report.failures
    enforce(report)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_outputs_fail_the_gate_in_one_line(tmp_path, labelled, reference, value):
    report = fidelity_report(reference, _candidate(tmp_path, non_finite_score=value), labelled,
                             FidelityConfig(min_top_overlap=0.5))
    assert not report.passed
    assert report.failures[0] == "the candidate model outputs non-finite values (entropy: 12, inconsistency: 12)"
    with pytest.raises(UserError) as err:
        enforce(report)
    assert "\n" not in str(err.value) and "non-finite" in str(err.value)
    assert '"spearman": null' in report.to_json()  # the JSON report stays valid


def test_export_pipeline_does_not_ship_a_non_finite_fp16_model(tmp_path, labelled, monkeypatch):
    """`msmine export --precision fp16` end to end with the torch steps stood in for: the FP16 file
    the exporter writes outputs NaN; the gate fails in one line and the file is removed."""
    from types import SimpleNamespace

    from msmine.export import pipeline
    from msmine.export.parity import ParityReport

    def fake_export(model, meta, out, cfg, precision="fp32"):
        kw = {"non_finite_score": float("nan")} if precision == "fp16" else {}
        build_contract_model(out, height=SIZE[0], width=SIZE[1], levels=2, k=6, precision=precision, **kw)
        return SimpleNamespace(wrapper=None, exporter="stand-in")

    monkeypatch.setattr("msmine.train.checkpoint.load_checkpoint",
                        lambda path: (SimpleNamespace(input_size=SIZE), {"epoch": 0, "step": 0}))
    monkeypatch.setattr(pipeline, "export_onnx", fake_export)
    monkeypatch.setattr(pipeline, "check_parity", lambda *a, **k: ParityReport(pairs=2))
    out = tmp_path / "model-fp16.onnx"
    cfg = pipeline.PipelineConfig(precision="fp16", calib_data=str(labelled),
                                  fidelity=FidelityConfig(min_top_overlap=0.5))
    with pytest.raises(UserError, match="non-finite values") as err:
        pipeline.run_export(tmp_path / "ckpt.pt", out, cfg)
    assert "\n" not in str(err.value)
    assert not out.exists()  # not shipped
    assert (tmp_path / "model-fp16.fp32.onnx").exists()  # the reference stays, with the report
    assert "non-finite" in (tmp_path / "model-fp16.fidelity.json").read_text()
