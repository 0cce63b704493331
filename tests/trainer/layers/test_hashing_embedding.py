"""Tests of trainer.layers.hashing_embedding.HashingEmbedding."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.layers import testing
from trainer import preprocessing
from trainer.layers.base import CompactEmbedding
from trainer.layers.hashing_embedding import HashingEmbedding

TABLE = np.arange(16, dtype=np.float32).reshape(8, 2) * 0.5


def _layer() -> HashingEmbedding:
    layer = HashingEmbedding(num_buckets=8, output_dim=2)
    layer.build()
    layer.set_weights([TABLE])
    return layer


def test_output_is_the_bucket_row():
    out = keras.ops.convert_to_numpy(_layer()(np.array([[7, 0], [3, 3]])))
    np.testing.assert_array_equal(out, [[[7, 7.5], [0, 0.5]], [[3, 3.5], [3, 3.5]]])


def test_embeds_the_preprocessing_buckets_of_raw_values():
    values = ["a", "b", "日本語", ""]
    buckets = preprocessing.hash_values(values, 8, salt_index=0)
    out = keras.ops.convert_to_numpy(_layer()(buckets))
    np.testing.assert_array_equal(out, TABLE[buckets])


def test_weight_shape_and_ones_initializer():
    layer = HashingEmbedding(5, 3, embeddings_initializer="ones")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(np.array([4]))), [[1, 1, 1]]
    )
    assert [tuple(w.shape) for w in layer.weights] == [(5, 3)]


def test_out_of_range_and_negative_buckets_use_the_last_bucket():
    out = keras.ops.convert_to_numpy(_layer()(np.array([-5, 8, 99])))
    np.testing.assert_array_equal(out, np.tile(TABLE[7], (3, 1)))


def test_gradient_reaches_exactly_the_looked_up_buckets():
    (grad,) = testing.gradients(_layer(), np.array([[2, 5], [5, 0]])).values()
    assert testing.rows_with_gradient(grad) == {0, 2, 5}


def test_compact_lookup_matches_call_for_every_id():
    layer = _layer()
    assert isinstance(layer, CompactEmbedding)
    testing.assert_compact_matches(layer, np.arange(-2, 11))


def test_serving_bits_is_32Bd():
    assert (
        HashingEmbedding(num_buckets=2**10, output_dim=8).serving_bits()
        == 32 * 1024 * 8
    )


def test_config_round_trip():
    testing.assert_config_round_trip(HashingEmbedding(9, 4, "zeros", name="h"))


def test_keras_save_round_trip(tmp_path):
    testing.assert_keras_save_round_trip(_layer(), np.array([[1, 7, 3]]), tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_buckets": 0, "output_dim": 2}, "num_buckets"),
        ({"num_buckets": 4, "output_dim": 0}, "output_dim"),
    ],
)
def test_invalid_config_names_the_argument(kwargs, argument):
    testing.assert_raises_naming(lambda: HashingEmbedding(**kwargs), argument)
