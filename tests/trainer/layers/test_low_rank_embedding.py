"""Tests of trainer.layers.low_rank_embedding.LowRankEmbedding."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.layers import testing
from trainer.layers.base import CompactEmbedding
from trainer.layers.low_rank_embedding import LowRankEmbedding

U = np.array([[1, 0], [0, 1], [1, 1], [2, -1]], dtype=np.float32)  # n=4, r=2
V = np.array([[1, 2, 3], [10, 20, 30]], dtype=np.float32)  # r=2, d=3


def _layer() -> LowRankEmbedding:
    layer = LowRankEmbedding(num_rows=4, output_dim=3, rank=2)
    layer.build()
    layer.set_weights([U, V])
    return layer


def test_row_is_factor_times_projection():
    out = keras.ops.convert_to_numpy(_layer()(np.array([[2, 3]])))
    np.testing.assert_array_equal(out, [[[11, 22, 33], [-8, -16, -24]]])


def test_weight_shapes_and_ones():
    layer = LowRankEmbedding(
        5, 3, 2, factors_initializer="ones", projection_initializer="ones"
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(np.array([4]))), [[2, 2, 2]]
    )
    assert [tuple(w.shape) for w in layer.weights] == [(5, 2), (2, 3)]


def test_out_of_range_ids_use_the_last_row():
    out = keras.ops.convert_to_numpy(_layer()(np.array([-1, 4])))
    np.testing.assert_array_equal(out, [U[3] @ V, U[3] @ V])


def test_gradients_reach_looked_up_factor_rows_and_the_projection():
    grads = testing.gradients(_layer(), np.array([0, 2, 2]))
    factors, projection = grads.values()
    assert testing.rows_with_gradient(factors) == {0, 2}
    assert np.all(projection != 0)


def test_compact_lookup_matches_call_for_every_id():
    layer = _layer()
    assert isinstance(layer, CompactEmbedding)
    testing.assert_compact_matches(layer, np.arange(-2, 7).reshape(3, 3))


def test_serving_bits_is_32nr_plus_32rd():
    assert (
        LowRankEmbedding(1000, 64, 48).serving_bits() == 32 * 1000 * 48 + 32 * 48 * 64
    )


def test_config_round_trip():
    restored = testing.assert_config_round_trip(
        LowRankEmbedding(6, 4, 3, "zeros", "ones")
    )
    assert restored.rank == 3


def test_keras_save_round_trip(tmp_path):
    testing.assert_keras_save_round_trip(_layer(), np.array([[0, 1], [2, 3]]), tmp_path)


@pytest.mark.parametrize("argument", ["num_rows", "output_dim", "rank"])
def test_invalid_config_names_the_argument(argument):
    args = {"num_rows": 4, "output_dim": 3, "rank": 2, argument: 0}
    testing.assert_raises_naming(lambda: LowRankEmbedding(**args), argument)
