"""NeuMF: the MLP tower, four compressed tables, shapes, learning."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.models import planted_pairs
from trainer.config import EmbeddingConfig, TrainerConfig
from trainer.data.samples import prepare_task
from trainer.data.sequences import from_pairs
from trainer.evaluation import ranking
from trainer.models.factory import build_ranking_model
from trainer.models.neumf import MLPTower, NeuMF


def test_mgqe_sizes_pyramid_with_d_64():
    model = NeuMF(10, 12, {"kind": "full", "dim": 64}, hidden_units=(64, 32, 16))
    shapes = [tuple(layer.kernel.shape) for layer in model.mlp.dense_layers]
    assert shapes == [(128, 64), (64, 32), (32, 16)]
    assert tuple(model.prediction.kernel.shape) == (64 + 16, 1)
    table_ids = {id(w) for t in model.embedding_tables().values() for w in t.weights}
    dense = sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in table_ids)
    assert dense == 128 * 64 + 64 + 64 * 32 + 32 + 32 * 16 + 16 + 80 + 1


def test_tower_equals_dense_layers_on_the_concatenation():
    keras.utils.set_random_seed(0)
    tower = MLPTower((6, 3))
    rng = np.random.default_rng(0)
    user, items = (
        rng.normal(size=(2, 4)).astype("float32"),
        rng.normal(size=(5, 4)).astype("float32"),
    )
    got = keras.ops.convert_to_numpy(tower(user, items))
    assert got.shape == (2, 5, 3)
    concat = np.concatenate(
        [np.repeat(user[:, None], 5, axis=1), np.repeat(items[None], 2, axis=0)],
        axis=-1,
    )
    want = concat
    for layer in tower.dense_layers:
        want = keras.ops.convert_to_numpy(layer(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    per_user = keras.ops.convert_to_numpy(
        tower(user, np.repeat(items[None], 2, axis=0))
    )
    np.testing.assert_allclose(per_user, want, rtol=1e-5, atol=1e-6)


def test_shapes_and_call_matches_score_items():
    keras.utils.set_random_seed(0)
    model = NeuMF(7, 11, {"kind": "full", "dim": 8}, hidden_units=(8, 4, 2))
    users, items = np.array([0, 3, 6]), np.array([1, 10, 4])
    logits = keras.ops.convert_to_numpy(model({"user": users, "item": items}))
    full = keras.ops.convert_to_numpy(model.score_items(users, np.arange(11)))
    assert logits.shape == (3,) and full.shape == (3, 11)
    np.testing.assert_allclose(logits, full[[0, 1, 2], items], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["full", "lrf", "dpq", "mgqe", "hash"])
def test_all_four_tables_follow_the_config(kind):
    cfg = EmbeddingConfig(
        kind=kind,
        dim=8,
        rank=2,
        num_subspaces=4,
        hash_buckets=16,
        num_centroids=(16, 4) if kind == "mgqe" else (16,),
    )
    model = NeuMF(30, 20, cfg, hidden_units=(8, 4))
    tables = model.embedding_tables()
    assert set(tables) == {"gmf_user", "gmf_item", "mlp_user", "mlp_item"}
    assert len({type(t) for t in tables.values()}) == 1
    assert len({id(t) for t in tables.values()}) == 4
    out = model.score_items(np.array([0, 29]), np.arange(20))
    assert tuple(out.shape) == (2, 20)


def test_trained_neumf_beats_an_untrained_one_on_planted_groups():
    task = prepare_task(from_pairs(*planted_pairs()))
    cfg = TrainerConfig.from_dict(
        {
            "name": "neumf_test",
            "model": {
                "name": "neumf",
                "hidden_units": [16, 8],
                "embedding": {"kind": "full", "dim": 16},
            },
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "training": {"epochs": 2, "batch_size": 64, "seed": 0},
        }
    )
    keras.utils.set_random_seed(0)
    untrained = ranking.RankingEvaluator(task, "test").evaluate(
        build_ranking_model(cfg.model, task)
    )
    result = ranking.train_and_evaluate(cfg, task)
    assert result.test.hr > untrained.hr + 25.0
