"""Tests of DPQEmbedding (DPQ-VQ, Chen, Li & Sun 2020)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.layers import testing
from trainer.layers.compact_embedding import (
    CompactCodebookEmbedding,
    compact_serving_bits,
)
from trainer.layers.dpq_embedding import DPQEmbedding
from trainer.serving import sizes

N, D_MODEL, D, K = 40, 8, 4, 8


def _layer(**kwargs) -> DPQEmbedding:
    keras.utils.set_random_seed(0)
    args = dict(num_rows=N, output_dim=D_MODEL, num_subspaces=D, num_centroids=K)
    args.update(kwargs)
    layer = DPQEmbedding(**args)
    layer.build()
    return layer


def _dense(grad) -> np.ndarray | None:
    return None if grad is None else tf.convert_to_tensor(grad).numpy()


def _numpy_codes(layer: DPQEmbedding, ids: np.ndarray) -> np.ndarray:
    """Nearest centroid per subspace, computed independently with NumPy in float64."""
    e = layer.embeddings.numpy()[ids].reshape(len(ids), D, -1).astype(np.float64)
    c = layer.centroids.numpy().astype(np.float64)
    dist = ((e[:, :, None, :] - c[None]) ** 2).sum(-1)
    return dist.argmin(-1)


def test_hand_worked_example():
    layer = DPQEmbedding(num_rows=3, output_dim=2, num_subspaces=2, num_centroids=2)
    layer.build()
    layer.embeddings.assign(np.array([[0.1, 0.9], [0.8, 0.2], [0.6, 0.6]], np.float32))
    layer.centroids.assign(np.array([[[0.0], [1.0]], [[0.0], [1.0]]], np.float32))
    out = layer(np.array([0, 1, 2])).numpy()
    np.testing.assert_allclose(out, [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], atol=1e-7)
    # regulariser: mean((q - e)^2) over 6 elements
    expected = np.mean(
        (np.array([[0, 1], [1, 0], [1, 1]]) - layer.embeddings.numpy()) ** 2
    )
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [(5,), (2, 3), (1, 2, 2)])
def test_shapes_and_nearest_centroid(shape):
    layer = _layer()
    ids = np.random.default_rng(0).integers(0, N, size=shape)
    out = layer(ids).numpy()
    assert out.shape == shape + (D_MODEL,)
    flat = ids.reshape(-1)
    codes = _numpy_codes(layer, flat)
    expected = layer.centroids.numpy()[np.arange(D)[None], codes].reshape(len(flat), -1)
    np.testing.assert_allclose(out.reshape(len(flat), -1), expected, atol=1e-6)
    assert layer.compute_output_shape(shape) == shape + (D_MODEL,)


def test_weight_shapes():
    layer = _layer()
    assert layer.embeddings.shape == (N, D_MODEL)
    assert layer.centroids.shape == (D, K, D_MODEL // D)
    assert [w.name for w in layer.trainable_weights] == ["embeddings", "centroids"]


def test_out_of_range_ids_use_last_row():
    layer = _layer()
    out = layer(np.array([-1, N, N + 7, N - 1])).numpy()
    for row in out[:3]:
        np.testing.assert_array_equal(row, out[3])


def test_task_gradient_reaches_queries_unchanged_and_not_centroids():
    layer = _layer()
    ids = np.array([3, 3, 7, 12])
    grads = testing.gradients(layer, ids)
    weights = tf.random.stateless_normal((4, D_MODEL), seed=[0, 1]).numpy()
    expected = np.zeros((N, D_MODEL), np.float32)
    np.add.at(
        expected, ids, weights
    )  # identity straight-through, duplicates accumulate
    np.testing.assert_allclose(grads["embeddings"], expected, atol=1e-6)
    np.testing.assert_array_equal(grads["centroids"], 0.0)


def test_regulariser_moves_only_chosen_centroids():
    layer = _layer(regularizer_weight=0.5)
    ids = np.array([1, 2, 30])
    with tf.GradientTape() as tape:
        layer(ids)
        loss = tf.add_n(layer.losses)
    g_emb, g_cent = tape.gradient(loss, [layer.embeddings, layer.centroids])
    assert _dense(g_emb) is None  # alpha term uses sg(e), beta = 0
    codes = _numpy_codes(layer, ids)
    e = layer.embeddings.numpy()[ids].reshape(3, D, -1)
    q = layer.centroids.numpy()[np.arange(D)[None], codes]
    expected = np.zeros((D, K, D_MODEL // D), np.float32)
    for n in range(3):
        for j in range(D):
            expected[j, codes[n, j]] += 2 * 0.5 * (q[n, j] - e[n, j]) / (3 * D_MODEL)
    np.testing.assert_allclose(
        tf.convert_to_tensor(g_cent).numpy(), expected, atol=1e-9
    )


def test_commitment_term_pulls_queries():
    layer = _layer(regularizer_weight=0.0, commitment_weight=0.25)
    ids = np.array([4, 5])
    with tf.GradientTape() as tape:
        layer(ids)
        loss = tf.add_n(layer.losses)
    g_emb, g_cent = tape.gradient(loss, [layer.embeddings, layer.centroids])
    assert g_cent is None or not np.any(_dense(g_cent))  # beta term uses sg(q)
    q = layer(ids).numpy()
    e = layer.embeddings.numpy()[ids]
    expected = np.zeros((N, D_MODEL), np.float32)
    expected[ids] = 2 * 0.25 * (e - q) / (2 * D_MODEL)
    np.testing.assert_allclose(tf.convert_to_tensor(g_emb).numpy(), expected, atol=1e-9)


def test_no_loss_when_both_weights_zero():
    layer = _layer(regularizer_weight=0.0)
    layer(np.array([1]))
    assert layer.losses == []


def test_batchnorm_training_updates_stats_and_inference_uses_them():
    layer = _layer(response_batchnorm=True)
    ids = np.arange(N)
    np.testing.assert_array_equal(layer.norm.moving_mean.numpy(), 0.0)
    layer(ids, training=True)
    e = layer.embeddings.numpy().reshape(N, D, -1).astype(np.float64)
    c = layer.centroids.numpy().astype(np.float64)
    r = -((e[:, :, None, :] - c[None]) ** 2).sum(-1)  # (N, D, K)
    # one statistic per centroid index, over batch and subspaces; momentum 0.99
    np.testing.assert_allclose(
        layer.norm.moving_mean.numpy(),
        0.01 * r.mean(axis=(0, 1)),
        rtol=1e-4,
        atol=1e-12,
    )
    # inference: code = argmax((r - moving_mean) / sqrt(moving_var + eps))
    mean, var = layer.norm.moving_mean.numpy(), layer.norm.moving_variance.numpy()
    codes = ((r - mean) / np.sqrt(var + 1e-3)).argmax(-1)
    np.testing.assert_array_equal(layer.compute_codes(), codes)
    out = layer(ids, training=False).numpy()
    np.testing.assert_allclose(
        out, c[np.arange(D)[None], codes].reshape(N, -1), atol=1e-6
    )


def test_fit_trains_centroids_through_add_loss():
    layer = _layer()
    inputs = keras.Input(shape=(), dtype="int32")
    model = keras.Model(
        inputs, keras.layers.Dense(1, activation="sigmoid")(layer(inputs))
    )
    model.compile(optimizer=keras.optimizers.Adagrad(0.1), loss="binary_crossentropy")
    before = layer.centroids.numpy().copy()
    x = np.arange(10, dtype=np.int32)
    y = (x % 2).astype(np.float32)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)
    assert not np.allclose(layer.centroids.numpy(), before)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_compact_export_matches_every_id(batchnorm, tmp_path):
    layer = _layer(response_batchnorm=batchnorm)
    layer(np.arange(N), training=True)  # move the batch-norm statistics
    ids = np.arange(N)
    expected = layer(ids, training=False).numpy()
    arrays = layer.export_compact()
    assert arrays["codes"].dtype == np.uint8 and arrays["codes"].shape == (N, D)
    assert arrays["codes"].max() < K
    np.testing.assert_allclose(layer.compact_lookup(arrays, ids), expected, atol=1e-6)
    assert compact_serving_bits(arrays) == layer.serving_bits()
    for packed in (False, True):
        serve = CompactCodebookEmbedding.from_arrays(arrays, packed=packed)
        np.testing.assert_allclose(serve(ids).numpy(), expected, atol=1e-6)
        reloaded = testing.assert_keras_save_round_trip(serve, ids, tmp_path)
        np.testing.assert_allclose(reloaded(ids).numpy(), expected, atol=1e-6)


def test_uint16_codes_when_k_above_256():
    layer = _layer(num_centroids=300, num_rows=6)
    arrays = layer.export_compact()
    assert arrays["codes"].dtype == np.uint16
    assert arrays["tier_code_bits"].tolist() == [9]
    serve = CompactCodebookEmbedding.from_arrays(arrays, packed=True)
    np.testing.assert_allclose(
        serve(np.arange(6)).numpy(), layer(np.arange(6)).numpy(), atol=1e-6
    )


def test_serving_bits_formula():
    layer = _layer(num_rows=1000, output_dim=64, num_subspaces=64, num_centroids=256)
    assert layer.serving_bits() == 1000 * 64 * 8 + 32 * 256 * 64
    assert layer.serving_bits() == sizes.dpq_bits(1000, 64, 64, 256)


def test_config_and_keras_round_trip(tmp_path):
    layer = _layer(
        response_batchnorm=True, commitment_weight=0.1, regularizer_weight=0.5
    )
    testing.assert_config_round_trip(layer)
    testing.assert_keras_save_round_trip(layer, np.array([[1, 2], [3, 39]]), tmp_path)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(output_dim=10, num_subspaces=4), "num_subspaces"),
        (dict(num_centroids=2**16 + 1), "num_centroids"),
        (dict(num_centroids=1), "num_centroids"),
        (dict(num_subspaces=0), "num_subspaces"),
        (dict(num_rows=0), "num_rows"),
        (dict(regularizer_weight=-1.0), "regularizer_weight"),
        (dict(commitment_weight=float("nan")), "commitment_weight"),
    ],
)
def test_invalid_config_names_argument(kwargs, argument):
    args = dict(num_rows=N, output_dim=D_MODEL, num_subspaces=D, num_centroids=K)
    args.update(kwargs)
    testing.assert_raises_naming(lambda: DPQEmbedding(**args), argument)
