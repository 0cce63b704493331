"""Offline evaluation of an exported model: metrics, id-frequency slices and blessing.

``python -m trainer.evaluation --model EXPORT --logs ROOT --hours H
[--production EXPORT] --out DIR`` (library: :func:`evaluate`). Both models are
exports of :mod:`trainer.export` (raw-feature SavedModels) and are scored on the same
events: an hour range of the event log, or the ``raw_events/`` that
:mod:`trainer.transform` keeps next to its TFRecords.

Metrics (:mod:`trainer.metrics`): RCE, log loss, AUC, label mean and mean prediction,
overall and **sliced by id frequency class** for each categorical feature with a
dictionary (full / DPQ / MGQE / hybrid), using the candidate's dictionaries and tiers
(``assets.extra/artifacts`` of the export): ``head`` (tier 0), ``tail`` (other tiers),
``unseen`` (not in the dictionary) and ``missing`` (``""``). The four classes partition
the events of each feature. AUC is None where a set has one label class only.

Blessing (:func:`decide_blessing`): every threshold given must pass; comparisons are
inclusive (``rce == min_rce`` passes). Without a production model only the absolute
thresholds apply. An hour with **no events** is not an error: the result is
``blessed=False`` with the reason ``"no evaluation events ..."`` (a missing hour
partition, on the other hand, raises :class:`beam_jobs.events.MissingPartitionError`).

Outputs in ``out``: ``metrics.json``, ``blessing.json`` (always), ``report.html`` and
``report.md`` with PNG plots (:mod:`trainer.report`).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trainer import metrics as metrics_lib
from trainer.features import FeatureSpec, Kind
from trainer.transform import RAW_EVENTS_DIR

logger = logging.getLogger(__name__)

SLICE_CLASSES = ("head", "tail", "unseen", "missing")
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
_CALIBRATION_BINS = 10


def evaluate(
    model_dir: str,
    eval_data: str,
    production_dir: str | None,
    thresholds: Mapping[str, Any],
    out: str,
    hours: str | None = None,
    slice_features: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Scores candidate (and production), writes the report and decides blessing.

    Args:
        model_dir: The candidate export (:func:`trainer.export.export_serving_model`).
        eval_data: An event log root (with ``hours``) or a transform output directory
            holding ``raw_events/``.
        production_dir: The production export, or None for a first model.
        thresholds: Blessing thresholds; keys from :data:`ABSOLUTE_THRESHOLDS`,
            :data:`RELATIVE_THRESHOLDS` or the generic ``metric`` / ``min_value`` /
            ``max_regression`` (``metric`` is ``"rce"`` or ``"auc"``).
        out: Output directory.
        hours: ``START[:END]`` hours of ``eval_data`` (the hour after training).
        slice_features: Features to slice by; default every dictionary feature.

    Returns:
        ``{"metrics": flat scalars, "details": metrics.json content, "blessed": bool,
        "reasons": [str], "report_path": str}``.

    Raises:
        ValueError: on unknown thresholds or an ``eval_data`` without ``hours`` that is
            not a transform output.
        beam_jobs.events.MissingPartitionError: if an hour partition does not exist.
    """
    from trainer import export, report

    limits = normalize_thresholds(thresholds)
    spec = FeatureSpec.from_dict(export.read_export_metadata(model_dir)["feature_spec"])
    raw, source, bad = load_eval_events(eval_data, hours, spec)
    labels = raw[spec.label_key].astype(np.float64)
    masks = slice_masks(
        raw, spec, os.path.join(model_dir, export.EXTRA_ARTIFACTS), slice_features
    )
    details: dict[str, Any] = {
        "source": source,
        "events": int(len(labels)),
        "malformed_events": bad,
        "thresholds": limits,
        "candidate": None,
        "production": None,
    }
    if len(labels):
        details["candidate"] = score_model(model_dir, raw, labels, masks)
        if production_dir:
            _check_production_inputs(production_dir, spec)
            details["production"] = score_model(production_dir, raw, labels, masks)
    blessed, reasons = decide_blessing(
        details["candidate"],
        details["production"],
        limits,
        empty_reason=f"no evaluation events in {source}",
    )
    details.update(blessed=blessed, reasons=reasons)
    os.makedirs(out, exist_ok=True)
    _write_json(os.path.join(out, "metrics.json"), details)
    _write_json(
        os.path.join(out, "blessing.json"), {"blessed": blessed, "reasons": reasons}
    )
    report_path = report.write_report(details, out)
    logger.info("evaluated %s on %s: blessed=%s", model_dir, source, blessed)
    return {
        "metrics": flat_metrics(details),
        "details": details,
        "blessed": blessed,
        "reasons": reasons,
        "report_path": report_path,
    }


