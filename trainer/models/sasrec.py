"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).

Follows the authors' TensorFlow code (``kang205/SASRec``: ``model.py``, ``modules.py``)
with MGQE's settings (Kang et al. 2020: d = 64, maxlen 50, 2 blocks, 1 head, dropout
0.2). The item table (row 0 = padding, masked to zero) comes from an
:class:`~trainer.config.EmbeddingConfig` and is **shared** by the input and the output:
a compressed table (DPQ, MGQE, ...) also scores the candidates.

Per block: ``Q = LN(x)``; ``x = Q + Attention(Q, x, x)`` (causal, padding keys masked,
dropout on the weights); ``x = LN(x)``; ``x = x + FFN(x)`` (two d-wide Dense, ReLU,
dropout); ``x *= mask``. A final layer norm follows. Layer-norm epsilon is 1e-8.

Example:
    >>> model = SASRec(num_items=20, embedding={"kind": "full", "dim": 8}, maxlen=5)
    >>> seq = np.array([[0, 0, 3, 4, 5]])
    >>> tuple(model(seq).shape)
    (1, 5, 8)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
from keras import ops

from trainer.config import EmbeddingConfig
from trainer.models import ranking_common as rc

LAYER_NORM_EPSILON = 1e-8
_MASKED = (
    -1e9
)  # finite: a query whose keys are all masked gets uniform weights, not NaN


@keras.saving.register_keras_serializable(package="compactrec")
class CausalSelfAttention(keras.layers.Layer):
    """Single-head causal attention of SASRec (``modules.multihead_attention``).

    Queries and keys/values come in separately (queries are layer-normalised, keys are
    not). Keys at padding positions and keys after the query are masked; outputs at
    padding queries are zeroed. No output projection, as in the reference code.

    Args:
        dim: Width of Q, K and V.
        dropout: Dropout on the attention weights.
        **kwargs: Layer arguments.

    Example:
        >>> att = CausalSelfAttention(4)
        >>> x = np.ones((1, 3, 4), "float32"); mask = np.ones((1, 3), "float32")
        >>> tuple(att(x, x, mask).shape)
        (1, 3, 4)
    """

    def __init__(self, dim: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.dropout = float(dropout)
        self.query = keras.layers.Dense(self.dim, name="query")
        self.key = keras.layers.Dense(self.dim, name="key")
        self.value = keras.layers.Dense(self.dim, name="value")
        self.weights_dropout = keras.layers.Dropout(self.dropout)

    def build(
        self, queries_shape: Any, keys_shape: Any = None, mask_shape: Any = None
    ) -> None:
        for layer in (self.query, self.key, self.value):
            layer.build((None, self.dim))

    def call(
        self, queries: Any, keys: Any, mask: Any, training: bool | None = None
    ) -> Any:
        """``(B, L, d)`` queries/keys, ``(B, L)`` 0/1 mask -> ``(B, L, d)``."""
        q, k, v = self.query(queries), self.key(keys), self.value(keys)
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) / math.sqrt(self.dim)
        length = ops.shape(scores)[-1]
        causal = ops.tril(ops.ones((length, length), dtype="bool"))
        allowed = ops.logical_and(
            causal[None, :, :], ops.cast(mask[:, None, :], "bool")
        )
        scores = ops.where(allowed, scores, ops.full_like(scores, _MASKED))
        weights = ops.softmax(scores, axis=-1) * mask[:, :, None]
        weights = self.weights_dropout(weights, training=training)
        return ops.matmul(weights, v)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="compactrec")
