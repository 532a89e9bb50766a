"""Tiny ONNX models that follow the msmine export contract, for the device tests and benches.

A thin user of :func:`msmine.model_contract.build_contract_model` (the one builder; see its
docstring for what the outputs compute) kept so existing imports stay valid.
"""

from __future__ import annotations

from msmine.model_contract import TEST_CLASS_NAMES as CLASS_NAMES
from msmine.model_contract import build_contract_model, expected_inconsistency, fixed_candidates

__all__ = ["CLASS_NAMES", "build_contract_model", "expected_inconsistency", "fixed_candidates"]
