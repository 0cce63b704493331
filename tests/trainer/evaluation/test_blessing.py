"""Tests of trainer.evaluation.blessing: thresholds, their edges and the generic form."""

from __future__ import annotations

import pytest

from trainer.evaluation import blessing


def _scored(rce, auc=0.7, log_loss=0.5, count=1000, slices=None):
    return {
        "overall": {"count": count, "rce": rce, "auc": auc, "log_loss": log_loss},
        "slices": slices or {},
    }


def test_threshold_edges_and_undefined_values():
    decide = blessing.decide_blessing
    assert decide(_scored(2.5), None, {"min_rce": 2.5})[0] is True  # inclusive
    ok, reasons = decide(_scored(2.25), None, {"min_rce": 2.5})
    assert not ok and reasons == ["rce 2.25 < 2.5"]
    assert decide(_scored(10.25), _scored(10.5), {"max_rce_drop": 0.25})[0] is True
    assert decide(_scored(10.0), _scored(10.5), {"max_rce_drop": 0.25})[0] is False
    ok, reasons = decide(_scored(3.0, auc=None), None, {"min_auc": 0.5})
    assert not ok and "auc is undefined" in reasons[0]
    ok, reasons = decide(
        _scored(3.0, log_loss=0.5),
        _scored(3.0, log_loss=0.25),
        {"max_logloss_increase": 0.25},
    )
    assert ok, reasons
    assert decide(_scored(3.0, count=5), None, {"min_events": 10})[0] is False
    assert decide(None, None, {}, empty_reason="empty") == (False, ["empty"])


def test_slice_threshold_skips_small_slices():
    small = {
        "f": {"head": {"count": 10, "rce": 1.0}, "tail": {"count": 500, "rce": 5.0}}
    }
    prod = {
        "f": {"head": {"count": 10, "rce": 9.0}, "tail": {"count": 500, "rce": 5.5}}
    }
    t = {"max_slice_rce_drop": 1.0, "min_slice_events": 100}
    assert blessing.decide_blessing(
        _scored(3, slices=small), _scored(3, slices=prod), t
    )[0]
    t["min_slice_events"] = 10
    ok, reasons = blessing.decide_blessing(
        _scored(3, slices=small), _scored(3, slices=prod), t
    )
    assert not ok and reasons == ["rce drop vs production on f/head 8 > 1"]


def test_threshold_validation_and_generic_form():
    assert blessing.normalize_thresholds(
        {"metric": "auc", "min_value": 0.5, "max_regression": 0.005}
    ) == {"min_auc": 0.5, "max_auc_drop": 0.005}
    with pytest.raises(ValueError, match="unknown thresholds"):
        blessing.normalize_thresholds({"min_rec": 1.0})
    with pytest.raises(ValueError, match="metric"):
        blessing.normalize_thresholds({"metric": "log_loss", "min_value": 0.1})
