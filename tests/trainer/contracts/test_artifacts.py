"""trainer.contracts.artifacts: the writers and THE loader, on a local dir and on fake GCS."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from tests.fixtures.gcs import gcs_bucket, gcs_server  # noqa: F401  (fixtures)
from trainer.contracts import artifacts, storage

VALUES = ["b", "a", "zz top", "ünï", "tab\there"]


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "artifact")
    return request.getfixturevalue("gcs_bucket") + "/stats/run-1"


def _manifest(**feature) -> dict:
    entry = {
        "uses_dictionary": True,
        "treatment": "mgqe",
        "vocab_size": len(VALUES),
        "tier_sizes": [1, 4],
        "coverage": 0.75,
        **feature,
    }
    return {
        "format_version": artifacts.FORMAT_VERSION,
        "version": "v-123",
        "features": {
            "item": entry,
            "tag": {"uses_dictionary": False, "treatment": "hash"},
        },
    }


def _write_feature(root: str) -> None:
    artifacts.write_vocab(root, "item", VALUES)
    artifacts.write_tiers(root, "item", np.array([0, 1, 1, 1, 1]))
    weights = pa.table(
        {
            "value": ["zz top", *VALUES[:2], "other", *VALUES[3:]],
            "weight": [7.0, 9.0, 8.0, 0.5, 6.0, 5.0],
        }
    )
    artifacts.write_state(root, "item", weights)
    artifacts.write_counts(
        root, "item", pa.table({"value": ["b"], "count": pa.array([3], pa.int64())})
    )


def test_feature_round_trip(root: str) -> None:
    _write_feature(root)
    artifacts.write_manifest(root, _manifest())
    fa = artifacts.load_feature_artifacts(root, "item")
    assert fa.values == VALUES and fa.vocab_size == 5
    assert fa.counts.tolist() == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert fa.row_tier.dtype == np.int32 and fa.row_tier.tolist() == [0, 1, 1, 1, 1]
    assert fa.tier_sizes == (1, 4) and fa.num_tiers == 2
    assert fa.coverage == 0.75 and fa.version == "v-123"
    assert artifacts.load_counts(root, "item").to_pylist() == [
        {"value": "b", "count": 3}
    ]


def test_boundaries_and_remap_round_trip(root: str) -> None:
    artifacts.write_boundaries(root, "price", [0.5, 1.0, 2.5], method="exact", count=10)
    assert artifacts.load_boundaries(root, "price") == [0.5, 1.0, 2.5]
    raw = json.loads(storage.read_text(artifacts.boundaries_path(root, "price")))
    assert raw["method"] == "exact" and raw["count"] == 10
    remap = artifacts.Remap({0: 2, 3: 1}, ["new"], ["gone"], 4, 3, "v-0")
    artifacts.write_remap(root, "item", remap)
    loaded = artifacts.load_remap(root, "item")
    assert loaded == remap
    old, new = loaded.arrays()
    assert old.tolist() == [0, 3] and new.tolist() == [2, 1]
    assert loaded.gather_index().tolist() == [-1, 3, 0]


def test_loader_errors_name_the_problem(root: str) -> None:
    with pytest.raises(artifacts.ArtifactError, match="not a finished stats artifact"):
        artifacts.load_manifest(root)
    _write_feature(root)
    artifacts.write_manifest(root, _manifest())
    with pytest.raises(artifacts.ArtifactError, match="no categorical feature 'user'"):
        artifacts.load_feature_artifacts(root, "user")
    with pytest.raises(artifacts.ArtifactError, match="has no dictionary"):
        artifacts.load_feature_artifacts(root, "tag")
    with pytest.raises(artifacts.ArtifactError, match="not a continuous-mode run"):
        artifacts.load_remap(root, "item")
    artifacts.write_manifest(root, _manifest(vocab_size=6))
    with pytest.raises(artifacts.ArtifactError, match="manifest says 6"):
        artifacts.load_feature_artifacts(root, "item")
    artifacts.write_manifest(root, {**_manifest(), "format_version": 99})
    with pytest.raises(artifacts.ArtifactError, match="format_version 99"):
        artifacts.load_manifest(root)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "x\u2028", "\x85", "\x0c", ""])
def test_vocab_rejects_line_breaks_and_empty_values(tmp_path, bad: str) -> None:
    assert not artifacts.is_vocab_safe(bad)
    with pytest.raises(ValueError, match="line breaks"):
        artifacts.write_vocab(str(tmp_path), "item", ["ok", bad])


def test_vocab_rejects_duplicates_and_bad_names(tmp_path) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        artifacts.write_vocab(str(tmp_path), "item", ["a", "a"])
    with pytest.raises(ValueError, match="file name"):
        artifacts.vocab_path(str(tmp_path), "../x")
    with pytest.raises(ValueError, match="strictly increase"):
        artifacts.write_boundaries(str(tmp_path), "p", [1.0, 1.0])


def test_tensorflow_reads_the_vocab_file_row_for_row(tmp_path) -> None:
    import tensorflow as tf

    artifacts.write_vocab(str(tmp_path), "item", VALUES)
    init = tf.lookup.TextFileInitializer(
        artifacts.vocab_path(str(tmp_path), "item"),
        key_dtype=tf.string,
        key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        value_dtype=tf.int64,
        value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
    )
    table = tf.lookup.StaticHashTable(init, default_value=-1)
    rows = table.lookup(tf.constant([*VALUES, "missing"])).numpy().tolist()
    assert rows == [0, 1, 2, 3, 4, -1]
