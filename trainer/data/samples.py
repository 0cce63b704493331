"""Data preparation and negative sampling of the ranking backbones (GMF, NeuMF, SASRec).

The data is SASRec's leave-last-two-out split (:mod:`trainer.data.sequences`), renumbered
here so that row 0 is the most frequent id of the *training* set (MGQE, Kang et al.
2020, section 3: tiers are frequency ranges). Training examples follow each backbone's paper:

* GMF / NeuMF (He et al. 2017): pointwise BCE, ``num_negatives`` negatives per positive
  drawn uniformly from the items the user has no training interaction with, redrawn
  every epoch (vectorised rejection sampling against sorted ``user * n + item`` keys).
* SASRec (Kang & McAuley 2018): next-item BCE at every non-padding position with one
  negative per position from items outside the user's training sequence; every user with
  at least two training items once per epoch, in a seeded random order.

:func:`ranking_batches` feeds them to the one training loop
(:func:`trainer.training.loop.train`); :mod:`trainer.evaluation.ranking` evaluates.

Example:
    >>> task = prepare_task(ranking_data.load_sasrec("ml-1m.txt"))    # doctest: +SKIP
    >>> users, items, labels = pointwise_examples(task, rng, 4)       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from trainer.config import TrainerConfig
from trainer.data.sequences import SequenceData


@dataclasses.dataclass(frozen=True)
class RankingTask:
    """A :class:`SequenceData` renumbered by training frequency, with 0-based ids.

    Attributes:
        num_users: Users (rows ``0 .. num_users - 1``; row 0 has the most items).
        num_items: Items (rows ``0 .. num_items - 1``; row 0 is the most frequent item).
        train_items: Training items of every user, concatenated, in time order.
        train_offsets: ``(num_users + 1,)`` offsets into ``train_items``.
        valid: ``(num_users,)`` validation item, -1 for none.
        test: ``(num_users,)`` test item, -1 for none.
        user_ids: ``(num_users,)`` original user id of each row.
        item_ids: ``(num_items,)`` original item id of each row.
    """

    num_users: int
    num_items: int
    train_items: np.ndarray
    train_offsets: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def train_sequence(self, user: int) -> np.ndarray:
        """Training items of ``user`` in time order."""
        return self.train_items[self.train_offsets[user] : self.train_offsets[user + 1]]

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All training ``(users, items)`` as int64 arrays, user-major."""
        users = np.repeat(np.arange(self.num_users), np.diff(self.train_offsets))
        return users.astype(np.int64), self.train_items.astype(np.int64)

    def interaction_keys(self) -> np.ndarray:
        """Sorted unique ``user * num_items + item`` of the training interactions."""
        users, items = self.train_pairs()
        return np.unique(users * self.num_items + items)


def prepare_task(data: SequenceData) -> RankingTask:
    """Renumbers users and items of ``data`` by descending training frequency.

    Ties keep the original id order (stable sort). Users without any action are dropped.

    Args:
        data: Leave-last-two-out split with 1-based ids.

    Returns:
        The frequency-ordered :class:`RankingTask`.
    """
    lengths = np.diff(data.train_offsets)[1 : data.num_users + 1]
    has_any = (lengths > 0) | (data.valid[1:] > 0)
    users = np.flatnonzero(has_any) + 1
    users = users[np.argsort(-lengths[users - 1], kind="stable")]
    counts = np.bincount(data.train_items, minlength=data.num_items + 1)[1:]
    items = np.argsort(-counts, kind="stable") + 1
    row_of_item = np.full(data.num_items + 1, -1, np.int64)
    row_of_item[items] = np.arange(len(items))
    seqs = [row_of_item[data.train_sequence(int(u))] for u in users]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return RankingTask(
        num_users=len(users),
        num_items=data.num_items,
        train_items=np.concatenate(seqs) if seqs else np.zeros(0, np.int64),
        train_offsets=offsets,
        valid=row_of_item[data.valid[users]],
        test=row_of_item[data.test[users]],
        user_ids=users,
        item_ids=items,
    )


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(sorted_keys, keys), max(len(sorted_keys) - 1, 0))
    return sorted_keys[pos] == keys if len(sorted_keys) else np.zeros(keys.shape, bool)


