"""Offline evaluation of an exported model: metrics, id-frequency slices and blessing.

``python -m trainer.evaluation.evaluate --model EXPORT --logs ROOT --hours H
[--production EXPORT] --out DIR`` (library: :func:`evaluate`). Both models are
exports of :mod:`trainer.serving.export` (raw-feature SavedModels) and are scored on the same
events: an hour range of the event log, or the ``raw_events/`` that
:mod:`trainer.transform` keeps next to its TFRecords.

Metrics (:mod:`trainer.evaluation.metrics`): RCE, log loss, AUC, label mean and mean prediction,
overall and **sliced by id frequency class** for each categorical feature with a
dictionary (full / DPQ / MGQE / hybrid), using the candidate's dictionaries and tiers
(``assets.extra/artifacts`` of the export): ``head`` (tier 0), ``tail`` (other tiers),
``unseen`` (not in the dictionary) and ``missing`` (``""``). The four classes partition
the events of each feature. AUC is None where a set has one label class only.

Blessing (:func:`trainer.evaluation.blessing.decide_blessing`): every threshold given must pass;
comparisons are inclusive (``rce == min_rce`` passes). Without a production model only
the absolute thresholds apply. An hour with **no events** is not an error: the result
is ``blessed=False`` with the reason ``"no evaluation events ..."`` (a missing hour
partition, on the other hand, raises :class:`trainer.contracts.events.MissingPartitionError`).

Outputs in ``out``: ``metrics.json``, ``blessing.json`` (always), ``report.html`` and
``report.md`` with PNG plots (:mod:`trainer.evaluation.report`).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trainer.contracts.features import FeatureSpec, Kind
from trainer.evaluation import blessing
from trainer.evaluation import metrics as metrics_lib
from trainer.transform import RAW_EVENTS_DIR

logger = logging.getLogger(__name__)

SLICE_CLASSES = ("head", "tail", "unseen", "missing")
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
        model_dir: The candidate export (:func:`trainer.serving.export.export_serving_model`).
        eval_data: An event log root (with ``hours``) or a transform output directory
            holding ``raw_events/``.
        production_dir: The production export, or None for a first model.
        thresholds: Blessing thresholds; keys from
            :data:`trainer.evaluation.blessing.ABSOLUTE_THRESHOLDS`,
            :data:`trainer.evaluation.blessing.RELATIVE_THRESHOLDS` or the generic ``metric`` /
            ``min_value`` / ``max_regression`` (``metric`` is ``"rce"`` or ``"auc"``).
        out: Output directory.
        hours: ``START[:END]`` hours of ``eval_data`` (the hour after training).
        slice_features: Features to slice by; default every dictionary feature.

    Returns:
        ``{"metrics": flat scalars, "details": metrics.json content, "blessed": bool,
        "reasons": [str], "report_path": str}``.

    Raises:
        ValueError: on unknown thresholds or an ``eval_data`` without ``hours`` that is
            not a transform output.
        trainer.contracts.events.MissingPartitionError: if an hour partition does not exist.
    """
    from trainer.evaluation import report
    from trainer.serving import scoring

    limits = blessing.normalize_thresholds(thresholds)
    spec = FeatureSpec.from_dict(
        scoring.read_export_metadata(model_dir)["feature_spec"]
    )
    raw, source, bad = load_eval_events(eval_data, hours, spec)
    labels = raw[spec.label_key].astype(np.float64)
    masks = slice_masks(
        raw, spec, os.path.join(model_dir, scoring.EXTRA_ARTIFACTS), slice_features
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
    blessed, reasons = blessing.decide_blessing(
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

    from trainer.contracts import events
    from trainer.data import examples as data

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
    from trainer.contracts import artifacts

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
    from trainer.serving import scoring

    probabilities = scoring.load_scorer(export_dir)(raw)["probability"].astype(
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
    from trainer.serving import scoring

    prod = FeatureSpec.from_dict(
        scoring.read_export_metadata(production_dir)["feature_spec"]
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
        prog="python -m trainer.evaluation.evaluate",
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
    from trainer.contracts import events

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
