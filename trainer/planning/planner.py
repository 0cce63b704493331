"""The compression plan: stats artifact + feature spec + budget -> a feature spec.

For every categorical feature of the spec, :func:`make_plan` reads the feature's full
count table from the stats artifact (``counts/<f>.parquet``), enumerates its candidate
treatments (:mod:`trainer.planning.candidates`) and picks one per feature with the
multiple-choice knapsack (:mod:`trainer.planning.solver`) so that the whole model's
serving bits fit the budget and the summed predicted collided traffic is minimal.

The model size is that of the wide-and-deep model the trainer builds
(:class:`trainer.models.wide_deep.WideAndDeep.serving_bits`): the planned categorical
tables (deep + wide), plus a *fixed* part the plan does not change (bucketized numeric
tables, hashed crosses, the MLP at 32 bits a parameter). A ``%`` budget is relative to
the full model: every categorical feature ``full`` with a row for each distinct id.

Pure Python + NumPy/pyarrow: importable without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from trainer.contracts import artifacts
from trainer.contracts.features import FeatureSpec, Kind, Treatment
from trainer.planning import candidates as candidates_lib
from trainer.planning import cost as cost_lib
from trainer.planning import solver
from trainer.serving import sizes

DEFAULT_HIDDEN_UNITS = (256, 128, 64)  # trainer.config.ModelConfig's default
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


class PlanError(ValueError):
    """Bad planner input; the message names the feature, file or flag."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """A serving-size budget: absolute bytes or a percentage of the full model."""

    text: str
    bytes: int | None = None
    percent: float | None = None

    def bits(self, full_model_bits: int) -> int:
        if self.bytes is not None:
            return 8 * self.bytes
        assert self.percent is not None
        return int(math.floor(full_model_bits * self.percent / 100.0))


def parse_budget(text: str) -> Budget:
    """``64MB``, ``512KiB``, ``1000000`` (bytes) or ``15%`` of the full model.

    Raises:
        PlanError: naming the text, if it is none of these.

    Example:
        >>> parse_budget("64MB").bytes, parse_budget("15%").percent
        (64000000, 15.0)
    """
    s = str(text).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*%", s)
    if m:
        p = float(m.group(1))
        if not 0 < p <= 100:
            raise PlanError(f"budget {text!r}: a percentage must be in (0, 100]")
        return Budget(s, percent=p)
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([A-Za-z]*)", s)
    if not m or m.group(2).upper() not in _UNITS:
        raise PlanError(
            f"budget {text!r}: expected bytes such as 64MB, 512KiB, 1000000 "
            "or a share of the full model such as 15%"
        )
    value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value <= 0:
        raise PlanError(f"budget {text!r}: must be > 0 bytes")
    return Budget(s, bytes=value)


@dataclasses.dataclass(frozen=True)
class FeaturePlan:
    """The decision for one categorical feature."""

    name: str
    distinct: int
    heavy: int
    head_share: float
    chosen: candidates_lib.Candidate
    runner_up: candidates_lib.Candidate | None
    options: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """A whole plan: one treatment per categorical feature, and how it was found."""

    features: tuple[FeaturePlan, ...]
    fixed_bits: int
    full_model_bits: int
    budget_bits: int
    minimum_bits: int
    solution: solver.Solution
    heavy_min_count: int
    quant_penalty: float
    stats_version: str

    @property
    def total_bits(self) -> int:
        return self.fixed_bits + sum(f.chosen.bits for f in self.features)

    @property
    def predicted_cost(self) -> float:
        return sum(f.chosen.cost for f in self.features)

    def feature(self, name: str) -> FeaturePlan:
        return next(f for f in self.features if f.name == name)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (recorded beside the planned spec and the model)."""
        return {
            "stats_version": self.stats_version,
            "budget_bytes": self.budget_bits / 8,
            "planned_bytes": self.total_bits / 8,
            "full_model_bytes": self.full_model_bits / 8,
            "fixed_bytes": self.fixed_bits / 8,
            "minimum_bytes": self.minimum_bits / 8,
            "size_percent": 100.0 * self.total_bits / self.full_model_bits,
            "predicted_cost": self.predicted_cost,
            "optimality_gap": self.solution.gap,
            "exact": self.solution.exact,
            "heavy_min_count": self.heavy_min_count,
            "quant_penalty": self.quant_penalty,
            "features": {
                f.name: {
                    "distinct": f.distinct,
                    "heavy": f.heavy,
                    "head_share": f.head_share,
                    "chosen": f.chosen.label,
                    "bytes": f.chosen.bits / 8,
                    "predicted_collided_traffic": f.chosen.cost,
                    "runner_up": f.runner_up.label if f.runner_up else None,
                    "spec": candidates_lib.spec_entry(f.chosen.feature),
                }
                for f in self.features
            },
        }


