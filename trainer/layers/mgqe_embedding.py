"""MGQEEmbedding: multi-granular quantised embeddings (shared and unshared variants).

Kang, Cheng, Chen, Yi, Lin, Hong & Chi, "Learning Multi-granular Quantized Embeddings
for Large-Vocab Categorical Features in Recommender Systems" (WWW 2020 Companion / long
version): frequency tiers, three variants, Algorithm 1, Table 1. The quantiser is DPQ-VQ
(:mod:`trainer.layers.dpq_embedding`); the unshared-variable-D computations live in
:mod:`trainer.layers.mgqe_unshared`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from trainer.contracts import features
from trainer.layers import base, compact_embedding, mgqe_unshared
from trainer.layers import dpq_embedding as dpq
from trainer.serving import sizes

VARIANTS = ("shared", "unshared_k", "unshared_d")
LOOKUPS = ("masked", "groupwise")


@keras.saving.register_keras_serializable(package="compactrec")
class MGQEEmbedding(dpq.VQEmbeddingBase):
    """DPQ-VQ embedding whose code granularity depends on the id's frequency tier.

    Rows are split into tiers by the non-trainable int weight ``row_tier`` (tier 0 =
    most frequent; default: row r is in tier i when ``tier_boundaries[i-1] <= r <
    tier_boundaries[i]``, so the OOV row, the last one, is in the coldest tier).
    Variants:

    * ``"shared"`` (MGQE default): one ``D x K_1 x s`` centroid table; an id in tier i
      may pick only among the first ``K_i`` centroids.
    * ``"unshared_k"``: each tier has its own ``D x K_i x s`` table (stored side by
      side).
    * ``"unshared_d"``: each tier has its own ``D_i x K x d/D_i`` table.

    Lookups (identical codes without batch norm; a test checks it bit for bit):

    * ``"masked"``: one pass, responses to all centroids, ``-inf`` outside the tier's
      range, argmax (a single-pass form of MGQE's Algorithm 1). Scalar subspaces
      (``s = 1``) without batch norm search each tier's sorted centroids instead
      (:func:`trainer.layers.vq_ops.scalar_codes`, same codes).
    * ``"groupwise"``: MGQE Algorithm 1 in backend-neutral ``keras.ops``: per tier,
      gather the batch positions of that tier (``ops.nonzero`` + ``ops.take``, the
      ``dynamic_partition`` step), quantise them against that tier's ``K_i`` centroids
      only, and ``ops.scatter`` the codes back to batch order (the ``dynamic_stitch``
      step). It needs dynamic shapes, so on the JAX backend (``jit``) the masked
      computation runs instead (same codes).

    The output is ``e + sg(q - e)`` and ``alpha mean((q - sg(e))^2) + beta mean((sg(q) -
    e)^2)`` is added with ``add_loss``, as in DPQ-VQ.

    Args:
        num_rows: n (``V + 1`` for dictionary ids).
        output_dim: d.
        num_subspaces: D (for ``unshared_d``: D_1, equal to
            ``num_subspaces_per_tier[0]``).
        num_centroids: ``K_1 >= ... >= K_m`` (``unshared_d``: one K, or m equal values).
        tier_boundaries: m - 1 non-decreasing row boundaries. None: ``[ceil(0.1 n)]``
            for two tiers (MGQE's 10 % head), required for more.
        variant: ``"shared"``, ``"unshared_k"`` or ``"unshared_d"``.
        num_subspaces_per_tier: ``D_1 >= ... >= D_m`` (``unshared_d`` only).
        lookup: ``"masked"`` or ``"groupwise"``.
        response_batchnorm: Batch-normalise responses before the argmax, with one
            statistic per centroid column over the whole batch (all tiers); masked
            lookup only, since splitting the batch would change the statistics.
        commitment_weight: beta.
        regularizer_weight: alpha.
        embeddings_initializer: Query table init (MGQE: N(0, 0.01^2)).
        centroids_initializer: Centroid init (MGQE: N(0, 0.01^2)).
        **kwargs: Keras layer arguments.

    Example:
        >>> layer = MGQEEmbedding(100, 8, num_subspaces=4, num_centroids=(16, 4))
        >>> layer(np.array([0, 99])).shape
        TensorShape([2, 8])
    """

    def __init__(
        self,
        num_rows: int,
        output_dim: int,
        num_subspaces: int,
        num_centroids: int | Sequence[int] = (256, 64),
        tier_boundaries: Sequence[int] | None = None,
        variant: str = "shared",
        num_subspaces_per_tier: Sequence[int] | None = None,
        lookup: str = "masked",
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
        self.variant = base.check_choice("variant", variant, VARIANTS)
        self.lookup = base.check_choice("lookup", lookup, LOOKUPS)
        self.num_centroids = mgqe_unshared.int_list("num_centroids", num_centroids)
        for k in self.num_centroids:
            dpq.check_num_centroids("num_centroids", k)
        mgqe_unshared.non_increasing("num_centroids", self.num_centroids, "K")
        self.num_subspaces_per_tier = self._check_subspaces(num_subspaces_per_tier)
        self.tier_boundaries = self._check_boundaries(tier_boundaries)
        self.response_batchnorm = bool(response_batchnorm)
        if self.response_batchnorm and self.lookup == "groupwise":
            raise ValueError(
                "`lookup` must be 'masked' with response_batchnorm=True: the "
                "group-wise "
                "lookup splits the batch, which changes the batch-norm statistics. "
                f"Received: {lookup!r}"
            )
        self._set_vq_arguments(
            commitment_weight,
            regularizer_weight,
            embeddings_initializer,
            centroids_initializer,
        )
        self._plan_tiers()

    def _check_subspaces(self, per_tier: Sequence[int] | None) -> list[int] | None:
        if self.variant == "unshared_d":
            return mgqe_unshared.check_variable_d(
                per_tier, self.output_dim, self.num_subspaces, self.num_centroids
            )
        if per_tier is not None:
            raise ValueError(
                "`num_subspaces_per_tier` is only for variant='unshared_d'. "
                f"Received: {per_tier!r}"
            )
        if self.output_dim % self.num_subspaces:
            raise ValueError(
                f"`num_subspaces` must divide `output_dim` ({self.output_dim}). "
                f"Received: {self.num_subspaces}"
            )
        return None

    @property
    def num_tiers(self) -> int:
        """m."""
        if self.num_subspaces_per_tier is not None:
            return len(self.num_subspaces_per_tier)
        return len(self.num_centroids)

    def _check_boundaries(self, boundaries: Sequence[int] | None) -> list[int]:
        m = self.num_tiers
        if boundaries is None:
            if m == 1:
                return []
            if m == 2:
                return [features.head_size(self.num_rows, 0.1)]
            raise ValueError(
                f"`tier_boundaries` is required with {m} tiers (m - 1 values)."
            )
        values = [int(b) for b in boundaries]
        if len(values) != m - 1:
            raise ValueError(
                f"`tier_boundaries` needs {m - 1} values. Received: {values}"
            )
        if any(b < 0 or b > self.num_rows for b in values) or values != sorted(values):
            raise ValueError(
                "`tier_boundaries` must be non-decreasing within "
                f"[0, {self.num_rows}]. "
                f"Received: {values}"
            )
        return values

    def _plan_tiers(self) -> None:
        m = self.num_tiers
        if self.variant == "unshared_d":
            self.tier_num_subspaces = list(self.num_subspaces_per_tier or [])
            self.tier_num_centroids = [self.num_centroids[0]] * m
            self.tier_centroid_offsets = [0] * m
            self.total_centroids = None
        else:
            self.tier_num_subspaces = [self.num_subspaces] * m
            self.tier_num_centroids = list(self.num_centroids)
            if self.variant == "shared":
                self.tier_centroid_offsets = [0] * m
                self.total_centroids = self.num_centroids[0]
            else:
                self.tier_centroid_offsets = np.cumsum(
                    [0, *self.num_centroids[:-1]]
                ).tolist()
                self.total_centroids = sum(self.num_centroids)
        if self.response_batchnorm:
            count = 1 if self.total_centroids is not None else m
            self.norms = [dpq.response_norm(f"response_norm_{t}") for t in range(count)]
        else:
            self.norms = []

    def default_row_tiers(self) -> np.ndarray:
        """Tier of each row from ``tier_boundaries`` (rows sorted by frequency)."""
        rows = np.arange(self.num_rows)
        return np.searchsorted(self.tier_boundaries, rows, side="right").astype(
            np.int32
        )

    def build(self, input_shape: Any = None) -> None:
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_rows, self.output_dim),
            initializer=self.embeddings_initializer,
        )
        tiers = self.default_row_tiers()
        # An initializer, not an assign after creation: when an enclosing subclassed
        # model is built by tracing its call() in a scratch graph, variables are still
        # created eagerly but an assign in build() would run only in that graph.
        self.row_tier = self.add_weight(
            name="row_tier",
            shape=(self.num_rows,),
            dtype="int32",
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(tiers, "int32"),
            trainable=False,
        )
        if self.total_centroids is not None:
            shape = (
                self.num_subspaces,
                self.total_centroids,
                self.output_dim // self.num_subspaces,
            )
            self.centroids = self.add_weight(
                name="centroids", shape=shape, initializer=self.centroids_initializer
            )
        else:
            self.tier_centroids = [
                self.add_weight(
                    name=f"centroids_{t}",
                    shape=(D, self.num_centroids[0], self.output_dim // D),
                    initializer=self.centroids_initializer,
                )
                for t, D in enumerate(self.tier_num_subspaces)
            ]
        for t, norm in enumerate(self.norms):
            norm.build(
                (self.tier_num_subspaces[t], None, self.centroid_tables()[t].shape[1])
            )
        self.built = True

    def centroid_tables(self) -> list[Any]:
        """Centroid weights: one shared ``(D, K_total, s)`` table, or one per tier."""
        if self.total_centroids is not None:
            return [self.centroids]
        return list(self.tier_centroids)

    def set_row_tiers(self, row_tiers: np.ndarray) -> None:
        """Sets each row's tier (e.g. from the artifacts' ``vocab/<feature>.tiers``).

        Args:
            row_tiers: ``(num_rows,)`` ints in ``[0, m)``; the OOV row belongs in the
                last.

        Raises:
            ValueError: naming ``row_tiers`` on a wrong shape or an out-of-range tier.
        """
        values = np.asarray(row_tiers)
        if values.shape != (self.num_rows,) or not np.issubdtype(
            values.dtype, np.integer
        ):
            raise ValueError(
                f"`row_tiers` must be {self.num_rows} integers. "
                f"Received shape {values.shape}"
                f" and dtype {values.dtype}"
            )
        if values.size and (values.min() < 0 or values.max() >= self.num_tiers):
            raise ValueError(
                f"`row_tiers` must be in [0, {self.num_tiers}). Received range "
                f"[{values.min()}, {values.max()}]"
            )
        if not self.built:
            self.build()
        self.row_tier.assign(values.astype(np.int32))

    def _groupwise(self) -> bool:
        return self.lookup == "groupwise" and keras.backend.backend() != "jax"

    def _local_codes(self, queries: Any, tiers: Any, training: bool | None) -> Any:
        """``(N, d)`` queries, ``(N,)`` tiers -> ``(N, D_max)`` int32 in-tier codes."""
        queries = ops.stop_gradient(queries)
        if self.total_centroids is None:
            return mgqe_unshared.variable_d_codes(self, queries, tiers, training)
        slices = ops.reshape(
            queries, (-1, self.num_subspaces, self.output_dim // self.num_subspaces)
        )
        table = ops.stop_gradient(self.centroids)
        offsets, ks = self.tier_centroid_offsets, self.tier_num_centroids
        if self._groupwise():
            return mgqe_unshared.groupwise_codes(
                slices, tiers, mgqe_unshared.tier_tables(table, offsets, ks)
            )
        if not self.norms:
            return mgqe_unshared.masked_search(slices, tiers, table, offsets, ks)
        response = self.norms[0](dpq.vq_response(slices, table), training=training)
        return mgqe_unshared.masked_codes(response, tiers, offsets, ks)

    def _decode(self, codes: Any, tiers: Any) -> Any:
        """Local codes -> ``(N, d)`` quantised embeddings (differentiable in C)."""
        if self.total_centroids is None:
            return mgqe_unshared.variable_d_decode(self, codes, tiers)
        offsets = ops.convert_to_tensor(self.tier_centroid_offsets, "int32")
        absolute = codes + ops.take(offsets, tiers)[:, None]
        return ops.reshape(
            dpq.gather_centroids(self.centroids, absolute), (-1, self.output_dim)
        )

    def call(self, ids: Any, training: bool | None = None) -> Any:
        """Integer ids of any shape -> ``ids.shape + (output_dim,)`` embeddings."""
        shape, flat, queries = self._lookup_queries(ids)
        tiers = ops.take(self.row_tier, flat)
        codes = self._distinct_codes(
            flat,
            queries,
            lambda rows, ids: self._local_codes(
                rows, ops.take(self.row_tier, ids), training
            ),
        )
        quantized = self._decode(codes, tiers)
        return self._vq_output(queries, quantized, shape)

    def compute_codes(self) -> np.ndarray:
        """``(n, D_max)`` codes of every row from one inference-mode pass."""
        width = max(self.tier_num_subspaces) * max(
            self.total_centroids or 0, self.tier_num_centroids[0] * self.num_tiers
        )
        return self._chunked_codes(
            width,
            lambda lo, hi: self._local_codes(
                self.embeddings[lo:hi], self.row_tier[lo:hi], False
            ),
        )

    def tier_sizes(self) -> list[int]:
        """|V_i|: rows per tier under the current ``row_tier``."""
        if not self.built:
            self.build()
        tiers = ops.convert_to_numpy(self.row_tier)
        return np.bincount(tiers, minlength=self.num_tiers).tolist()

    def serving_bits(self) -> int:
        """MGQE Table 1 serving size of the variant (``ceil(log2 K_i)``-bit codes)."""
        d, counts = self.output_dim, self.tier_sizes()
        if self.variant == "shared":
            return sizes.mgqe_shared_bits(
                counts, d, self.num_subspaces, self.num_centroids
            )
        if self.variant == "unshared_k":
            return sizes.mgqe_unshared_k_bits(
                counts, d, self.num_subspaces, self.num_centroids
            )
        return sizes.mgqe_unshared_d_bits(
            counts, d, self.tier_num_subspaces, self.tier_num_centroids[0]
        )

    def export_compact(self) -> dict[str, np.ndarray]:
        """Codes (uint8/uint16 and bit-packed), ``row_tier`` and float32 centroids; see
        :mod:`trainer.layers.compact_embedding` for the format."""
        codes = self.compute_codes()
        tables = [ops.convert_to_numpy(w) for w in self.centroid_tables()]
        return compact_embedding.make_compact_arrays(
            codes,
            ops.convert_to_numpy(self.row_tier),
            self.tier_num_subspaces,
            self.tier_num_centroids,
            tables[0] if self.total_centroids is not None else tables,
            self.tier_centroid_offsets,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_rows": self.num_rows,
            "output_dim": self.output_dim,
            "num_subspaces": self.num_subspaces,
            "num_centroids": list(self.num_centroids),
            "tier_boundaries": list(self.tier_boundaries),
            "variant": self.variant,
            "num_subspaces_per_tier": self.num_subspaces_per_tier,
            "lookup": self.lookup,
            **self._vq_config(),
        }
