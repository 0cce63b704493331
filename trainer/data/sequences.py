"""Sequences for the ranking reproductions (GMF, NeuMF, SASRec) in pure NumPy.

Reads the SASRec-format ``ml-1m.txt`` (one ``user item`` pair per line, 1-based ids,
each user's lines in time order) and applies SASRec's leave-last-two-out split (Kang &
McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018): each user's last
action is the test item, the one before it the validation item, the rest is training
data; users with fewer than 3 actions keep everything in training. Item id 0 is free
and used as padding.

Example:
    >>> data = from_pairs([1, 1, 1, 2], [5, 6, 7, 5])
    >>> data.train_sequence(1).tolist(), int(data.valid[1]), int(data.test[1])
    ([5], 6, 7)
    >>> data.train_sequence(2).tolist(), int(data.test[2])
    ([5], 0)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from trainer.contracts import storage


class SequenceFormatError(ValueError):
    """The sequence file is not ``user item`` lines of positive integers."""


@dataclasses.dataclass(frozen=True)
class SequenceData:
    """Per-user item sequences split leave-last-two-out.

    Users are ``1..num_users``; arrays indexed by user have an unused row 0.

    Attributes:
        num_users: Largest user id.
        num_items: Largest item id.
        train_items: Every user's training items, concatenated in user order.
        train_offsets: ``train_items[train_offsets[u]:train_offsets[u + 1]]`` is user
            ``u``'s training sequence; shape ``(num_users + 2,)``.
        valid: Validation item per user (0 = none); shape ``(num_users + 1,)``.
        test: Test item per user (0 = none); shape ``(num_users + 1,)``.
    """

    num_users: int
    num_items: int
    train_items: np.ndarray
    train_offsets: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def num_actions(self) -> int:
        """All actions: training + validation + test."""
        return int(
            len(self.train_items)
            + np.count_nonzero(self.valid)
            + np.count_nonzero(self.test)
        )

    def train_sequence(self, user: int) -> np.ndarray:
        """User ``user``'s training items in time order."""
        return self.train_items[self.train_offsets[user] : self.train_offsets[user + 1]]

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All training interactions as ``(users, items)`` int64 arrays, user-major."""
        lengths = np.diff(self.train_offsets)
        users = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        return users, self.train_items.astype(np.int64)

    def padded_sequences(self, max_len: int, include_valid: bool = False) -> np.ndarray:
        """The last ``max_len`` items per user, left-padded with 0.

        Args:
            max_len: Sequence length (SASRec uses 200 on ml-1m).
            include_valid: Append the validation item (the input for test ranking).

        Returns:
            int64 array of shape ``(num_users + 1, max_len)``; row 0 is all padding.
        """
        out = np.zeros((self.num_users + 1, max_len), dtype=np.int64)
        for u in range(1, self.num_users + 1):
            seq = self.train_sequence(u)
            if include_valid and self.valid[u]:
                seq = np.append(seq, self.valid[u])
            seq = seq[-max_len:]
            if len(seq):
                out[u, max_len - len(seq) :] = seq
        return out

    def seen_items(self, user: int) -> np.ndarray:
        """Every item of ``user`` (train, valid and test), sorted and unique."""
        held = [i for i in (self.valid[user], self.test[user]) if i]
        return np.unique(
            np.concatenate([self.train_sequence(user), held]).astype(np.int64)
        )

    def eval_candidates(
        self, split: str, num_negatives: int = 100, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Users with a held-out item, and their candidates for ranking.

        Column 0 is the held-out item; the other ``num_negatives`` are sampled
        uniformly from items the user never interacted with (SASRec's protocol).

        Args:
            split: ``"valid"`` or ``"test"``.
            num_negatives: Negatives per user.
            seed: Seed of the sampler; same seed, same candidates.

        Returns:
            ``(users, candidates)`` with shapes ``(n,)`` and ``(n, 1 + num_negatives)``.
        """
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        target = self.valid if split == "valid" else self.test
        users = np.flatnonzero(target).astype(np.int64)
        rng = np.random.default_rng(seed)
        cands = np.zeros((len(users), 1 + num_negatives), dtype=np.int64)
        for row, u in enumerate(users):
            seen = self.seen_items(int(u))
            if self.num_items - len(seen) < num_negatives:
                raise ValueError(
                    f"user {u} has fewer than {num_negatives} unseen items"
                )
            cands[row, 0] = target[u]
            cands[row, 1:] = _sample_unseen(rng, self.num_items, seen, num_negatives)
        return users, cands


def _sample_unseen(
    rng: np.random.Generator, num_items: int, seen: np.ndarray, k: int
) -> np.ndarray:
    """``k`` distinct items from ``1..num_items`` not in ``seen``, in draw order."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < k:
        draws = rng.integers(1, num_items + 1, size=2 * k)
        draws = np.concatenate([out, draws[~np.isin(draws, seen)]])
        _, first = np.unique(draws, return_index=True)
        out = draws[np.sort(first)][:k]
    return out


def from_pairs(
    users: np.ndarray | list[int], items: np.ndarray | list[int]
) -> SequenceData:
    """Splits ``(user, item)`` actions (each user's in time order) leave-last-two-out.

    Raises:
        SequenceFormatError: if ids are not positive or the arrays differ in length.
    """
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise SequenceFormatError(f"users {users.shape} and items {items.shape} differ")
    if len(users) and (users.min() < 1 or items.min() < 1):
        raise SequenceFormatError("user and item ids must be >= 1")
    num_users = int(users.max()) if len(users) else 0
    num_items = int(items.max()) if len(items) else 0
    order = np.argsort(users, kind="stable")  # group by user, keep time order
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=num_users + 1)
    ends = np.cumsum(counts)
    has_holdout = counts >= 3
    valid = np.zeros(num_users + 1, dtype=np.int64)
    test = np.zeros(num_users + 1, dtype=np.int64)
    test[has_holdout] = items[ends[has_holdout] - 1]
    valid[has_holdout] = items[ends[has_holdout] - 2]
    is_train = np.ones(len(items), dtype=bool)
    held = ends[has_holdout]
    is_train[held - 1] = False
    is_train[held - 2] = False
    train_counts = np.where(has_holdout, counts - 2, counts)
    offsets = np.concatenate([[0], np.cumsum(train_counts)])
    return SequenceData(
        num_users=num_users,
        num_items=num_items,
        train_items=items[is_train],
        train_offsets=offsets.astype(np.int64),
        valid=valid,
        test=test,
    )


def load_sasrec(path: str) -> SequenceData:
    """Loads a SASRec-format file (``user item`` per line) from a local path or gs://.

    Raises:
        FileNotFoundError: if the file does not exist.
        SequenceFormatError: naming the file and the first bad line.
    """
    lines = storage.read_bytes(path).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    bad = _first_bad_line(lines)
    if bad:
        raise SequenceFormatError(
            f"{path}: line {bad}: expected 'user item', got {lines[bad - 1][:80]!r}"
        )
    pairs = np.array(b" ".join(lines).split(), dtype=np.int64).reshape(-1, 2)
    try:
        return from_pairs(pairs[:, 0], pairs[:, 1])
    except SequenceFormatError as e:
        raise SequenceFormatError(f"{path}: {e}") from None


def _first_bad_line(lines: list[bytes]) -> int:
    """1-based number of the first line that is not two decimal ids; 0 if none."""
    for i, line in enumerate(lines, start=1):
        parts = line.split()
        if len(parts) != 2 or not (parts[0].isdigit() and parts[1].isdigit()):
            return i
    return 0
