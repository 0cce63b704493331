"""GMF: Generalized Matrix Factorization (He et al., "Neural Collaborative Filtering").

ŷ(u, i) = σ(hᵀ(p_u ⊙ q_i) + b), with user and item tables built from an
:class:`~trainer.config.EmbeddingConfig` (MGQE, Kang et al. 2020, compresses both). The
model returns logits; the sigmoid lives in the loss (``from_logits``) and ranking needs
no sigmoid at all.

Example:
    >>> model = GMF(num_users=10, num_items=20, embedding={"kind": "full", "dim": 8})
    >>> logits = model({"user": np.array([0, 1]), "item": np.array([3, 4])})
    >>> tuple(logits.shape)
    (2,)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from keras import ops

from trainer.config import EmbeddingConfig
from trainer.models import ranking_common as rc


@keras.saving.register_keras_serializable(package="compactrec")
class GMF(rc.UserItemRanker):
    """Generalized Matrix Factorization over (possibly compressed) embedding tables.

    Sub-modules: ``user_embedding``, ``item_embedding`` (from the embedding config, ids
    frequency-sorted) and ``prediction`` (``Dense(1)``, lecun_uniform: NCF's ``h``).

    Args:
        num_users: Rows of the user table.
        num_items: Rows of the item table.
        embedding: The compression method (an ``EmbeddingConfig`` or its dict form).
        **kwargs: ``keras.Model`` arguments (``name``).

    Example:
        >>> m = GMF(5, 7, {"kind": "full", "dim": 4})
        >>> tuple(m.score_items(np.array([0, 1]), np.arange(7)).shape)
        (2, 7)
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding: EmbeddingConfig | Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(num_users, num_items, embedding, **kwargs)
        cfg = self.embedding_config
        self.user_embedding = rc.build_table(
            rc.user_table_config(cfg), self.num_users, "user_embedding"
        )
        self.item_embedding = rc.build_table(cfg, self.num_items, "item_embedding")
        self.prediction = keras.layers.Dense(
            1, kernel_initializer="lecun_uniform", name="prediction"
        )
        self.prediction.build((None, cfg.dim))

    def embedding_tables(self) -> dict[str, keras.layers.Layer]:
        """The embedding layers by role; everything else is dense (32-bit) weights."""
        return {"user": self.user_embedding, "item": self.item_embedding}

    def score_items(self, users: Any, items: Any, training: bool | None = None) -> Any:
        """``hᵀ(p_u ⊙ q_i) + b`` logits, ``(B, C)`` (see ``UserItemRanker``)."""
        p = self.user_embedding(rc.as_candidates(users), training=training)
        q = self.item_embedding(rc.as_candidates(items), training=training)
        h = ops.squeeze(self.prediction.kernel, -1)
        return rc.weighted_dot(p, q, h) + self.prediction.bias
