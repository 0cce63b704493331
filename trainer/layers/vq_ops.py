"""Vector-quantisation building blocks of DPQ-VQ and MGQE, and a fast scalar search.

The exhaustive search builds the ``(D, N, K)`` response ``-||e - k||^2`` (DPQ-VQ,
Chen, Li & Sun 2020) and takes its argmax. With the papers' default ``D = d`` every subspace is a
scalar (``s = 1``, MGQE's D = d = 64), and :func:`scalar_codes` finds the same codes
without that tensor:

1. Per subspace (and tier), sort the centroids and merge equal values; each distinct
   value keeps the smallest original index holding it.
2. Binary-search each query among its row: the first levels compare against a few
   splitters per column, the rest take one gather per level.
3. Evaluate the response with the exhaustive search's own float32 operations
   (``2 (e k) - e^2 - k^2``, same order, so bit-equal) at the ``2 WINDOW`` distinct
   values around the insertion point; take the largest, ties to the smallest original
   index, which is what ``argmax`` over the original order returns.
4. Certify that the exhaustive argmax lies in the window. A float32 response differs
   from ``-(e - k)^2`` by at most ``3u (|e| + |k|)^2`` (u = 2^-24, plus underflow),
   and ``(e - k)^2`` less that bound only grows away from ``e``. So when the nearest
   value outside the window on each side is farther than some window value by more
   than both bounds (checked with a ``16u`` margin that also covers the check's own
   rounding), no centroid outside can reach or tie the window's best response.
5. Positions that fail (near-equal values crowding the window: about 0.1 % with
   N(0, 0.01) data and K = 256) get the exhaustive argmax of their own row, up to
   ``BUDGET`` per call; beyond that, or with a value of magnitude ``2^60`` or more
   (NaN and inf included), the whole call takes the exhaustive search.

Bit-identity assumes the exhaustive search multiplies ``e k`` in plain float32, as the
CPU kernels do. GPU TensorFloat-32 matmuls or XLA fusions round the exhaustive search
differently; their codes can then differ from these on near-ties (within rounding).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import keras
from keras import ops

WINDOW = 2  # distinct centroids examined on each side of the insertion point
BUDGET = 512  # uncertified positions searched exhaustively before the batch falls back
_MAX_ABS = 2.0**60  # |values| below this cannot overflow the response
_PAD = 2.0**62  # row padding: farther than any value below _MAX_ABS, never a code
_NO_CODE = 2**30  # original index of the padding
_REL_BOUND = 2.0**-20  # 16u: the 3u response error plus the certificate's own rounding
_ABS_BOUND = 1e-30  # covers underflow / flush-to-zero of every step
_COARSE_LEVELS = 3  # binary-search levels done by broadcast comparisons
_exhaustive_only = False


@contextlib.contextmanager
def exhaustive_search() -> Iterator[None]:
    """Within the block, traced layers use the ``(D, N, K)`` search for every width.

    For timing and cross-checking :func:`scalar_codes`; read when a layer is called
    (traced), so a ``tf.function`` traced inside keeps the exhaustive search.
    """
    global _exhaustive_only
    saved, _exhaustive_only = _exhaustive_only, True
    try:
        yield
    finally:
        _exhaustive_only = saved


def scalar_search_enabled(centroids: Any) -> bool:
    """Whether :func:`scalar_codes` serves these ``(..., K, s)`` centroids.

    Only scalar (``s = 1``) float32 subspaces: the certificate's error bound is that
    of float32 (mixed-precision float16 tables keep the exhaustive search).
    """
    dtype = keras.backend.standardize_dtype(centroids.dtype)
    return centroids.shape[-1] == 1 and dtype == "float32" and not _exhaustive_only


def vq_response(queries: Any, centroids: Any) -> Any:
    """Negative squared distance ``-||e - k||^2 = -||e||^2 + 2 e.k - ||k||^2``.

    One batched matmul over the D subspaces. The result is subspace-major, ``(D, N,
    K)``, which saves transposing the largest tensor; batch norm over its last axis
    still gets one mean/variance per centroid index, taken over the batch and D.

    Args:
        queries: ``(N, D, s)`` query slices.
        centroids: ``(D, K, s)`` centroids.

    Returns:
        ``(D, N, K)`` responses; the code is their argmax (DPQ-VQ).
    """
    by_subspace = ops.transpose(queries, (1, 0, 2))
    dots = ops.matmul(by_subspace, ops.transpose(centroids, (0, 2, 1)))
    e_sq = ops.sum(ops.square(by_subspace), axis=-1, keepdims=True)
    k_sq = ops.sum(ops.square(centroids), axis=-1)
    return 2.0 * dots - e_sq - ops.expand_dims(k_sq, 1)


def response_codes(response: Any) -> Any:
    """``(D, N, K)`` responses -> ``(N, D)`` int32 codes (argmax over K)."""
    return ops.transpose(ops.cast(ops.argmax(response, axis=-1), "int32"))


def gather_centroids(centroids: Any, codes: Any) -> Any:
    """``q[n, j] = C[j, codes[n, j]]``: ``(D, K, s)``, ``(N, D)`` -> ``(N, D, s)``."""
    num_subspaces, num_centroids, width = ops.shape(centroids)
    flat = ops.reshape(centroids, (num_subspaces * num_centroids, width))
    index = codes + ops.arange(num_subspaces, dtype="int32")[None, :] * num_centroids
    return ops.take(flat, index, axis=0)


def straight_through(queries: Any, quantized: Any) -> Any:
    """``e + sg(q - e)``: forward value q, task gradient passed to e unchanged."""
    return queries + ops.stop_gradient(quantized - queries)


def vq_regularizer(queries: Any, quantized: Any, alpha: float, beta: float) -> Any:
    """``alpha mean((q - sg(e))^2) + beta mean((sg(q) - e)^2)``, per-element means."""
    loss = alpha * ops.mean(ops.square(quantized - ops.stop_gradient(queries)))
    if beta:
        loss = loss + beta * ops.mean(
            ops.square(ops.stop_gradient(quantized) - queries)
        )
    return loss


def nearest_codes(slices: Any, centroids: Any) -> Any:
    """``(N, D, s)`` slices, ``(D, K, s)`` centroids -> ``(N, D)`` nearest codes.

    The scalar search when ``s == 1`` (bit-identical), else the exhaustive one.
    """
    if not scalar_search_enabled(centroids):
        return response_codes(vq_response(slices, centroids))
    return scalar_codes(
        slices[:, :, 0],
        [centroids[:, :, 0]],
        fallback=lambda: response_codes(vq_response(slices, centroids)),
    )


class _Codebook(NamedTuple):
    """Sorted views of R = T * D centroid rows (T tables of D subspaces, K columns)."""

    search: Any  # (R * S,) distinct values ascending, then +_PAD; S = 2^ceil(log2 K)
    windows: Any  # (R * (K + 1), 2W + 2 + 2W): window values, inner original indices
    centroids: Any  # (R, K) original order, +_PAD beyond the row's own K_t


def _distinct(table: Any, width: int) -> tuple[Any, Any]:
    """``(D, K_t)`` -> ``(D, width)`` ascending distinct values (``+_PAD`` after) and
    each one's smallest original index (``_NO_CODE`` after)."""
    num_subspaces, num_centroids = table.shape
    order = ops.cast(ops.argsort(table, axis=-1), "int32")
    values = ops.take_along_axis(table, order, axis=-1)
    starts = ops.concatenate(
        [
            ops.ones((num_subspaces, 1), "bool"),
            ops.not_equal(values[:, 1:], values[:, :-1]),
        ],
        axis=-1,
    )
    runs = ops.cumsum(ops.cast(starts, "int32"), axis=-1) - 1
    offsets = ops.arange(num_subspaces, dtype="int32")[:, None] * num_centroids
    segments = ops.reshape(runs + offsets, (-1,))
    size, shape = num_subspaces * num_centroids, (num_subspaces, num_centroids)
    distinct = ops.segment_max(ops.reshape(values, (-1,)), segments, size)
    first = -ops.segment_max(ops.reshape(-order, (-1,)), segments, size)
    count = ops.sum(ops.cast(starts, "int32"), axis=-1, keepdims=True)
    used = ops.arange(num_centroids, dtype="int32")[None, :] < count
    pad = [[0, 0], [0, width - num_centroids]]
    return (
        ops.pad(
            ops.where(used, ops.reshape(distinct, shape), _PAD),
            pad,
            constant_values=_PAD,
        ),
        ops.pad(
            ops.where(used, ops.reshape(first, shape), _NO_CODE),
            pad,
            constant_values=_NO_CODE,
        ),
    )


