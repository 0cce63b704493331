"""Tests of trainer.layers.scalar_quantized_embedding.ScalarQuantizedEmbedding."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.trainer.layers import testing
from trainer.layers.base import CompactEmbedding
from trainer.layers.scalar_quantized_embedding import (
    ScalarQuantizedEmbedding,
    dequantize,
    quantize_table,
)

# Column 0 spans [0, 3] -> step 1 at 2 bits; column 1 is constant.
TABLE = np.array(
    [[0.0, 5.0], [1.0, 5.0], [2.9, 5.0], [3.0, 5.0], [1.4, 5.0]], np.float32
)


def _out(layer, ids) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(np.asarray(ids)))


def test_two_bit_codes_and_dequantized_rows_by_hand():
    codes, lo, hi = quantize_table(TABLE, bits=2)
    np.testing.assert_array_equal(codes[:, 0], [0, 1, 3, 3, 1])
    np.testing.assert_array_equal(codes[:, 1], 0)  # constant column
    np.testing.assert_array_equal(lo, [0, 5]), np.testing.assert_array_equal(hi, [3, 5])
    layer = ScalarQuantizedEmbedding.from_table(TABLE, bits=2)
    np.testing.assert_allclose(_out(layer, [2, 4]), [[3, 5], [1, 5]], atol=1e-6)


@pytest.mark.parametrize(
    ("bits", "dtype"), [(1, np.uint8), (8, np.uint8), (9, np.uint16), (16, np.uint16)]
)
def test_code_dtype_and_weights(bits, dtype):
    layer = ScalarQuantizedEmbedding.from_table(TABLE, bits=bits)
    assert layer.export_compact()["codes"].dtype == dtype
    assert [tuple(w.shape) for w in layer.weights] == [(5, 2), (2,), (2,)]
    assert layer.trainable_weights == []


def test_matches_tf_quantize_min_combined_per_column():
    rng = np.random.default_rng(0)
    column = rng.normal(size=50).astype(np.float32)
    codes, lo, hi = quantize_table(column[:, None], bits=8)
    ref = tf.quantization.quantize(column, lo[0], hi[0], tf.quint8, mode="MIN_COMBINED")
    assert np.abs(codes[:, 0].astype(int) - ref.output.numpy().astype(int)).max() <= 1


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    table=hnp.arrays(np.float32, (6, 3), elements=st.floats(-100, 100, width=32)),
    bits=st.integers(1, 12),
)
def test_error_is_at_most_half_a_step(table, bits):
    codes, lo, hi = quantize_table(table, bits)
    step = (hi - lo) / (2**bits - 1)
    err = np.abs(dequantize(codes, lo, hi, bits) - table)
    assert np.all(err <= step / 2 + 1e-4 * (1 + np.abs(table)))


def test_out_of_range_ids_use_the_last_row():
    layer = ScalarQuantizedEmbedding.from_table(TABLE, bits=4)
    np.testing.assert_array_equal(
        _out(layer, [-1, 5, 99]), np.tile(_out(layer, [4])[0], (3, 1))
    )


def test_compact_lookup_matches_call_for_every_id():
    rng = np.random.default_rng(1)
    layer = ScalarQuantizedEmbedding.from_table(rng.normal(size=(20, 4)), bits=5)
    assert isinstance(layer, CompactEmbedding)
    testing.assert_compact_matches(layer, np.arange(-2, 23))


def test_serving_bits_is_ndb_plus_min_max():
    assert (
        ScalarQuantizedEmbedding(1000, 64, bits=8).serving_bits()
        == 1000 * 64 * 8 + 2 * 64 * 32
    )


def test_config_round_trip():
    restored = testing.assert_config_round_trip(
        ScalarQuantizedEmbedding(5, 2, bits=3, name="sq")
    )
    assert restored.bits == 3


def test_keras_save_round_trip_keeps_codes(tmp_path):
    layer = ScalarQuantizedEmbedding.from_table(TABLE, bits=9)
    model = testing.assert_keras_save_round_trip(
        layer, np.array([[0, 3], [2, 4]]), tmp_path
    )
    assert model.layers[-1].codes.dtype == "uint16"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"bits": 0}, "bits"),
        ({"bits": 17}, "bits"),
        ({"num_rows": 0}, "num_rows"),
        ({"output_dim": -1}, "output_dim"),
    ],
)
def test_invalid_config_names_the_argument(kwargs, argument):
    args = {"num_rows": 4, "output_dim": 2, **kwargs}
    testing.assert_raises_naming(lambda: ScalarQuantizedEmbedding(**args), argument)


def test_from_table_rejects_non_2d_tables():
    testing.assert_raises_naming(
        lambda: ScalarQuantizedEmbedding.from_table(np.zeros(3), 8), "table"
    )
