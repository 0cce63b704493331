"""Tests of trainer.layers.double_hashing_embedding.DoubleHashingEmbedding."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from tests.trainer.layers import testing
from trainer.layers.base import CompactEmbedding
from trainer.layers.double_hashing_embedding import DoubleHashingEmbedding

B = 4


def _layer(combiner: str = "sum", shared_table: bool = False) -> DoubleHashingEmbedding:
    layer = DoubleHashingEmbedding(B, 4, combiner=combiner, shared_table=shared_table)
    layer.build()
    cols = layer.table_dim
    tables = [
        np.arange(B * cols, dtype=np.float32).reshape(B, cols) * (10**i)
        for i in range(len(layer.tables))
    ]
    layer.set_weights(tables)
    return layer


def _out(layer, ids) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(np.asarray(ids)))


def test_sum_adds_the_rows_of_both_tables():
    # table_1[i] = [4i .. 4i+3], table_2 = 10 * table_1
    np.testing.assert_array_equal(_out(_layer("sum"), [[1, 2]]), [[84, 95, 106, 117]])


def test_concat_joins_half_width_rows():
    layer = _layer("concat")
    assert [tuple(w.shape) for w in layer.weights] == [(B, 2), (B, 2)]
    np.testing.assert_array_equal(_out(layer, [[1, 3]]), [[2, 3, 60, 70]])


def test_shared_table_uses_one_table_for_both_hashes():
    layer = _layer("sum", shared_table=True)
    assert [tuple(w.shape) for w in layer.weights] == [(B, 4)]
    np.testing.assert_array_equal(_out(layer, [[0, 3]]), [[12, 14, 16, 18]])


def test_leading_dimensions_are_kept():
    assert _out(_layer(), np.zeros((2, 5, 2), dtype=np.int64)).shape == (2, 5, 4)


def test_out_of_range_hash_ids_use_the_last_bucket():
    layer = _layer()
    np.testing.assert_array_equal(_out(layer, [[-1, 7]]), _out(layer, [[B - 1, B - 1]]))


def test_gradients_reach_h1_rows_of_table_1_and_h2_rows_of_table_2():
    grads = testing.gradients(_layer(), np.array([[0, 1], [2, 1]]))
    assert [testing.rows_with_gradient(g) for g in grads.values()] == [{0, 2}, {1}]


@pytest.mark.parametrize(
    ("combiner", "shared"), itertools.product(["sum", "concat"], [False, True])
)
def test_compact_lookup_matches_call_for_every_id_pair(combiner, shared):
    layer = _layer(combiner, shared)
    assert isinstance(layer, CompactEmbedding)
    pairs = np.array(list(itertools.product(range(-1, B + 1), repeat=2)))
    testing.assert_compact_matches(layer, pairs)


@pytest.mark.parametrize(
    ("combiner", "shared", "bits"),
    [
        ("sum", False, 2 * 32 * B * 4),
        ("concat", False, 2 * 32 * B * 2),
        ("sum", True, 32 * B * 4),
    ],
)
def test_serving_bits(combiner, shared, bits):
    assert (
        DoubleHashingEmbedding(
            B, 4, combiner=combiner, shared_table=shared
        ).serving_bits()
        == bits
    )


def test_config_round_trip():
    restored = testing.assert_config_round_trip(
        DoubleHashingEmbedding(8, 6, "concat", True)
    )
    assert (restored.combiner, restored.shared_table) == ("concat", True)


def test_keras_save_round_trip(tmp_path):
    testing.assert_keras_save_round_trip(
        _layer("concat"), np.array([[0, 3], [2, 1]]), tmp_path
    )


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_buckets": 0, "output_dim": 2}, "num_buckets"),
        ({"num_buckets": 4, "output_dim": 0}, "output_dim"),
        ({"num_buckets": 4, "output_dim": 2, "combiner": "mean"}, "combiner"),
        ({"num_buckets": 4, "output_dim": 3, "combiner": "concat"}, "output_dim"),
    ],
)
def test_invalid_config_names_the_argument(kwargs, argument):
    testing.assert_raises_naming(lambda: DoubleHashingEmbedding(**kwargs), argument)