# ------------------------------------------------------------------------ inputs


def load_profiles(
    stats_dir: str, spec: FeatureSpec, heavy_min_count: int, spec_source: str = "spec"
) -> tuple[dict[str, cost_lib.CountProfile], dict[str, Any]]:
    """Count profiles of the spec's categorical features, checked against the stats.

    Raises:
        PlanError: naming the feature when the spec and the stats disagree or a count
            table is missing or empty.
    """
    try:
        manifest = artifacts.load_manifest(stats_dir)
    except artifacts.ArtifactError as e:
        raise PlanError(str(e)) from None
    in_stats = dict(manifest.get("features", {}))
    numeric_stats = dict(manifest.get("numeric", {}))
    kinds = {f.name: f.kind for f in spec.features}
    for name in sorted(in_stats):
        if name not in kinds:
            raise PlanError(
                f"feature {name!r} is in the stats {stats_dir} but not in {spec_source}"
            )
        if kinds[name] is not Kind.CATEGORICAL:
            raise PlanError(
                f"feature {name!r} is categorical in the stats {stats_dir} but "
                f"{kinds[name].value} in {spec_source}"
            )
    for name in sorted(numeric_stats):
        if name not in kinds:
            raise PlanError(
                f"feature {name!r} is in the stats {stats_dir} but not in {spec_source}"
            )
    profiles: dict[str, cost_lib.CountProfile] = {}
    for f in spec.features:
        if f.kind is Kind.NUMERIC:
            if f.treatment is Treatment.BUCKETIZED and f.name not in numeric_stats:
                raise PlanError(
                    f"feature {f.name!r} of {spec_source} has no bucket boundaries "
                    f"in the stats {stats_dir}"
                )
            continue
        if f.name not in in_stats:
            raise PlanError(
                f"feature {f.name!r} of {spec_source} has no count table in the "
                f"stats {stats_dir}"
            )
        uri = artifacts.counts_path(stats_dir, f.name)
        try:
            table = artifacts.load_counts(stats_dir, f.name)
        except (FileNotFoundError, OSError) as e:
            raise PlanError(f"feature {f.name!r}: cannot read {uri}: {e}") from None
        counts = np.asarray(table["count"].to_numpy(), dtype=np.int64)
        counts = counts[counts > 0]
        if counts.size == 0:
            raise PlanError(
                f"feature {f.name!r}: empty count table {uri} (no non-missing value)"
            )
        profiles[f.name] = cost_lib.CountProfile.from_counts(
            f.name, counts, heavy_min_count
        )
    return profiles, manifest


def fixed_bits(
    spec: FeatureSpec, manifest: Mapping[str, Any], hidden_units: Sequence[int]
) -> int:
    """Serving bits the plan does not change: bucketized tables, crosses, the MLP."""
    bits = 0
    width = 0
    for f in spec.features:
        if f.kind is Kind.CATEGORICAL:
            width += f.embedding_dim
        elif f.treatment is Treatment.BUCKETIZED:
            rows = int(manifest["numeric"][f.name]["num_boundaries"]) + 2
            bits += sizes.full_bits(rows, f.embedding_dim) + sizes.full_bits(rows, 1)
            width += f.embedding_dim
        else:
            width += 1
    for c in spec.crosses:
        bits += sizes.full_bits(c.hash_buckets, 1)
    params = 1  # the wide bias
    for units in [*hidden_units, 1]:  # hidden layers, then the deep logit
        params += width * units + units
        width = units
    return bits + sizes.FLOAT_BITS * params


