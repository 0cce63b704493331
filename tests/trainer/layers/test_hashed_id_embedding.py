"""Tests of trainer.models.ranking_common.HashedIdEmbedding (hashing for integer rows)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.layers import testing
from trainer import preprocessing
from trainer.models.ranking_common import HashedIdEmbedding

ROWS, BUCKETS, DIM, TOP_K = 20, 8, 4, 3
IDS = np.array([[0, 2, 3], [19, 7, 3]])


def _embedding(kind: str) -> dict:
    return {"kind": kind, "dim": DIM, "hash_buckets": BUCKETS, "top_k": TOP_K}


def _layer(kind: str) -> HashedIdEmbedding:
    keras.utils.set_random_seed(0)
    layer = HashedIdEmbedding(_embedding(kind), ROWS, name=f"{kind}_rows")
    layer.build()
    return layer


@pytest.mark.parametrize("kind", ["hash", "double_hash", "hybrid"])
def test_id_map_is_the_preprocessing_hash_of_each_rows_decimal_string(kind) -> None:
    id_map = keras.ops.convert_to_numpy(_layer(kind).id_map)
    values = [str(r) for r in range(ROWS)]
    h1 = preprocessing.hash_values(values, BUCKETS, 0)
    h2 = preprocessing.hash_values(values, BUCKETS, 1)
    expected = {
        "hash": h1[:, None],
        "double_hash": np.stack([h1, h2], axis=1),
        # hybrid: rows below top_k keep their own dictionary row, the rest share row K
        "hybrid": np.stack([np.minimum(np.arange(ROWS), TOP_K), h1, h2], axis=1),
    }[kind]
    np.testing.assert_array_equal(id_map, expected)


@pytest.mark.parametrize("kind", ["hash", "double_hash", "hybrid"])
def test_config_holds_the_constructor_arguments_and_round_trips(kind) -> None:
    layer = _layer(kind)
    config = layer.get_config()
    assert config["name"] == f"{kind}_rows" and config["num_rows"] == ROWS
    assert {k: config["embedding"][k] for k in _embedding(kind)} == _embedding(kind)
    restored = testing.assert_config_round_trip(layer)
    assert restored.num_rows == ROWS and restored.config.kind == kind


@pytest.mark.parametrize("kind", ["hash", "double_hash", "hybrid"])
def test_keras_save_round_trip(kind, tmp_path) -> None:
    layer = _layer(kind)
    rng = np.random.default_rng(1)
    for v in layer.trainable_variables:  # not the initial values a reload could redo
        value = keras.ops.convert_to_numpy(v)
        v.assign(value + rng.normal(0.0, 0.5, value.shape).astype(value.dtype))
    reloaded = testing.assert_keras_save_round_trip(layer, IDS, tmp_path)
    (inner,) = [x for x in reloaded.layers if isinstance(x, HashedIdEmbedding)]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(inner.id_map),
        keras.ops.convert_to_numpy(layer.id_map),
    )
    assert inner.serving_bits() == layer.serving_bits()


def test_a_kind_that_is_not_hashing_is_refused() -> None:
    with pytest.raises(ValueError, match="`kind` must be one of"):
        HashedIdEmbedding({"kind": "lrf", "dim": DIM, "rank": 2}, ROWS)
