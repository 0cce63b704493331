"""Offline metrics: RCE, log loss, AUC, HR@K and NDCG@K.

Plain NumPy functions over whole arrays: the evaluation of a trained model computes
its scores first and then these.

Ranking (HR@K and NDCG@K as in NCF, He et al. 2017): one relevant item per user; the
0-based rank of the target is ``r = #{j != target, j not excluded : s_j >= s_target}``.
Ties count **against** the target (pessimistic), so a constant-score model gets
HR = NDCG = 0. HR@K = 1[r < K], NDCG@K = 1[r < K] / log2(r + 2); both are averaged over
users and reported in percent. Protocols: full ranking over all items minus the user's
history (:func:`full_ranking_ranks`; the MGQE paper, Kang et al. 2020, does not state its
protocol, and only full ranking fits its numbers), NCF's 99 negatives
(:func:`sample_ncf_candidates`) and SASRec's 100 negatives
(:func:`sample_sasrec_candidates`, Kang & McAuley 2018).

RCE (the RecSys Challenge 2020 metric, Belli et al. 2020, used by Zhang et al. 2020):
``100 · (1 - CE / CE_naive)`` where CE_naive is the cross entropy of predicting the
**evaluated** set's mean label ȳ, ``-[ȳ log ȳ + (1-ȳ) log(1-ȳ)]``. Predictions (and ȳ)
are clipped to ``[1e-7, 1 - 1e-7]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EPSILON = 1e-7
ArrayLike = Any


def _probabilities(y_pred: ArrayLike, from_logits: bool, eps: float) -> np.ndarray:
    p = np.asarray(y_pred, dtype=np.float64)
    if from_logits:
        p = 1.0 / (1.0 + np.exp(-p))
    return np.clip(p, eps, 1.0 - eps)


def _weights(y_true: np.ndarray, sample_weight: ArrayLike | None) -> np.ndarray:
    if sample_weight is None:
        return np.ones_like(y_true, dtype=np.float64)
    return np.broadcast_to(np.asarray(sample_weight, np.float64), y_true.shape)


def binary_cross_entropy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise ``-[y log p + (1-y) log(1-p)]`` (p already clipped)."""
    return -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))


def log_loss(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    sample_weight: ArrayLike | None = None,
    from_logits: bool = False,
    eps: float = EPSILON,
) -> float:
    """Mean binary cross entropy (natural log) with predictions clipped to [eps, 1-eps].

    Args:
        y_true: 0/1 labels, any shape.
        y_pred: Probabilities (or logits if ``from_logits``), same shape.
        sample_weight: Optional weights broadcastable to ``y_true``.
        from_logits: Whether ``y_pred`` holds logits.
        eps: Clipping margin.

    Returns:
        The weighted mean cross entropy.
    """
    y = np.asarray(y_true, np.float64)
    w = _weights(y, sample_weight)
    bce = binary_cross_entropy(_probabilities(y_pred, from_logits, eps), y)
    return float(np.sum(w * bce) / np.sum(w))


def naive_cross_entropy(mean_label: float, eps: float = EPSILON) -> float:
    """Cross entropy of predicting the mean label: ``-[ȳ log ȳ + (1-ȳ) log(1-ȳ)]``."""
    p = float(np.clip(mean_label, eps, 1.0 - eps))
    return float(binary_cross_entropy(np.float64(p), np.float64(mean_label)))


def relative_cross_entropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    sample_weight: ArrayLike | None = None,
    from_logits: bool = False,
    eps: float = EPSILON,
) -> float:
    """RCE in percent: ``100 · (1 - CE / CE_naive)``; 0 for the naive predictor.

    Args:
        y_true: 0/1 labels of the evaluated set (its mean defines CE_naive).
        y_pred: Probabilities (or logits if ``from_logits``).
        sample_weight: Optional weights (also weight the mean label).
        from_logits: Whether ``y_pred`` holds logits.
        eps: Clipping margin for predictions and the mean label.

    Returns:
        RCE; higher is better and negative means worse than predicting the CTR.
    """
    y = np.asarray(y_true, np.float64)
    w = _weights(y, sample_weight)
    ce = log_loss(y, y_pred, w, from_logits, eps)
    mean_label = float(np.sum(w * y) / np.sum(w))
    return 100.0 * (1.0 - ce / naive_cross_entropy(mean_label, eps))


