"""Tests of MGQEEmbedding: shared, unshared K, unshared D (Kang et al. 2020)."""

from __future__ import annotations

import math

import hypothesis
import hypothesis.strategies as st
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.layers import testing
from trainer.layers.compact_embedding import (
    CompactCodebookEmbedding,
    compact_serving_bits,
)
from trainer.layers.mgqe_embedding import MGQEEmbedding
from trainer.serving import sizes

N, DIM = 50, 8
VARIANTS = {
    "shared": dict(num_subspaces=4, num_centroids=[32, 4]),
    "unshared_k": dict(num_subspaces=4, num_centroids=[32, 4]),
    "unshared_d": dict(
        num_subspaces=4, num_centroids=[16], num_subspaces_per_tier=[4, 2]
    ),
}


def _layer(variant: str = "shared", lookup: str = "masked", seed: int = 0, **kwargs):
    keras.utils.set_random_seed(seed)
    args = dict(num_rows=N, output_dim=DIM, variant=variant, lookup=lookup)
    args.update(VARIANTS[variant])
    args.update(kwargs)
    layer = MGQEEmbedding(**args)
    layer.build()
    return layer


def _twin(layer: MGQEEmbedding, lookup: str) -> MGQEEmbedding:
    """Same weights and tiers, other lookup."""
    config = {**layer.get_config(), "lookup": lookup, "name": f"{layer.name}_{lookup}"}
    twin = MGQEEmbedding.from_config(config)
    twin.build()
    twin.set_weights(layer.get_weights())
    return twin


def _codes(layer: MGQEEmbedding, ids: np.ndarray, graph: bool = False) -> np.ndarray:
    def fn(ids):
        tiers = tf.gather(layer.row_tier, ids)
        return layer._local_codes(tf.gather(layer.embeddings, ids), tiers, False)

    fn = tf.function(fn) if graph else fn
    return fn(tf.constant(ids, tf.int32)).numpy()


def test_default_tiers_head_is_ceil_ten_percent_and_oov_is_tail():
    layer = _layer()
    tiers = layer.row_tier.numpy()
    assert layer.tier_boundaries == [math.ceil(0.1 * N)]
    np.testing.assert_array_equal(tiers, (np.arange(N) >= 5).astype(np.int32))
    assert tiers[N - 1] == 1  # OOV row V = n - 1
    assert layer.tier_sizes() == [5, 45]


class OuterModel(keras.Model):
    """A subclassed model without build(): Keras builds it by tracing call()."""

    def __init__(self):
        super().__init__()
        self.table = MGQEEmbedding(50, 8, num_subspaces=4, num_centroids=[16, 4])

    def call(self, ids):
        return self.table(ids)


@pytest.mark.parametrize("how", ["eager", "tf.function", "predict"])
def test_default_tiers_survive_being_built_inside_another_models_call(how):
    model = OuterModel()
    ids = np.array([1, 2, 3])
    if how == "eager":
        model(ids)
    elif how == "tf.function":
        tf.function(model.__call__)(tf.constant(ids))
    else:
        model.predict(ids, verbose=0)
    np.testing.assert_array_equal(
        model.table.row_tier.numpy(), model.table.default_row_tiers()
    )
    assert np.bincount(model.table.row_tier.numpy()).tolist() == [5, 45]


def test_three_tiers_need_boundaries():
    testing.assert_raises_naming(
        lambda: MGQEEmbedding(N, DIM, 4, num_centroids=[16, 8, 4]), "tier_boundaries"
    )
    layer = MGQEEmbedding(N, DIM, 4, num_centroids=[16, 8, 4], tier_boundaries=[3, 10])
    layer.build()
    assert layer.tier_sizes() == [3, 7, 40]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_shapes(variant, shape):
    layer = _layer(variant)
    ids = np.random.default_rng(1).integers(0, N, size=shape)
    assert layer(ids).shape == shape + (DIM,)


