"""Pieces shared by the ranking backbones (GMF, NeuMF, SASRec).

The ranking models of MGQE (Kang et al. 2020, section 5) embed users and items with
tables built by :func:`trainer.layers.factory.build_embedding`, so any compression method
(full, lrf, sq, dpq, mgqe, hashing) is chosen by config. Ids are *frequency-sorted*
(row 0 is the most popular id of the training set), which is what MGQE's default
tiers (``row < boundary`` is head) need; :mod:`trainer.data.samples` renumbers the data
so.

Example:
    >>> cfg = coerce_embedding_config({"kind": "full", "dim": 8})
    >>> table = build_table(cfg, num_rows=100, name="item_embedding")   # doctest: +SKIP
    >>> table(keras.ops.array([[1, 2]])).shape                         # doctest: +SKIP
    (1, 2, 8)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.config import EmbeddingConfig
from trainer.contracts.features import HASH_KINDS, tier_boundaries
from trainer.layers.factory import build_embedding


def coerce_embedding_config(
    value: EmbeddingConfig | Mapping[str, Any],
) -> EmbeddingConfig:
    """An :class:`EmbeddingConfig` from itself or from its ``dataclasses.asdict`` form.

    Args:
        value: The config, or a plain mapping of its fields (lists for tuples), as
            written by a model's ``get_config``.

    Returns:
        The validated config.
    """
    if isinstance(value, EmbeddingConfig):
        return value
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(value).items()}
    return EmbeddingConfig(**fields)


def embedding_config_dict(cfg: EmbeddingConfig) -> dict[str, Any]:
    """JSON-friendly form of ``cfg`` for ``get_config`` (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(cfg).items()
    }


def user_table_config(cfg: EmbeddingConfig) -> EmbeddingConfig:
    """A user table's config: ``cfg``, or a full table if ``compress_users`` is off."""
    return cfg if cfg.compress_users else dataclasses.replace(cfg, kind="full")


def build_table(
    cfg: EmbeddingConfig, num_rows: int, name: str, padding_row: bool = False
) -> keras.layers.Layer:
    """Builds one embedding table through :func:`trainer.layers.factory.build_embedding`.

    Args:
        cfg: Compression method and sizes.
        num_rows: Rows of the table (ids ``0 .. num_rows - 1``).
        name: Layer name.
        padding_row: Row 0 is a padding row (SASRec). MGQE tiers then count the head
            share over the real rows ``1 .. num_rows - 1`` and keep row 0 in the head.

    Returns:
        The built embedding layer: ids of any shape -> ``ids.shape + (cfg.dim,)``.
    """
    if cfg.kind in HASH_KINDS:
        layer = HashedIdEmbedding(embedding_config_dict(cfg), num_rows, name=name)
        layer.build((None,))
        return layer
    overrides: dict[str, Any] = {}
    if cfg.kind == "mgqe":
        offset = 1 if padding_row else 0
        bounds = tier_boundaries(num_rows - offset, cfg.tier_shares)
        overrides["tier_boundaries"] = [offset + b for b in bounds]
    layer = build_embedding(cfg, num_rows, name=name, **overrides)
    # Built now: the model's variables must exist before the train step lists them.
    layer.build((None,))
    return layer


def hashed_ids(cfg: EmbeddingConfig, num_rows: int) -> np.ndarray:
    """The ids a hashing table sees for rows ``0 .. num_rows - 1`` (ARCHITECTURE.md).

    Row ids are hashed as decimal strings with :mod:`trainer.preprocessing`'s SipHash
    keys: ``hash`` -> ``(h1,)``, ``double_hash`` -> ``(h1, h2)``, ``hybrid`` ->
    ``(r or k, h1, h2)`` with the ``k`` most frequent rows (``top_k``, default 10 %)
    in the dictionary.

    Returns:
        ``(num_rows, ids_per_row)`` int32.
    """
    from trainer import preprocessing

    values = [str(r) for r in range(num_rows)]
    h1 = preprocessing.hash_values(values, cfg.hash_buckets, 0)
    if cfg.kind == "hash":
        return h1[:, None].astype(np.int32)
    h2 = preprocessing.hash_values(values, cfg.hash_buckets, 1)
    if cfg.kind == "double_hash":
        return np.stack([h1, h2], axis=1).astype(np.int32)
    k = hybrid_dictionary_size(cfg, num_rows)
    rows = np.minimum(np.arange(num_rows), k)
    return np.stack([rows, h1, h2], axis=1).astype(np.int32)


def hybrid_dictionary_size(cfg: EmbeddingConfig, num_rows: int) -> int:
    """``cfg.top_k``, or the 10 % most frequent rows when it is 0."""
    return min(num_rows, cfg.top_k or math.ceil(0.1 * num_rows))


