"""Predicted cost of an embedding treatment, computed from one feature's count table.

The cost of a treatment is the **collided traffic**: the count-weighted share of the
feature's (non-missing) values whose id shares its embedding row with another id that
carries non-negligible traffic. An id is *heavy* (carries non-negligible traffic) when
its count in the table is at least ``heavy_min_count`` (default 2: an id seen once in
the hour is indistinguishable from noise, and sharing a row with it costs nothing
measurable). Ids below the threshold are *light*.

Hashing family, under uniform random hashing (every id lands in each of ``S`` slots with
probability ``1/S``, independently). For an id ``i`` with count ``c_i``::

    P(no heavy j != i shares i's slot) = (1 - 1/S) ** (H - [i heavy])

where ``H`` is the number of heavy ids that are hashed. The expected collided traffic is
therefore exact in the counts (not the uniform ``r(n, B)`` formula, which weighs every
id alike)::

    E[collided] = (C_heavy (1 - q^(H-1)) + C_light (1 - q^H)) / T,   q = 1 - 1/S

with ``C_heavy``, ``C_light`` the traffic of the hashed heavy and light ids and ``T``
the feature's total traffic. ``hash`` has ``S = B``; ``double_hash`` combines two
independent hashes (Zhang et al., RecSys 2020, double hashing), so two ids share *both*
rows only when both hashes collide: ``S = B^2``; ``hybrid`` keeps the top ``k`` ids in a
collision-free dictionary and double-hashes only the rest.

Dictionary treatments (``full``, ``dpq``, ``mgqe``) with a dictionary of ``V`` rows send
every id ranked below ``V`` to the one OOV row: the same formula with ``S = 1``
(``0^0 = 1``: a lone heavy OOV id collides with nobody heavy).

Quantization (DPQ, MGQE) never collides: each dictionary id keeps its own code. Its
cost is a documented penalty per code bit, see :func:`quantization_penalty`.

Example:
    >>> p = CountProfile.from_counts("item", [5, 3, 1, 1])
    >>> p.heavy, p.heavy_traffic, p.total
    (2, 8, 10)
    >>> hashed_cost(p, start=0, slots=1)   # everything in one row
    1.0
    >>> round(hashed_cost(p, start=0, slots=2), 4)
    0.55
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

DEFAULT_HEAVY_MIN_COUNT = 2

# Penalty of quantized ids, in "collided-equivalent" traffic share, at REF_CODE_BITS.
# Where it comes from: in the MGQE paper's ML-1M experiments (Kang et al. 2020, WWW,
# experiments section) DPQ and MGQE match the full embedding (HR@10 GMF 7.79 full, 7.92
# DPQ, 8.03 MGQE; NeuMF 7.88 / 7.79 / 8.04; SASRec 20.36 / 20.23 / 20.36), and so does
# MGQE in this repository (README: within 0.06 RCE of the full model on the synthetic
# stream). A quantized id is therefore far better off than a collided one; 0.01 is a
# small, explicit price (not a measurement) so that, at equal size, a full row beats a
# code. It doubles each time the code bits of a row halve. Override: --quant-penalty.
DEFAULT_QUANT_PENALTY = 0.01
REF_CODE_BITS = 64


@dataclasses.dataclass(frozen=True)
class CountProfile:
    """One feature's count table, as the cost formulas need it.

    Attributes:
        name: Feature name.
        counts: int64 ``(n,)`` counts of the distinct values, descending.
        heavy_min_count: Count at or above which an id is heavy.
    """

    name: str
    counts: np.ndarray
    heavy_min_count: int = DEFAULT_HEAVY_MIN_COUNT

    @classmethod
    def from_counts(
        cls,
        name: str,
        counts: Sequence[int] | np.ndarray,
        heavy_min_count: int = DEFAULT_HEAVY_MIN_COUNT,
    ) -> CountProfile:
        """Sorts ``counts`` descending; rejects empty or non-positive tables."""
        c = np.asarray(counts, dtype=np.int64).reshape(-1)
        if c.size == 0:
            raise ValueError(f"{name}: empty count table")
        if (c <= 0).any():
            raise ValueError(f"{name}: counts must be positive")
        if heavy_min_count < 1:
            raise ValueError(f"heavy_min_count must be >= 1, got {heavy_min_count}")
        return cls(name, np.sort(c)[::-1].copy(), int(heavy_min_count))

    @property
    def n(self) -> int:
        """Distinct ids."""
        return int(self.counts.size)

    @property
    def total(self) -> int:
        return int(self._cum[-1])

    @property
    def heavy(self) -> int:
        """Number of heavy ids (they are the first ``heavy`` ranks)."""
        return int(np.searchsorted(-self.counts, -self.heavy_min_count, side="right"))

    @property
    def heavy_traffic(self) -> int:
        return self.traffic(0, self.heavy)

    @property
    def heavy_share(self) -> float:
        """Traffic share of the heavy ids (the table's "head share")."""
        return self.heavy_traffic / self.total

    @functools.cached_property
    def _cum(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)])

    def traffic(self, start: int, stop: int) -> int:
        """Traffic of ranks ``[start, stop)``."""
        cum = self._cum
        start = min(max(start, 0), self.n)
        stop = min(max(stop, start), self.n)
        return int(cum[stop] - cum[start])

    def rank_covering(self, share: float) -> int:
        """Smallest ``k`` whose top-``k`` ids carry ``share`` of the traffic or more."""
        cum = self._cum
        k = int(np.searchsorted(cum, share * cum[-1] - 1e-9, side="left"))
        return min(max(k, 1), self.n)


def _no_collision(m: int, slots: float) -> float:
    """``(1 - 1/S) ** m``, with ``0 ** 0 = 1``, precise for large ``S``."""
    if m <= 0:
        return 1.0
    if slots <= 1:
        return 0.0
    return math.exp(m * math.log1p(-1.0 / slots))


def hashed_cost(profile: CountProfile, start: int, slots: float) -> float:
    """Expected collided traffic share when ranks ``start..n-1`` hash into ``slots``.

    Ranks below ``start`` own a collision-free row (a dictionary) and cost nothing.

    Args:
        profile: The feature's counts.
        start: First hashed rank (0: every id is hashed).
        slots: ``B`` (one hash), ``B**2`` (double hashing) or 1 (one shared OOV row).

    Returns:
        The expected share of the feature's traffic that is collided, in [0, 1].
    """
    n, heavy = profile.n, profile.heavy
    start = min(max(int(start), 0), n)
    hashed_heavy = max(heavy - start, 0)
    c_heavy = profile.traffic(start, heavy)
    c_light = profile.traffic(max(start, heavy), n)
    expected = c_heavy * (1.0 - _no_collision(hashed_heavy - 1, slots))
    expected += c_light * (1.0 - _no_collision(hashed_heavy, slots))
    return expected / profile.total


def quantization_penalty(
    code_bits_per_row: int, penalty: float = DEFAULT_QUANT_PENALTY
) -> float:
    """Collided-equivalent share of a quantized id's traffic at ``b`` code bits a row.

    ``penalty * REF_CODE_BITS / b``, capped at 1: ``penalty`` at the MGQE paper's
    default of 64 bits a row (D = 8, K = 256), doubling each time the bits halve.

    Example:
        >>> quantization_penalty(64), quantization_penalty(16)
        (0.01, 0.04)
    """
    if code_bits_per_row < 1:
        raise ValueError(f"code bits must be >= 1, got {code_bits_per_row}")
    return min(1.0, penalty * REF_CODE_BITS / code_bits_per_row)