@pytest.mark.parametrize("variant", VARIANTS)
def test_codes_stay_in_tier_range(variant):
    layer = _layer(variant)
    # a query table spread widely so that unrestricted codes would use every centroid
    layer.embeddings.assign(
        np.random.default_rng(2).normal(size=(N, DIM)).astype(np.float32)
    )
    layer.set_row_tiers(np.random.default_rng(3).integers(0, 2, size=N))
    tiers = layer.row_tier.numpy()
    codes = layer.compute_codes()
    limits = np.array(layer.tier_num_centroids)[tiers]
    assert np.all(codes < limits[:, None])
    tail = codes[tiers == 1][:, : layer.tier_num_subspaces[1]]
    assert tail.max() == layer.tier_num_centroids[1] - 1  # the range is really used ...
    head = codes[tiers == 0]
    if variant == "unshared_d":  # same K, fewer subspaces: unused code columns stay 0
        assert not np.any(codes[tiers == 1][:, layer.tier_num_subspaces[1] :])
        assert np.any(head[:, layer.tier_num_subspaces[1] :])
    else:
        assert (
            head.max() >= layer.tier_num_centroids[1]
        )  # ... and head ids go beyond it


def test_shared_variant_is_nearest_among_first_k_i():
    layer = _layer("shared")
    ids = np.arange(N)
    e = layer.embeddings.numpy().reshape(N, 4, -1).astype(np.float64)
    c = layer.centroids.numpy().astype(np.float64)
    dist = ((e[:, :, None, :] - c[None]) ** 2).sum(-1)
    limits = np.array([32, 4])[layer.row_tier.numpy()]
    dist = np.where(np.arange(32)[None, None, :] >= limits[:, None, None], np.inf, dist)
    np.testing.assert_array_equal(layer.compute_codes(), dist.argmin(-1))
    expected = c[np.arange(4)[None], dist.argmin(-1)].reshape(N, -1)
    np.testing.assert_allclose(layer(ids).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("graph", [False, True])
def test_masked_and_groupwise_codes_are_bit_identical(variant, graph):
    masked = _layer(variant, num_rows=400, seed=4)
    masked.embeddings.assign(
        np.random.default_rng(5).normal(scale=0.01, size=(400, DIM)).astype(np.float32)
    )
    masked.set_row_tiers(np.random.default_rng(6).integers(0, 2, size=400))
    grouped = _twin(masked, "groupwise")
    ids = np.random.default_rng(7).integers(0, 400, size=1000)  # duplicates included
    np.testing.assert_array_equal(
        _codes(masked, ids, graph), _codes(grouped, ids, graph)
    )
    np.testing.assert_array_equal(masked(ids).numpy(), grouped(ids).numpy())
    np.testing.assert_array_equal(masked.compute_codes(), grouped.compute_codes())


@hypothesis.settings(max_examples=12, deadline=None, derandomize=True)
@hypothesis.given(
    k_head=st.sampled_from([8, 16, 64]),
    k_tail=st.sampled_from([2, 4, 8]),
    boundary=st.integers(0, 30),
    batch=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_masked_equals_groupwise_property(k_head, k_tail, boundary, batch, seed):
    keras.utils.set_random_seed(seed)
    masked = MGQEEmbedding(
        30, 4, 2, num_centroids=[k_head, k_tail], tier_boundaries=[boundary]
    )
    masked.build()
    grouped = _twin(masked, "groupwise")
    ids = np.random.default_rng(seed).integers(0, 30, size=batch)
    np.testing.assert_array_equal(_codes(masked, ids), _codes(grouped, ids))


def test_set_row_tiers_changes_granularity_and_validates():
    layer = _layer("shared")
    layer.set_row_tiers(np.zeros(N, np.int32))  # everything in the head
    assert layer.tier_sizes() == [N, 0]
    assert layer.serving_bits() == sizes.mgqe_shared_bits([N, 0], DIM, 4, [32, 4])
    testing.assert_raises_naming(
        lambda: layer.set_row_tiers(np.zeros(N - 1, int)), "row_tiers"
    )
    testing.assert_raises_naming(
        lambda: layer.set_row_tiers(np.full(N, 2)), "row_tiers"
    )
    testing.assert_raises_naming(lambda: layer.set_row_tiers(np.zeros(N)), "row_tiers")


@pytest.mark.parametrize("variant", VARIANTS)
def test_task_gradient_reaches_queries_unchanged_and_not_centroids(variant):
    layer = _layer(variant)
    ids = np.array([0, 0, 9, 49])
    grads = testing.gradients(layer, ids)
    weights = tf.random.stateless_normal((4, DIM), seed=[0, 1]).numpy()
    expected = np.zeros((N, DIM), np.float32)
    np.add.at(expected, ids, weights)
    np.testing.assert_allclose(grads["embeddings"], expected, atol=1e-6)
    for name, grad in grads.items():
        if name.startswith("centroids"):
            np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_regulariser_reaches_only_the_chosen_centroids_of_the_tier(variant):
    layer = _layer(variant)
    ids = np.array([1, 20, 30])  # one head id, two tail ids
    tables = layer.centroid_tables()
    with tf.GradientTape() as tape:
        layer(ids)
        loss = tf.add_n(layer.losses)
    grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, tables)]
    codes = layer.compute_codes()[ids]
    tiers = layer.row_tier.numpy()[ids]
    touched = [set() for _ in tables]
    for n in range(3):
        t = tiers[n]
        table = 0 if len(tables) == 1 else t
        for j in range(layer.tier_num_subspaces[t]):
            touched[table].add((j, codes[n, j] + layer.tier_centroid_offsets[t]))
    for g, expect in zip(grads, touched, strict=True):
        got = {
            (int(j), int(k))
            for j, k in zip(*np.nonzero(np.any(g != 0, axis=-1)), strict=True)
        }
        assert got == expect


