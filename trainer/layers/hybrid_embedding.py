"""HybridEmbedding: top-k dictionary rows + double hashing for the rest (Zhang 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.layers.base import (
    FLOAT_BITS,
    CompactEmbeddingMixin,
    check_positive,
    clip_ids,
    clip_ids_np,
)
from trainer.layers.double_hashing_embedding import DoubleHashingEmbedding


@keras.saving.register_keras_serializable(package="compactrec")
class HybridEmbedding(keras.layers.Layer, CompactEmbeddingMixin):
    """Frequency hashing for the top-k values, double hashing for all others.

    Ids ``(..., 3) = (r, h1, h2)`` (``docs/ARCHITECTURE.md``): ``r`` in ``[0, k)``
    selects the value's own dictionary row; any other ``r`` (``k`` = not in the
    dictionary, or an out-of-range id at serving) selects the double-hashed embedding
    of ``(h1, h2)``. The
    dictionary has ``k + 1`` rows so its layout matches the dictionary treatments (``V``
    rows + OOV); row ``k`` is reserved and never read. Hash ids outside ``[0, B)`` are
    served from bucket ``B - 1``. Serving size: ``32 · (k + 1) · d`` + the hash tables.

    Args:
        dictionary_size: k, number of dictionary values.
        num_buckets: B, rows per hash table.
        output_dim: Embedding width d.
        combiner: ``"sum"`` or ``"concat"`` for the double-hashed part.
        shared_table: One hash table for both hashes.
        embeddings_initializer: Initializer of the dictionary and hash tables.
        **kwargs: Base layer arguments.

    Example:
        >>> layer = HybridEmbedding(dictionary_size=3, num_buckets=16, output_dim=4)
        >>> layer(np.array([[0, 5, 7], [3, 5, 7]])).shape
        TensorShape([2, 4])
    """

    def __init__(
        self,
        dictionary_size: int,
        num_buckets: int,
        output_dim: int,
        combiner: str = "sum",
        shared_table: bool = False,
        embeddings_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dictionary_size = check_positive("dictionary_size", dictionary_size)
        self.hashed = DoubleHashingEmbedding(
            num_buckets,
            output_dim,
            combiner=combiner,
            shared_table=shared_table,
            embeddings_initializer=embeddings_initializer,
            name="hashed",
            dtype=self.dtype_policy,
        )
        self.embeddings_initializer = self.hashed.embeddings_initializer

    @property
    def output_dim(self) -> int:
        return self.hashed.output_dim

    def build(self, input_shape: Any = None) -> None:
        self.dictionary = self.add_weight(
            name="dictionary",
            shape=(self.dictionary_size + 1, self.output_dim),
            initializer=self.embeddings_initializer,
        )
        self.hashed.build()
        self.built = True

    def call(self, ids: Any) -> Any:
        """``(..., 3)`` ids ``(r, h1, h2)`` -> ``(..., output_dim)`` embeddings."""
        rows = ids[..., 0]
        in_dictionary = ops.logical_and(
            ops.greater_equal(rows, 0), ops.less(rows, self.dictionary_size)
        )
        own = ops.take(
            self.dictionary, clip_ids(rows, self.dictionary_size + 1), axis=0
        )
        hashed = self.hashed(ids[..., 1:])
        return ops.where(ops.expand_dims(in_dictionary, -1), own, hashed)

    def promote_rows(
        self, rows: Sequence[int] | np.ndarray, hash_ids: np.ndarray
    ) -> None:
        """Warm-starts promoted values' dictionary rows from their hashed embedding.

        Call it on the new layer after its hash tables hold the previous weights: for
        each promoted value i, ``dictionary[rows[i]] = g(E1[h1_i], E2[h2_i])`` with
        ``(h1_i, h2_i) = hash_ids[i]``, so the value's embedding does not change at the
        moment of promotion.

        Args:
            rows: ``(n,)`` new dictionary rows, each in ``[0, k)``.
            hash_ids: ``(n, 2)`` the values' ``(h1 mod B, h2 mod B)``.

        Raises:
            ValueError: on shape mismatch or rows outside ``[0, k)``.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        hash_ids = np.asarray(hash_ids, dtype=np.int64)
        if hash_ids.shape != (rows.size, 2):
            raise ValueError(
                f"`hash_ids` must have shape ({rows.size}, 2). "
                f"Received: {hash_ids.shape}"
            )
        if rows.size and (rows.min() < 0 or rows.max() >= self.dictionary_size):
            raise ValueError(
                f"`rows` must lie in [0, {self.dictionary_size}). "
                f"Received: {rows.tolist()}"
            )
        if not self.built:
            self.build()
        table = ops.convert_to_numpy(self.dictionary).copy()
        table[rows] = self.hashed.compact_lookup(self.hashed.export_compact(), hash_ids)
        self.dictionary.assign(table)

    def serving_bits(self) -> int:
        """``32 · (k + 1) · d`` + the double-hash tables."""
        own = FLOAT_BITS * (self.dictionary_size + 1) * self.output_dim
        return own + self.hashed.serving_bits()

    def export_compact(self) -> dict[str, np.ndarray]:
        """``{"dictionary": (k + 1, d)}`` plus the hash tables by their names."""
        if not self.built:
            self.build()
        dictionary = ops.convert_to_numpy(self.dictionary).astype(np.float32)
        return {"dictionary": dictionary, **self.hashed.export_compact()}

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy reference of :meth:`call` on the exported arrays."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = ids[..., 0]
        own = arrays["dictionary"][clip_ids_np(rows, self.dictionary_size + 1)]
        hashed = self.hashed.compact_lookup(arrays, ids[..., 1:])
        in_dictionary = (rows >= 0) & (rows < self.dictionary_size)
        return np.where(in_dictionary[..., None], own, hashed)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "dictionary_size": self.dictionary_size,
            "num_buckets": self.hashed.num_buckets,
            "output_dim": self.output_dim,
            "combiner": self.hashed.combiner,
            "shared_table": self.hashed.shared_table,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
        }
