"""HashingEmbedding: one table of B rows indexed by a salted hash (Zhang 2020)."""

from __future__ import annotations

from typing import Any

import keras

from trainer.layers.full_embedding import FullEmbedding


@keras.saving.register_keras_serializable(package="compactrec")
class HashingEmbedding(FullEmbedding):
    """Embeds single-hash ids ``h1(value) mod B`` (``preprocessing.hash_strings``).

    The hashing itself happens in ``trainer/preprocessing.py`` (training and serving
    share it); this layer takes the bucket ids. Ids outside ``[0, B)`` are served from
    bucket ``B - 1``. Serving size: ``32 · B · d`` bits.

    A ``FullEmbedding`` of ``B`` rows under other names: the argument and config key
    ``num_buckets``, the weight and compact-export array ``table``.

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

    _rows_arg = "num_buckets"
    _table_name = "table"

    def __init__(
        self,
        num_buckets: int,
        output_dim: int,
        embeddings_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_buckets, output_dim, embeddings_initializer, **kwargs)

    @property
    def num_buckets(self) -> int:
        """B, rows of the table."""
        return self.num_rows

    @property
    def table(self) -> Any:
        """The ``(B, d)`` weight (named ``table``)."""
        return self.embeddings
