"""trainer.data.samples (renumbering, negatives) and trainer.training.ranking (full ranking,
model size, training)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.models import planted_pairs
from trainer.config import EmbeddingConfig, TrainerConfig
from trainer.data import samples as ranking_samples
from trainer.data.sequences import from_pairs
from trainer.models.gmf import GMF
from trainer.models.neumf import NeuMF
from trainer.models.sasrec import SASRec
from trainer.serving import sizes
from trainer.training import ranking

ML1M_USERS, ML1M_ITEMS = 6040, 3416


@pytest.fixture(scope="module")
def task() -> ranking_samples.RankingTask:
    return ranking_samples.prepare_task(from_pairs(*planted_pairs()))


def _cfg(name="gmf", kind="full", **training) -> TrainerConfig:
    return TrainerConfig.from_dict(
        {
            "name": f"{name}_{kind}",
            "model": {
                "name": name,
                "hidden_units": [8, 4],
                "maxlen": 8,
                "embedding": {
                    "kind": kind,
                    "dim": 8,
                    "num_subspaces": 4,
                    "num_centroids": [16, 4] if kind == "mgqe" else [16],
                },
            },
            "optimizer": {"learning_rate": 0.01},
            "training": {"epochs": 2, "batch_size": 64, "seed": 0, **training},
        }
    )


# ------------------------------------------------------------------------------ data


def test_prepare_task_orders_by_training_frequency_and_keeps_sequences():
    data = from_pairs(
        [1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], [5, 2, 9, 7, 2, 5, 1, 2, 9, 4, 1, 3]
    )
    t = ranking_samples.prepare_task(data)
    counts = np.bincount(t.train_items, minlength=t.num_items)
    assert np.all(np.diff(counts) <= 0)  # row 0 is the most frequent item
    assert t.item_ids[0] == 2  # item 2 is in all three training sequences
    assert t.user_ids.tolist() == [3, 1, 2]  # 3 training items, then 2, 2 (stable)
    for row, user in enumerate(t.user_ids):
        np.testing.assert_array_equal(
            t.item_ids[t.train_sequence(row)], data.train_sequence(user)
        )
        assert t.item_ids[t.valid[row]] == data.valid[user]
        assert t.item_ids[t.test[row]] == data.test[user]


def test_negatives_are_never_interacted_items_and_are_seeded(task):
    users, _ = task.train_pairs()
    keys = task.interaction_keys()
    neg = ranking_samples.sample_negatives(
        np.random.default_rng(3), users, task.num_items, keys, 4
    )
    assert neg.shape == (len(users), 4)
    assert not np.isin(users[:, None] * task.num_items + neg, keys).any()
    again = ranking_samples.sample_negatives(
        np.random.default_rng(3), users, task.num_items, keys, 4
    )
    np.testing.assert_array_equal(neg, again)
    # Uniform over the allowed items: every non-interacted item of user 0 shows up.
    many = ranking_samples.sample_negatives(
        np.random.default_rng(0), np.zeros(5000, np.int64), task.num_items, keys, 1
    )
    allowed = np.setdiff1d(np.arange(task.num_items), task.train_sequence(0))
    np.testing.assert_array_equal(np.unique(many), allowed)


def test_negatives_refuse_a_user_who_saw_everything():
    keys = np.arange(3)  # user 0 interacted with items 0, 1, 2 of 3
    with pytest.raises(ValueError, match="every item"):
        ranking_samples.sample_negatives(
            np.random.default_rng(0), np.array([0]), 3, keys, 1
        )


def test_pointwise_examples_have_four_fresh_negatives_per_positive(task):
    rng = np.random.default_rng(0)
    users, items, labels = ranking_samples.pointwise_examples(task, rng, 4)
    n_pos = len(task.train_items)
    assert len(users) == 5 * n_pos and labels.sum() == n_pos
    keys = task.interaction_keys()
    seen = np.isin(users * task.num_items + items, keys)
    np.testing.assert_array_equal(seen, labels == 1)
    _, items2, _ = ranking_samples.pointwise_examples(task, rng, 4)
    assert not np.array_equal(items, items2)  # redrawn every epoch


def test_sequence_examples_predict_the_next_item(task):
    users, seq, pos = ranking_samples.sequence_examples(task, maxlen=8)
    row = 0
    train = task.train_sequence(int(users[row])) + 1
    np.testing.assert_array_equal(seq[row][seq[row] > 0], train[:-1][-8:])
    np.testing.assert_array_equal(pos[row][pos[row] > 0], train[1:][-8:])
    neg = ranking_samples.sequence_negatives(np.random.default_rng(0), task, users, pos)
    assert np.all((neg == 0) == (pos == 0))
    for r, u in enumerate(users):
        assert not np.isin(neg[r][neg[r] > 0] - 1, task.train_sequence(int(u))).any()


# ----------------------------------------------------------------------- evaluation


def _constant_item_scores(task: ranking_samples.RankingTask, scores: np.ndarray) -> GMF:
    """A GMF whose logit for (u, i) is ``scores[i]`` for every user."""
    model = GMF(task.num_users, task.num_items, {"kind": "full", "dim": 2})
    model.user_embedding.embeddings.assign(np.ones((task.num_users, 2)))
    item_table = np.zeros((task.num_items, 2))
    item_table[:, 0] = scores
    model.item_embedding.embeddings.assign(item_table)
    model.prediction.kernel.assign([[1.0], [0.0]])
    model.prediction.bias.assign([0.0])
    return model


def test_full_ranking_excludes_training_items_and_at_test_the_valid_item(task):
    rng = np.random.default_rng(0)
    scores = rng.permutation(task.num_items).astype("float32")
    model = _constant_item_scores(task, scores)
    for split in ("valid", "test"):
        ev = ranking.RankingEvaluator(task, split)
        ranks = ev.ranks(model)
        for row, u in enumerate(ev.users):
            target = task.valid[u] if split == "valid" else task.test[u]
            excluded = set(task.train_sequence(int(u)).tolist())
            if split == "test":
                excluded.add(int(task.valid[u]))
            beats = [
                i
                for i in range(task.num_items)
                if i != target and i not in excluded and scores[i] >= scores[target]
            ]
            assert ranks[row] == len(beats)


def test_top_scored_target_ranks_first_and_ties_count_against_it(task):
    scores = np.zeros(task.num_items, "float32")
    ev = ranking.RankingEvaluator(task, "valid")
    top = task.valid[ev.users[0]]
    scores[top] = 1.0
    model = _constant_item_scores(task, scores)
    ranks = ev.ranks(model)
    hit = ev.targets == top
    np.testing.assert_array_equal(ranks[hit], 0)
    # Every other target ties with (or loses to) all 60 - 1 - 10 non-excluded items.
    np.testing.assert_array_equal(ranks[~hit], task.num_items - 1 - 10)
    m = ev.evaluate(model)
    assert m.hr == pytest.approx(100.0 * hit.mean()) and m.ndcg == pytest.approx(m.hr)


@pytest.mark.parametrize(
    "protocol,width", [("sampled_ncf", 100), ("sampled_sasrec", 101)]
)
def test_sampled_protocols(protocol, width):
    task = ranking_samples.prepare_task(
        from_pairs(*planted_pairs(num_users=40, num_items=160))
    )
    ev = ranking.RankingEvaluator(task, "test", protocol=protocol, seed=1)
    assert ev.candidates.shape == (len(ev.users), width)
    np.testing.assert_array_equal(ev.candidates[:, 0], ev.targets)
    for row, u in enumerate(ev.users):  # negatives avoid at least the training items
        assert not np.isin(ev.candidates[row, 1:], task.train_sequence(int(u))).any()
    keras.utils.set_random_seed(0)
    m = ev.evaluate(GMF(task.num_users, task.num_items, {"kind": "full", "dim": 4}))
    assert 0.0 <= m.ndcg <= m.hr <= 100.0 and m.num_users == len(ev.users)


def test_sasrec_is_scored_on_shifted_ids_with_the_valid_item_appended_at_test(task):
    ev = ranking.RankingEvaluator(task, "test")
    model = SASRec(task.num_items, {"kind": "full", "dim": 4}, maxlen=5, num_blocks=1)
    ctx = ev._context(model, slice(0, 1))
    u = ev.users[0]
    assert ctx[0, -1] == task.valid[u] + 1
    np.testing.assert_array_equal(
        ctx[0, :-1][ctx[0, :-1] > 0], task.train_sequence(int(u))[-4:] + 1
    )
    assert ev.scores(model, slice(0, 3)).shape == (3, task.num_items)


# ------------------------------------------------------------------------- model size


def _size(model_cls, kind: str, **kw) -> float:
    cfg = EmbeddingConfig(kind=kind, **kw)
    return ranking.model_size(model_cls(ML1M_USERS, ML1M_ITEMS, cfg), cfg).percent


def test_model_size_of_gmf_matches_algorithms_2_5():
    assert _size(GMF, "full") == 100.0
    dpq = _size(GMF, "dpq", num_subspaces=64, num_centroids=(256,))
    want = sizes.model_size_percent(
        [
            sizes.dpq_bits(ML1M_USERS, 64, 64, 256),
            sizes.dpq_bits(ML1M_ITEMS, 64, 64, 256),
        ],
        65,
        [sizes.full_bits(ML1M_USERS, 64), sizes.full_bits(ML1M_ITEMS, 64)],
    )
    assert dpq == pytest.approx(want) and round(dpq, 2) == 30.42
    assert round(_size(GMF, "sq", bits=8), 2) == 25.05
    assert round(_size(GMF, "lrf", rank=48), 2) == 76.02
    assert (
        round(_size(GMF, "mgqe", num_subspaces=64, num_centroids=(256, 64)), 2) == 24.80
    )
    assert _size(GMF, "mgqe", num_subspaces=64, num_centroids=(256, 16)) <= 21.0


def test_model_size_counts_dense_weights_and_only_compressed_tables():
    cfg = EmbeddingConfig(
        kind="dpq", dim=8, num_subspaces=4, num_centroids=(16,), compress_users=False
    )
    model = NeuMF(30, 20, cfg, hidden_units=(8, 4))
    size = ranking.model_size(model, cfg)
    assert size.dense_params == 16 * 8 + 8 + 8 * 4 + 4 + 12 + 1
    assert size.table_bits["gmf_user"] == sizes.full_bits(30, 8)
    assert size.table_bits["gmf_item"] == sizes.dpq_bits(20, 8, 4, 16)
    assert size.serving_bits == sum(size.table_bits.values()) + 32 * size.dense_params


def test_serving_tables_quantizes_sq_tables_and_restores_them(task):
    cfg = EmbeddingConfig(kind="sq", dim=8, bits=2)
    keras.utils.set_random_seed(0)
    model = GMF(task.num_users, task.num_items, cfg)
    before = keras.ops.convert_to_numpy(model.item_embedding.embeddings).copy()
    with ranking.serving_tables(model, cfg):
        inside = keras.ops.convert_to_numpy(model.item_embedding.embeddings)
        assert max(len(np.unique(inside[:, j])) for j in range(8)) <= 4
        assert not np.array_equal(inside, before)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.item_embedding.embeddings), before
    )


# ----------------------------------------------------------------------- training loop


def test_training_is_deterministic_and_selects_on_valid(task):
    a = ranking.train_and_evaluate(_cfg(epochs=3), task)
    b = ranking.train_and_evaluate(_cfg(epochs=3), task)
    assert [h.loss for h in a.history] == [h.loss for h in b.history]
    assert (a.test.hr, a.test.ndcg) == (b.test.hr, b.test.ndcg)
    best = max(a.history, key=lambda h: (h.valid.ndcg, h.valid.hr, -h.epoch))
    assert a.best_epoch == best.epoch and a.test == best.test and a.valid == best.valid
    assert a.size_percent == 100.0 and a.method == "full" and a.model == "gmf"


def test_max_steps_and_eval_every(task):
    logs = []
    result = ranking.train_and_evaluate(
        _cfg(epochs=5, max_steps=3), task, eval_every=2, on_epoch=logs.append
    )
    assert len(logs) == 1 and logs[0].valid is not None  # 3 steps < one epoch
    result = ranking.train_and_evaluate(
        _cfg(epochs=3), task, eval_every=2, on_epoch=logs.append
    )
    assert [h.valid is not None for h in result.history] == [False, True, True]


@pytest.mark.parametrize(
    "name,kind", [("gmf", "mgqe"), ("neumf", "dpq"), ("sasrec", "mgqe")]
)
def test_codebook_methods_train_with_their_regulariser(task, name, kind):
    result = ranking.train_and_evaluate(_cfg(name, kind, epochs=1), task)
    assert result.history[0].reg_loss > 0
    assert result.size_percent < 100.0
    assert 0.0 <= result.test.hr <= 100.0
