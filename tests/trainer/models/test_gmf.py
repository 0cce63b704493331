"""GMF: shapes, scoring consistency, every embedding kind by config, learning."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.models import planted_pairs
from trainer.config import EmbeddingConfig, TrainerConfig
from trainer.data.samples import prepare_task
from trainer.data.sequences import from_pairs
from trainer.evaluation import ranking
from trainer.models.factory import build_ranking_model
from trainer.models.gmf import GMF
from trainer.training import losses

KINDS = ("full", "lrf", "sq", "dpq", "mgqe", "hash", "double_hash", "hybrid")


def _embedding(kind: str, dim: int = 8) -> EmbeddingConfig:
    return EmbeddingConfig(
        kind=kind,
        dim=dim,
        rank=3,
        num_subspaces=4,
        hash_buckets=16,
        num_centroids=(16, 4) if kind == "mgqe" else (16,),
    )


def test_shapes_and_call_matches_score_items():
    keras.utils.set_random_seed(0)
    model = GMF(7, 11, {"kind": "full", "dim": 4})
    users, items = np.array([0, 3, 6]), np.array([1, 10, 4])
    logits = model({"user": users, "item": items})
    assert tuple(logits.shape) == (3,)
    full = keras.ops.convert_to_numpy(model.score_items(users, np.arange(11)))
    assert full.shape == (3, 11)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(logits), full[[0, 1, 2], items], rtol=1e-5
    )
    per_user = model.score_items(users, np.array([[1, 2], [10, 0], [4, 4]]))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(per_user),
        full[[[0, 0], [1, 1], [2, 2]], [[1, 2], [10, 0], [4, 4]]],
        rtol=1e-5,
    )


def test_logit_is_h_dot_hadamard_plus_bias():
    model = GMF(2, 3, {"kind": "full", "dim": 2})
    model.user_embedding.embeddings.assign([[1.0, 2.0], [0.0, 1.0]])
    model.item_embedding.embeddings.assign([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    model.prediction.kernel.assign([[0.5], [-1.0]])
    model.prediction.bias.assign([0.25])
    got = model({"user": np.array([0]), "item": np.array([0])})
    # 0.5 * 1 * 3 - 1 * 2 * 4 + 0.25
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), [-6.25])


def test_embeddings_start_near_n_0_001_and_h_is_lecun_uniform():
    keras.utils.set_random_seed(0)
    model = GMF(2000, 1000, {"kind": "full", "dim": 64})
    table = keras.ops.convert_to_numpy(model.user_embedding.embeddings)
    assert abs(table.std() - 0.01) < 5e-4
    kernel = keras.ops.convert_to_numpy(model.prediction.kernel)
    assert np.abs(kernel).max() <= math.sqrt(3 / 64) + 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_every_embedding_kind_builds_and_every_table_trains(kind):
    keras.utils.set_random_seed(0)
    cfg = _embedding(kind)
    model = GMF(30, 20, cfg)
    tables = model.embedding_tables()
    assert set(tables) == {"user", "item"}
    for layer in tables.values():
        assert layer.num_rows in (30, 20) and layer.output_dim == 8
        assert layer.serving_bits() > 0
    before = {
        v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables
    }
    assert any("user_embedding" in p for p in before) and any(
        "item_embedding" in p for p in before
    )
    opt = keras.optimizers.Adam(0.01)
    users, items = tf.constant(np.arange(16) % 30), tf.constant(np.arange(16) % 20)
    labels = tf.constant((np.arange(16) % 2).astype("float32"))
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                losses.pointwise_bce(model, ({"user": users, "item": items}, labels))
            ) + sum(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    changed = {
        v.path
        for v in model.trainable_variables
        if not np.array_equal(before[v.path], keras.ops.convert_to_numpy(v))
    }
    assert any("user_embedding" in p for p in changed)
    assert any("item_embedding" in p for p in changed)
    assert any("prediction" in p for p in changed)


def test_mgqe_tiers_are_the_top_ten_percent_of_frequency_sorted_rows():
    model = GMF(40, 25, _embedding("mgqe"))
    assert model.item_embedding.tier_sizes() == [3, 22]  # ceil(2.5) head rows
    assert model.user_embedding.tier_sizes() == [4, 36]


def test_compress_users_off_keeps_a_full_user_table():
    cfg = EmbeddingConfig(
        kind="dpq", dim=8, num_subspaces=4, num_centroids=(16,), compress_users=False
    )
    model = GMF(30, 20, cfg)
    assert type(model.user_embedding).__name__ == "FullEmbedding"
    assert type(model.item_embedding).__name__ == "DPQEmbedding"


def test_trained_gmf_beats_an_untrained_one_on_planted_groups():
    task = prepare_task(from_pairs(*planted_pairs()))
    cfg = TrainerConfig.from_dict(
        {
            "name": "gmf_test",
            "model": {"name": "gmf", "embedding": {"kind": "full", "dim": 16}},
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "training": {"epochs": 2, "batch_size": 64, "seed": 0},
        }
    )
    keras.utils.set_random_seed(0)
    untrained = ranking.RankingEvaluator(task, "test").evaluate(
        build_ranking_model(cfg.model, task)
    )
    result = ranking.train_and_evaluate(cfg, task)
    # In-group ranking puts the target among few candidates; chance is ~17 %.
    assert result.test.hr > untrained.hr + 25.0
    assert result.test.hr > 45.0
