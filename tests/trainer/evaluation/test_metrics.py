"""Tests for trainer.evaluation.metrics: NumPy references vs sklearn, hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from trainer.evaluation import metrics

SEED = 1234


def _labels_and_probs(n: int = 400, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float64)
    p = np.clip(0.3 + 0.4 * (y - 0.3) + 0.2 * rng.standard_normal(n), 0.01, 0.99)
    return y, p


# --- log loss, RCE, AUC -------------------------------------------------------------


def test_log_loss_matches_sklearn_with_weights() -> None:
    y, p = _labels_and_probs()
    w = np.random.default_rng(SEED + 1).random(y.size)
    assert metrics.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert metrics.log_loss(y, p, w) == pytest.approx(
        skm.log_loss(y, p, sample_weight=w), rel=1e-12
    )


def test_log_loss_clips_extreme_predictions() -> None:
    # p = 0 for a positive would be infinite without clipping; clipped it is -log(1e-7).
    assert metrics.log_loss([1.0], [0.0]) == pytest.approx(-math.log(1e-7), rel=1e-9)


def test_rce_matches_sklearn_formula() -> None:
    y, p = _labels_and_probs()
    naive = skm.log_loss(y, np.full_like(p, y.mean()))
    expected = 100.0 * (1.0 - skm.log_loss(y, p) / naive)
    assert expected > 5.0  # a useful model
    assert metrics.relative_cross_entropy(y, p) == pytest.approx(expected, rel=1e-9)


def test_rce_closed_form_naive_entropy() -> None:
    ybar = 0.25
    expected = -(ybar * math.log(ybar) + (1 - ybar) * math.log(1 - ybar))
    assert metrics.naive_cross_entropy(ybar) == pytest.approx(expected, rel=1e-12)


def test_rce_of_naive_predictor_is_zero_and_bad_model_negative() -> None:
    y, p = _labels_and_probs()
    naive = np.full_like(p, y.mean())
    assert metrics.relative_cross_entropy(y, naive) == pytest.approx(0.0, abs=1e-9)
    assert metrics.relative_cross_entropy(y, 1.0 - p) < -10.0


def test_rce_uses_evaluated_set_mean_label() -> None:
    # A constant 0.5 prediction is the naive predictor only when the eval CTR is 0.5.
    y = np.array([1.0, 0.0, 1.0, 0.0])
    assert metrics.relative_cross_entropy(y, np.full(4, 0.5)) == pytest.approx(0.0)
    y_skewed = np.array([1.0, 0.0, 0.0, 0.0])
    assert metrics.relative_cross_entropy(y_skewed, np.full(4, 0.5)) < 0.0


def test_rce_from_logits_equals_probabilities() -> None:
    y, p = _labels_and_probs()
    logits = np.log(p / (1.0 - p))
    assert metrics.relative_cross_entropy(y, logits, from_logits=True) == pytest.approx(
        metrics.relative_cross_entropy(y, p), rel=1e-9
    )


def test_roc_auc_matches_sklearn_with_ties_and_weights() -> None:
    y, p = _labels_and_probs()
    tied = np.round(p, 1)  # many ties
    w = np.random.default_rng(SEED + 2).random(y.size)
    expected = skm.roc_auc_score(y, tied)
    assert metrics.roc_auc(y, tied) == pytest.approx(expected, abs=1e-12)
    assert metrics.roc_auc(y, tied, w) == pytest.approx(
        skm.roc_auc_score(y, tied, sample_weight=w), abs=1e-12
    )


def test_roc_auc_hand_case_and_single_class() -> None:
    # Positive scores {0.8, 0.4}, negatives {0.4, 0.1}: pairs won 3, tied 1 -> 3.5 / 4.
    assert metrics.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="both positive and negative"):
        metrics.roc_auc([1, 1], [0.2, 0.3])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=2, max_size=30
    ).filter(lambda rows: len({label for label, _ in rows}) == 2)
)
def test_roc_auc_property_matches_sklearn(rows: list[tuple[int, int]]) -> None:
    y = np.array([label for label, _ in rows])
    s = np.array([score for _, score in rows], np.float64)
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


# --- ranking -------------------------------------------------------------------------


def test_rank_hand_cases_ties_and_exclusion() -> None:
    scores = np.array(
        [
            [0.9, 0.5, 0.7, 0.1],  # target 1: beaten by 0.9 and 0.7 -> rank 2
            [0.5, 0.5, 0.1, 0.5],  # target 0: two ties count against it -> rank 2
            [0.9, 0.5, 0.7, 0.1],  # target 1 with 0 and 2 excluded -> rank 0
            [0.3, 0.3, 0.3, 0.3],  # constant model -> rank 3 (last)
        ]
    )
    mask = np.zeros_like(scores, bool)
    mask[2, [0, 2]] = True
    mask[1, 0] = True  # masking the target itself is ignored
    ranks = metrics.rank_of_target(scores, [1, 0, 1, 2], mask)
    np.testing.assert_array_equal(ranks, [2, 2, 0, 3])


def test_hit_rate_and_ndcg_hand_values() -> None:
    assert metrics.ndcg_at_k([0], 10) == pytest.approx(100.0)
    assert metrics.ndcg_at_k([9], 10) == pytest.approx(100.0 / math.log2(11))
    assert metrics.ndcg_at_k([9], 10) == pytest.approx(28.906, abs=1e-3)
    assert metrics.ndcg_at_k([10], 10) == 0.0
    assert metrics.hit_rate_at_k([0, 9, 10, 50], 10) == pytest.approx(50.0)
    assert metrics.ndcg_at_k([0, 1], 10) == pytest.approx(
        50.0 * (1.0 + 1.0 / math.log2(3))
    )


def test_constant_model_scores_zero() -> None:
    scores = np.zeros((5, 100))
    ranks = metrics.rank_of_target(scores, np.arange(5))
    assert metrics.hit_rate_at_k(ranks, 10) == 0.0
    assert metrics.ndcg_at_k(ranks, 10) == 0.0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(0, 10_000))
def test_rank_of_target_matches_loop_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(6, 7)).astype(np.float64)
    targets = rng.integers(0, 7, size=6)
    mask = rng.random((6, 7)) < 0.3
    expected = [
        sum(
            1
            for j in range(7)
            if j != t and not mask[u, j] and scores[u, j] >= scores[u, t]
        )
        for u, t in enumerate(targets)
    ]
    ranks = metrics.rank_of_target(scores, targets, mask)
    np.testing.assert_array_equal(ranks, expected)


def test_full_ranking_excludes_history_and_extra_items() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    # User 0: target 3, history {0, 1}, validation item 2 -> nothing left above it.
    # User 1: target 0, history {4}: items 1, 2, 3 beat it -> rank 3.
    ranks = metrics.full_ranking_ranks(scores, [3, 0], [[0, 1], [4]], [[2], []])
    np.testing.assert_array_equal(ranks, [0, 3])
    np.testing.assert_array_equal(
        metrics.full_ranking_ranks(scores, [3, 0], [[0, 1], [4]]), [1, 3]
    )


def test_ncf_candidates_are_distinct_unseen_and_seeded() -> None:
    interacted = [[0, 1, 2, 5], list(range(100, 150))]
    draw = metrics.sample_ncf_candidates(
        np.random.default_rng(SEED), 200, [5, 120], interacted
    )
    assert draw.shape == (2, 100)
    np.testing.assert_array_equal(draw[:, 0], [5, 120])
    for user in range(2):
        negatives = draw[user, 1:]
        assert len(set(negatives)) == 99
        assert not set(negatives) & set(interacted[user])
    again = metrics.sample_ncf_candidates(
        np.random.default_rng(SEED), 200, [5, 120], interacted
    )
    np.testing.assert_array_equal(draw, again)
    with pytest.raises(ValueError, match="non-interacted"):
        metrics.sample_ncf_candidates(np.random.default_rng(0), 100, [0], [[0, 1]])


def test_sasrec_candidates_with_replacement_outside_training_set() -> None:
    train = [[0, 1, 2, 3, 4, 5]]  # 4 items left: 100 draws must repeat
    rng = np.random.default_rng(SEED)
    draw = metrics.sample_sasrec_candidates(rng, 10, [7], train)
    assert draw.shape == (1, 101)
    assert draw[0, 0] == 7
    assert set(draw[0, 1:]) == {6, 7, 8, 9}  # the target itself may be drawn
    rng = np.random.default_rng(SEED)
    again = metrics.sample_sasrec_candidates(rng, 10, [7], train)
    np.testing.assert_array_equal(draw, again)


def test_sampled_protocol_end_to_end_rank() -> None:
    rng = np.random.default_rng(SEED)
    item_scores = np.linspace(0.0, 1.0, 300)  # item i scores i / 299
    candidates = metrics.sample_ncf_candidates(rng, 300, [299, 0], [[1], [2]])
    ranks = metrics.rank_of_target(item_scores[candidates], np.zeros(2, np.int64))
    np.testing.assert_array_equal(ranks, [0, 99])
