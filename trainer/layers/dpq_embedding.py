"""DPQEmbedding: differentiable product quantisation, VQ variant (DPQ-VQ).

Chen, Li & Sun, "Differentiable Product Quantization for End-to-End Embedding
Compression" (ICML 2020) and its reference code, as used by MGQE (Kang
et al. 2020). The VQ building blocks (response, search, centroid gather, straight-through
output, regulariser) live in :mod:`trainer.layers.vq_ops` and are re-exported here; this
module adds the checks, the batch norm and the layer base class (``VQEmbeddingBase``)
that :mod:`trainer.layers.mgqe_embedding` shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.contracts.features import MAX_CENTROIDS
from trainer.layers import base, compact_embedding
from trainer.layers.vq_ops import (  # noqa: F401  (re-exported for MGQE and callers)
    gather_centroids,
    nearest_codes,
    response_codes,
    straight_through,
    vq_regularizer,
    vq_response,
)
from trainer.serving import sizes

# Rows per chunk of the export pass: keeps the (rows, D, K) response near 2^24 floats.
_EXPORT_RESPONSE_FLOATS = 2**24


def response_norm(name: str) -> keras.layers.BatchNormalization:
    """Non-affine batch norm over the response, one mean/variance per centroid index."""
    return keras.layers.BatchNormalization(
        axis=-1, momentum=0.99, epsilon=1e-3, center=False, scale=False, name=name
    )


def check_num_centroids(name: str, value: Any) -> int:
    """K must be an int in ``[2, 2^16]`` (codes are stored as uint8/uint16)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(
            f"`{name}` must be an integer in [2, 65536]. Received: {value!r}"
        )
    if not 2 <= value <= MAX_CENTROIDS:
        raise ValueError(f"`{name}` must be in [2, 65536]. Received: {value!r}")
    return int(value)


