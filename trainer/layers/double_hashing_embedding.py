"""DoubleHashingEmbedding: g(E1[h1], E2[h2]), two independent hashes (Zhang 2020)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.layers.base import (
    FLOAT_BITS,
    CompactEmbeddingMixin,
    check_choice,
    check_positive,
    clip_ids,
    clip_ids_np,
)

COMBINERS = ("sum", "concat")


@keras.saving.register_keras_serializable(package="compactrec")
class DoubleHashingEmbedding(keras.layers.Layer, CompactEmbeddingMixin):
    """Combines the rows of two hash buckets ``(h1 mod B, h2 mod B)`` per value.

    The pair acts like one hash into B² slots at the cost of 2B rows (Zhang et al.
    2020). With ``combiner="sum"`` the tables have ``output_dim`` columns and are added;
    with ``"concat"`` each has ``output_dim / 2`` columns. ``shared_table=True`` uses
    one table for both hashes. Ids outside ``[0, B)`` are served from bucket ``B - 1``.
    Serving size: ``32 · B · c`` bits per table (c = table columns; 1 or 2 tables).

    Args:
        num_buckets: B, rows per table.
        output_dim: Embedding width d (even for ``concat``).
        combiner: ``"sum"`` or ``"concat"``.
        shared_table: One table for both hashes instead of two.
        embeddings_initializer: Initializer of the tables.
        **kwargs: Base layer arguments.

    Example:
        >>> layer = DoubleHashingEmbedding(16, output_dim=4, combiner="concat")
        >>> layer(np.array([[3, 15], [0, 1]])).shape
        TensorShape([2, 4])
    """

    def __init__(
        self,
        num_buckets: int,
        output_dim: int,
        combiner: str = "sum",
        shared_table: bool = False,
        embeddings_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_buckets = check_positive("num_buckets", num_buckets)
        self.output_dim = check_positive("output_dim", output_dim)
        self.combiner = check_choice("combiner", combiner, COMBINERS)
        if combiner == "concat" and output_dim % 2:
            raise ValueError(
                "`output_dim` must be even with combiner='concat'. "
                f"Received: {output_dim}"
            )
        self.shared_table = bool(shared_table)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=0.01)
        )

    @property
    def table_dim(self) -> int:
        """Columns per table: ``output_dim`` (sum) or ``output_dim // 2`` (concat)."""
        return self.output_dim if self.combiner == "sum" else self.output_dim // 2

    @property
    def table_names(self) -> tuple[str, ...]:
        """``("table",)`` when shared, else ``("table_1", "table_2")``."""
        return ("table",) if self.shared_table else ("table_1", "table_2")

    def build(self, input_shape: Any = None) -> None:
        self.tables = [
            self.add_weight(
                name=name,
                shape=(self.num_buckets, self.table_dim),
                initializer=self.embeddings_initializer,
            )
            for name in self.table_names
        ]
        self.built = True

    def call(self, ids: Any) -> Any:
        """``(..., 2)`` bucket ids -> ``(..., output_dim)`` embeddings."""
        ids = clip_ids(ids, self.num_buckets)
        second = self.tables[-1]
        parts = [
            ops.take(self.tables[0], ids[..., 0], axis=0),
            ops.take(second, ids[..., 1], axis=0),
        ]
        if self.combiner == "sum":
            return parts[0] + parts[1]
        return ops.concatenate(parts, axis=-1)

    def serving_bits(self) -> int:
        """``32 · B · c`` per table (MGQE Table 1 style count of float rows)."""
        return FLOAT_BITS * self.num_buckets * self.table_dim * len(self.table_names)

    def export_compact(self) -> dict[str, np.ndarray]:
        """The float32 tables by name (``table`` or ``table_1``/``table_2``)."""
        if not self.built:
            self.build()
        return {
            name: ops.convert_to_numpy(t).astype(np.float32)
            for name, t in zip(self.table_names, self.tables, strict=True)
        }

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy reference of :meth:`call` on the exported tables."""
        ids = clip_ids_np(ids, self.num_buckets)
        first, second = arrays[self.table_names[0]], arrays[self.table_names[-1]]
        parts = (first[ids[..., 0]], second[ids[..., 1]])
        if self.combiner == "sum":
            return parts[0] + parts[1]
        return np.concatenate(parts, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_buckets": self.num_buckets,
            "output_dim": self.output_dim,
            "combiner": self.combiner,
            "shared_table": self.shared_table,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
        }
