"""The exact collided-traffic expectations against seeded Monte-Carlo hashing."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.contracts.features import FeatureConfig, Treatment
from trainer.planning import candidates, cost


def _collided_share(counts: np.ndarray, slots: np.ndarray, heavy_min: int) -> float:
    """Share of traffic whose slot holds another heavy id, for one hash draw."""
    heavy = counts >= heavy_min
    heavy_per_slot = np.bincount(slots[heavy], minlength=slots.max() + 1)
    others = heavy_per_slot[slots] - heavy.astype(np.int64)
    return float(counts[others > 0].sum() / counts.sum())


def _simulate(counts, trials, rng, buckets, start=0, double=False, heavy_min=2):
    """Mean collided share over ``trials`` random hash functions (ranks >= start)."""
    n = counts.size
    out = []
    for _ in range(trials):
        h = rng.integers(0, buckets, size=n)
        if double:  # both hashes collide <=> the pair (h1, h2) is equal
            h = h * buckets + rng.integers(0, buckets, size=n)
        # dictionary ranks get their own slot, above every hash slot
        slots = np.where(np.arange(n) < start, buckets**2 + np.arange(n), h)
        out.append(_collided_share(counts, slots, heavy_min))
    return float(np.mean(out)), float(np.std(out) / np.sqrt(trials))


@pytest.fixture(scope="module")
def long_tail() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.sort(rng.zipf(1.6, size=600).astype(np.int64))[::-1]


@pytest.mark.parametrize(
    "buckets,start,double",
    [(64, 0, False), (512, 0, False), (8, 0, True), (16, 40, True), (256, 5, False)],
)
def test_expectation_matches_monte_carlo(long_tail, buckets, start, double):
    profile = cost.CountProfile.from_counts("x", long_tail)
    slots = float(buckets) ** 2 if double else buckets
    exact = cost.hashed_cost(profile, start, slots)
    mean, se = _simulate(
        long_tail, 400, np.random.default_rng(buckets + start), buckets, start, double
    )
    assert 0 < exact < 1
    assert abs(exact - mean) < 4 * se + 1e-3, (exact, mean, se)


def test_one_shared_row_is_deterministic():
    p = cost.CountProfile.from_counts("x", [9, 5, 3, 1, 1])
    assert cost.hashed_cost(p, 3, 1) == 0.0  # only light ids share the OOV row
    assert cost.hashed_cost(p, 2, 1) == pytest.approx(2 / 19)  # one heavy + lights
    assert cost.hashed_cost(p, 1, 1) == pytest.approx(10 / 19)  # two heavy ones
    assert cost.hashed_cost(p, 5, 1) == 0.0


def test_treatment_costs_order_as_expected(long_tail):
    p = cost.CountProfile.from_counts("x", long_tail)
    base = FeatureConfig("x", embedding_dim=16, hash_buckets=256, top_k=50)

    def c(t):
        return candidates.predicted_cost(base.__class__(**{**base.__dict__, **t}), p)

    one = c({"treatment": Treatment.HASH})
    two = c({"treatment": Treatment.DOUBLE_HASH})
    hybrid = c({"treatment": Treatment.HYBRID})
    assert one > two > hybrid > 0
    assert c({"treatment": Treatment.FULL, "top_k": p.n}) == 0.0
    dpq = c(
        {
            "treatment": Treatment.DPQ,
            "top_k": p.n,
            "num_subspaces": 8,
            "num_centroids": (256,),
        }
    )
    assert dpq == pytest.approx(cost.DEFAULT_QUANT_PENALTY)


def test_profile_rejects_empty_and_bad_counts():
    with pytest.raises(ValueError, match="x: empty count table"):
        cost.CountProfile.from_counts("x", [])
    with pytest.raises(ValueError, match="positive"):
        cost.CountProfile.from_counts("x", [3, 0])