def check_weight(name: str, value: Any) -> float:
    """Loss weights must be finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"`{name}` must be a number >= 0. Received: {value!r}")
    return float(value)


def export_chunks(num_rows: int, response_floats: int) -> list[tuple[int, int]]:
    """Row ranges for the export pass; chunking only bounds memory (inference mode)."""
    step = max(1, _EXPORT_RESPONSE_FLOATS // max(1, response_floats))
    return [(i, min(num_rows, i + step)) for i in range(0, num_rows, step)]


class VQEmbeddingBase(keras.layers.Layer, base.CompactEmbeddingMixin):
    """What DPQ-VQ and MGQE layers share around their code search.

    A ``(num_rows, output_dim)`` query table ``embeddings`` looked up by clipped ids,
    the VQ loss and straight-through output (DPQ-VQ), the chunked export
    pass, the NumPy compact lookup and the loss-weight/initializer arguments. Not
    registered: only the subclasses are saved.
    """

    num_rows: int
    output_dim: int
    response_batchnorm: bool
    embeddings: Any

    def _set_vq_arguments(
        self,
        commitment_weight: float,
        regularizer_weight: float,
        embeddings_initializer: Any,
        centroids_initializer: Any,
    ) -> None:
        """Checks and stores the loss weights and the two initializers."""
        self.commitment_weight = check_weight("commitment_weight", commitment_weight)
        self.regularizer_weight = check_weight("regularizer_weight", regularizer_weight)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=0.01)
        )
        self.centroids_initializer = keras.initializers.get(
            centroids_initializer or keras.initializers.RandomNormal(stddev=0.01)
        )

    def _vq_config(self) -> dict[str, Any]:
        """The config entries stored by :meth:`_set_vq_arguments`, batch norm first."""
        return {
            "response_batchnorm": self.response_batchnorm,
            "commitment_weight": self.commitment_weight,
            "regularizer_weight": self.regularizer_weight,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer
            ),
            "centroids_initializer": keras.initializers.serialize(
                self.centroids_initializer
            ),
        }

    def _lookup_queries(self, ids: Any) -> tuple[Any, Any, Any]:
        """Ids of any shape -> (their shape, ``(N,)`` clipped ids, ``(N, d)`` rows)."""
        shape = ops.shape(ids)
        flat = ops.reshape(base.clip_ids(ids, self.num_rows), (-1,))
        return shape, flat, ops.take(self.embeddings, flat, axis=0)

    def _distinct_codes(
        self, flat: Any, queries: Any, codes_of: Callable[[Any, Any], Any]
    ) -> Any:
        """The batch's codes, searched once per distinct id and gathered back.

        ``codes_of(queries, rows)`` returns the codes of those query rows. A row's code
        depends only on its own query (and tier) and the current centroids, so the
        search over the distinct ids of the batch, gathered back by position, gives
        exactly the codes of searching every position (integers: no rounding), at the
        cost of the distinct ids only (a Zipf-distributed batch repeats its head ids
        many times). The straight-through output, the VQ loss and every gradient still
        use the full batch, unchanged. Batch-normalised responses depend on the whole
        batch, so those layers (and backends without a dynamic-size unique) search
        every position.
        """
        if self.response_batchnorm or keras.backend.backend() != "tensorflow":
            return codes_of(queries, flat)
        import tensorflow as tf  # the tensorflow backend is running: already imported

        distinct, position = tf.unique(flat)
        rows = ops.take(self.embeddings, distinct, axis=0)
        return ops.take(codes_of(rows, distinct), position, axis=0)

    def _vq_output(self, queries: Any, quantized: Any, shape: Any) -> Any:
        """Adds the VQ loss (when weighted); ``e + sg(q - e)`` as ``shape + (d,)``."""
        if self.regularizer_weight or self.commitment_weight:
            self.add_loss(
                vq_regularizer(
                    queries, quantized, self.regularizer_weight, self.commitment_weight
                )
            )
        out = straight_through(queries, quantized)
        return ops.reshape(out, tuple(shape) + (self.output_dim,))

    def compute_output_shape(
        self, input_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return tuple(input_shape) + (self.output_dim,)

    def _chunked_codes(
        self, response_floats: int, codes_of: Callable[[int, int], Any]
    ) -> np.ndarray:
        """``codes_of(lo, hi)`` over memory-bounded row chunks, as ``(n, D)`` int64."""
        if not self.built:
            self.build()
        chunks = [
            ops.convert_to_numpy(codes_of(lo, hi))
            for lo, hi in export_chunks(self.num_rows, response_floats)
        ]
        return np.concatenate(chunks).astype(np.int64)

    def compact_lookup(
        self, arrays: dict[str, np.ndarray], ids: np.ndarray
    ) -> np.ndarray:
        """NumPy reference lookup (:func:`compact_embedding.lookup_numpy`)."""
        return compact_embedding.lookup_numpy(arrays, ids)


@keras.saving.register_keras_serializable(package="compactrec")
class DPQEmbedding(VQEmbeddingBase):
    """DPQ-VQ embedding: a query table quantised to D codes over K tied centroids.

    Each query row ``e`` (``d`` wide) is split into ``D`` slices of width ``s = d/D``;
    slice j takes the code ``c_j = argmax_k -||e_j - C[j, k]||^2`` (optionally after a
    non-affine batch norm of the responses) and the output is ``e + sg(q - e)`` with
    ``q_j = C[j, c_j]``. Scalar subspaces (``s = 1``, the papers' ``D = d``) without
    batch norm take the sort-and-search of :func:`trainer.layers.vq_ops.scalar_codes`
    (same codes, no ``(N, D, K)`` tensor). The layer adds ``alpha mean((q - sg(e))^2) + beta mean((sg(q) -
    e)^2)`` through ``add_loss``; it is the only thing that moves the centroids (Chen,
    Li & Sun 2020, DPQ-VQ; their code's ``kd_quantizer.py``).

    Args:
        num_rows: n (``V + 1`` for dictionary ids; ids outside ``[0, n)`` use row ``n -
            1``).
        output_dim: d.
        num_subspaces: D; must divide d.
        num_centroids: K in ``[2, 2^16]``.
        response_batchnorm: Batch-normalise the responses before the argmax (DPQ code).
        commitment_weight: beta, weight of ``mean((sg(q) - e)^2)`` (DPQ default 0).
        regularizer_weight: alpha, weight of ``mean((q - sg(e))^2)`` (DPQ default 1).
        embeddings_initializer: Query table init (MGQE: N(0, 0.01^2)).
        centroids_initializer: Centroid init (MGQE: N(0, 0.01^2)).
        **kwargs: Keras layer arguments.

    Example:
        >>> layer = DPQEmbedding(100, output_dim=8, num_subspaces=4, num_centroids=16)
        >>> layer(np.array([[1, 2, 3]])).shape
        TensorShape([1, 3, 8])
    """

    def __init__(
        self,
        num_rows: int,
        output_dim: int,
        num_subspaces: int,
        num_centroids: int = 256,
        response_batchnorm: bool = False,
        commitment_weight: float = 0.0,
        regularizer_weight: float = 1.0,
        embeddings_initializer: Any = None,
        centroids_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_rows = base.check_positive("num_rows", num_rows)
        self.output_dim = base.check_positive("output_dim", output_dim)
        self.num_subspaces = base.check_positive("num_subspaces", num_subspaces)
        if self.output_dim % self.num_subspaces:
            raise ValueError(
                f"`num_subspaces` must divide `output_dim` ({self.output_dim}). "
                f"Received: {num_subspaces}"
            )
        self.num_centroids = check_num_centroids("num_centroids", num_centroids)
        self.response_batchnorm = bool(response_batchnorm)
        self._set_vq_arguments(
            commitment_weight,
            regularizer_weight,
            embeddings_initializer,
            centroids_initializer,
        )
        self.norm = response_norm("response_norm") if self.response_batchnorm else None

    @property
    def subspace_dim(self) -> int:
        """s = d / D."""
        return self.output_dim // self.num_subspaces

    def build(self, input_shape: Any = None) -> None:
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_rows, self.output_dim),
            initializer=self.embeddings_initializer,
        )
        self.centroids = self.add_weight(
            name="centroids",
            shape=(self.num_subspaces, self.num_centroids, self.subspace_dim),
            initializer=self.centroids_initializer,
        )
        if self.norm is not None:
            self.norm.build((self.num_subspaces, None, self.num_centroids))
        self.built = True

    def _codes(self, queries: Any, training: bool | None) -> Any:
        """``(N, d)`` queries -> ``(N, D)`` int32 codes (no gradient flows through)."""
        slices = ops.reshape(
            ops.stop_gradient(queries), (-1, self.num_subspaces, self.subspace_dim)
        )
        centroids = ops.stop_gradient(self.centroids)
        if self.norm is None:
            return nearest_codes(slices, centroids)
        return response_codes(
            self.norm(vq_response(slices, centroids), training=training)
        )

    def call(self, ids: Any, training: bool | None = None) -> Any:
        """Integer ids of any shape -> ``ids.shape + (output_dim,)`` embeddings."""
        shape, flat, queries = self._lookup_queries(ids)
        codes = self._distinct_codes(
            flat, queries, lambda rows, _: self._codes(rows, training)
        )
        quantized = ops.reshape(
            gather_centroids(self.centroids, codes), (-1, self.output_dim)
        )
        return self._vq_output(queries, quantized, shape)

    def compute_codes(self) -> np.ndarray:
        """Codes of every row from one inference-mode pass (batch norm: moving stats).

        Returns:
            ``(n, D)`` int64 codes, recomputed from the current weights (DPQ's post-training extraction:
            never stale per-batch codes). Rows go through in memory-bounded chunks,
            which in inference mode changes nothing.
        """
        return self._chunked_codes(
            self.num_subspaces * self.num_centroids,
            lambda lo, hi: self._codes(self.embeddings[lo:hi], training=False),
        )

    def serving_bits(self) -> int:
        """``n D ceil(log2 K) + 32 K d`` (MGQE Table 1, DPQ)."""
        return sizes.dpq_bits(
            self.num_rows, self.output_dim, self.num_subspaces, self.num_centroids
        )

    def export_compact(self) -> dict[str, np.ndarray]:
        """Codes (uint8/uint16 and bit-packed) and float32 centroids; see
        :mod:`trainer.layers.compact_embedding` for the format."""
        codes = self.compute_codes()
        return compact_embedding.make_compact_arrays(
            codes,
            np.zeros(self.num_rows, dtype=np.int32),
            [self.num_subspaces],
            [self.num_centroids],
            ops.convert_to_numpy(self.centroids),
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_rows": self.num_rows,
            "output_dim": self.output_dim,
            "num_subspaces": self.num_subspaces,
            "num_centroids": self.num_centroids,
            **self._vq_config(),
        }
