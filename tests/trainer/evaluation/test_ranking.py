"""trainer.evaluation.ranking: full ranking and sampled protocols, and model selection
(train_and_evaluate with the one loop, evaluated from its epoch hook)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.trainer.models import planted_pairs, tiny_ranking_config
from trainer.config import TrainerConfig
from trainer.data import samples as ranking_samples
from trainer.data.sequences import from_pairs
from trainer.evaluation import ranking
from trainer.models.gmf import GMF
from trainer.models.sasrec import SASRec


@pytest.fixture(scope="module")
def task() -> ranking_samples.RankingTask:
    return ranking_samples.prepare_task(from_pairs(*planted_pairs()))


def _cfg(name="gmf", kind="full", **training) -> TrainerConfig:
    return tiny_ranking_config(name, kind, **training)


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


# ------------------------------------------------------------------ model selection


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
