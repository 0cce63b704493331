"""The multiple-choice knapsack against brute force on seeded random instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trainer.planning import solver


def brute_force(groups, budget):
    best = None
    for combo in itertools.product(*[range(len(g)) for g in groups]):
        bits = sum(groups[i][j][0] for i, j in enumerate(combo))
        if bits > budget:
            continue
        c = sum(groups[i][j][1] for i, j in enumerate(combo))
        if best is None or c < best[0] - 1e-12:
            best = (c, combo)
    return best


def random_instance(rng, groups=4, options=5, scale=1000):
    return [
        [(int(rng.integers(1, scale)), float(rng.random())) for _ in range(options)]
        for _ in range(groups)
    ]


@pytest.mark.parametrize("seed", range(25))
def test_exact_dp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    groups = random_instance(rng)
    low = sum(min(s for s, _ in g) for g in groups)
    high = sum(max(s for s, _ in g) for g in groups)
    budget = int(rng.integers(low, high + 1))
    s = solver.solve(groups, budget)
    cost, _ = brute_force(groups, budget)
    assert s.exact
    assert s.bits <= budget
    assert s.cost == pytest.approx(cost, abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_discretised_dp_is_feasible_and_bounds_the_optimum(seed):
    rng = np.random.default_rng(100 + seed)
    groups = random_instance(rng, scale=10**9)
    low = sum(min(s for s, _ in g) for g in groups)
    high = sum(max(s for s, _ in g) for g in groups)
    budget = int(rng.integers(low, high + 1))
    s = solver.solve(groups, budget, cells=512, max_exact_cells=64)
    cost, _ = brute_force(groups, budget)
    assert not s.exact
    assert s.bits <= budget
    assert s.lower_bound <= cost + 1e-9 <= s.cost + 2e-9
    assert s.gap == pytest.approx(s.cost - s.lower_bound)


def test_ties_go_to_the_smaller_plan_and_are_deterministic():
    groups = [[(5, 0.0), (3, 0.0), (4, 0.0)], [(2, 1.0), (1, 1.0)]]
    first = solver.solve(groups, 100)
    assert first.choice == [1, 1] and first.bits == 4
    assert solver.solve(groups, 100) == first


def test_infeasible_names_the_minimum():
    with pytest.raises(solver.InfeasibleError) as e:
        solver.solve([[(5, 0.0), (7, 0.0)], [(3, 1.0)]], 7)
    assert e.value.minimum == 8
