"""NeuMF: Neural Matrix Factorization (He et al., "Neural Collaborative Filtering").

A GMF branch (p^G ⊙ q^G) and an MLP branch on [p^M; q^M] with a ReLU tower that halves
at each layer, fused by one output unit: ŷ = σ(hᵀ[p^G ⊙ q^G ; MLP(p^M, q^M)]). As in
MGQE (Kang et al. 2020) there is no pre-training, and all four tables (GMF/MLP ×
user/item) are built from the same :class:`~trainer.config.EmbeddingConfig`. With
d = 64 and ``hidden_units = (64, 32, 16)`` the MLP input is 128 wide ("pyramid, 3 hidden
layers" in the MGQE paper, Kang et al. 2020).

Example:
    >>> model = NeuMF(10, 20, {"kind": "full", "dim": 8}, hidden_units=(8, 4))
    >>> tuple(model({"user": np.array([0]), "item": np.array([3])}).shape)
    (1,)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from trainer.config import EmbeddingConfig
from trainer.models import ranking_common as rc


@keras.saving.register_keras_serializable(package="compactrec")
class MLPTower(keras.layers.Layer):
    """ReLU tower on the concatenation [user; item] that broadcasts over candidates.

    The first layer's kernel is split into its user and item halves, so
    ``W [u; i] = W_u u + W_i i`` is computed once per user and once per item and then
    broadcast: scoring B users against C shared items costs no ``(B, C, 2d)`` tensor.

    Args:
        hidden_units: Widths of the hidden ReLU layers, e.g. ``(64, 32, 16)``.
        **kwargs: Layer arguments.

    Example:
        >>> tower = MLPTower((8, 4))
        >>> tuple(tower(np.ones((2, 6)), np.ones((5, 6))).shape)   # shared candidates
        (2, 5, 4)
    """

    def __init__(self, hidden_units: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not hidden_units or any(int(u) <= 0 for u in hidden_units):
            raise ValueError(
                f"`hidden_units` must be positive ints. Received: {hidden_units}"
            )
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.dense_layers = [
            keras.layers.Dense(u, activation="relu", name=f"hidden_{k}")
            for k, u in enumerate(self.hidden_units)
        ]

    def build(self, user_shape: Any, item_shape: Any = None) -> None:
        dim = int(user_shape[-1])
        self.dense_layers[0].build((None, 2 * dim))
        for prev, layer in zip(self.hidden_units, self.dense_layers[1:], strict=False):
            layer.build((None, prev))

    def call(self, user: Any, item: Any) -> Any:
        """``(B, d)`` users, ``(C, d)`` or ``(B, C, d)`` items -> ``(B, C, last)``."""
        first = self.dense_layers[0]
        dim = user.shape[-1]
        u = ops.matmul(user, first.kernel[:dim])[:, None, :]
        i = ops.matmul(item, first.kernel[dim:])
        if len(item.shape) == 2:
            i = i[None, :, :]
        x = ops.relu(u + i + first.bias)
        for layer in self.dense_layers[1:]:
            x = layer(x)
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_units": list(self.hidden_units)}


@keras.saving.register_keras_serializable(package="compactrec")
class NeuMF(rc.UserItemRanker):
    """Neural Matrix Factorization (GMF + MLP, fused) over compressed tables.

    Sub-modules: ``gmf_user_embedding``, ``gmf_item_embedding``, ``mlp_user_embedding``,
    ``mlp_item_embedding``, ``mlp`` (:class:`MLPTower`) and ``prediction``
    (``Dense(1)``, lecun_uniform, on ``d + hidden_units[-1]`` inputs).

    Args:
        num_users: Rows of the user tables.
        num_items: Rows of the item tables.
        embedding: The compression method (an ``EmbeddingConfig`` or its dict form).
        hidden_units: MLP hidden widths; the MLP input is ``2 * dim``.
        **kwargs: ``keras.Model`` arguments.

    Example:
        >>> m = NeuMF(5, 7, {"kind": "full", "dim": 4}, hidden_units=(4, 2))
        >>> tuple(m.score_items(np.array([0, 1]), np.arange(7)).shape)
        (2, 7)
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding: EmbeddingConfig | Mapping[str, Any],
        hidden_units: Sequence[int] = (64, 32, 16),
        **kwargs: Any,
    ) -> None:
        super().__init__(num_users, num_items, embedding, **kwargs)
        cfg = self.embedding_config
        ucfg = rc.user_table_config(cfg)
        self.gmf_user_embedding = rc.build_table(
            ucfg, self.num_users, "gmf_user_embedding"
        )
        self.gmf_item_embedding = rc.build_table(
            cfg, self.num_items, "gmf_item_embedding"
        )
        self.mlp_user_embedding = rc.build_table(
            ucfg, self.num_users, "mlp_user_embedding"
        )
        self.mlp_item_embedding = rc.build_table(
            cfg, self.num_items, "mlp_item_embedding"
        )
        self.mlp = MLPTower(hidden_units, name="mlp")
        self.mlp.build((None, cfg.dim))
        self.prediction = keras.layers.Dense(
            1, kernel_initializer="lecun_uniform", name="prediction"
        )
        self.prediction.build((None, cfg.dim + self.mlp.hidden_units[-1]))

    def embedding_tables(self) -> dict[str, keras.layers.Layer]:
        """The four embedding layers by role."""
        return {
            "gmf_user": self.gmf_user_embedding,
            "gmf_item": self.gmf_item_embedding,
            "mlp_user": self.mlp_user_embedding,
            "mlp_item": self.mlp_item_embedding,
        }

    def score_items(self, users: Any, items: Any, training: bool | None = None) -> Any:
        """``hᵀ[p^G ⊙ q^G ; MLP(p^M, q^M)] + b`` logits, ``(B, C)``.

        Shapes as in ``UserItemRanker.score_items``.
        """
        users, items = rc.as_candidates(users), rc.as_candidates(items)
        dim = self.embedding_config.dim
        kernel = ops.squeeze(self.prediction.kernel, -1)
        p_g = self.gmf_user_embedding(users, training=training)
        q_g = self.gmf_item_embedding(items, training=training)
        gmf = rc.weighted_dot(p_g, q_g, kernel[:dim])
        p_m = self.mlp_user_embedding(users, training=training)
        q_m = self.mlp_item_embedding(items, training=training)
        mlp = self.mlp(p_m, q_m)
        mlp_logit = ops.squeeze(ops.matmul(mlp, kernel[dim:, None]), -1)
        return gmf + mlp_logit + self.prediction.bias

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": list(self.mlp.hidden_units),
        }