def sample_negatives(
    rng: np.random.Generator,
    users: np.ndarray,
    num_items: int,
    interaction_keys: np.ndarray,
    num_negatives: int,
) -> np.ndarray:
    """Items drawn uniformly from those each user has not interacted with.

    Vectorised rejection sampling: draw all, then redraw only the rejected entries
    until none is left.

    Args:
        rng: Seeded generator.
        users: ``(P,)`` user rows.
        num_items: Item ids are ``0 .. num_items - 1``.
        interaction_keys: Sorted ``user * num_items + item`` keys to avoid.
        num_negatives: Draws per user entry.

    Returns:
        ``(P, num_negatives)`` int64 item rows.

    Raises:
        ValueError: If some user has interacted with every item.
    """
    users = np.asarray(users, np.int64)
    per_user = (
        np.bincount(interaction_keys // num_items) if len(interaction_keys) else []
    )
    if len(per_user) and per_user.max() >= num_items:
        raise ValueError("a user has interacted with every item; no negative exists")
    user_grid = np.broadcast_to(users[:, None], (len(users), num_negatives))
    neg = rng.integers(0, num_items, size=user_grid.shape)
    bad = _contains(interaction_keys, user_grid * num_items + neg)
    while bad.any():
        redraw = rng.integers(0, num_items, size=int(bad.sum()))
        neg[bad] = redraw
        still = _contains(interaction_keys, user_grid[bad] * num_items + redraw)
        bad[bad] = still
    return neg


def pointwise_examples(
    task: RankingTask,
    rng: np.random.Generator,
    num_negatives: int,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch of shuffled GMF/NeuMF examples: every positive plus fresh negatives.

    Args:
        task: The data.
        rng: Seeded generator (negatives and shuffling).
        num_negatives: Negatives per positive (4 in NCF and MGQE).
        keys: ``task.interaction_keys()``, if already computed.

    Returns:
        ``(users, items, labels)``; ``len = P * (1 + num_negatives)``.
    """
    users, items = task.train_pairs()
    keys = task.interaction_keys() if keys is None else keys
    neg = sample_negatives(rng, users, task.num_items, keys, num_negatives)
    all_users = np.concatenate([users, np.repeat(users, num_negatives)])
    all_items = np.concatenate([items, neg.reshape(-1)])
    labels = np.concatenate([np.ones(len(users)), np.zeros(neg.size)]).astype(
        np.float32
    )
    order = rng.permutation(len(all_users))
    return all_users[order], all_items[order], labels[order]


def padded_sequences(
    task: RankingTask, users: np.ndarray, maxlen: int, extra: np.ndarray | None = None
) -> np.ndarray:
    """Last ``maxlen`` training items (+ ``extra[u]`` if given) per user, left-padded.

    Item ids are shifted by one (SASRec's id 0 is padding).

    Returns:
        ``(len(users), maxlen)`` int64.
    """
    out = np.zeros((len(users), maxlen), np.int64)
    for row, u in enumerate(users):
        seq = task.train_sequence(int(u)) + 1
        if extra is not None and extra[u] >= 0:
            seq = np.append(seq, extra[u] + 1)
        seq = seq[-maxlen:]
        out[row, maxlen - len(seq) :] = seq
    return out


def sequence_examples(
    task: RankingTask, maxlen: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SASRec training inputs of users with >= 2 training items.

    Returns:
        ``(users, seq, pos)``: ``seq[u]`` = training items but the last, ``pos[u]`` =
        the next item at each position (both left-padded, ids shifted by one).
    """
    users = np.flatnonzero(np.diff(task.train_offsets) >= 2)
    seq = np.zeros((len(users), maxlen), np.int64)
    pos = np.zeros((len(users), maxlen), np.int64)
    for row, u in enumerate(users):
        items = task.train_sequence(int(u)) + 1
        inp, nxt = items[:-1][-maxlen:], items[1:][-maxlen:]
        seq[row, maxlen - len(inp) :] = inp
        pos[row, maxlen - len(nxt) :] = nxt
    return users, seq, pos


def sequence_negatives(
    rng: np.random.Generator,
    task: RankingTask,
    users: np.ndarray,
    pos: np.ndarray,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """One negative per non-padding position of ``pos`` (ids shifted by one, 0 = pad).

    Negatives avoid every item of the user's training sequence (``keys``, default
    ``task.interaction_keys()``).
    """
    keys = task.interaction_keys() if keys is None else keys
    draws = sample_negatives(rng, users, task.num_items, keys, pos.shape[1])
    return np.where(pos > 0, draws + 1, 0)


class EpochData:
    """Each epoch's shuffled training arrays (fresh negatives) for one backbone.

    Args:
        cfg: The run's configuration (``model.name``, ``model.maxlen``,
            ``training.num_negatives``).
        task: The data.
        rng: Seeded generator, advanced by every :meth:`next`.

    Example:
        >>> epochs = EpochData(cfg, task, np.random.default_rng(0))   # doctest: +SKIP
        >>> users, items, labels = epochs.next()                       # doctest: +SKIP
    """

    def __init__(
        self, cfg: TrainerConfig, task: RankingTask, rng: np.random.Generator
    ) -> None:
        self.cfg, self.task, self.rng = cfg, task, rng
        self.keys = task.interaction_keys()
        if cfg.model.name == "sasrec":
            self.users, self.seq, self.pos = sequence_examples(task, cfg.model.maxlen)

    def next(self) -> list[np.ndarray]:
        """``[users, items, labels]`` (GMF, NeuMF) or ``[seq, pos, neg]`` (SASRec)."""
        if self.cfg.model.name != "sasrec":
            k = self.cfg.training.num_negatives
            return list(pointwise_examples(self.task, self.rng, k, self.keys))
        order = self.rng.permutation(len(self.users))
        users, pos = self.users[order], self.pos[order]
        neg = sequence_negatives(self.rng, self.task, users, pos, self.keys)
        return [self.seq[order], pos, neg]


def ranking_batches(cfg: TrainerConfig, task: RankingTask) -> tuple[Any, int]:
    """The batch source of a ranking backbone for the one training loop.

    ``cfg.training.epochs`` epochs of :class:`EpochData` (fresh negatives each epoch,
    drawn from ``np.random.default_rng(cfg.training.seed)``), cut into batches of
    ``cfg.training.batch_size``: ``({"user": users, "item": items}, labels)`` for
    GMF/NeuMF (:func:`trainer.training.losses.pointwise_bce`) and ``(seq, pos, neg)``
    for SASRec (:func:`trainer.training.losses.sequence_loss`). Every iteration of
    the dataset starts from the seed again, so a resumed run skipping its first
    batches sees the same stream as an uninterrupted one.

    Returns:
        ``(dataset, steps_per_epoch)``.
    """
    import tensorflow as tf

    t = cfg.training
    sasrec = cfg.model.name == "sasrec"
    if sasrec:  # users with >= 2 training items, as sequence_examples
        rows = int(np.count_nonzero(np.diff(task.train_offsets) >= 2))
    else:
        rows = int(task.train_offsets[-1]) * (1 + t.num_negatives)
    steps = -(-rows // t.batch_size)

    def epochs() -> Iterator[tuple[np.ndarray, ...]]:
        source = EpochData(cfg, task, np.random.default_rng(t.seed))
        for _ in range(t.epochs):
            yield tuple(source.next())

    if sasrec:
        width = cfg.model.maxlen
        spec = tuple(tf.TensorSpec((None, width), tf.int64) for _ in range(3))
    else:
        spec = (
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((None,), tf.float32),
        )
    size = t.batch_size

    def cut(*arrays: Any) -> Any:  # one slice per batch (not one element at a time)
        n = tf.shape(arrays[0], out_type=tf.int64)[0]

        def batch(i: Any) -> Any:
            return tuple(a[i * size : tf.minimum((i + 1) * size, n)] for a in arrays)

        return tf.data.Dataset.range((n + size - 1) // size).map(batch)

    ds = tf.data.Dataset.from_generator(epochs, output_signature=spec).flat_map(cut)
    if not sasrec:
        ds = ds.map(lambda u, i, y: ({"user": u, "item": i}, y))
    return ds.prefetch(2), steps


def id_arrays(task: RankingTask, maxlen: int | None = None) -> dict[str, np.ndarray]:
    """What maps raw ids to a trained model's rows (``trainer.task`` saves it as npz).

    Args:
        task: The renumbered data the model was trained on.
        maxlen: SASRec's ``maxlen`` (adds ``histories``); ``None`` for GMF / NeuMF.

    Returns:
        ``user_ids[r]``: the raw user id (as in the interactions file) of user row
        ``r``; ``item_ids[r]``: the raw item id of item row ``r`` (GMF/NeuMF take item
        row ``r``, SASRec, whose id 0 is padding, ``r + 1``); for SASRec ``histories``
        ``(num_users, maxlen)``: each user's training items then the validation item,
        as item rows + 1, left-padded with 0 (the sequence the test item is scored
        after, as :class:`trainer.evaluation.ranking.RankingEvaluator` does).
    """
    out = {
        "user_ids": np.asarray(task.user_ids, np.int64),
        "item_ids": np.asarray(task.item_ids, np.int64),
    }
    if maxlen is not None:
        users = np.arange(task.num_users)
        out["histories"] = padded_sequences(task, users, maxlen, task.valid)
    return out