def test_unshared_k_tables_are_disjoint():
    layer = _layer("unshared_k")
    assert layer.centroids.shape == (4, 36, 2)
    assert layer.tier_centroid_offsets == [0, 32]
    layer.embeddings.assign(
        np.random.default_rng(8).normal(size=(N, DIM)).astype(np.float32)
    )
    codes = layer.compute_codes()
    arrays = layer.export_compact()
    tail = layer.row_tier.numpy() == 1
    # tail rows decode from columns 32..35 only
    out = layer.compact_lookup(arrays, np.flatnonzero(tail)).reshape(-1, 4, 2)
    c = layer.centroids.numpy()
    np.testing.assert_array_equal(out, c[np.arange(4)[None], codes[tail] + 32])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lookup", ["masked", "groupwise"])
def test_compact_export_matches_every_id(variant, lookup):
    layer = _layer(variant, lookup)
    layer.set_row_tiers(np.random.default_rng(9).integers(0, 2, size=N))
    ids = np.arange(N)
    expected = layer(ids, training=False).numpy()
    arrays = layer.export_compact()
    np.testing.assert_allclose(layer.compact_lookup(arrays, ids), expected, atol=1e-6)
    np.testing.assert_array_equal(arrays["row_tier"], layer.row_tier.numpy())
    assert compact_serving_bits(arrays) == layer.serving_bits()
    for packed in (False, True):
        serve = CompactCodebookEmbedding.from_arrays(arrays, packed=packed)
        np.testing.assert_allclose(serve(ids).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_compact_matches_after_batchnorm_training_and_save_load(variant, tmp_path):
    layer = _layer(variant, response_batchnorm=True)
    for _ in range(3):
        layer(np.arange(N), training=True)
    ids = np.arange(N)
    expected = layer(ids, training=False).numpy()
    arrays = layer.export_compact()
    np.testing.assert_allclose(layer.compact_lookup(arrays, ids), expected, atol=1e-6)
    serve = CompactCodebookEmbedding.from_arrays(arrays, packed=True)
    reloaded = testing.assert_keras_save_round_trip(serve, ids, tmp_path)
    np.testing.assert_allclose(reloaded(ids).numpy(), expected, atol=1e-6)


def test_serving_bits_per_variant():
    shared, unshared_k, unshared_d = (_layer(v) for v in VARIANTS)
    assert shared.serving_bits() == 5 * 4 * 5 + 45 * 4 * 2 + 32 * 32 * DIM
    assert unshared_k.serving_bits() == 5 * 4 * 5 + 45 * 4 * 2 + 32 * DIM * 36
    assert unshared_d.serving_bits() == 5 * 4 * 4 + 45 * 2 * 4 + 32 * 16 * DIM * 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_and_keras_round_trip(variant, tmp_path):
    layer = _layer(variant, lookup="groupwise")
    layer.set_row_tiers(np.random.default_rng(10).integers(0, 2, size=N))
    testing.assert_config_round_trip(layer)
    reloaded = testing.assert_keras_save_round_trip(
        layer, np.array([[1, 2], [30, 49]]), tmp_path
    )
    restored = next(x for x in reloaded.layers if isinstance(x, MGQEEmbedding))
    np.testing.assert_array_equal(restored.row_tier.numpy(), layer.row_tier.numpy())


def test_fit_with_groupwise_lookup():
    layer = _layer("shared", lookup="groupwise")
    inputs = keras.Input(shape=(), dtype="int32")
    model = keras.Model(
        inputs, keras.layers.Dense(1, activation="sigmoid")(layer(inputs))
    )
    model.compile(optimizer=keras.optimizers.Adagrad(0.1), loss="binary_crossentropy")
    before = layer.centroids.numpy().copy()
    x = np.arange(0, N, 5, dtype=np.int32)
    model.fit(
        x, (x % 2).astype(np.float32), batch_size=4, epochs=1, verbose=0, shuffle=False
    )
    assert not np.allclose(layer.centroids.numpy(), before)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(num_centroids=[4, 32]), "num_centroids"),
        (dict(num_centroids=[2**16 + 1, 4]), "num_centroids"),
        (dict(num_centroids=[16, 1]), "num_centroids"),
        (dict(num_subspaces=3), "num_subspaces"),
        (dict(variant="dense"), "variant"),
        (dict(lookup="loop"), "lookup"),
        (dict(lookup="groupwise", response_batchnorm=True), "lookup"),
        (dict(tier_boundaries=[60]), "tier_boundaries"),
        (dict(tier_boundaries=[1, 2]), "tier_boundaries"),
        (dict(num_subspaces_per_tier=[4, 2]), "num_subspaces_per_tier"),
        (dict(variant="unshared_d", num_centroids=[16]), "num_subspaces_per_tier"),
        (
            dict(
                variant="unshared_d",
                num_subspaces_per_tier=[2, 4],
                num_subspaces=2,
                num_centroids=[16],
            ),
            "num_subspaces_per_tier",
        ),
        (
            dict(
                variant="unshared_d", num_subspaces_per_tier=[4, 3], num_centroids=[16]
            ),
            "num_subspaces_per_tier",
        ),
        (dict(variant="unshared_d", num_subspaces_per_tier=[4, 2]), "num_centroids"),
        (
            dict(
                variant="unshared_d", num_subspaces_per_tier=[8, 2], num_centroids=[16]
            ),
            "num_subspaces",
        ),
    ],
)
def test_invalid_config_names_argument(kwargs, argument):
    args = dict(num_rows=N, output_dim=DIM, num_subspaces=4, num_centroids=[32, 4])
    args.update(kwargs)
    testing.assert_raises_naming(lambda: MGQEEmbedding(**args), argument)