def _codebook(tables: Sequence[Any]) -> _Codebook:
    """Sorts T ``(D, K_t)`` tables into one :class:`_Codebook` (K = max K_t)."""
    width = max(int(t.shape[1]) for t in tables)
    parts = [_distinct(t, width) for t in tables]
    distinct = ops.concatenate([v for v, _ in parts], axis=0)
    first = ops.cast(ops.concatenate([i for _, i in parts], axis=0), distinct.dtype)
    rows = distinct.shape[0]

    def padded(x: Any, left: int, right: int, low: float, high: float) -> Any:
        return ops.concatenate(
            [
                ops.full((rows, left), low, x.dtype),
                x,
                ops.full((rows, right), high, x.dtype),
            ],
            axis=-1,
        )

    search = padded(distinct, 0, (1 << (width - 1).bit_length()) - width, -_PAD, _PAD)
    # Window of relative position p: columns p .. p + 2W + 1 of ``around`` (outer,
    # inner, outer) and p .. p + 2W - 1 of ``ids`` (the inner values' indices).
    around = padded(distinct, WINDOW + 1, WINDOW + 1, -_PAD, _PAD)
    ids = padded(first, WINDOW, WINDOW, _NO_CODE, _NO_CODE)
    columns = [around[:, q : q + width + 1] for q in range(2 * WINDOW + 2)]
    columns += [ids[:, q : q + width + 1] for q in range(2 * WINDOW)]
    centroids = ops.concatenate(
        [
            ops.pad(t, [[0, 0], [0, width - t.shape[1]]], constant_values=_PAD)
            for t in tables
        ],
        axis=0,
    )
    return _Codebook(
        ops.reshape(search, (-1,)),
        ops.reshape(ops.stack(columns, axis=-1), (-1, len(columns))),
        centroids,
    )


