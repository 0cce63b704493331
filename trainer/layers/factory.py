"""Embedding factory: the only place that maps an embedding kind to a layer class.

Models call :func:`build_embedding` with an :class:`~trainer.config.EmbeddingConfig`
and the table's row count; they never name layer classes themselves, so every model
takes every compression method by config.

Example:
    >>> from trainer.config import EmbeddingConfig
    >>> layer = build_embedding(EmbeddingConfig(kind="full", dim=8), num_rows=100)
    >>> ids_per_example("hybrid")
    3
"""

from __future__ import annotations

from typing import Any

from trainer.config import EmbeddingConfig
from trainer.contracts.features import FeatureConfig, embedding_kind, tier_boundaries

_IDS_PER_EXAMPLE = {"hash": 1, "double_hash": 2, "hybrid": 3}


def ids_per_example(kind: str) -> int:
    """How many ids the preprocessing emits on the last axis for a treatment."""
    return _IDS_PER_EXAMPLE.get(kind, 1)


def build_embedding(
    cfg: EmbeddingConfig, num_rows: int, name: str | None = None, **overrides: Any
) -> Any:
    """Builds the embedding layer for one table.

    Args:
        cfg: The compression method and its sizes.
        num_rows: Rows of the id space: ``V + 1`` for dictionary ids (OOV row
            included), ``k + 1`` dictionary rows for hybrid, ``B`` for hashing.
        name: Keras layer name.
        **overrides: Extra constructor arguments (e.g. ``dictionary_size``).

    Returns:
        A Keras layer mapping integer ids to ``cfg.dim``-wide embeddings.
    """
    kind = cfg.kind
    kw: dict[str, Any] = {"name": name}
    if kind == "full":
        from trainer.layers.full_embedding import FullEmbedding

        return FullEmbedding(num_rows=num_rows, output_dim=cfg.dim, **kw, **overrides)
    if kind == "hash":
        from trainer.layers.hashing_embedding import HashingEmbedding

        return HashingEmbedding(num_buckets=cfg.hash_buckets, output_dim=cfg.dim, **kw)
    if kind == "double_hash":
        from trainer.layers.double_hashing_embedding import DoubleHashingEmbedding

        return DoubleHashingEmbedding(
            num_buckets=cfg.hash_buckets,
            output_dim=cfg.dim,
            combiner=cfg.combiner,
            shared_table=cfg.shared_table,
            **kw,
        )
    if kind == "hybrid":
        from trainer.layers.hybrid_embedding import HybridEmbedding

        dictionary_size = overrides.pop("dictionary_size", num_rows - 1)
        return HybridEmbedding(
            dictionary_size=dictionary_size,
            num_buckets=cfg.hash_buckets,
            output_dim=cfg.dim,
            combiner=cfg.combiner,
            shared_table=cfg.shared_table,
            **kw,
        )
    if kind == "lrf":
        from trainer.layers.low_rank_embedding import LowRankEmbedding

        return LowRankEmbedding(
            num_rows=num_rows, output_dim=cfg.dim, rank=cfg.rank, **kw
        )
    if kind == "sq":
        # Scalar quantization is post-training: train a full table, quantize at export.
        from trainer.layers.full_embedding import FullEmbedding

        return FullEmbedding(num_rows=num_rows, output_dim=cfg.dim, **kw)
    if kind == "dpq":
        from trainer.layers.dpq_embedding import DPQEmbedding

        return DPQEmbedding(
            num_rows=num_rows,
            output_dim=cfg.dim,
            num_subspaces=cfg.num_subspaces,
            num_centroids=cfg.num_centroids[0],
            response_batchnorm=cfg.response_batchnorm,
            **kw,
        )
    if kind == "mgqe":
        from trainer.layers.mgqe_embedding import MGQEEmbedding

        extra: dict[str, Any] = {}
        if cfg.mgqe_variant == "unshared_d":
            extra["num_subspaces_per_tier"] = list(cfg.num_subspaces_per_tier)
        return MGQEEmbedding(
            num_rows=num_rows,
            output_dim=cfg.dim,
            num_subspaces=cfg.num_subspaces,
            num_centroids=list(cfg.num_centroids),
            tier_boundaries=overrides.pop(
                "tier_boundaries", tier_boundaries(num_rows, cfg.tier_shares)
            ),
            variant=cfg.mgqe_variant,
            lookup=cfg.lookup,
            **extra,
            **kw,
        )
    raise ValueError(f"unknown embedding kind {kind!r}")


def feature_embedding_config(
    feature: FeatureConfig, base: EmbeddingConfig | None = None
) -> EmbeddingConfig:
    """The :class:`EmbeddingConfig` of one feature from its spec entry."""
    import dataclasses

    base = base or EmbeddingConfig()
    kind = embedding_kind(feature.treatment)
    ks = feature.num_centroids if kind == "mgqe" else feature.num_centroids[:1]
    num_subspaces = (
        feature.num_subspaces if kind in ("dpq", "mgqe") else base.num_subspaces
    )
    if kind not in ("dpq", "mgqe") and feature.embedding_dim % num_subspaces:
        num_subspaces = 1
    return dataclasses.replace(
        base,
        kind=kind,
        dim=feature.embedding_dim,
        hash_buckets=feature.hash_buckets,
        combiner=feature.hash_combiner,
        num_subspaces=num_subspaces,
        num_centroids=tuple(ks),
        tier_shares=feature.tier_shares,
        top_k=feature.top_k,
    )
