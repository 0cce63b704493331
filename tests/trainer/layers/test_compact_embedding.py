"""Tests of the compact export format, bit packing and CompactCodebookEmbedding."""

from __future__ import annotations

import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.layers import testing
from trainer.layers import compact_embedding as ce
from trainer.layers.mgqe_embedding import MGQEEmbedding


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Two tiers with different D (unshared variable D): 6 rows, d = 4, K = 8."""
    rng = np.random.default_rng(seed)
    row_tier = np.array([0, 1, 0, 1, 1, 1])
    codes = rng.integers(0, 8, size=(6, 4))
    codes[row_tier == 1, 2:] = 0
    tables = [rng.normal(size=(4, 8, 1)), rng.normal(size=(2, 8, 2))]
    return ce.make_compact_arrays(codes, row_tier, [4, 2], [8, 8], tables)


def test_pack_hand_worked_bits():
    # row 0 (tier 0, 2 codes x 3 bits): 5, 2 -> bits 101 010; row 1 (tier 1, 1 code x 1
    # bit): 1
    packed = ce.pack_codes(np.array([[5, 2], [1, 0]]), np.array([0, 1]), [2, 1], [3, 1])
    # LSB first: bits 0-2 = 5 (101), bits 3-5 = 2 (010), bit 6 = 1 -> 0b1010101 = 85
    assert packed.tolist() == [85, 0, 0]
    assert ce.row_bit_offsets(np.array([0, 1]), [2, 1], [3, 1]).tolist() == [0, 6]


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@hypothesis.given(
    bits=st.lists(st.integers(1, 16), min_size=1, max_size=3),
    rows=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_pack_unpack_round_trip(bits, rows, seed):
    rng = np.random.default_rng(seed)
    subspaces = sorted(rng.integers(1, 5, size=len(bits)).tolist(), reverse=True)
    tiers = rng.integers(0, len(bits), size=rows)
    width = max(subspaces)
    codes = rng.integers(0, 2 ** np.array(bits)[tiers][:, None], size=(rows, width))
    codes[np.arange(width)[None, :] >= np.array(subspaces)[tiers][:, None]] = 0
    packed = ce.pack_codes(codes, tiers, subspaces, bits)
    total = int(np.sum((np.array(subspaces) * np.array(bits))[tiers]))
    assert len(packed) == (total + 7) // 8 + 2
    starts = ce.row_bit_offsets(tiers, subspaces, bits)
    np.testing.assert_array_equal(
        ce.unpack_codes(packed, starts, tiers, subspaces, bits, width), codes
    )


def test_code_dtype():
    assert ce.code_dtype(2) is np.uint8 and ce.code_dtype(256) is np.uint8
    assert ce.code_dtype(257) is np.uint16 and ce.code_dtype(2**16) is np.uint16
    testing.assert_raises_naming(lambda: ce.code_dtype(2**16 + 1), "num_centroids")


def test_numpy_lookup_by_hand_and_clipping():
    arrays = _arrays()
    c0, c1 = arrays["centroids_0"], arrays["centroids_1"]
    codes = arrays["codes"].astype(int)
    row0 = c0[np.arange(4), codes[0]].reshape(-1)
    row5 = c1[np.arange(2), codes[5, :2]].reshape(-1)
    out = ce.lookup_numpy(arrays, np.array([[0, 5], [-1, 99]]))
    assert out.shape == (2, 2, 4)
    np.testing.assert_array_equal(out[0, 0], row0)
    np.testing.assert_array_equal(out[0, 1], row5)
    np.testing.assert_array_equal(out[1, 0], row5)  # out of range -> last row
    np.testing.assert_array_equal(
        ce.lookup_numpy(arrays, np.arange(6), packed=True),
        ce.lookup_numpy(arrays, np.arange(6)),
    )


def test_serving_bits_of_arrays():
    arrays = _arrays()
    # codes: 2 rows x 4 x 3 bits + 4 rows x 2 x 3 bits; centroids: 32 + 32 floats
    assert ce.compact_serving_bits(arrays) == 2 * 4 * 3 + 4 * 2 * 3 + 32 * 64


@pytest.mark.parametrize("packed", [False, True])
def test_layer_matches_numpy_for_variable_d(packed):
    arrays = _arrays()
    layer = ce.CompactCodebookEmbedding.from_arrays(arrays, packed=packed)
    ids = np.array([[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(layer(ids).numpy(), ce.lookup_numpy(arrays, ids))
    assert [w.trainable for w in layer.weights] == [False] * len(layer.weights)
    assert layer.trainable_weights == []


def test_layer_weight_dtypes():
    arrays = _arrays()
    plain = ce.CompactCodebookEmbedding.from_arrays(arrays)
    packed = ce.CompactCodebookEmbedding.from_arrays(arrays, packed=True)
    assert plain.codes.dtype == "uint8" and plain.codes.shape == (6, 4)
    assert packed.packed_codes.dtype == "uint8"
    assert packed.packed_codes.shape == (len(arrays["packed_codes"]),)


@pytest.mark.parametrize("packed", [False, True])
def test_config_and_keras_round_trip(packed, tmp_path):
    layer = ce.CompactCodebookEmbedding.from_arrays(_arrays(), packed=packed)
    testing.assert_config_round_trip(layer)
    testing.assert_keras_save_round_trip(layer, np.array([[0, 5], [2, 3]]), tmp_path)


def test_serves_mgqe_inside_exported_saved_model(tmp_path):
    keras.utils.set_random_seed(0)
    trained = MGQEEmbedding(30, 8, 4, num_centroids=[16, 4], tier_boundaries=[5])
    ids = np.arange(30, dtype=np.int32)
    expected = trained(ids, training=False).numpy()
    serve = ce.CompactCodebookEmbedding.from_arrays(
        trained.export_compact(), packed=True
    )
    inputs = keras.Input(shape=(), dtype="int32")
    model = keras.Model(inputs, serve(inputs))
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    got = loaded.serve(tf.constant(ids)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_invalid_config_names_argument():
    base = dict(
        num_rows=4, output_dim=4, tier_num_subspaces=[2], tier_num_centroids=[8]
    )
    testing.assert_raises_naming(
        lambda: ce.CompactCodebookEmbedding(**{**base, "tier_num_centroids": [8, 4]}),
        "tier_num_subspaces",
    )
    testing.assert_raises_naming(
        lambda: ce.CompactCodebookEmbedding(**{**base, "tier_num_centroids": [1]}),
        "tier_num_centroids",
    )
    testing.assert_raises_naming(
        lambda: ce.CompactCodebookEmbedding(**base, packed=True), "num_packed_bytes"
    )
    testing.assert_raises_naming(
        lambda: ce.CompactCodebookEmbedding(**base, total_centroids=8),
        "tier_centroid_offsets",
    )
