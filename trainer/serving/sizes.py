"""Exact size accounting (bits) and hash-collision formulas, in pure Python/NumPy.

Sizes follow Table 1 of MGQE (Kang et al. 2020) and DPQ's size formulas (Chen, Li & Sun
2020): every stored float costs 32 bits, and a code that picks one of ``K`` centroids
costs ``ceil(log2 K)`` bits (what a packed store really needs; the paper writes ``log
K``). "Model size %" is the bits needed to *serve the whole model*, every embedding
table plus every uncompressed parameter at 32 bits, divided by the same quantity for the
full-embedding model.

The collision formulas are those of Zhang et al., "Model Size Reduction Using Frequency
Based Double Hashing for Recommender Systems" (RecSys 2020), Table 1, in the numerically
stable form ``n/B + expm1(n log1p(-1/B))``.

This module imports no TensorFlow, so the size report and the pipeline can use it
freely.

Example:
    >>> dpq_bits(num_rows=1000, output_dim=64, num_subspaces=64, num_centroids=256)
    1036288
    >>> tables = [dpq_bits(6040, 64, 64, 256), dpq_bits(3416, 64, 64, 256)]
    >>> full = [full_bits(6040, 64), full_bits(3416, 64)]
    >>> round(model_size_percent(tables, 65, full), 2)
    30.42
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

FLOAT_BITS = 32

__all__ = [
    "FLOAT_BITS",
    "code_bits",
    "full_bits",
    "lrf_bits",
    "sq_bits",
    "dpq_bits",
    "dpq_training_bits",
    "mgqe_shared_bits",
    "mgqe_unshared_k_bits",
    "mgqe_unshared_d_bits",
    "hashing_bits",
    "double_hashing_bits",
    "hybrid_bits",
    "model_size_percent",
    "collision_rate",
    "collision_probability",
    "double_hash_collision_rate",
    "hybrid_collision_rate",
]


def _check_int(name: str, value: int, minimum: int = 0) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < minimum
    ):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {value!r}"
        )
    return int(value)


def code_bits(num_centroids: int) -> int:
    """Bits of one packed code choosing among ``num_centroids`` values: ceil(log2 K).

    Args:
        num_centroids: K >= 2.

    Returns:
        ``ceil(log2 K)``, computed exactly on integers.

    Example:
        >>> code_bits(256), code_bits(64), code_bits(100)
        (8, 6, 7)
    """
    k = _check_int("num_centroids", num_centroids, 2)
    return (k - 1).bit_length()


def full_bits(num_rows: int, output_dim: int) -> int:
    """Full embedding table, serving and training: ``32 n d``.

    Example:
        >>> full_bits(10, 4)
        1280
    """
    return (
        FLOAT_BITS
        * _check_int("num_rows", num_rows)
        * _check_int("output_dim", output_dim)
    )


def lrf_bits(
    num_rows: int, output_dim: int, rank: int, include_projection: bool = True
) -> int:
    """Low-rank factorisation ``E = P Q`` (P: n x r, Q: r x d): ``32 n r + 32 r d``.

    Args:
        num_rows: n.
        output_dim: d.
        rank: r.
        include_projection: Count Q. Pass False for every table but one when several
            tables share one Q (only then is Kang et al.'s printed GMF LRF size, 75.5 %, reproduced).

    Returns:
        Bits.

    Example:
        >>> lrf_bits(10, 4, 2)
        896
    """
    n = _check_int("num_rows", num_rows)
    d = _check_int("output_dim", output_dim)
    r = _check_int("rank", rank)
    return FLOAT_BITS * (n * r + (r * d if include_projection else 0))


def sq_bits(
    num_rows: int, output_dim: int, bits: int = 8, include_ranges: bool = True
) -> int:
    """Scalar quantisation at ``b`` bits a value: ``n d b`` (+ ``2 d`` float32 ranges).

    Table 1 lists ``ndb``; the per-dimension min/max the dequantiser needs add ``2 d``
    floats per table (they reproduce Kang et al.'s printed SQ sizes).

    Example:
        >>> sq_bits(10, 4, 8)
        576
    """
    n = _check_int("num_rows", num_rows)
    d = _check_int("output_dim", output_dim)
    b = _check_int("bits", bits, 1)
    return n * d * b + (2 * d * FLOAT_BITS if include_ranges else 0)


def dpq_bits(
    num_rows: int,
    output_dim: int,
    num_subspaces: int,
    num_centroids: int,
    share_subspaces: bool = False,
) -> int:
    """DPQ serving size: ``n D ceil(log2 K) + 32 K d`` or ``... + 32 K d / D`` (shared).

    Example:
        >>> dpq_bits(100, 8, 4, 16)
        5696
    """
    n = _check_int("num_rows", num_rows)
    d = _check_int("output_dim", output_dim)
    D = _check_int("num_subspaces", num_subspaces, 1)
    values = num_centroids * d // D if share_subspaces else num_centroids * d
    return n * D * code_bits(num_centroids) + FLOAT_BITS * values


def dpq_training_bits(num_rows: int, output_dim: int, num_centroids: int) -> int:
    """DPQ (and MGQE shared) training size: ``32 n d + 32 K d`` (query table kept).

    Example:
        >>> dpq_training_bits(100, 8, 16)
        29696
    """
    return full_bits(num_rows, output_dim) + FLOAT_BITS * num_centroids * output_dim


def _tier_sizes(tier_sizes: Sequence[int]) -> list[int]:
    sizes = [_check_int("tier_sizes", s) for s in tier_sizes]
    if not sizes:
        raise ValueError("`tier_sizes` must name at least one tier. Received: []")
    return sizes


def _same_length(name: str, values: Sequence[int], sizes: Sequence[int]) -> None:
    if len(values) != len(sizes):
        raise ValueError(
            f"`{name}` needs one entry per tier ({len(sizes)}). "
            f"Received: {list(values)}"
        )


def _variable_k_code_bits(
    tier_sizes: Sequence[int], num_subspaces: int, num_centroids: Sequence[int]
) -> int:
    """Code storage of variable-K MGQE: ``sum_i |V_i| D ceil(log2 K_i)``."""
    sizes = _tier_sizes(tier_sizes)
    _same_length("num_centroids", num_centroids, sizes)
    D = _check_int("num_subspaces", num_subspaces, 1)
    return sum(v * D * code_bits(k) for v, k in zip(sizes, num_centroids, strict=True))


def mgqe_shared_bits(
    tier_sizes: Sequence[int],
    output_dim: int,
    num_subspaces: int,
    num_centroids: Sequence[int],
) -> int:
    """MGQE shared, variable K: ``sum_i |V_i| D ceil(log2 K_i) + 32 K_1 d``.

    Example:
        >>> mgqe_shared_bits([10, 90], 8, 4, [16, 4])
        4976
    """
    codes = _variable_k_code_bits(tier_sizes, num_subspaces, num_centroids)
    return codes + FLOAT_BITS * max(num_centroids) * _check_int(
        "output_dim", output_dim
    )


def mgqe_unshared_k_bits(
    tier_sizes: Sequence[int],
    output_dim: int,
    num_subspaces: int,
    num_centroids: Sequence[int],
) -> int:
    """MGQE unshared, variable K: ``sum_i |V_i| D ceil(log2 K_i) + 32 d sum_i K_i``.

    Example:
        >>> mgqe_unshared_k_bits([10, 90], 8, 4, [16, 4])
        6000
    """
    codes = _variable_k_code_bits(tier_sizes, num_subspaces, num_centroids)
    return codes + FLOAT_BITS * _check_int("output_dim", output_dim) * sum(
        num_centroids
    )


def mgqe_unshared_d_bits(
    tier_sizes: Sequence[int],
    output_dim: int,
    num_subspaces: Sequence[int],
    num_centroids: int,
) -> int:
    """MGQE unshared, variable D: ``sum_i |V_i| D_i ceil(log2 K) + 32 K d m``.

    Example:
        >>> mgqe_unshared_d_bits([10, 90], 8, [4, 2], 16)
        9072
    """
    sizes = _tier_sizes(tier_sizes)
    _same_length("num_subspaces", num_subspaces, sizes)
    b = code_bits(num_centroids)
    codes = sum(v * D * b for v, D in zip(sizes, num_subspaces, strict=True))
    d = _check_int("output_dim", output_dim)
    return codes + FLOAT_BITS * num_centroids * d * len(sizes)


def hashing_bits(num_buckets: int, output_dim: int) -> int:
    """One hash table of ``B`` rows: ``32 B d``.

    Example:
        >>> hashing_bits(8, 4)
        1024
    """
    return full_bits(num_buckets, output_dim)


def double_hashing_bits(
    num_buckets: int, output_dim: int, num_tables: int = 2, combiner: str = "sum"
) -> int:
    """Double hashing: ``num_tables`` tables of ``B`` rows (Zhang et al. 2020: "2B").

    Args:
        num_buckets: B, rows per table.
        output_dim: d, the width of the combined embedding.
        num_tables: 2 (one table per hash function) or 1 (a shared table).
        combiner: ``"sum"`` (each table d wide) or ``"concat"`` (each table d/2 wide).

    Returns:
        Bits.

    Example:
        >>> double_hashing_bits(8, 4), double_hashing_bits(8, 4, combiner="concat")
        (2048, 1024)
    """
    if num_tables not in (1, 2):
        raise ValueError(f"`num_tables` must be 1 or 2. Received: {num_tables!r}")
    if combiner not in ("sum", "concat"):
        raise ValueError(
            f"`combiner` must be 'sum' or 'concat'. Received: {combiner!r}"
        )
    d = _check_int("output_dim", output_dim)
    width = d // 2 if combiner == "concat" else d
    return num_tables * full_bits(num_buckets, width)


def hybrid_bits(
    dictionary_rows: int,
    num_buckets: int,
    output_dim: int,
    num_tables: int = 2,
    combiner: str = "sum",
) -> int:
    """Hybrid hashing: a collision-free dictionary table plus double-hash tables.

    Args:
        dictionary_rows: Rows of the dictionary table (top-k values, plus one for the
            "not in dictionary" row when the layer keeps one).
        num_buckets: B, rows per hash table.
        output_dim: d.
        num_tables: Hash tables (see :func:`double_hashing_bits`).
        combiner: ``"sum"`` or ``"concat"``.

    Returns:
        Bits.

    Example:
        >>> hybrid_bits(5, 8, 4)
        2688
    """
    return full_bits(dictionary_rows, output_dim) + double_hashing_bits(
        num_buckets, output_dim, num_tables, combiner
    )


def model_size_percent(
    compressed_tables: Iterable[int], dense_params: int, full_tables: Iterable[int]
) -> float:
    """Model size %: serving bits of the whole model over the full-embedding model's.

    Args:
        compressed_tables: Serving bits of each embedding table of the compressed model.
        dense_params: Number of uncompressed parameters (hidden layers, output weights);
            each costs 32 bits in both models.
        full_tables: Bits of each embedding table of the full-embedding model.

    Returns:
        The percentage, e.g. ``30.42`` for 30.42 %.

    Example:
        >>> model_size_percent([full_bits(10, 4)], 0, [full_bits(20, 4)])
        50.0
    """
    dense = FLOAT_BITS * _check_int("dense_params", dense_params)
    compressed = sum(int(b) for b in compressed_tables) + dense
    full = sum(int(b) for b in full_tables) + dense
    if full <= 0:
        raise ValueError(f"`full_tables` must add up to > 0 bits. Received: {full}")
    return 100.0 * compressed / full


def collision_rate(n: int, buckets: int | float) -> float:
    """Expected collisions per bucket when ``n`` values hash into ``B`` buckets.

    ``r(n, B) = n/B - 1 + (1 - 1/B)^n``, evaluated as ``n/B + expm1(n log1p(-1/B))`` so
    that answers near 1e-14 keep their precision (Zhang et al. 2020, Table 1).

    Args:
        n: Number of distinct values |T|.
        buckets: B (may be a float such as ``2.0**44`` for double hashing).

    Returns:
        The rate (expected collisions divided by B).

    Example:
        >>> round(collision_rate(4_000_000, 2**22), 4)
        0.339
    """
    n = _check_int("n", n)
    if buckets < 1:
        raise ValueError(f"`buckets` must be >= 1. Received: {buckets!r}")
    b = float(buckets)
    if b == 1.0:
        return float(max(n - 1, 0))
    return n / b + math.expm1(n * math.log1p(-1.0 / b))


def collision_probability(n: int, buckets: int) -> float:
    """Probability of at least one collision: ``1 - B! / ((B - n)! B^n)``.

    Evaluated as ``-expm1(sum_{i<n} log1p(-i/B))`` in chunks (exact up to float
    rounding, no factorials); ``n > B`` gives 1.

    Args:
        n: Number of distinct values |T|.
        buckets: B, an integer.

    Returns:
        The probability.

    Example:
        >>> round(collision_probability(23, 365), 4)   # the birthday problem
        0.5073
    """
    n = _check_int("n", n)
    b = _check_int("buckets", buckets, 1)
    if n > b:
        return 1.0
    total = 0.0
    chunk = 1 << 20
    for start in range(0, n, chunk):
        i = np.arange(start, min(n, start + chunk), dtype=np.float64)
        total += float(np.sum(np.log1p(-i / b)))
    return -math.expm1(total)


def double_hash_collision_rate(n: int, buckets: int) -> float:
    """Double hashing behaves like one hash into ``B^2`` slots: ``r(n, B^2)``.

    Example:
        >>> double_hash_collision_rate(1000, 2**10) < collision_rate(1000, 2**10)
        True
    """
    return collision_rate(n, float(buckets) ** 2)


def hybrid_collision_rate(n: int, k: int, buckets: int) -> float:
    """Hybrid hashing: top ``k`` values never collide, others double-hash: r(n-k, B^2).

    Example:
        >>> f"{hybrid_collision_rate(4_000_000, 100_000, 2**20):.4g}"
        '6.291e-12'
    """
    n = _check_int("n", n)
    k = _check_int("k", k)
    return double_hash_collision_rate(max(n - k, 0), buckets)