def full_model_bits(
    spec: FeatureSpec, profiles: Mapping[str, cost_lib.CountProfile], fixed: int
) -> int:
    """The reference of ``%`` budgets: every categorical feature full, all ids."""
    total = fixed
    for f in spec.categorical:
        n = profiles[f.name].n
        full = dataclasses.replace(f, treatment=Treatment.FULL, top_k=n)
        total += candidates_lib.serving_bits(full, n)
    return total


# -------------------------------------------------------------------------- plan


def _runner_up(
    options: list[candidates_lib.Candidate], chosen: int, slack: int
) -> candidates_lib.Candidate | None:
    """Best other option that fits beside the others' choices, else the cheapest."""
    others = [c for i, c in enumerate(options) if i != chosen]
    if not others:
        return None
    fitting = [c for c in others if c.bits <= slack]
    pool = fitting or others
    return min(pool, key=lambda c: (c.cost, c.bits, c.label))


def make_plan(
    stats_dir: str,
    spec: FeatureSpec,
    budget: Budget,
    hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
    heavy_min_count: int = cost_lib.DEFAULT_HEAVY_MIN_COUNT,
    quant_penalty: float = cost_lib.DEFAULT_QUANT_PENALTY,
    spec_source: str = "spec",
    treatments: Collection[Treatment] | None = None,
) -> Plan:
    """Plans one treatment per categorical feature within ``budget``.

    ``treatments`` restricts every feature to those treatments (a uniform-treatment
    baseline); a feature with no candidate among them keeps all of its candidates.

    Raises:
        PlanError: on disagreeing inputs, or a budget below the smallest model (the
            message names that minimum).
    """
    if not spec.categorical:
        raise PlanError(f"{spec_source} has no categorical feature to plan")
    profiles, manifest = load_profiles(stats_dir, spec, heavy_min_count, spec_source)
    fixed = fixed_bits(spec, manifest, hidden_units)
    full = full_model_bits(spec, profiles, fixed)
    budget_bits = budget.bits(full)
    options = {
        f.name: candidates_lib.feature_candidates(profiles[f.name], f, quant_penalty)
        for f in spec.categorical
    }
    if treatments is not None:
        keep = set(treatments)
        options = {
            n: [c for c in opts if c.treatment in keep] or opts
            for n, opts in options.items()
        }
    names = [f.name for f in spec.categorical]
    minimum = fixed + sum(min(c.bits for c in options[n]) for n in names)
    if budget_bits < minimum:
        raise PlanError(
            f"budget {budget.text} ({bytes_text(budget_bits)}) is below the smallest "
            f"possible model, {bytes_text(minimum)} ({bytes_text(fixed)} of it fixed: "
            "bucketized numerics, crosses and the MLP)"
        )
    groups = [[(c.bits, c.cost) for c in options[n]] for n in names]
    solution = solver.solve(groups, budget_bits - fixed)
    rows = []
    for name, j in zip(names, solution.choice, strict=True):
        opts, p = options[name], profiles[name]
        slack = budget_bits - fixed - (solution.bits - opts[j].bits)
        rows.append(
            FeaturePlan(
                name=name,
                distinct=p.n,
                heavy=p.heavy,
                head_share=p.heavy_share,
                chosen=opts[j],
                runner_up=_runner_up(opts, j, slack),
                options=len(opts),
            )
        )
    return Plan(
        features=tuple(rows),
        fixed_bits=fixed,
        full_model_bits=full,
        budget_bits=budget_bits,
        minimum_bits=minimum,
        solution=solution,
        heavy_min_count=heavy_min_count,
        quant_penalty=quant_penalty,
        stats_version=str(manifest.get("version", "")),
    )


def bytes_text(bits: int) -> str:
    """Bits as a human-readable byte count, e.g. ``1.536 KB``."""
    b = bits / 8
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= size:
            return f"{b / size:.3f} {unit}"
    return f"{b:.0f} B"
