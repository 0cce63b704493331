"""Fixed external candidate lists for ranking evaluation (NCF's ``test.negative``).

He et al. 2017 publish ``ml-1m.test.negative``: one line per user, ``(user,item)`` then
99 negatives, tab separated, in the raw ids of their data. :func:`read_candidates`
maps such a file through a :class:`~trainer.data.samples.RankingTask`'s id maps into
the ``(users, candidates)`` that
:class:`trainer.evaluation.ranking.RankingEvaluator` takes with protocol
``"external"``, so published fixed negative lists can be used.

Example:
    >>> users, cands = read_candidates("ml-1m.test.negative", task)  # doctest: +SKIP
    >>> RankingEvaluator(task, "test", "external", candidates=(users, cands))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from trainer.data.samples import RankingTask


def read_candidates(
    path: str, task: RankingTask, split: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed candidate list in NCF's ``test.negative`` format, as task rows.

    One line per user: ``(user,item)`` then the negatives, tab separated, with the raw
    ids of the interactions file (``ml-1.test.negative`` of He et al. 2017). Raw ids are
    mapped through ``task.user_ids`` / ``task.item_ids``; ``item`` must be the user's
    held-out item of ``split``.

    Args:
        path: The file (local or ``gs://``, read through :mod:`trainer.contracts.storage`).
        task: The data whose id maps and held-out items the file must match.
        split: ``"valid"`` or ``"test"``.

    Returns:
        ``(user_rows, candidates)``: ``candidates[:, 0]`` is the held-out item row.

    Raises:
        ValueError: naming ``path:line`` for a malformed line, an unknown raw id, an
            item that is not the user's held-out one, or ragged negatives.
    """
    from trainer.contracts import storage

    user_row = {int(u): r for r, u in enumerate(task.user_ids)}
    item_row = {int(i): r for r, i in enumerate(task.item_ids)}
    target = task.valid if split == "valid" else task.test
    users, rows = [], []
    for n, line in enumerate(storage.read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        head, *negs = line.split()
        where = f"{path}:{n}"
        try:
            raw_user, raw_item = (int(x) for x in head.strip("()").split(","))
            raw = [raw_item, *(int(x) for x in negs)]
        except ValueError:
            raise ValueError(
                f"{where}: expected '(user,item)\\tneg1\\tneg2...'"
            ) from None
        if raw_user not in user_row:
            raise ValueError(f"{where}: unknown user id {raw_user}")
        unknown = [i for i in raw if i not in item_row]
        if unknown:
            raise ValueError(f"{where}: unknown item id {unknown[0]}")
        u = user_row[raw_user]
        if item_row[raw_item] != target[u]:
            raise ValueError(
                f"{where}: item {raw_item} is not user {raw_user}'s {split} item"
            )
        if rows and len(raw) != len(rows[0]):
            raise ValueError(
                f"{where}: {len(raw) - 1} negatives, expected {len(rows[0]) - 1}"
            )
        users.append(u)
        rows.append([item_row[i] for i in raw])
    if not rows:
        raise ValueError(f"{path}: no candidate lines")
    return np.asarray(users, np.int64), np.asarray(rows, np.int64)
