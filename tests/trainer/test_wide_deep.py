"""Tests of trainer.models.wide_deep.WideAndDeep on the tiny spec (every treatment)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import wide_deep_testing as wdt
from trainer.contracts.features import FeatureSpec, transformed_name
from trainer.layers.base import clip_ids_np
from trainer.models.wide_deep import WideAndDeep, dummy_inputs


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return wdt.tiny_spec()


@pytest.fixture(scope="module")
def batch(spec):
    return wdt.random_ids(spec, wdt.TINY_ROWS, 16, np.random.default_rng(3))


@pytest.fixture()
def model(spec):
    return wdt.make_model(spec)


def test_output_is_one_finite_logit_per_example(model, batch):
    logits = np.asarray(model(batch))
    assert logits.shape == (16,)
    assert np.all(np.isfinite(logits))
    assert np.ptp(logits) > 0  # the ids matter


def test_wide_and_deep_variables_partition_the_trainable_variables(model):
    wide = {id(v) for v in model.wide_variables}
    deep = {id(v) for v in model.deep_variables}
    trainable = {id(v) for v in model.trainable_variables}
    assert wide and deep
    assert not wide & deep
    assert wide | deep == trainable
    for name, table in model.wide_tables.items():
        assert {id(v) for v in table.trainable_variables} <= wide, name
    for name, layer in model.deep_embeddings.items():
        assert {id(v) for v in layer.trainable_variables} <= deep, name
    assert id(model.wide_bias) in wide


def _indicator_grads(layer, ids: np.ndarray) -> dict[str, np.ndarray]:
    """d(sum of logits)/d(table) of a 1-wide linear table: reads of each row."""
    cls = type(layer).__name__
    if cls in ("FullEmbedding", "HashingEmbedding"):
        rows = layer.num_rows if cls == "FullEmbedding" else layer.num_buckets
        counts = np.bincount(clip_ids_np(ids, rows).ravel(), minlength=rows)
        return {layer.weights[0].path: counts[:, None]}
    if cls == "DoubleHashingEmbedding":
        b = layer.num_buckets
        return {
            t.path: np.bincount(ids[:, i], minlength=b)[:, None]
            for i, t in enumerate(layer.tables)
        }
    assert cls == "HybridEmbedding", cls
    k, b = layer.dictionary_size, layer.hashed.num_buckets
    own = ids[:, 0] < k
    out = {layer.dictionary.path: np.bincount(ids[own, 0], minlength=k + 1)[:, None]}
    for i, t in enumerate(layer.hashed.tables):
        out[t.path] = np.bincount(ids[~own, i + 1], minlength=b)[:, None]
    return out


def test_wide_tables_get_gradient_only_through_the_linear_logit(model, batch):
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(model(batch))
    grads = tape.gradient(total, model.wide_variables)
    got = {
        v.path: tf.convert_to_tensor(g).numpy()
        for v, g in zip(model.wide_variables, grads, strict=True)
    }
    assert got.pop(model.wide_bias.path) == pytest.approx(16.0)
    expected = {}
    for name, table in model.wide_tables.items():
        expected.update(_indicator_grads(table, batch[transformed_name(name)]))
    assert set(got) == set(expected)
    for path, g in got.items():
        np.testing.assert_array_equal(g, expected[path], err_msg=path)


def test_zero_deep_logit_leaves_the_hand_computed_linear_model(model, batch):
    model.deep_logit.kernel.assign(np.zeros(model.deep_logit.kernel.shape, "float32"))
    model.deep_logit.bias.assign(np.zeros(model.deep_logit.bias.shape, "float32"))
    model.wide_bias.assign(0.25)
    expected = np.full(16, 0.25)
    for name, table in model.wide_tables.items():
        arrays = table.export_compact()
        expected += table.compact_lookup(arrays, batch[transformed_name(name)]).reshape(
            16
        )
    with tf.GradientTape() as tape:
        logits = model(batch)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-6, atol=1e-7)
    deep_only = [
        v for layer in model.deep_embeddings.values() for v in layer.trainable_variables
    ] + [v for dense in model.mlp for v in dense.trainable_variables]
    for v, g in zip(deep_only, tape.gradient(logits, deep_only), strict=True):
        assert g is None or not np.any(tf.convert_to_tensor(g).numpy()), v.path


def test_get_config_round_trip_reproduces_the_logits(model, batch, spec):
    config = model.get_config()
    clone = WideAndDeep.from_config(config)
    clone(dummy_inputs(spec))
    clone.set_weights(model.get_weights())
    assert clone.get_config() == config
    np.testing.assert_array_equal(np.asarray(clone(batch)), np.asarray(model(batch)))


def test_keras_file_round_trip_reproduces_the_logits(model, batch, tmp_path):
    import keras

    # A non-default MGQE tier assignment must survive saving too.
    mgqe = model.deep_embeddings["item_id"]
    mgqe.set_row_tiers(np.array([1, 0, 1, 1, 0, 1, 1, 1, 1], "int32"))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(batch)), np.asarray(model(batch)))
    np.testing.assert_array_equal(
        loaded.deep_embeddings["item_id"].row_tier.numpy(), mgqe.row_tier.numpy()
    )
    assert loaded.serving_bits() == model.serving_bits()


def test_mgqe_default_tiers_survive_building_the_model(model):
    mgqe = model.deep_embeddings["item_id"]
    np.testing.assert_array_equal(mgqe.row_tier.numpy(), [0, 0, 0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(mgqe.row_tier.numpy(), mgqe.default_row_tiers())


def test_a_loaded_model_names_its_weights_like_the_saved_one(model, tmp_path):
    """Warm start and checkpoints match weights by path."""
    import keras

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    assert "emb_user_id/dictionary" in {v.path for v in model.weights}


def test_serving_bits_by_hand(model):
    f = 32  # float bits
    deep = {
        "user_id": f * (3 + 1) * 4
        + 2 * f * 16 * 4,  # hybrid: (k+1) d + two B x d tables
        # MGQE shared: tiers [ceil(.25 * 9) = 3, 6] rows, D = 2, K = (8, 4);
        # codes + centroids
        "item_id": 3 * 2 * 3 + 6 * 2 * 2 + f * 8 * 4,
        "publisher": f * 16 * 4,
        "category": 2 * f * 8 * 4,
        "device": f * 5 * 2,
        "country": 5 * 2 * 2 + f * 4 * 4,  # DPQ: n D log2(K) + 32 K d
        "price": f * 5 * 16,  # bucketized, default embedding_dim 16
    }
    wide = {
        "user_id": f * 4 + 2 * f * 16,
        "item_id": f * 9,
        "publisher": f * 16,
        "category": 2 * f * 8,
        "device": f * 5,
        "country": f * 5,
        "price": f * 5,
        "device_x_country": f * 32,
    }
    mlp_in = 4 + 4 + 4 + 4 + 2 + 4 + 16 + 1  # embeddings + raw position
    dense = (
        (mlp_in * 8 + 8) + (8 * 4 + 4) + (4 + 1) + 1
    )  # hidden, deep logit, wide bias
    for name, bits in deep.items():
        assert model.deep_embeddings[name].serving_bits() == bits, name
    for name, bits in wide.items():
        assert model.wide_tables[name].serving_bits() == bits, name
    assert model.serving_bits() == sum(deep.values()) + sum(wide.values()) + f * dense
    assert model.serving_bits() == 28734


_LAYER_OF = {
    "full": "FullEmbedding",
    "hash": "HashingEmbedding",
    "double_hash": "DoubleHashingEmbedding",
    "hybrid": "HybridEmbedding",
    "dpq": "DPQEmbedding",
    "mgqe": "MGQEEmbedding",
    "bucketized": "FullEmbedding",
    "numeric": None,
}


@pytest.mark.parametrize("treatment", sorted(_LAYER_OF))
def test_every_treatment_builds_and_trains_a_step(treatment):
    numeric = treatment in ("bucketized", "numeric")
    feature = {
        "name": "x",
        "treatment": treatment,
        "embedding_dim": 4,
        "top_k": 5,
        "hash_buckets": 8,
        "num_subspaces": 2,
        "num_centroids": [4, 2],
    }
    if treatment == "dpq":
        feature["num_centroids"] = [4]
    if numeric:
        feature = {
            "name": "x",
            "kind": "numeric",
            "treatment": treatment,
            "num_buckets": 3,
        }
    spec = FeatureSpec.from_dict(
        {
            "name": f"one_{treatment}",
            "features": [
                {"name": "d", "treatment": "full", "embedding_dim": 2, "top_k": 3},
                feature,
            ],
        }
    )
    rows = {"d": 4, "x": 6 if not numeric else 4}
    if treatment in ("hash", "double_hash"):
        rows["x"] = 8
    model = wdt.make_model(spec, rows, hidden_units=(4,))
    layer = model.deep_embeddings.get("x")
    assert (type(layer).__name__ if layer is not None else None) == _LAYER_OF[treatment]
    batch = wdt.random_ids(spec, rows, 8, np.random.default_rng(0))
    with tf.GradientTape() as tape:
        logits = model(batch, training=True)
        loss = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(tf.ones(8), logits)
        )
        loss += sum(model.losses)  # DPQ/MGQE centroids learn through their regulariser
    grads = tape.gradient(loss, model.trainable_variables)
    assert logits.shape == (8,) and np.all(np.isfinite(np.asarray(logits)))
    missing = [
        v.path
        for v, g in zip(model.trainable_variables, grads, strict=True)
        if g is None
    ]
    assert not missing
