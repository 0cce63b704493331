"""HashingEmbedding: one table of B rows indexed by a salted hash (Zhang 2020)."""

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
class HashingEmbedding(keras.layers.Layer, CompactEmbeddingMixin):
    """Embeds single-hash ids ``h1(value) mod B`` (``preprocessing.hash_strings``).

    The hashing itself happens in ``trainer/preprocessing.py`` (training and serving
    share it); this layer takes the bucket ids. Ids outside ``[0, B)`` are served from
    bucket ``B - 1``. Serving size: ``32 · B · d`` bits.

    Args:
        num_buckets: B, rows of the table.
        output_dim: Embedding width d.
        embeddings_initializer: Initializer of the table.
        **kwargs: Base layer arguments.

    Example:
        >>> layer = HashingEmbedding(num_buckets=16, output_dim=4)
        >>> layer(np.array([[3, 15]])).shape
        TensorShape([1, 2, 4])
    """

    def __init__(
        self,
        num_buckets: int,
        output_dim: int,
        embeddings_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_buckets = check_positive("num_buckets", num_buckets)
        self.output_dim = check_positive("output_dim", output_dim)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=0.01)
        )

    def build(self, input_shape: Any = None) -> None:
        self.table = self.add_weight(
            name="table",
            shape=(self.num_buckets, self.output_dim),
            initializer=self.embeddings_initializer,
        )
        self.built = True

    def call(self, ids: Any) -> Any:
        """Bucket ids of any shape -> ``ids.shape + (output_dim,)`` embeddings."""
        return ops.take(self.table, clip_ids(ids, self.num_buckets), axis=0)

    def serving_bits(self) -> int:
        """``32 · B · d``."""
        return FLOAT_BITS * self.num_buckets * self.output_dim

    def export_compact(self) -> dict[str, np.ndarray]:
        """``{"table": (B, d) float32}``."""
        if not self.built:
            self.build()
        return {"table": ops.convert_to_numpy(self.table).astype(np.float32)}

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy gather of (clipped) ``ids`` in ``arrays["table"]``."""
        return arrays["table"][clip_ids_np(ids, self.num_buckets)]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_buckets": self.num_buckets,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
        }
