"""Tier-split computations of MGQE (Kang et al. 2020): lookups, variable D, checks.

Helpers of :class:`~trainer.layers.mgqe_embedding.MGQEEmbedding`, kept apart so that the
layer module stays short:

* :func:`masked_codes` is the single-pass lookup: responses to every centroid, ``-inf``
  outside the id's tier range, argmax; :func:`masked_search` gives the same codes by
  sorted search for scalar subspaces (:mod:`trainer.layers.vq_ops`).
* :func:`groupwise_codes` is MGQE Algorithm 1 (Kang et al. 2020, group-wise lookup) in ``keras.ops``:
  ``ops.nonzero`` + ``ops.take`` play ``tf.dynamic_partition``, ``ops.scatter`` plays
  ``tf.dynamic_stitch``. Each tier runs one batched matmul (or, for scalar subspaces,
  the sorted search) over its own ids and its own ``K_i`` centroids.
* :func:`variable_d_codes` / :func:`variable_d_decode` handle the unshared variable-D
  variant, whose tiers have different subspace counts ``D_i`` and widths ``d / D_i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

from trainer.contracts.features import check_non_increasing
from trainer.layers import base, vq_ops
from trainer.layers import dpq_embedding as dpq


def int_list(name: str, value: Any) -> list[int]:
    """An int or a non-empty int sequence, as a list (ValueError names ``name``)."""
    values = [value] if isinstance(value, int | np.integer) else value
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ValueError(
            f"`{name}` must be an int or a non-empty list of ints. Received: {value!r}"
        )
    return [int(v) for v in values]


def non_increasing(name: str, values: list[int], symbol: str) -> None:
    """Raises ValueError naming ``name`` unless ``values[0] >= values[1] >= ...``."""
    check_non_increasing(f"`{name}`", values, symbol)


def check_variable_d(
    per_tier: Sequence[int] | None,
    output_dim: int,
    num_subspaces: int,
    num_centroids: list[int],
) -> list[int]:
    """Validates the unshared variable-D settings; returns ``D_1 >= ... >= D_m``."""
    if per_tier is None:
        raise ValueError(
            "`num_subspaces_per_tier` is required for variant='unshared_d'."
        )
    values = [
        base.check_positive("num_subspaces_per_tier", v)
        for v in int_list("num_subspaces_per_tier", per_tier)
    ]
    non_increasing("num_subspaces_per_tier", values, "D")
    if any(output_dim % v for v in values):
        raise ValueError(
            f"`num_subspaces_per_tier` must divide `output_dim` ({output_dim}). "
            f"Received: {values}"
        )
    if values[0] != num_subspaces:
        raise ValueError(
            f"`num_subspaces` must equal num_subspaces_per_tier[0] ({values[0]}) for "
            f"variant='unshared_d'. Received: {num_subspaces}"
        )
    if len(set(num_centroids)) != 1 or len(num_centroids) not in (1, len(values)):
        raise ValueError(
            "`num_centroids` must be one K (or one per tier, all equal) for "
            f"variant='unshared_d'. Received: {num_centroids}"
        )
    return values


def tier_tables(table: Any, offsets: Sequence[int], ks: Sequence[int]) -> list[Any]:
    """The ``(D, K_i, s)`` slice of a shared ``(D, K_total, s)`` table for each tier."""
    num_subspaces, _, width = table.shape
    return [
        ops.slice(table, (0, off, 0), (num_subspaces, k, width))
        for off, k in zip(offsets, ks, strict=True)
    ]


def masked_codes(
    response: Any, tiers: Any, offsets: Sequence[int], ks: Sequence[int]
) -> Any:
    """``(D, N, K_total)`` responses -> ``(N, D)`` codes within each id's tier range.

    Tier t may use centroid columns ``offsets[t] .. offsets[t] + ks[t] - 1``; the rest
    get ``-inf`` before the argmax. The returned codes are relative to ``offsets[t]``.
    """
    lo = ops.take(ops.convert_to_tensor(list(offsets), "int32"), tiers)
    hi = lo + ops.take(ops.convert_to_tensor(list(ks), "int32"), tiers)
    k = ops.arange(ops.shape(response)[-1], dtype="int32")[None, :]
    valid = ops.logical_and(k >= lo[:, None], k < hi[:, None])[None, :, :]
    response = ops.where(valid, response, float("-inf"))
    return dpq.response_codes(response) - lo[:, None]


def masked_search(
    slices: Any, tiers: Any, table: Any, offsets: Sequence[int], ks: Sequence[int]
) -> Any:
    """:func:`masked_codes` of the plain responses, by sorted search when ``s == 1``.

    Args:
        slices: ``(N, D, s)`` query slices (no gradient needed).
        tiers: ``(N,)`` tier per position.
        table: ``(D, K_total, s)`` centroids; tier t owns columns ``offsets[t]`` ..
            ``offsets[t] + ks[t] - 1``.
        offsets: First column of each tier.
        ks: Column count of each tier.

    Returns:
        ``(N, D)`` int32 codes relative to each position's ``offsets[t]``.
    """

    def exhaustive() -> Any:
        return masked_codes(dpq.vq_response(slices, table), tiers, offsets, ks)

    if not vq_ops.scalar_search_enabled(table):
        return exhaustive()
    tables = [t[:, :, 0] for t in tier_tables(table, offsets, ks)]
    return vq_ops.scalar_codes(slices[:, :, 0], tables, tiers, fallback=exhaustive)


def tier_positions(tiers: Any, tier: int) -> Any:
    """Batch positions whose tier is ``tier`` (``(M,)`` int32; M is dynamic)."""
    return ops.cast(ops.nonzero(ops.equal(tiers, tier))[0], "int32")


def _stitch(codes: Any, positions: Any, part: Any, shape: tuple[Any, ...]) -> Any:
    """Adds ``part`` (codes of ``positions``) into the full-batch code matrix."""
    scattered = ops.scatter(ops.expand_dims(positions, -1), part, shape)
    return scattered if codes is None else codes + scattered


def groupwise_codes(slices: Any, tiers: Any, tables: Sequence[Any]) -> Any:
    """Codes by tier groups: ``(N, D, s)`` slices -> ``(N, D)`` int32 in-tier codes.

    Args:
        slices: Query slices (no gradient needed).
        tiers: ``(N,)`` tier per position.
        tables: ``(D, K_i, s)`` centroids allowed for each tier.

    Returns:
        For each position, the argmax code among its tier's centroids.
    """
    shape = (ops.shape(slices)[0], ops.shape(slices)[1])
    codes = None
    for t, table in enumerate(tables):
        positions = tier_positions(tiers, t)
        part = ops.take(slices, positions, axis=0)
        part_codes = dpq.nearest_codes(part, table)
        codes = _stitch(codes, positions, part_codes, shape)
    return codes


def variable_d_codes(
    layer: Any, queries: Any, tiers: Any, training: bool | None
) -> Any:
    """Unshared variable D: ``(N, d)`` queries -> ``(N, D_1)`` codes (0 past D_t).

    With the masked lookup every position is quantised in every tier and the tier's
    result is selected with ``ops.where``; with the group-wise lookup each tier sees
    only its ids.
    """
    n, width = ops.shape(queries)[0], max(layer.tier_num_subspaces)
    codes = None
    for t, table in enumerate(layer.centroid_tables()):
        num_subspaces = layer.tier_num_subspaces[t]
        table = ops.stop_gradient(table)
        if layer._groupwise():
            positions = tier_positions(tiers, t)
            part = ops.take(queries, positions, axis=0)
        else:
            part = queries
        slices = ops.reshape(
            part, (-1, num_subspaces, layer.output_dim // num_subspaces)
        )
        if layer.norms:
            response = dpq.vq_response(slices, table)
            part_codes = dpq.response_codes(layer.norms[t](response, training=training))
        else:
            part_codes = dpq.nearest_codes(slices, table)
        part_codes = ops.pad(part_codes, [[0, 0], [0, width - num_subspaces]])
        if layer._groupwise():
            codes = _stitch(codes, positions, part_codes, (n, width))
        elif codes is None:
            codes = part_codes
        else:
            codes = ops.where(ops.equal(tiers, t)[:, None], part_codes, codes)
    return codes


def variable_d_decode(layer: Any, codes: Any, tiers: Any) -> Any:
    """Unshared variable D: ``(N, D_1)`` codes -> ``(N, d)`` from each tier's table."""
    out = None
    for t, table in enumerate(layer.centroid_tables()):
        num_subspaces = layer.tier_num_subspaces[t]
        part = dpq.gather_centroids(table, codes[:, :num_subspaces])
        part = ops.reshape(part, (-1, layer.output_dim))
        out = (
            part if out is None else ops.where(ops.equal(tiers, t)[:, None], part, out)
        )
    return out
