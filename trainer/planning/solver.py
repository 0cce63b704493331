"""Multiple-choice knapsack: one option per group, minimum total cost within a budget.

Dynamic programming over the budget (the textbook DP of the multiple-choice knapsack:
Kellerer, Pferschy and Pisinger, "Knapsack Problems", Springer 2004). Sizes are integers
(bits); they are first divided by their greatest common divisor. When the budget then has
at most ``max_exact_cells`` units the DP is **exact**. Otherwise it runs on ``cells``
units of ``u = budget / cells`` bits:

- with every size rounded **up** to whole units, whatever it picks fits the true budget
  (the plan it returns);
- with every size rounded **down**, every plan that fits the true budget also fits, so
  its optimum is a **lower bound** on the true optimum.

The returned :class:`Solution` carries both: ``cost - lower_bound`` is the largest
possible distance from the optimum (the optimality gap, reported by the planner). Each
rounding moves a plan's size by less than ``u`` per group, so the returned plan is at
least as good as the true optimum for a budget of ``budget - groups * u``.

Ties: each option's cost gets ``1e-12 * size / budget`` added, so that among plans of
equal cost the smaller one wins, deterministically (a plan may so lose at most
``1e-12`` per group of cost, far below any difference worth reporting).

Example:
    >>> s = solve([[(1, 5.0), (3, 1.0)], [(1, 4.0), (2, 0.0)]], budget=4)
    >>> s.choice, s.bits, s.cost, s.exact
    ([0, 1], 3, 5.0, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import reduce

import numpy as np

DEFAULT_CELLS = 1 << 16
MAX_EXACT_CELLS = 1 << 18
TIE_BREAK = 1e-12


class InfeasibleError(ValueError):
    """Even the smallest option of every group exceeds the budget."""

    def __init__(self, minimum: int, budget: int) -> None:
        super().__init__(f"smallest possible total {minimum} exceeds budget {budget}")
        self.minimum = minimum
        self.budget = budget


@dataclasses.dataclass(frozen=True)
class Solution:
    """The chosen option per group.

    Attributes:
        choice: Index of the chosen option in each group.
        bits: Total size of the chosen options.
        cost: Total cost of the chosen options.
        lower_bound: No plan within the budget costs less than this.
        exact: True if the DP ran on exact sizes (``cost == lower_bound`` up to ties).
        unit: Bits per DP cell.
    """

    choice: list[int]
    bits: int
    cost: float
    lower_bound: float
    exact: bool
    unit: float

    @property
    def gap(self) -> float:
        return max(0.0, self.cost - self.lower_bound)


def _dp(
    weights: list[np.ndarray], costs: list[np.ndarray], cells: int
) -> tuple[float, list[int] | None]:
    """Min total cost with total weight <= cells; the choice (None if infeasible)."""
    best = np.zeros(cells + 1)
    choices = []
    for w, c in zip(weights, costs, strict=True):
        new = np.full(cells + 1, np.inf)
        pick = np.full(cells + 1, -1, dtype=np.int32)
        for j, (wj, cj) in enumerate(zip(w.tolist(), c.tolist(), strict=True)):
            if wj > cells:
                continue
            shifted = best[: cells + 1 - wj] + cj
            target = new[wj:]
            better = shifted < target
            target[better] = shifted[better]
            pick[wj:][better] = j
        best = new
        choices.append(pick)
    if not np.isfinite(best[cells]):
        return math.inf, None
    g, chosen = cells, []
    for w, pick in zip(reversed(weights), reversed(choices), strict=True):
        j = int(pick[g])
        chosen.append(j)
        g -= int(w[j])
    return float(best[cells]), chosen[::-1]


def solve(
    groups: Sequence[Sequence[tuple[int, float]]],
    budget: int,
    cells: int = DEFAULT_CELLS,
    max_exact_cells: int = MAX_EXACT_CELLS,
) -> Solution:
    """Chooses one ``(size, cost)`` option per group, minimising cost within budget.

    Args:
        groups: Per group, its options as ``(size in bits, cost)``; sizes >= 0.
        budget: The total size allowed.
        cells: DP resolution when the exact DP would be larger than ``max_exact_cells``.
        max_exact_cells: Largest budget (in gcd units) solved exactly.

    Returns:
        The :class:`Solution`.

    Raises:
        InfeasibleError: if the smallest option of every group adds up to more than
            ``budget``.
        ValueError: on an empty group or a negative size.
    """
    if any(not g for g in groups):
        raise ValueError("every group needs at least one option")
    sizes = [np.array([int(s) for s, _ in g], dtype=np.int64) for g in groups]
    if any((s < 0).any() for s in sizes):
        raise ValueError("sizes must be >= 0")
    minimum = int(sum(int(s.min()) for s in sizes))
    if minimum > budget:
        raise InfeasibleError(minimum, budget)
    scale = max(budget, 1)
    costs = [
        np.array([float(c) for _, c in g]) + TIE_BREAK * s / scale
        for g, s in zip(groups, sizes, strict=True)
    ]
    g = reduce(math.gcd, [int(x) for s in sizes for x in s.tolist()] + [0])
    g = max(g, 1)
    if budget // g <= max_exact_cells:
        n_cells = budget // g
        weights = [s // g for s in sizes]
        value, choice = _dp(weights, costs, n_cells)
        exact, unit, lower = True, float(g), value
    else:
        n_cells = cells
        unit = budget / cells
        up = [np.ceil(s / unit).astype(np.int64) for s in sizes]
        down = [np.floor(s / unit).astype(np.int64) for s in sizes]
        value, choice = _dp(up, costs, n_cells)
        lower, _ = _dp(down, costs, n_cells)
        exact = False
        if choice is None:  # rounding up lost the only fitting plans: fall back
            choice = [int(np.argmin(s)) for s in sizes]
    assert choice is not None
    bits = int(sum(int(s[j]) for s, j in zip(sizes, choice, strict=True)))
    cost = float(sum(float(gr[j][1]) for gr, j in zip(groups, choice, strict=True)))
    if exact:
        lower = cost
    else:  # the rounded-down optimum, less the tie-breakers it may include
        lower = min(cost, max(0.0, lower - 2 * TIE_BREAK * len(sizes)))
    return Solution(choice, bits, cost, lower, exact, unit)
