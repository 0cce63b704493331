"""SASRec-format sequences: the real ml-1m.txt, leave-last-two-out, the helpers."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from trainer.data import sequences as ranking_data
from trainer.data.sequences import SequenceFormatError


@pytest.fixture(scope="module")
def ml1m(shared_data) -> ranking_data.SequenceData:
    return ranking_data.load_sasrec(str(shared_data / "ml-1m" / "ml-1m.txt"))


@pytest.fixture(scope="module")
def ml1m_lists(shared_data) -> dict[int, list[int]]:
    """The file read independently in plain Python, like SASRec's data_partition."""
    seqs: dict[int, list[int]] = collections.defaultdict(list)
    with open(shared_data / "ml-1m" / "ml-1m.txt") as f:
        for line in f:
            u, i = line.split()
            seqs[int(u)].append(int(i))
    return seqs


def test_real_file_sizes(ml1m):
    assert (ml1m.num_users, ml1m.num_items, ml1m.num_actions) == (6040, 3416, 999_611)
    assert ml1m.train_offsets.shape == (6042,)
    assert np.count_nonzero(ml1m.test) == np.count_nonzero(ml1m.valid) == 6040
    users, items = ml1m.train_pairs()
    assert len(users) == len(items) == 999_611 - 2 * 6040
    assert users.min() == 1 and items.min() >= 1 and items.max() <= 3416


def test_real_file_split_matches_plain_python(ml1m, ml1m_lists):
    for u in (1, 2, 777, 6040):
        seq = ml1m_lists[u]
        assert ml1m.train_sequence(u).tolist() == seq[:-2]
        assert (ml1m.valid[u], ml1m.test[u]) == (seq[-2], seq[-1])
    users, items = ml1m.train_pairs()
    assert items[users == 777].tolist() == ml1m_lists[777][:-2]


def test_split_rules_for_short_histories():
    data = ranking_data.from_pairs([3, 1, 1, 3, 3, 1, 1, 2], [9, 1, 2, 8, 7, 3, 4, 5])
    assert (data.num_users, data.num_items, data.num_actions) == (3, 9, 8)
    assert data.train_sequence(1).tolist() == [1, 2]
    assert (data.valid[1], data.test[1]) == (3, 4)
    assert data.train_sequence(2).tolist() == [5] and data.valid[2] == data.test[2] == 0
    assert data.train_sequence(3).tolist() == [9]  # order within a user is kept
    assert (data.valid[3], data.test[3]) == (8, 7)
    assert data.train_sequence(0).tolist() == []
    users, items = data.train_pairs()
    assert list(zip(users.tolist(), items.tolist(), strict=True)) == [
        (1, 1),
        (1, 2),
        (2, 5),
        (3, 9),
    ]


def test_user_with_two_actions_keeps_both_in_train():
    data = ranking_data.from_pairs([1, 1], [4, 5])
    assert data.train_sequence(1).tolist() == [4, 5] and data.test[1] == 0


def test_padded_sequences():
    data = ranking_data.from_pairs([1] * 5 + [2], [1, 2, 3, 4, 5, 6])
    seqs = data.padded_sequences(2)
    assert seqs.tolist() == [[0, 0], [2, 3], [0, 6]]  # train of user 1: 1, 2, 3
    assert data.padded_sequences(4, include_valid=True)[1].tolist() == [1, 2, 3, 4]


def test_eval_candidates_exclude_seen(ml1m):
    users, cands = ml1m.eval_candidates("test", num_negatives=100, seed=3)
    assert users.shape == (6040,) and cands.shape == (6040, 101)
    assert (cands[:, 0] == ml1m.test[users]).all()
    for row in (0, 1234, 6039):
        u, negatives = users[row], cands[row, 1:]
        assert len(set(negatives.tolist())) == 100
        assert not np.isin(negatives, ml1m.seen_items(int(u))).any()
        assert negatives.min() >= 1 and negatives.max() <= ml1m.num_items


def test_eval_candidates_are_seeded():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 51), 6)
    data = ranking_data.from_pairs(users, rng.integers(1, 500, size=len(users)))
    cands = data.eval_candidates("valid", num_negatives=20, seed=3)[1]
    assert (cands[:, 0] == data.valid[1:]).all()
    again = data.eval_candidates("valid", num_negatives=20, seed=3)[1]
    assert np.array_equal(cands, again)
    assert not np.array_equal(cands, data.eval_candidates("valid", 20, seed=4)[1])
    with pytest.raises(ValueError, match="'train'"):
        data.eval_candidates("train")


def test_eval_candidates_too_few_unseen_items():
    data = ranking_data.from_pairs([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="fewer than 5 unseen"):
        data.eval_candidates("test", num_negatives=5)


@pytest.mark.parametrize(
    "text,message",
    [
        ("1 2\n1 x\n", "line 2: expected 'user item'"),
        ("1 2\n1 2 3\n", "line 2"),
        ("1 2\n\n", "line 2"),
        ("0 2\n", "ids must be >= 1"),
    ],
)
def test_bad_files(tmp_path, text, message):
    path = tmp_path / "seq.txt"
    path.write_text(text)
    with pytest.raises(SequenceFormatError, match=message) as err:
        ranking_data.load_sasrec(str(path))
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        ranking_data.load_sasrec(str(tmp_path / "nope.txt"))
