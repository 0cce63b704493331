"""Tests of trainer/models; ``planted_pairs`` is the tiny data they share."""

from __future__ import annotations

import numpy as np


def planted_pairs(
    num_users: int = 120,
    num_items: int = 60,
    groups: int = 4,
    per_user: int = 12,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)``, 1-based: user ``u`` picks only items of group ``u % groups``.

    Items of group g are ``g+1, g+1+groups, ...``; each user picks ``per_user`` of
    them in a random order. A model that learns the groups ranks the held-out item
    among the ~``num_items / groups`` items of its group; a random one among all.
    """
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(1, num_users + 1):
        pool = np.arange(u % groups, num_items, groups) + 1
        users += [u] * per_user
        items += rng.choice(pool, size=per_user, replace=False).tolist()
    return np.asarray(users), np.asarray(items)


def tiny_ranking_config(
    name: str = "gmf",
    kind: str = "full",
    model: dict | None = None,
    **training,
):
    """A tiny TrainerConfig of a ranking backbone (d = 8, D = 4, K = 16 / [16, 4]).

    ``model`` entries are merged into the model section; ``training`` keywords
    override its defaults (2 epochs, batch 64, seed 0).
    """
    from trainer.config import TrainerConfig

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
                **(model or {}),
            },
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "training": {"epochs": 2, "batch_size": 64, "seed": 0, **training},
        }
    )