def roc_auc(
    y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None
) -> float:
    """Exact ROC AUC; tied scores form one ROC step (trapezoid), as in scikit-learn.

    Args:
        y_true: 0/1 labels, shape (n,).
        y_score: Scores, shape (n,); higher means more likely positive.
        sample_weight: Optional weights, shape (n,).

    Returns:
        The area under the ROC curve.

    Raises:
        ValueError: If only one class is present.
    """
    y = np.asarray(y_true, np.float64).ravel()
    s = np.asarray(y_score, np.float64).ravel()
    w = _weights(y, sample_weight).ravel()
    order = np.argsort(-s, kind="mergesort")
    y, s, w = y[order], s[order], w[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.r_[0.0, np.cumsum(w * y)[last_of_tie]]
    fps = np.r_[0.0, np.cumsum(w * (1.0 - y))[last_of_tie]]
    if tps[-1] <= 0 or fps[-1] <= 0:
        raise ValueError("ROC AUC needs both positive and negative labels.")
    return float(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def rank_of_target(
    scores: ArrayLike, target_idx: ArrayLike, exclude_mask: ArrayLike | None = None
) -> np.ndarray:
    """0-based pessimistic rank of each user's target among its candidates.

    ``r_u = #{j != t_u, not exclude_mask[u, j] : scores[u, j] >= scores[u, t_u]}``; the
    target itself is never excluded, even where ``exclude_mask`` marks it.

    Args:
        scores: (users, candidates) scores.
        target_idx: (users,) column of each user's target.
        exclude_mask: Optional (users, candidates) bool, True for candidates to ignore
            (e.g. the user's training items).

    Returns:
        (users,) int64 ranks.
    """
    s = np.asarray(scores, np.float64)
    t = np.asarray(target_idx, np.int64)
    rows = np.arange(s.shape[0])
    beats = s >= s[rows, t][:, None]
    if exclude_mask is not None:
        beats &= ~np.asarray(exclude_mask, bool)
    beats[rows, t] = False
    return beats.sum(axis=1).astype(np.int64)


def hit_rate_at_k(ranks: ArrayLike, k: int) -> float:
    """HR@K in percent: ``100 · mean(1[r < K])`` over 0-based ranks."""
    r = np.asarray(ranks)
    return float(100.0 * np.mean(r < k))


def ndcg_at_k(ranks: ArrayLike, k: int) -> float:
    """NDCG@K in percent, one relevant item: ``100 · mean(1[r < K] / log2(r + 2))``."""
    r = np.asarray(ranks, np.float64)
    return float(100.0 * np.mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)))


def exclusion_mask(
    num_items: int,
    histories: Sequence[Sequence[int]],
    extra_items: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Bool (users, num_items) mask, True at each user's history (and extra) items.

    Args:
        num_items: Number of item ids (ids are in ``[0, num_items)``).
        histories: Per user, the item ids to exclude (e.g. training items).
        extra_items: Optional per-user extra ids (e.g. the validation item at test).

    Returns:
        The mask.
    """
    mask = np.zeros((len(histories), num_items), bool)
    for user, items in enumerate(histories):
        mask[user, np.asarray(items, np.int64)] = True
    for user, items in enumerate(extra_items or ()):
        mask[user, np.asarray(items, np.int64)] = True
    return mask


def full_ranking_ranks(
    scores: ArrayLike,
    targets: ArrayLike,
    histories: Sequence[Sequence[int]],
    extra_items: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Ranks of the targets among all items except each user's history (full ranking).

    Args:
        scores: (users, num_items) scores of every item.
        targets: (users,) target item ids.
        histories: Per user, the training items (never ranked against the target).
        extra_items: Per user, more items to drop (the validation item at test time).

    Returns:
        (users,) 0-based ranks.
    """
    s = np.asarray(scores)
    mask = exclusion_mask(s.shape[1], histories, extra_items)
    return rank_of_target(s, targets, mask)


def sample_ncf_candidates(
    rng: np.random.Generator,
    num_items: int,
    targets: ArrayLike,
    interacted: Sequence[Sequence[int]],
    num_negatives: int = 99,
) -> np.ndarray:
    """NCF protocol: the target plus distinct negatives the user never interacted with.

    Args:
        rng: Seeded generator.
        num_items: Number of item ids (ids are in ``[0, num_items)``).
        targets: (users,) target item ids.
        interacted: Per user, every item the user interacted with (train, validation
            and test); the target is always excluded from the negatives.
        num_negatives: Negatives per user (99 -> 100 candidates).

    Returns:
        (users, 1 + num_negatives) item ids; column 0 is the target.

    Raises:
        ValueError: If a user has fewer than ``num_negatives`` non-interacted items.
    """
    t = np.asarray(targets, np.int64)
    out = np.empty((t.size, 1 + num_negatives), np.int64)
    for user, target in enumerate(t):
        allowed = np.ones(num_items, bool)
        allowed[np.asarray(interacted[user], np.int64)] = False
        allowed[target] = False
        pool = np.flatnonzero(allowed)
        if pool.size < num_negatives:
            raise ValueError(f"User {user} has only {pool.size} non-interacted items.")
        out[user, 0] = target
        out[user, 1:] = rng.choice(pool, size=num_negatives, replace=False)
    return out


def sample_sasrec_candidates(
    rng: np.random.Generator,
    num_items: int,
    targets: ArrayLike,
    train_items: Sequence[Sequence[int]],
    num_negatives: int = 100,
) -> np.ndarray:
    """SASRec protocol: the target plus negatives drawn uniformly WITH replacement.

    As in ``kang205/SASRec``, negatives avoid only the user's training items (pass the
    padding id 0 there if ids are 1-based), so the validation item or the target itself
    may be drawn; a drawn copy of the target ties with it and counts against it.

    Args:
        rng: Seeded generator.
        num_items: Number of item ids (ids are in ``[0, num_items)``).
        targets: (users,) target item ids.
        train_items: Per user, the training items (never drawn).
        num_negatives: Negatives per user (100 -> 101 candidates).

    Returns:
        (users, 1 + num_negatives) item ids; column 0 is the target.

    Raises:
        ValueError: If a user's training set covers every item.
    """
    t = np.asarray(targets, np.int64)
    out = np.empty((t.size, 1 + num_negatives), np.int64)
    for user, target in enumerate(t):
        allowed = np.ones(num_items, bool)
        allowed[np.asarray(train_items[user], np.int64)] = False
        pool = np.flatnonzero(allowed)
        if pool.size == 0:
            raise ValueError(f"User {user} has no item outside its training set.")
        out[user, 0] = target
        out[user, 1:] = pool[rng.integers(0, pool.size, size=num_negatives)]
    return out
