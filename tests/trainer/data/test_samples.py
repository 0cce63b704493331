"""trainer.data.samples: frequency renumbering, negatives, and the ranking batch source."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.trainer.models import planted_pairs, tiny_ranking_config
from trainer.config import TrainerConfig
from trainer.data import samples as ranking_samples
from trainer.data.sequences import from_pairs


@pytest.fixture(scope="module")
def task() -> ranking_samples.RankingTask:
    return ranking_samples.prepare_task(from_pairs(*planted_pairs()))


def _cfg(name="gmf", kind="full", **training) -> TrainerConfig:
    return tiny_ranking_config(name, kind, **training)


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


@pytest.mark.parametrize("name", ["gmf", "sasrec"])
def test_ranking_batches_cover_each_epoch_and_repeat_from_the_seed(task, name):
    cfg = _cfg(name, epochs=2, batch_size=50)
    ds, steps = ranking_samples.ranking_batches(cfg, task)
    batches = list(ds)
    assert len(batches) == 2 * steps
    if name == "gmf":
        (features, labels), rows = batches[0], len(task.train_items) * 5
        assert set(features) == {"user", "item"} and labels.dtype == tf.float32
    else:
        rows = int(np.count_nonzero(np.diff(task.train_offsets) >= 2))
        assert [b.shape[1] for b in batches[0]] == [8, 8, 8]
    assert steps == -(-rows // 50)
    assert sum(int(tf.nest.flatten(b)[-1].shape[0]) for b in batches[:steps]) == rows
    again = list(ds)  # a second pass (a resumed run) sees the same stream
    for a, b in zip(batches, again, strict=True):
        for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
    first, second = tf.nest.flatten(batches[0]), tf.nest.flatten(batches[steps])
    assert not np.array_equal(first[-1].numpy(), second[-1].numpy())  # new negatives