def _lower_bound(
    search: Any, rows: Any, tiers: Any, queries: Any, num_tables: int, width: int
) -> Any:
    """How many of its row's distinct values are below each query, in ``[0, K]``.

    A branchless binary search over the first ``S`` entries of each row. Its first
    ``_COARSE_LEVELS`` levels compare against the same few splitters for a whole
    column (per tier), so they run as broadcast comparisons instead of gathers. When
    ``S = K`` and the query exceeds every value it answers ``K - 1``; the window around
    that still holds the largest value and its right end is padding, so the
    certificate below is unaffected.
    """
    size = 1 << (width - 1).bit_length()
    levels = min(_COARSE_LEVELS, size.bit_length() - 1)
    block = size >> levels
    num_subspaces = queries.shape[1]
    ends = ops.reshape(search, (num_tables, num_subspaces, 1 << levels, block))[..., -1]
    count = ops.zeros_like(rows)
    for m in range((1 << levels) - 1):
        splitter = ends[0, :, m][None, :]
        for t in range(1, num_tables):
            splitter = ops.where(ops.equal(tiers, t)[:, None], ends[t, :, m], splitter)
        count = count + ops.cast(splitter < queries, "int32")
    base = rows * size
    pos = base + count * block
    step = block // 2
    while step:
        probe = ops.take(search, pos + (step - 1))
        pos = ops.where(probe < queries, pos + step, pos)
        step //= 2
    return pos - base


