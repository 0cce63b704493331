"""The blessing decision: may a scored candidate replace the production model?

:func:`normalize_thresholds` validates the threshold keys and maps the generic form of
``components/evaluate.py`` (``metric`` = ``"rce"`` or ``"auc"``, ``min_value``,
``max_regression``) onto the specific keys; :func:`decide_blessing` applies them to the
scores of :func:`trainer.evaluation.evaluate.score_model`.

Every threshold given must pass; comparisons are inclusive (``rce == min_rce`` passes)
and an undefined or non-finite metric fails. :data:`ABSOLUTE_THRESHOLDS` apply to the
candidate alone (``min_events`` defaults to 1); without a production model only they
apply. :data:`RELATIVE_THRESHOLDS` compare the candidate with production, overall and,
for ``max_slice_rce_drop``, per id-frequency slice with at least ``min_slice_events``
candidate events (default :data:`DEFAULT_MIN_SLICE_EVENTS`). A candidate without
events is not blessed.

Pure Python (no NumPy, no TensorFlow).

Example:
    >>> limits = normalize_thresholds({"metric": "rce", "min_value": 0.0})
    >>> limits
    {'min_rce': 0.0}
    >>> scored = {"overall": {"count": 10, "rce": 1.5}, "slices": {}}
    >>> decide_blessing(scored, None, limits)
    (True, ['events 10 >= 1', 'rce 1.5 >= 0', 'no production model: absolute thresholds only'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

ABSOLUTE_THRESHOLDS = ("min_rce", "min_auc", "max_log_loss", "min_events")
RELATIVE_THRESHOLDS = (
    "max_rce_drop",
    "max_auc_drop",
    "max_logloss_increase",
    "max_slice_rce_drop",
    "min_slice_events",
)
GENERIC_THRESHOLDS = ("metric", "min_value", "max_regression")  # components/evaluate.py
_GENERIC_METRICS = {
    "rce": ("min_rce", "max_rce_drop"),
    "auc": ("min_auc", "max_auc_drop"),
}
DEFAULT_MIN_SLICE_EVENTS = 100


def normalize_thresholds(thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """Validates threshold keys and maps the generic form onto the specific keys.

    Args:
        thresholds: Keys from :data:`ABSOLUTE_THRESHOLDS`,
            :data:`RELATIVE_THRESHOLDS` or :data:`GENERIC_THRESHOLDS`; None values
            are dropped.

    Returns:
        Specific keys only, values as floats.

    Raises:
        ValueError: naming an unknown key or an unsupported generic ``metric``.
    """
    allowed = set(ABSOLUTE_THRESHOLDS + RELATIVE_THRESHOLDS + GENERIC_THRESHOLDS)
    unknown = sorted(set(thresholds) - allowed)
    if unknown:
        raise ValueError(f"unknown thresholds {unknown}; allowed: {sorted(allowed)}")
    limits = {
        k: float(v)
        for k, v in thresholds.items()
        if k not in GENERIC_THRESHOLDS and v is not None
    }
    metric = thresholds.get("metric")
    if metric is not None:
        if metric not in _GENERIC_METRICS:
            raise ValueError(
                f"thresholds.metric must be one of {sorted(_GENERIC_METRICS)}, "
                f"got {metric!r}"
            )
        low, drop = _GENERIC_METRICS[metric]
        for key, value in (
            (low, thresholds.get("min_value")),
            (drop, thresholds.get("max_regression")),
        ):
            if value is not None:
                limits[key] = float(value)
    return limits


def decide_blessing(
    candidate: Mapping[str, Any] | None,
    production: Mapping[str, Any] | None,
    thresholds: Mapping[str, float],
    empty_reason: str = "no evaluation events",
) -> tuple[bool, list[str]]:
    """Applies ``thresholds`` (see the module docstring) to the scored models.

    Args:
        candidate: :func:`trainer.evaluation.evaluate.score_model` output of the candidate;
            None when there were no events.
        production: Same for production, or None (first model: absolute checks only).
        thresholds: Normalized thresholds (:func:`normalize_thresholds`).
        empty_reason: The reason given when ``candidate`` is None.

    Returns:
        ``(blessed, reasons)``: the failed checks if not blessed, else the passed ones.
    """
    if candidate is None or not candidate["overall"]["count"]:
        return False, [empty_reason]
    checks = _absolute_checks(candidate["overall"], thresholds)
    if production is None:
        checks.append((True, "no production model: absolute thresholds only"))
    else:
        checks += _relative_checks(candidate, production, thresholds)
    failed = [msg for ok, msg in checks if not ok]
    return (not failed), (failed or [msg for _ok, msg in checks])


def _absolute_checks(
    c: Mapping[str, Any], t: Mapping[str, float]
) -> list[tuple[bool, str]]:
    checks = [_at_least("events", c["count"], t.get("min_events", 1.0))]
    if "min_rce" in t:
        checks.append(_at_least("rce", c["rce"], t["min_rce"]))
    if "min_auc" in t:
        checks.append(_at_least("auc", c["auc"], t["min_auc"]))
    if "max_log_loss" in t:
        checks.append(_at_most("log_loss", c["log_loss"], t["max_log_loss"]))
    return checks


def _relative_checks(
    cand: Mapping[str, Any], prod: Mapping[str, Any], t: Mapping[str, float]
) -> list[tuple[bool, str]]:
    c, p = cand["overall"], prod["overall"]
    checks = []
    if "max_rce_drop" in t:
        checks.append(
            _at_most(
                "rce drop vs production", _minus(p["rce"], c["rce"]), t["max_rce_drop"]
            )
        )
    if "max_auc_drop" in t:
        checks.append(
            _at_most(
                "auc drop vs production", _minus(p["auc"], c["auc"]), t["max_auc_drop"]
            )
        )
    if "max_logloss_increase" in t:
        checks.append(
            _at_most(
                "log_loss increase vs production",
                _minus(c["log_loss"], p["log_loss"]),
                t["max_logloss_increase"],
            )
        )
    if "max_slice_rce_drop" in t:
        min_n = t.get("min_slice_events", DEFAULT_MIN_SLICE_EVENTS)
        for feature, classes in cand["slices"].items():
            for name, cm in classes.items():
                pm = prod["slices"].get(feature, {}).get(name)
                if pm is None or cm["count"] < min_n:
                    continue
                checks.append(
                    _at_most(
                        f"rce drop vs production on {feature}/{name}",
                        _minus(pm["rce"], cm["rce"]),
                        t["max_slice_rce_drop"],
                    )
                )
    return checks


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _at_least(name: str, value: float | None, limit: float) -> tuple[bool, str]:
    if value is None or not math.isfinite(value):
        return False, f"{name} is undefined (needs >= {limit:g})"
    ok = value >= limit
    return ok, f"{name} {value:.6g} {'>=' if ok else '<'} {limit:g}"


def _at_most(name: str, value: float | None, limit: float) -> tuple[bool, str]:
    if value is None or not math.isfinite(value):
        return False, f"{name} is undefined (needs <= {limit:g})"
    ok = value <= limit
    return ok, f"{name} {value:.6g} {'<=' if ok else '>'} {limit:g}"
