"""FullEmbedding: one trainable row per id (the uncompressed MGQE Table 1 baseline)."""

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
class FullEmbedding(keras.layers.Layer, CompactEmbeddingMixin):
    """Looks ids up in a ``(num_rows, output_dim)`` float table.

    Ids outside ``[0, num_rows)`` are served from the last row (the OOV row ``V`` for
    dictionary ids) instead of raising. Serving size: ``32 · n · d`` bits.

    Args:
        num_rows: Rows n of the table (``V + 1`` for dictionary ids).
        output_dim: Embedding width d.
        embeddings_initializer: Initializer of the table.
        **kwargs: Base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Example:
        >>> layer = FullEmbedding(4, output_dim=2, embeddings_initializer="ones")
        >>> layer(np.array([0, 3])).shape
        TensorShape([2, 2])
    """

    # Subclasses that only rename the table (``HashingEmbedding``) override these:
    # the row-count argument and config key, and the weight and export-array name.
    _rows_arg = "num_rows"
    _table_name = "embeddings"

    def __init__(
        self,
        num_rows: int,
        output_dim: int,
        embeddings_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_rows = check_positive(self._rows_arg, num_rows)
        self.output_dim = check_positive("output_dim", output_dim)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=0.01)
        )

    def build(self, input_shape: Any = None) -> None:
        self.embeddings = self.add_weight(
            name=self._table_name,
            shape=(self.num_rows, self.output_dim),
            initializer=self.embeddings_initializer,
        )
        self.built = True

    def call(self, ids: Any) -> Any:
        """Integer ids of any shape -> ``ids.shape + (output_dim,)`` embeddings."""
        return ops.take(self.embeddings, clip_ids(ids, self.num_rows), axis=0)

    def serving_bits(self) -> int:
        """``32 · n · d`` (MGQE Table 1, full embedding)."""
        return FLOAT_BITS * self.num_rows * self.output_dim

    def export_compact(self) -> dict[str, np.ndarray]:
        """``{"embeddings": (n, d) float32}``."""
        if not self.built:
            self.build()
        table = ops.convert_to_numpy(self.embeddings).astype(np.float32)
        return {self._table_name: table}

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy gather of (clipped) ``ids`` in ``arrays["embeddings"]``."""
        return arrays[self._table_name][clip_ids_np(ids, self.num_rows)]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            self._rows_arg: self.num_rows,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
        }
