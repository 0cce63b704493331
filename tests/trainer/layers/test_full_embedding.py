"""Tests of trainer.layers.full_embedding.FullEmbedding."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.layers import testing
from trainer.layers.base import CompactEmbedding
from trainer.layers.full_embedding import FullEmbedding

TABLE = np.arange(12, dtype=np.float32).reshape(4, 3)  # row i = [3i, 3i+1, 3i+2]


def _layer(**kw) -> FullEmbedding:
    layer = FullEmbedding(num_rows=4, output_dim=3, **kw)
    layer.build()
    layer.set_weights([TABLE])
    return layer


def test_output_is_the_row_of_each_id():
    out = keras.ops.convert_to_numpy(_layer()(np.array([[2, 0, 3]])))
    np.testing.assert_array_equal(out, [[[6, 7, 8], [0, 1, 2], [9, 10, 11]]])


def test_ones_initializer_and_weight_shape():
    layer = FullEmbedding(5, 2, embeddings_initializer="ones")
    out = keras.ops.convert_to_numpy(layer(np.array([0, 4])))
    np.testing.assert_array_equal(out, np.ones((2, 2)))
    assert [tuple(w.shape) for w in layer.weights] == [(5, 2)]


def test_default_initializer_is_small_normal():
    keras.utils.set_random_seed(0)
    table = FullEmbedding(1000, 8).export_compact()["embeddings"]
    assert 0.008 < table.std() < 0.012 and abs(table.mean()) < 0.002


def test_out_of_range_and_negative_ids_use_the_last_row():
    out = keras.ops.convert_to_numpy(_layer()(np.array([-1, 4, 2**40], dtype=np.int64)))
    np.testing.assert_array_equal(out, np.tile(TABLE[3], (3, 1)))


def test_gradient_reaches_exactly_the_looked_up_rows():
    grads = testing.gradients(_layer(), np.array([1, 1, 3]))
    (grad,) = grads.values()
    assert testing.rows_with_gradient(grad) == {1, 3}


def test_compact_lookup_matches_call_for_every_id():
    layer = _layer()
    assert isinstance(layer, CompactEmbedding)
    testing.assert_compact_matches(layer, np.arange(-3, 8).reshape(1, -1))


def test_serving_bits_is_32nd():
    assert FullEmbedding(num_rows=100, output_dim=16).serving_bits() == 32 * 100 * 16


def test_config_round_trip():
    init = keras.initializers.RandomNormal(stddev=0.5, seed=3)
    restored = testing.assert_config_round_trip(FullEmbedding(7, 2, init, name="e"))
    assert restored.embeddings_initializer.stddev == 0.5


def test_keras_save_round_trip(tmp_path):
    testing.assert_keras_save_round_trip(_layer(), np.array([[0, 1], [3, 9]]), tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_rows": 0, "output_dim": 2}, "num_rows"),
        ({"num_rows": 3, "output_dim": -1}, "output_dim"),
        ({"num_rows": 2.5, "output_dim": 2}, "num_rows"),
    ],
)
def test_invalid_config_names_the_argument(kwargs, argument):
    testing.assert_raises_naming(lambda: FullEmbedding(**kwargs), argument)