class PointWiseFeedForward(keras.layers.Layer):
    """Two d-wide position-wise Dense layers (ReLU, dropout) with a residual.

    Args:
        dim: Width of both layers.
        dropout: Dropout after each layer.
        **kwargs: Layer arguments.

    Example:
        >>> tuple(PointWiseFeedForward(4)(np.ones((1, 3, 4), "float32")).shape)
        (1, 3, 4)
    """

    def __init__(self, dim: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.dropout = float(dropout)
        self.inner = keras.layers.Dense(self.dim, activation="relu", name="inner")
        self.outer = keras.layers.Dense(self.dim, name="outer")
        self.inner_dropout = keras.layers.Dropout(self.dropout)
        self.outer_dropout = keras.layers.Dropout(self.dropout)

    def build(self, input_shape: Any) -> None:
        self.inner.build((None, self.dim))
        self.outer.build((None, self.dim))

    def call(self, x: Any, training: bool | None = None) -> Any:
        """``(B, L, d)`` -> ``(B, L, d)``."""
        y = self.inner_dropout(self.inner(x), training=training)
        y = self.outer_dropout(self.outer(y), training=training)
        return x + y

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="compactrec")
class SASRecBlock(keras.layers.Layer):
    """One SASRec block: LN -> causal attention (+ residual) -> LN -> FFN -> mask.

    Args:
        dim: Model width.
        dropout: Dropout rate of attention weights and FFN.
        **kwargs: Layer arguments.

    Example:
        >>> blk = SASRecBlock(4)
        >>> x = np.ones((1, 3, 4), "float32")
        >>> tuple(blk(x, np.ones((1, 3), "float32")).shape)
        (1, 3, 4)
    """

    def __init__(self, dim: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.dropout = float(dropout)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name="attention_norm"
        )
        self.attention = CausalSelfAttention(self.dim, self.dropout, name="attention")
        self.ffn_norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name="ffn_norm"
        )
        self.ffn = PointWiseFeedForward(self.dim, self.dropout, name="ffn")

    def build(self, x_shape: Any, mask_shape: Any = None) -> None:
        shape = (None, None, self.dim)
        self.attention_norm.build(shape)
        self.attention.build(shape, shape, (None, None))
        self.ffn_norm.build(shape)
        self.ffn.build(shape)

    def call(self, x: Any, mask: Any, training: bool | None = None) -> Any:
        """``(B, L, d)`` states and ``(B, L)`` float mask -> ``(B, L, d)``."""
        q = self.attention_norm(x)
        x = q + self.attention(q, x, mask, training=training)
        x = self.ffn(self.ffn_norm(x), training=training)
        return x * mask[:, :, None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="compactrec")