def _window_codes(queries: Any, window: Sequence[Any]) -> tuple[Any, Any]:
    """Best of the ``2W`` inner window values per position, and its certificate.

    Args:
        queries: ``(N, D)`` values.
        window: ``(N, D)`` arrays: the ``2W + 2`` sorted values around the insertion
            point (outer left, ``2W`` inner, outer right), then the ``2W`` inner
            original indices (as floats).

    Returns:
        The codes, and where each outer value is provably worse than some inner value
        (distance less the error bound above the inner distance plus the bound).
    """
    span = 2 * WINDOW + 2
    values, ids = window[:span], window[span:]
    e, e_sq, e_abs = queries, ops.square(queries), ops.abs(queries)
    # vq_response's float32 operations, in its order: bit-equal responses.
    response = [2.0 * (e * k) - e_sq - ops.square(k) for k in values[1:-1]]
    top = functools.reduce(ops.maximum, response)
    codes = functools.reduce(
        ops.minimum,
        [
            ops.where(ops.equal(r, top), i, _NO_CODE)
            for r, i in zip(response, ids, strict=True)
        ],
    )
    dist = [ops.square(e - k) for k in values]
    slack = [_REL_BOUND * ops.square(e_abs + ops.abs(k)) + _ABS_BOUND for k in values]
    upper = functools.reduce(
        ops.minimum, [d + b for d, b in zip(dist[1:-1], slack[1:-1], strict=True)]
    )
    lower = ops.minimum(dist[0] - slack[0], dist[-1] - slack[-1])
    return ops.cast(codes, "int32"), lower > upper


def _repair(
    codes: Any, certified: Any, queries: Any, rows: Any, book: _Codebook
) -> tuple[Any, Any]:
    """Exhaustive codes at the first ``BUDGET`` uncertified positions.

    Returns:
        The codes, and whether every uncertified position was within the budget.
    """
    shape = ops.shape(codes)
    # One zero entry per slot past the end: top_k needs BUDGET entries, and the
    # unused slots point at entry ``size`` (written, then cut off).
    bad = ops.reshape(ops.cast(ops.logical_not(certified), queries.dtype), (-1,))
    size = ops.shape(bad)[0]
    flags, entry = ops.top_k(ops.pad(bad, [[0, BUDGET]]), BUDGET)  # lower index first
    entry = ops.where(flags > 0, entry, size)

    def gather(x: Any) -> Any:
        return ops.take(ops.pad(ops.reshape(x, (-1,)), [[0, 1]]), entry)

    e, row = gather(queries)[:, None], gather(rows)
    k = ops.take(book.centroids, row, axis=0)
    response = 2.0 * (e * k) - ops.square(e) - ops.square(k)  # vq_response's order
    fixed = ops.cast(ops.argmax(response, axis=-1), "int32")
    flat = ops.pad(ops.reshape(codes, (-1,)), [[0, 1]])
    flat = ops.scatter_update(flat, entry[:, None], fixed)
    return ops.reshape(flat[:-1], shape), ops.sum(bad) <= BUDGET


def scalar_codes(
    queries: Any,
    tables: Sequence[Any],
    tiers: Any = None,
    fallback: Callable[[], Any] | None = None,
) -> Any:
    """Nearest-centroid codes of scalar subspaces, bit-identical to the argmax search.

    Args:
        queries: ``(N, D)`` float32 query values (no gradient needed).
        tables: T centroid tables ``(D, K_t)``; a position of tier t searches table t.
        tiers: ``(N,)`` int tier of each position; None when T is 1.
        fallback: The exhaustive codes, for a batch with a value of magnitude
            ``2^60`` or more (NaN, inf) or more than ``BUDGET`` uncertified positions.
            None: the window codes, uncertified ones included (for tests).

    Returns:
        ``(N, D)`` int32 codes, indices into each position's own table; ties go to
        the smallest index, as ``argmax`` does.
    """
    book = _codebook(tables)
    num_subspaces, width = tables[0].shape[0], book.centroids.shape[1]
    rows = ops.arange(num_subspaces, dtype="int32")[None, :]
    if tiers is not None:
        rows = rows + ops.cast(tiers, "int32")[:, None] * num_subspaces
    rows = ops.broadcast_to(rows, ops.shape(queries))
    pos = _lower_bound(book.search, rows, tiers, queries, len(tables), width)
    window = ops.take(book.windows, rows * (width + 1) + pos, axis=0)
    window = ops.unstack(window, axis=-1)
    codes, certified = _window_codes(queries, window)
    if fallback is None:
        return codes
    codes, repaired = _repair(codes, certified, queries, rows, book)
    in_range = functools.reduce(
        ops.logical_and, [ops.all(ops.abs(x) < _MAX_ABS) for x in [queries, *tables]]
    )
    return ops.cond(ops.logical_and(in_range, repaired), lambda: codes, fallback)
