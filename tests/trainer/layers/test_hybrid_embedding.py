"""Tests of trainer.layers.hybrid_embedding.HybridEmbedding."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from tests.trainer.layers import testing
from trainer.layers.base import CompactEmbedding
from trainer.layers.hybrid_embedding import HybridEmbedding

K, B, D = 3, 4, 2
DICTIONARY = 100.0 + np.arange((K + 1) * D, dtype=np.float32).reshape(K + 1, D)
TABLE_1 = np.arange(B * D, dtype=np.float32).reshape(B, D)
TABLE_2 = 10.0 * TABLE_1


def _layer(combiner: str = "sum") -> HybridEmbedding:
    layer = HybridEmbedding(
        dictionary_size=K, num_buckets=B, output_dim=D, combiner=combiner
    )
    layer.build()
    if combiner == "sum":
        layer.set_weights([DICTIONARY, TABLE_1, TABLE_2])
    return layer


def _out(layer, ids) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(np.asarray(ids)))


def test_dictionary_ids_take_their_own_row_others_the_double_hash():
    out = _out(_layer(), [[1, 0, 0], [K, 1, 2], [2, 3, 3]])
    np.testing.assert_array_equal(
        out, [DICTIONARY[1], TABLE_1[1] + TABLE_2[2], DICTIONARY[2]]
    )


def test_weight_shapes():
    layer = _layer("concat")
    assert [tuple(w.shape) for w in layer.weights] == [
        (K + 1, D),
        (B, D // 2),
        (B, D // 2),
    ]


def test_out_of_range_rows_fall_back_to_hashing_and_never_raise():
    out = _out(_layer(), [[-1, 1, 2], [K + 7, 1, 2], [K, -3, 99]])
    np.testing.assert_array_equal(out[0], TABLE_1[1] + TABLE_2[2])
    np.testing.assert_array_equal(out[1], out[0])
    np.testing.assert_array_equal(out[2], TABLE_1[B - 1] + TABLE_2[B - 1])


def test_gradients_split_between_dictionary_and_hash_tables():
    ids = np.array([[0, 0, 1], [K, 2, 3], [2, 1, 1]])  # in, out, in
    grads = testing.gradients(_layer(), ids)
    dictionary, t1, t2 = (testing.rows_with_gradient(g) for g in grads.values())
    assert dictionary == {0, 2}  # only in-dictionary ids; reserved row K never
    assert (t1, t2) == ({2}, {3})  # only the out-of-dictionary id's buckets


def test_promote_rows_keeps_the_promoted_values_embedding():
    layer = _layer()
    hash_ids = np.array([[1, 2], [3, 0]])
    before = _out(layer, np.c_[np.full(2, K), hash_ids])
    layer.promote_rows([0, 2], hash_ids)
    after = _out(layer, np.c_[[0, 2], hash_ids])
    np.testing.assert_allclose(after, before)
    np.testing.assert_array_equal(
        _out(layer, [[1, 0, 0]]), DICTIONARY[1:2]
    )  # untouched


@pytest.mark.parametrize(
    ("rows", "hash_ids", "argument"),
    [([0, 1], [[1, 2]], "hash_ids"), ([K], [[1, 2]], "rows"), ([-1], [[0, 0]], "rows")],
)
def test_promote_rows_rejects_bad_input(rows, hash_ids, argument):
    testing.assert_raises_naming(
        lambda: _layer().promote_rows(rows, np.array(hash_ids)), argument
    )


@pytest.mark.parametrize("combiner", ["sum", "concat"])
def test_compact_lookup_matches_call_for_every_id(combiner):
    layer = _layer(combiner)
    assert isinstance(layer, CompactEmbedding)
    ids = np.array(
        list(itertools.product(range(-1, K + 2), range(-1, B + 1), range(B)))
    )
    testing.assert_compact_matches(layer, ids)


def test_serving_bits_counts_dictionary_and_hash_tables():
    layer = HybridEmbedding(dictionary_size=100, num_buckets=64, output_dim=8)
    assert layer.serving_bits() == 32 * 101 * 8 + 2 * 32 * 64 * 8
    shared = HybridEmbedding(100, 64, 8, combiner="concat", shared_table=True)
    assert shared.serving_bits() == 32 * 101 * 8 + 32 * 64 * 4


def test_config_round_trip():
    restored = testing.assert_config_round_trip(
        HybridEmbedding(5, 8, 4, "concat", True, name="hy")
    )
    assert restored.hashed.combiner == "concat" and restored.hashed.shared_table


def test_keras_save_round_trip(tmp_path):
    testing.assert_keras_save_round_trip(
        _layer(), np.array([[0, 1, 2], [K, 3, 0]]), tmp_path
    )


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"dictionary_size": 0}, "dictionary_size"),
        ({"num_buckets": -2}, "num_buckets"),
        ({"output_dim": 0}, "output_dim"),
        ({"combiner": "max"}, "combiner"),
    ],
)
def test_invalid_config_names_the_argument(kwargs, argument):
    args = {"dictionary_size": 3, "num_buckets": 4, "output_dim": 2, **kwargs}
    testing.assert_raises_naming(lambda: HybridEmbedding(**args), argument)