class SASRec(keras.Model):
    """Self-attentive sequential recommender with a shared (compressed) item table.

    Sub-modules: ``item_embedding`` (``num_items + 1`` rows, row 0 = padding),
    ``position_embedding`` (learned, ``maxlen x d``), ``input_dropout``, ``blocks``
    (:class:`SASRecBlock`) and ``final_norm``.

    Args:
        num_items: Number of real items; ids ``1 .. num_items``, 0 is padding.
        embedding: Compression of the item table (``EmbeddingConfig`` or dict).
        maxlen: Sequence length (sequences are left-padded with 0).
        num_blocks: Number of blocks.
        num_heads: Attention heads; only 1 (the MGQE setting) is implemented.
        dropout: Dropout rate.
        **kwargs: ``keras.Model`` arguments.

    Example:
        >>> m = SASRec(9, {"kind": "full", "dim": 4}, maxlen=3)
        >>> tuple(m.score_items(np.array([[0, 1, 2]]), np.arange(1, 10)).shape)
        (1, 9)
    """

    def __init__(
        self,
        num_items: int,
        embedding: EmbeddingConfig | Mapping[str, Any],
        maxlen: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_heads != 1:
            raise ValueError(
                f"`num_heads` must be 1 (MGQE's setting). Received: {num_heads}"
            )
        self.num_items = int(num_items)
        self.maxlen, self.num_blocks, self.dropout = (
            int(maxlen),
            int(num_blocks),
            float(dropout),
        )
        self.embedding_config = rc.coerce_embedding_config(embedding)
        dim = self.embedding_config.dim
        self.item_embedding = rc.build_table(
            self.embedding_config,
            self.num_items + 1,
            "item_embedding",
            padding_row=True,
        )
        self.position_embedding = keras.layers.Embedding(
            self.maxlen,
            dim,
            embeddings_initializer="glorot_uniform",
            name="position_embedding",
        )
        self.input_dropout = keras.layers.Dropout(self.dropout)
        self.blocks = [
            SASRecBlock(dim, self.dropout, name=f"block_{b}")
            for b in range(self.num_blocks)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name="final_norm"
        )
        self._build_dense()

    def _build_dense(self) -> None:
        dim = self.embedding_config.dim
        self.position_embedding.build((None, self.maxlen))
        for block in self.blocks:
            block.build((None, self.maxlen, dim))
        self.final_norm.build((None, self.maxlen, dim))

    def embedding_tables(self) -> dict[str, keras.layers.Layer]:
        """The item table (the only compressed one; positions stay 32-bit)."""
        return {"item": self.item_embedding}

    def embed_items(self, ids: Any, training: bool | None = None) -> Any:
        """Item vectors with the padding id 0 masked to zero: ``ids.shape + (d,)``."""
        ids = rc.as_candidates(ids)
        emb = self.item_embedding(ids, training=training)
        return emb * ops.cast(ops.not_equal(ids, 0), emb.dtype)[..., None]

    def encode(self, seq: Any, seq_emb: Any, training: bool | None = None) -> Any:
        """``(B, L)`` ids and their ``(B, L, d)`` vectors -> ``(B, L, d)`` states."""
        mask = ops.cast(ops.not_equal(seq, 0), "float32")
        length = ops.shape(seq)[1]
        x = seq_emb * math.sqrt(self.embedding_config.dim)
        x = x + self.position_embedding(ops.arange(length))[None, :, :]
        x = self.input_dropout(x, training=training) * mask[:, :, None]
        for block in self.blocks:
            x = block(x, mask, training=training)
        return self.final_norm(x)

    def call(self, seq: Any, training: bool | None = None) -> Any:
        """``(B, L)`` left-padded item ids -> ``(B, L, d)`` sequence states."""
        seq = rc.as_candidates(seq)
        return self.encode(seq, self.embed_items(seq, training), training)

    def train_logits(
        self, seq: Any, pos: Any, neg: Any, training: bool | None = True
    ) -> tuple[Any, Any]:
        """Logits of the next item and of one negative at each position.

        The three id tensors go through the item table in one call, so a compressed
        table adds its regulariser once per step.

        Args:
            seq: ``(B, L)`` input ids.
            pos: ``(B, L)`` next-item ids (0 at padding positions).
            neg: ``(B, L)`` negative ids (0 at padding positions).
            training: Keras training flag.

        Returns:
            ``(pos_logits, neg_logits)``, each ``(B, L)``.
        """
        seq = rc.as_candidates(seq)
        emb = self.embed_items(
            ops.concatenate(
                [seq, rc.as_candidates(pos), rc.as_candidates(neg)], axis=1
            ),
            training,
        )
        seq_emb, pos_emb, neg_emb = ops.split(emb, 3, axis=1)
        states = self.encode(seq, seq_emb, training)
        return ops.sum(states * pos_emb, -1), ops.sum(states * neg_emb, -1)

    def score_items(self, seq: Any, items: Any, training: bool | None = None) -> Any:
        """Logits of candidates after the whole sequence (its last position).

        Args:
            seq: ``(B, L)`` left-padded item ids.
            items: ``(C,)`` ids shared by the batch (full ranking), or ``(B, C)``.
            training: Keras training flag.

        Returns:
            ``(B, C)`` logits.
        """
        last = self(seq, training=training)[:, -1, :]
        return rc.weighted_dot(last, self.embed_items(items, training), None)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "embedding": rc.embedding_config_dict(self.embedding_config),
            "maxlen": self.maxlen,
            "num_blocks": self.num_blocks,
            "num_heads": 1,
            "dropout": self.dropout,
        }
