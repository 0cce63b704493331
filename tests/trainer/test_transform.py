"""Tests of trainer.transform: tft on the DirectRunner vs the eager transform."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from tests.trainer.conftest import TRAIN_HOUR, trainer_config
from trainer import preprocessing, task, transform
from trainer.contracts import events
from trainer.contracts.features import load_feature_spec
from trainer.data import examples as data

MALFORMED_LINES = ['{"event_ts": "yesterday"', '{"event_ts": 1, "label": 7.0}']


@pytest.fixture(scope="module")
def logs_with_bad_rows(synthetic_logs, tmp_path_factory) -> str:
    """Hour T00 of the fixture log plus a JSON-lines file with two malformed records."""
    root = str(tmp_path_factory.mktemp("xf_logs"))
    hour = events.parse_hour(TRAIN_HOUR)
    target = events.partition_path(root, hour)
    os.makedirs(target)
    for path in events.partition_files(synthetic_logs, hour):
        shutil.copy(path, target)
    with open(os.path.join(target, "part-00099.jsonl"), "w") as f:
        f.write("\n".join(MALFORMED_LINES) + "\n")
    return root


@pytest.fixture(scope="module")
def transformed(logs_with_bad_rows, fixture_spec_path, stats_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("xf") / "examples")
    summary = transform.transform_hour(
        logs_with_bad_rows, TRAIN_HOUR, fixture_spec_path, stats_dir, out
    )
    return out, summary


def _sorted_rows(examples: dict[str, np.ndarray]) -> np.ndarray:
    """All columns side by side (as float64, exact for these ids), rows sorted."""
    cols = [
        examples[k].reshape(len(examples[k]), -1).astype(np.float64)
        for k in sorted(examples)
    ]
    table = np.concatenate(cols, axis=1)
    return table[np.lexsort(table.T[::-1])]


@pytest.mark.e2e
def test_tft_output_equals_eager_transform(
    transformed, logs_with_bad_rows, fixture_spec_path, stats_dir
):
    out, summary = transformed
    spec = load_feature_spec(fixture_spec_path)
    table, dead = events.read_partition(
        logs_with_bad_rows, events.parse_hour(TRAIN_HOUR), spec
    )
    expected = data.transform_raw(
        data.table_to_raw(table, spec), preprocessing.FeatureTransform(spec, stats_dir)
    )
    got = data.read_transformed(out)
    assert set(got) == set(expected)
    for key in expected:
        assert (
            got[key].dtype == expected[key].dtype
            and got[key].shape == expected[key].shape
        )
    np.testing.assert_array_equal(_sorted_rows(got), _sorted_rows(expected))
    assert summary["events"] == summary["examples"] == table.num_rows == 3000
    assert summary["schema"]["user_id_xf"] == ["int64", [3]]
    assert summary["schema"]["label"] == ["float32", []]
    assert summary["dead_letters"] == len(dead) == len(MALFORMED_LINES)
    with open(os.path.join(out, transform.DEAD_LETTER_FILE)) as f:
        letters = [json.loads(line) for line in f]
    assert [d["line"] for d in letters] == [1, 2]
    assert all(
        d["source"].endswith("part-00099.jsonl") and d["reason"] for d in letters
    )
    assert os.path.isfile(os.path.join(out, "transform_fn", "saved_model.pb"))
    raw_files = os.listdir(os.path.join(out, transform.RAW_EVENTS_DIR))
    assert raw_files == ["part-00000.parquet"]


@pytest.mark.e2e
def test_trainer_trains_from_the_tft_output(
    transformed, fixture_spec_path, stats_dir, tmp_path
):
    out, summary = transformed
    meta = task.run(
        trainer_config(fixture_spec_path, max_steps=2),
        out,
        stats_dir,
        str(tmp_path / "model"),
    )
    assert meta["steps"] == 2
    assert meta["examples"] == summary["examples"]
    assert meta["source"] == out
    assert np.isfinite(meta["final_loss"])


@pytest.mark.e2e
def test_empty_hour_writes_an_empty_dataset(fixture_spec_path, stats_dir, tmp_path):
    spec = load_feature_spec(fixture_spec_path)
    logs = str(tmp_path / "logs")
    events.write_partition(
        logs, events.parse_hour(TRAIN_HOUR), events.empty_table(spec)
    )
    summary = transform.transform_hour(
        logs, TRAIN_HOUR, fixture_spec_path, stats_dir, str(tmp_path / "out")
    )
    assert (summary["events"], summary["examples"], summary["dead_letters"]) == (
        0,
        0,
        0,
    )
    examples = data.read_transformed(str(tmp_path / "out"))
    assert examples["user_id_xf"].shape == (0, 3)


def test_record_batches_carry_the_raw_columns(fixture_spec_path):
    spec = load_feature_spec(fixture_spec_path)
    raw = {
        f.name: (
            np.array(["a", "", "b"], dtype=object)
            if f.kind.value == "categorical"
            else np.array([1.0, np.nan, 2.0], np.float32)
        )
        for f in spec.features
    }
    raw["label"] = np.array([0.0, 1.0, 0.0], np.float32)
    batches, config = transform.raw_record_batches(raw, spec, batch_rows=2)
    assert [b.num_rows for b in batches] == [2, 1]
    assert set(config.tensor_representations) == set(transform.raw_feature_spec(spec))
    assert batches[0].column(
        batches[0].schema.get_field_index("user_id")
    ).to_pylist() == [["a"], [""]]
    price = batches[0].column(batches[0].schema.get_field_index("price")).to_pylist()
    assert price[0] == [1.0] and np.isnan(price[1][0])