@keras.saving.register_keras_serializable(package="compactrec")
class HashedIdEmbedding(keras.layers.Layer):
    """A hashing table (hash, double_hash, hybrid) addressed by frequency-sorted rows.

    The ranking data has integer rows, not raw feature values; this layer maps each row
    to the hashed ids preprocessing would produce (a fixed ``id_map``, computed once,
    which a server recomputes instead of storing) and looks them up in the table from
    :func:`trainer.layers.factory.build_embedding`.

    Args:
        embedding: ``EmbeddingConfig`` fields (kind one of :data:`HASH_KINDS`).
        num_rows: Rows of the id space.
        **kwargs: Layer arguments.

    Example:
        >>> layer = HashedIdEmbedding({"kind": "hash", "dim": 4, "hash_buckets": 8}, 20)
        >>> tuple(layer(np.array([[0, 19]])).shape)
        (1, 2, 4)
    """

    def __init__(
        self, embedding: Mapping[str, Any], num_rows: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.config = coerce_embedding_config(embedding)
        if self.config.kind not in HASH_KINDS:
            raise ValueError(
                f"`kind` must be one of {HASH_KINDS}. Received: {self.config.kind}"
            )
        self.num_rows = int(num_rows)
        self.output_dim = self.config.dim
        extra = {}
        if self.config.kind == "hybrid":
            extra["dictionary_size"] = hybrid_dictionary_size(
                self.config, self.num_rows
            )
        self.table = build_embedding(
            self.config,
            extra.get("dictionary_size", self.num_rows) + 1,
            name="table",
            **extra,
        )

    def build(self, input_shape: Any = None) -> None:
        ids = hashed_ids(self.config, self.num_rows)
        self.id_map = self.add_weight(
            name="id_map",
            shape=ids.shape,
            dtype="int32",
            initializer="zeros",
            trainable=False,
        )
        self.id_map.assign(ids)
        self.table.build((None, ids.shape[1]))
        self.built = True

    def call(self, ids: Any) -> Any:
        """Rows of any shape -> ``ids.shape + (dim,)``."""
        mapped = ops.take(self.id_map, ops.cast(ids, "int32"), axis=0)
        if self.config.kind == "hash":
            mapped = mapped[..., 0]
        return self.table(mapped)

    def serving_bits(self) -> int:
        """The hashing table's serving bits (the id map is recomputed, not stored)."""
        return int(self.table.serving_bits())

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "embedding": embedding_config_dict(self.config),
            "num_rows": self.num_rows,
        }


def weighted_dot(user: Any, items: Any, weight: Any) -> Any:
    """Scores ``sum_d user[b, d] * weight[d] * items[..., d]``, shared or per-row items.

    Args:
        user: ``(B, d)`` user-side vectors.
        items: ``(C, d)`` candidate vectors shared by every row, or ``(B, C, d)``.
        weight: ``(d,)`` per-dimension weight (GMF's output kernel), or ``None``.

    Returns:
        ``(B, C)`` scores.
    """
    if weight is not None:
        user = user * weight
    if len(items.shape) == 2:
        return ops.matmul(user, ops.transpose(items))
    return ops.einsum("bd,bcd->bc", user, items)


def as_candidates(items: Any) -> Any:
    """Int32 tensor of candidate ids: ``(C,)`` shared by the batch or ``(B, C)``."""
    return ops.cast(ops.convert_to_tensor(items), "int32")


class UserItemRanker(keras.Model):
    """Base of the models that score (user, item) pairs from two id tables (GMF, NeuMF).

    Stores ``num_users``, ``num_items`` and the embedding config, scores a batch of
    pairs through :meth:`score_items` and writes those three in ``get_config``.
    Subclasses build their tables and implement :meth:`score_items`. Not registered:
    only the subclasses are saved.

    Args:
        num_users: Rows of the user table(s).
        num_items: Rows of the item table(s).
        embedding: The compression method (an ``EmbeddingConfig`` or its dict form).
        **kwargs: ``keras.Model`` arguments (``name``).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding: EmbeddingConfig | Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.embedding_config = coerce_embedding_config(embedding)

    def call(self, inputs: Mapping[str, Any], training: bool | None = None) -> Any:
        """``{"user": (B,), "item": (B,)}`` int ids -> ``(B,)`` logits."""
        items = ops.expand_dims(as_candidates(inputs["item"]), -1)
        return ops.squeeze(self.score_items(inputs["user"], items, training), -1)

    def score_items(self, users: Any, items: Any, training: bool | None = None) -> Any:
        """Logits of candidate items for each user.

        Args:
            users: ``(B,)`` user ids.
            items: ``(C,)`` item ids shared by all users (full ranking), or ``(B, C)``.
            training: Keras training flag.

        Returns:
            ``(B, C)`` logits.
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_users": self.num_users,
            "num_items": self.num_items,
            "embedding": embedding_config_dict(self.embedding_config),
        }