# ------------------------------------------------------------------------------ data


def load_eval_events(
    eval_data: str, hours: str | None, spec: FeatureSpec
) -> tuple[dict[str, np.ndarray], str, int]:
    """Raw events (``table_to_raw`` layout), a source label, the malformed count."""
    import pyarrow as pa

    from beam_jobs import events
    from trainer import data

    if hours:
        table, bad = data.read_events(eval_data, events.parse_hour_range(hours), spec)
        return data.table_to_raw(table, spec), f"{eval_data}@{hours}", bad
    files = sorted(glob.glob(os.path.join(eval_data, RAW_EVENTS_DIR, "*.parquet")))
    if not os.path.isdir(os.path.join(eval_data, RAW_EVENTS_DIR)):
        raise ValueError(
            f"{eval_data}: pass `hours` for an event log, or a transform output "
            f"directory with {RAW_EVENTS_DIR}/"
        )
    tables, bad = [events.empty_table(spec)], 0
    for path in files:
        table, dead = events.read_file(path, spec)
        tables.append(table)
        bad += len(dead)
    return data.table_to_raw(pa.concat_tables(tables), spec), eval_data, bad


def slice_masks(
    raw: Mapping[str, np.ndarray],
    spec: FeatureSpec,
    artifact_dir: str,
    features: Sequence[str] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Boolean masks ``{feature: {class: (n,)}}`` of :data:`SLICE_CLASSES` per feature.

    Example:
        >>> masks = slice_masks(raw, spec, extra_dir)  # doctest: +SKIP
        >>> sum(m.sum() for m in masks["item_id"].values())  # doctest: +SKIP
        3000
    """
    from trainer import artifacts

    names = features or [
        f.name
        for f in spec.features
        if f.kind is Kind.CATEGORICAL and f.uses_dictionary
    ]
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        tier = dict(
            zip(
                artifacts.read_vocab(artifact_dir, name),
                artifacts.read_tiers(artifact_dir, name).tolist(),
                strict=True,
            )
        )
        values = raw[name]
        tiers = np.asarray([tier.get(v, -1) for v in values.tolist()], dtype=np.int64)
        missing = values == ""
        out[name] = {
            "head": tiers == 0,
            "tail": tiers > 0,
            "unseen": (tiers < 0) & ~missing,
            "missing": missing,
        }
    return out


# --------------------------------------------------------------------------- metrics


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Count, positives, label mean, mean prediction, log loss, RCE and AUC of a set.

    Every metric is None for an empty set; AUC is None with one label class only.
    """
    n = int(len(labels))
    result: dict[str, Any] = {
        "count": n,
        "positives": int(np.sum(labels)),
        "label_mean": None,
        "mean_prediction": None,
        "log_loss": None,
        "rce": None,
        "auc": None,
    }
    if n == 0:
        return result
    result.update(
        label_mean=float(np.mean(labels)),
        mean_prediction=float(np.mean(probabilities)),
        log_loss=metrics_lib.log_loss(labels, probabilities),
        rce=metrics_lib.relative_cross_entropy(labels, probabilities),
    )
    if 0 < result["positives"] < n:
        result["auc"] = metrics_lib.roc_auc(labels, probabilities)
    return result


def calibration(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = _CALIBRATION_BINS
) -> dict[str, list[float]]:
    """Reliability curve over prediction-quantile bins: mean prediction, label rate."""
    if len(labels) == 0:
        return {"mean_prediction": [], "label_rate": [], "count": []}
    order = np.argsort(probabilities, kind="mergesort")
    parts = [p for p in np.array_split(order, min(bins, len(order))) if len(p)]
    return {
        "mean_prediction": [float(np.mean(probabilities[p])) for p in parts],
        "label_rate": [float(np.mean(labels[p])) for p in parts],
        "count": [int(len(p)) for p in parts],
    }


def score_model(
    export_dir: str,
    raw: Mapping[str, np.ndarray],
    labels: np.ndarray,
    masks: Mapping[str, Mapping[str, np.ndarray]],
) -> dict[str, Any]:
    """One export's overall, sliced and calibration metrics on ``raw``."""
    from trainer import export

    probabilities = export.load_scorer(export_dir)(raw)["probability"].astype(
        np.float64
    )
    return {
        "model": export_dir,
        "overall": compute_metrics(labels, probabilities),
        "slices": {
            feature: {
                c: compute_metrics(labels[m], probabilities[m])
                for c, m in classes.items()
            }
            for feature, classes in masks.items()
        },
        "calibration": calibration(labels, probabilities),
    }


# -------------------------------------------------------------------------- blessing


def normalize_thresholds(thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """Validates threshold keys and maps the generic form onto the specific keys.

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
        candidate: :func:`score_model` output of the candidate; None when there were
            no events.
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


# --------------------------------------------------------------------------- helpers


def flat_metrics(details: Mapping[str, Any]) -> dict[str, float]:
    """Scalar metrics for KFP ``Metrics``: overall (``rce`` ...), ``production_*`` and
    ``<feature>/<class>/rce``; undefined values are left out."""
    flat: dict[str, float] = {"events": float(details["events"])}
    for prefix, key in (("", "candidate"), ("production_", "production")):
        scored = details.get(key)
        if not scored:
            continue
        for name, value in scored["overall"].items():
            if value is not None:
                flat[prefix + name] = float(value)
        if key == "candidate":
            for feature, classes in scored["slices"].items():
                for cls, m in classes.items():
                    if m["rce"] is not None:
                        flat[f"{feature}/{cls}/rce"] = float(m["rce"])
    flat["blessed"] = float(bool(details.get("blessed")))
    return flat


def _check_production_inputs(production_dir: str, spec: FeatureSpec) -> None:
    from trainer import export

    prod = FeatureSpec.from_dict(
        export.read_export_metadata(production_dir)["feature_spec"]
    )
    missing = sorted(
        set(f.name for f in prod.features) - set(f.name for f in spec.features)
    )
    if missing:
        raise ValueError(
            f"{production_dir}: needs features {missing} the candidate lacks"
        )


def _write_json(path: str, payload: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, sort_keys=True, allow_nan=False)


# ------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer.evaluation",
        description="Evaluate an exported model and decide blessing.",
    )
    p.add_argument("--model", required=True, help="candidate export directory")
    p.add_argument("--logs", required=True, help="event log root or transform output")
    p.add_argument("--hours", help="START[:END] evaluation hours of --logs")
    p.add_argument("--production", help="production export directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="blessing threshold, e.g. --threshold min_rce=0 (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prints the blessing and the report path; 0 if it ran."""
    from beam_jobs import events

    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        thresholds = dict(_parse_threshold(t) for t in args.threshold)
        result = evaluate(
            args.model, args.logs, args.production, thresholds, args.out, args.hours
        )
    except (ValueError, FileNotFoundError, events.MissingPartitionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    overall = {
        k: result["metrics"].get(k) for k in ("events", "rce", "log_loss", "auc")
    }
    print(
        json.dumps(
            {
                "blessed": result["blessed"],
                "reasons": result["reasons"],
                "metrics": overall,
                "report": result["report_path"],
            },
            indent=1,
        )
    )
    return 0


def _parse_threshold(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"--threshold {item!r}: expected KEY=VALUE")
    return key, value if key == "metric" else float(value)


if __name__ == "__main__":
    sys.exit(main())
