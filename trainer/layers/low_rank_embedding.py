"""LowRankEmbedding: E = U·V with U (n × r) and V (r × d) (LRF row of MGQE Table 1)."""

from __future__ import annotations

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


@keras.saving.register_keras_serializable(package="compactrec")
class LowRankEmbedding(keras.layers.Layer, CompactEmbeddingMixin):
    """Low-rank factorised table: row i is ``U[i] @ V``.

    Ids outside ``[0, num_rows)`` are served from the last row. Serving size:
    ``32·n·r + 32·r·d`` bits.

    Args:
        num_rows: n.
        output_dim: d.
        rank: r.
        factors_initializer: Initializer of U (n × r).
        projection_initializer: Initializer of V (r × d).
        **kwargs: Base layer arguments.

    Example:
        >>> layer = LowRankEmbedding(num_rows=10, output_dim=8, rank=2)
        >>> layer(np.array([1, 9])).shape
        TensorShape([2, 8])
    """

    def __init__(
        self,
        num_rows: int,
        output_dim: int,
        rank: int,
        factors_initializer: Any = None,
        projection_initializer: Any = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_rows = check_positive("num_rows", num_rows)
        self.output_dim = check_positive("output_dim", output_dim)
        self.rank = check_positive("rank", rank)
        self.factors_initializer = keras.initializers.get(
            factors_initializer or keras.initializers.RandomNormal(stddev=0.1)
        )
        self.projection_initializer = keras.initializers.get(projection_initializer)

    def build(self, input_shape: Any = None) -> None:
        self.factors = self.add_weight(
            name="factors",
            shape=(self.num_rows, self.rank),
            initializer=self.factors_initializer,
        )
        self.projection = self.add_weight(
            name="projection",
            shape=(self.rank, self.output_dim),
            initializer=self.projection_initializer,
        )
        self.built = True

    def call(self, ids: Any) -> Any:
        """Integer ids of any shape -> ``ids.shape + (output_dim,)`` embeddings."""
        rows = ops.take(self.factors, clip_ids(ids, self.num_rows), axis=0)
        return ops.matmul(rows, self.projection)

    def serving_bits(self) -> int:
        """``32·n·r + 32·r·d`` (MGQE Table 1, LRF)."""
        return FLOAT_BITS * self.rank * (self.num_rows + self.output_dim)

    def export_compact(self) -> dict[str, np.ndarray]:
        """``{"factors": (n, r), "projection": (r, d)}`` float32."""
        if not self.built:
            self.build()
        return {
            "factors": ops.convert_to_numpy(self.factors).astype(np.float32),
            "projection": ops.convert_to_numpy(self.projection).astype(np.float32),
        }

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy ``U[ids] @ V``."""
        return arrays["factors"][clip_ids_np(ids, self.num_rows)] @ arrays["projection"]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_rows": self.num_rows,
            "output_dim": self.output_dim,
            "rank": self.rank,
            "factors_initializer": keras.initializers.serialize(
                self.factors_initializer
            ),
            "projection_initializer": keras.initializers.serialize(
                self.projection_initializer
            ),
        }
