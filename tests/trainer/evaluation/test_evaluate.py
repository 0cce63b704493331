"""Tests of trainer.evaluation.evaluate and trainer.evaluation.report on real exports of the fixture."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from tests.trainer.conftest import EVAL_HOUR
from trainer.contracts import artifacts, events
from trainer.contracts.features import FeatureSpec
from trainer.data import examples as data
from trainer.evaluation import evaluate as evaluation
from trainer.evaluation import report
from trainer.serving import export, scoring

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def candidate(trained_model_dir, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("eval_export") / "candidate")
    export.export_serving_model(trained_model_dir, None, out)
    return out


@pytest.fixture(scope="module")
def worse(trained_model_dir, tmp_path_factory) -> str:
    """The fixture model with a shifted bias and a noisy deep logit: a regression."""
    root = tmp_path_factory.mktemp("worse")
    model_dir = str(root / "model")
    os.makedirs(model_dir)
    for name in ("model.keras", "metadata.json"):
        shutil.copy(os.path.join(trained_model_dir, name), model_dir)
    shutil.copytree(
        os.path.join(trained_model_dir, "artifacts"), model_dir + "/artifacts"
    )
    model, _meta = export.load_trained(model_dir)
    rng = np.random.default_rng(0)
    model.wide_bias.assign(model.wide_bias + 1.5)
    kernel = keras.ops.convert_to_numpy(model.deep_logit.kernel)
    model.deep_logit.kernel.assign(
        kernel + rng.normal(0, 1.0, kernel.shape).astype("float32")
    )
    model.save(os.path.join(model_dir, "model.keras"))
    out = str(root / "export")
    export.export_serving_model(model_dir, None, out)
    return out


@pytest.fixture(scope="module")
def first_run(candidate, synthetic_logs, tmp_path_factory) -> dict:
    out = str(tmp_path_factory.mktemp("eval_first"))
    return evaluation.evaluate(
        candidate, synthetic_logs, None, {"min_events": 100}, out, hours=EVAL_HOUR
    ) | {"out": out}


def _eval_events(candidate: str, logs: str):
    spec = FeatureSpec.from_dict(
        scoring.read_export_metadata(candidate)["feature_spec"]
    )
    table, _bad = data.read_events(logs, events.parse_hour_range(EVAL_HOUR), spec)
    return spec, data.table_to_raw(table, spec)


def _sklearn_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    naive = sk_log_loss(y, np.full_like(p, y.mean()), labels=[0, 1])
    ll = sk_log_loss(y, p, labels=[0, 1])
    return {
        "log_loss": ll,
        "rce": 100 * (1 - ll / naive),
        "auc": roc_auc_score(y, p),
        "count": len(y),
        "label_mean": y.mean(),
        "mean_prediction": p.mean(),
    }


# ---------------------------------------------------------------------------- metrics


def test_metrics_equal_sklearn_on_the_same_predictions(
    first_run, candidate, synthetic_logs
):
    spec, raw = _eval_events(candidate, synthetic_logs)
    y = raw["label"].astype(np.float64)
    p = scoring.load_scorer(candidate)(raw)["probability"].astype(np.float64)
    details = first_run["details"]
    expected = _sklearn_metrics(y, p)
    for key, value in expected.items():
        assert details["candidate"]["overall"][key] == pytest.approx(value, rel=1e-9), (
            key
        )
    masks = evaluation.slice_masks(raw, spec, candidate + "/" + scoring.EXTRA_ARTIFACTS)
    for cls in ("head", "tail", "unseen"):
        m = masks["item_id"][cls]
        got = details["candidate"]["slices"]["item_id"][cls]
        for key, value in _sklearn_metrics(y[m], p[m]).items():
            assert got[key] == pytest.approx(value, rel=1e-9), (cls, key)
    assert first_run["metrics"]["rce"] == pytest.approx(expected["rce"], rel=1e-9)
    assert first_run["metrics"]["events"] == len(y)


def test_slices_partition_events_by_frequency_class(
    first_run, candidate, synthetic_logs, trained_model_dir
):
    spec, raw = _eval_events(candidate, synthetic_logs)
    n = len(raw["label"])
    masks = evaluation.slice_masks(raw, spec, candidate + "/" + scoring.EXTRA_ARTIFACTS)
    assert set(masks) == {
        "user_id",
        "item_id",
        "publisher",
        "category",
        "device",
        "country",
    }
    for feature, classes in masks.items():
        stacked = np.stack([classes[c] for c in evaluation.SLICE_CLASSES])
        assert (stacked.sum(axis=0) == 1).all(), feature  # every event in exactly one
        counts = first_run["details"]["candidate"]["slices"][feature]
        assert sum(counts[c]["count"] for c in evaluation.SLICE_CLASSES) == n
        fa = artifacts.load_feature_artifacts(trained_model_dir + "/artifacts", feature)
        head = {v for v, t in zip(fa.values, fa.row_tier, strict=True) if t == 0}
        values = raw[feature].tolist()
        assert counts["head"]["count"] == sum(v in head for v in values)
        assert counts["unseen"]["count"] == sum(v not in set(fa.values) for v in values)
    item = first_run["details"]["candidate"]["slices"]["item_id"]
    assert item["head"]["count"] > 0 and item["tail"]["count"] > 0
    assert item["unseen"]["count"] > 0  # hour T01 brings new items


# --------------------------------------------------------------------------- blessing


def test_first_run_is_blessed_on_absolute_thresholds(first_run):
    assert first_run["blessed"] is True
    assert any("no production model" in r for r in first_run["reasons"])
    with open(os.path.join(first_run["out"], "blessing.json")) as f:
        assert json.load(f) == {"blessed": True, "reasons": first_run["reasons"]}
    with open(os.path.join(first_run["out"], "metrics.json")) as f:
        assert json.load(f)["production"] is None


def test_regression_vs_production_is_not_blessed(
    candidate, worse, synthetic_logs, tmp_path
):
    thresholds = {"max_rce_drop": 0.5, "max_logloss_increase": 0.01}
    bad = evaluation.evaluate(
        worse,
        synthetic_logs,
        candidate,
        thresholds,
        str(tmp_path / "bad"),
        hours=EVAL_HOUR,
    )
    c, p = (
        bad["details"]["candidate"]["overall"],
        bad["details"]["production"]["overall"],
    )
    assert p["rce"] - c["rce"] > 0.5
    assert bad["blessed"] is False
    assert any(r.startswith("rce drop vs production") for r in bad["reasons"])
    assert any(r.startswith("log_loss increase") for r in bad["reasons"])
    good = evaluation.evaluate(
        candidate,
        synthetic_logs,
        worse,
        thresholds,
        str(tmp_path / "good"),
        hours=EVAL_HOUR,
    )
    assert good["blessed"] is True, good["reasons"]
    assert good["metrics"]["production_rce"] == pytest.approx(c["rce"])


# ------------------------------------------------------------------ report, data, CLI


def test_report_references_the_pngs(first_run):
    out = first_run["out"]
    assert first_run["report_path"] == os.path.join(out, report.HTML_REPORT)
    page = open(first_run["report_path"], encoding="utf-8").read()
    markdown = open(os.path.join(out, report.MARKDOWN_REPORT), encoding="utf-8").read()
    for png in (report.RCE_PLOT, report.CALIBRATION_PLOT):
        assert f"<img src='{png}'" in page and f"]({png})" in markdown
        with open(os.path.join(out, png), "rb") as f:
            assert f.read(8) == PNG_MAGIC
    assert "BLESSED" in page and "item_id" in page


def test_empty_eval_hour_is_not_blessed_and_still_reported(candidate, tmp_path):
    spec = FeatureSpec.from_dict(
        scoring.read_export_metadata(candidate)["feature_spec"]
    )
    logs = str(tmp_path / "logs")
    events.write_partition(logs, events.parse_hour(EVAL_HOUR), events.empty_table(spec))
    out = str(tmp_path / "eval")
    result = evaluation.evaluate(
        candidate, logs, None, {"min_rce": 0.0}, out, hours=EVAL_HOUR
    )
    assert result["blessed"] is False
    assert result["reasons"] == [f"no evaluation events in {logs}@{EVAL_HOUR}"]
    assert json.load(open(os.path.join(out, "blessing.json")))["blessed"] is False
    assert json.load(open(os.path.join(out, "metrics.json")))["events"] == 0
    assert "NOT BLESSED" in open(result["report_path"]).read()
    with pytest.raises(events.MissingPartitionError):
        evaluation.evaluate(candidate, logs, None, {}, out, hours="2026-01-01T05")


def test_transform_output_raw_events_give_the_same_metrics(
    first_run, candidate, synthetic_logs, tmp_path
):
    src = events.partition_files(synthetic_logs, events.parse_hour(EVAL_HOUR))
    os.makedirs(tmp_path / "xf" / evaluation.RAW_EVENTS_DIR)
    for i, path in enumerate(src):
        shutil.copy(
            path, tmp_path / "xf" / evaluation.RAW_EVENTS_DIR / f"part-{i}.parquet"
        )
    result = evaluation.evaluate(
        candidate,
        str(tmp_path / "xf"),
        None,
        {"min_events": 100},
        str(tmp_path / "out"),
    )
    assert (
        result["details"]["candidate"]["overall"]
        == first_run["details"]["candidate"]["overall"]
    )
    with pytest.raises(ValueError, match="hours"):
        evaluation.evaluate(candidate, synthetic_logs, None, {}, str(tmp_path / "o2"))


def test_cli(candidate, synthetic_logs, tmp_path, capsys):
    args = [
        "--model",
        candidate,
        "--logs",
        synthetic_logs,
        "--hours",
        EVAL_HOUR,
        "--out",
        str(tmp_path / "cli"),
        "--threshold",
        "min_rce=-1000",
    ]
    assert evaluation.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["blessed"] is True and printed["metrics"]["events"] == 3000
    assert evaluation.main([*args, "--threshold", "nope=1"]) == 2
    assert "unknown thresholds" in capsys.readouterr().err
