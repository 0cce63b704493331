"""SASRec: causality, padding, the shared item table, parameter count, learning."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.models import planted_pairs
from trainer.config import TrainerConfig
from trainer.data.samples import prepare_task
from trainer.data.sequences import from_pairs
from trainer.evaluation import ranking
from trainer.models.factory import build_ranking_model
from trainer.models.sasrec import CausalSelfAttention, SASRec
from trainer.training import losses

FULL = {"kind": "full", "dim": 8}
MGQE = {"kind": "mgqe", "dim": 8, "num_subspaces": 4, "num_centroids": [16, 4]}


def _model(embedding=FULL, dropout_free: bool = False) -> SASRec:
    keras.utils.set_random_seed(0)
    return SASRec(
        20, embedding, maxlen=6, num_blocks=2, dropout=0.0 if dropout_free else 0.2
    )


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_output_shapes():
    model = _model()
    seq = np.array([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    assert _np(model(seq)).shape == (2, 6, 8)
    assert _np(model.score_items(seq, np.arange(1, 21))).shape == (2, 20)
    assert _np(model.score_items(seq, np.array([[1, 2, 3], [4, 5, 6]]))).shape == (2, 3)
    pos_logits, neg_logits = model.train_logits(seq, seq, seq)
    assert _np(pos_logits).shape == (2, 6) and _np(neg_logits).shape == (2, 6)


@pytest.mark.parametrize("embedding", [FULL, MGQE], ids=["full", "mgqe"])
def test_position_t_does_not_see_later_items(embedding):
    model = _model(embedding)
    a = _np(model(np.array([[0, 2, 3, 4, 5, 6]])))
    b = _np(model(np.array([[0, 2, 3, 9, 11, 1]])))
    np.testing.assert_allclose(a[:, :3], b[:, :3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[:, 3:], b[:, 3:])


@pytest.mark.parametrize("embedding", [FULL, MGQE], ids=["full", "mgqe"])
def test_padding_row_is_zero(embedding):
    model = _model(embedding)
    np.testing.assert_array_equal(_np(model.embed_items(np.array([0, 0]))), 0.0)
    assert np.abs(_np(model.embed_items(np.array([1])))).sum() > 0


def test_attention_ignores_padding_keys_and_zeroes_padding_queries():
    keras.utils.set_random_seed(0)
    att = CausalSelfAttention(4, dropout=0.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 4)).astype("float32")
    junk = x.copy()
    junk[:, :2] = rng.normal(size=(1, 2, 4)) * 100  # padding positions 0, 1
    mask = np.array([[0, 0, 1, 1, 1]], "float32")
    a, b = _np(att(x, x, mask)), _np(att(x, junk, mask))
    np.testing.assert_allclose(a[:, 2:], b[:, 2:], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(a[:, :2], 0.0)


def test_padding_positions_do_not_affect_the_loss():
    model = _model(dropout_free=True)
    seq = np.array([[0, 0, 3, 4, 5, 6]])
    pos = np.array([[0, 0, 4, 5, 6, 7]])
    neg = np.array([[0, 0, 9, 9, 9, 9]])
    loss = _np(losses.sequence_loss(model, (seq, pos, neg)))
    junk = _np(
        losses.sequence_loss(model, (seq, pos, np.array([[17, 18, 9, 9, 9, 9]])))
    )
    np.testing.assert_allclose(loss, junk, rtol=1e-6)
    p, n = (_np(x) for x in model.train_logits(seq, pos, neg, training=False))
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    want = (softplus(-p[:, 2:]) + softplus(n[:, 2:])).mean()
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_one_item_table_scores_input_and_output():
    model = _model(MGQE)
    assert list(model.embedding_tables()) == ["item"]
    seq = np.array([[0, 1, 2, 3, 4, 5]])
    last = _np(model(seq))[:, -1]
    items = _np(model.embed_items(np.arange(1, 21)))
    np.testing.assert_allclose(
        _np(model.score_items(seq, np.arange(1, 21))),
        last @ items.T,
        rtol=1e-4,
        atol=1e-6,
    )


def test_dense_parameters_of_the_mgqe_configuration():
    model = SASRec(
        100, {"kind": "full", "dim": 64}, maxlen=50, num_blocks=2, dropout=0.2
    )
    table = {id(w) for w in model.item_embedding.weights}
    dense = sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in table)
    assert dense == 45_440  # d=64, 2 blocks, maxlen 50 (as in Kang et al. 2020)


def test_config_round_trip_and_one_head_only():
    model = _model(MGQE)
    restored = SASRec.from_config(model.get_config())
    assert restored.get_config() == model.get_config()
    with pytest.raises(ValueError, match="num_heads"):
        SASRec(5, FULL, num_heads=2)


def test_trained_sasrec_beats_an_untrained_one_on_planted_groups():
    task = prepare_task(from_pairs(*planted_pairs()))
    cfg = TrainerConfig.from_dict(
        {
            "name": "sasrec_test",
            "model": {
                "name": "sasrec",
                "maxlen": 10,
                "dropout": 0.2,
                "embedding": {"kind": "full", "dim": 16},
            },
            "optimizer": {"name": "adam", "learning_rate": 0.01, "beta_2": 0.98},
            "training": {"epochs": 5, "batch_size": 16, "seed": 0},
        }
    )
    keras.utils.set_random_seed(0)
    untrained = ranking.RankingEvaluator(task, "test").evaluate(
        build_ranking_model(cfg.model, task)
    )
    result = ranking.train_and_evaluate(cfg, task, eval_every=5)
    assert result.test.hr > untrained.hr + 25.0
