"""Plans on hand-made count tables (known optimum) and on a real stats artifact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from trainer.contracts import artifacts
from trainer.contracts.features import FeatureSpec, Treatment, load_feature_spec
from trainer.planning import candidates, output, planner, solver


def write_stats(directory, tables: dict[str, list[int]]) -> str:
    """A minimal stats artifact holding only count tables and the manifest."""
    d = str(directory)
    for name, counts in tables.items():
        values = [f"{name}{i}" for i in range(len(counts))]
        table = pa.table(
            {
                "value": pa.array(values, pa.string()),
                "count": pa.array(counts, pa.int64()),
            }
        )
        artifacts.write_counts(d, name, table)
    artifacts.write_manifest(
        d,
        {
            "format_version": artifacts.FORMAT_VERSION,
            "version": "hand-made",
            "features": {n: {"uses_dictionary": True} for n in tables},
            "numeric": {},
        },
    )
    return d


def hand_spec(*names, dim=8) -> FeatureSpec:
    return FeatureSpec.from_dict(
        {"name": "hand", "features": [{"name": n, "embedding_dim": dim} for n in names]}
    )


HAND = {
    "head": [500, 400, 300, 1, 1, 1, 1, 1],  # 3 heavy ids
    "flat": [3] * 40 + [1] * 200,  # 40 heavy ids, a long light tail
    "one": [1000],  # one id
}


def hand_plan(stats, spec, budget):
    """A plan with a tiny MLP, so that the tables dominate the model's size."""
    if isinstance(budget, str):
        budget = planner.parse_budget(budget)
    return planner.make_plan(stats, spec, budget, hidden_units=(4,))


def pareto(options):
    """Options not dominated in (bits, cost), sorted by bits."""
    out = []
    for bits, c, j in sorted((o[0], o[1], j) for j, o in enumerate(options)):
        if not out or c < out[-1][1] - 1e-15:
            out.append((bits, c, j))
    return out


def brute_force(groups, budget):
    """Exact optimum by merging Pareto sets (independent of the DP)."""
    partial = [(0, 0.0, ())]
    for g in groups:
        merged = [
            (b + bits, c + cost, picks + (j,))
            for b, c, picks in partial
            for bits, cost, j in pareto(g)
            if b + bits <= budget
        ]
        partial = pareto([(b, c, p) for b, c, p in merged])
        partial = [
            (merged_b, merged_c, merged[j][2]) for merged_b, merged_c, j in partial
        ]
    return min(partial, key=lambda t: (t[1], t[0]))


def test_ample_budget_gives_each_feature_a_row_per_heavy_id(tmp_path):
    stats = write_stats(tmp_path, HAND)
    spec = hand_spec(*HAND)
    plan = hand_plan(stats, spec, "100%")
    chosen = {f.name: f.chosen.feature for f in plan.features}
    assert plan.predicted_cost == 0.0
    for name, heavy in (("head", 3), ("flat", 40), ("one", 1)):
        assert chosen[name].treatment is Treatment.FULL, name
        assert chosen[name].top_k == heavy, name  # the smallest zero-cost candidate


def test_budget_at_the_minimum_takes_each_smallest_candidate(tmp_path):
    stats = write_stats(tmp_path, HAND)
    spec = hand_spec(*HAND)
    ample = hand_plan(stats, spec, "100%")
    budget = planner.Budget("min", bytes=ample.minimum_bits // 8 + 1)
    plan = hand_plan(stats, spec, budget)
    for f in plan.features:
        options = candidates.feature_candidates(
            planner.load_profiles(stats, spec, 2)[0][f.name], spec.feature(f.name)
        )
        assert f.chosen.bits == min(c.bits for c in options)
    with pytest.raises(planner.PlanError, match="below the smallest possible model"):
        hand_plan(stats, spec, planner.Budget("x", bytes=budget.bytes - 20))


@pytest.mark.parametrize("percent", [13, 20, 35, 60, 90])
def test_hand_made_plans_match_brute_force(tmp_path, percent):
    stats = write_stats(tmp_path, HAND)
    spec = hand_spec(*HAND)
    plan = hand_plan(stats, spec, f"{percent}%")
    profiles, _ = planner.load_profiles(stats, spec, 2)
    groups = [
        [
            (c.bits, c.cost)
            for c in candidates.feature_candidates(profiles[n], spec.feature(n))
        ]
        for n in HAND
    ]
    _, best_cost, _ = brute_force(groups, plan.budget_bits - plan.fixed_bits)
    assert plan.total_bits <= plan.budget_bits
    assert plan.predicted_cost == pytest.approx(best_cost, abs=1e-9)


def test_real_stats_plan_matches_brute_force(synthetic_stats, spec_path):
    spec = load_feature_spec(spec_path)
    profiles, _ = planner.load_profiles(str(synthetic_stats), spec, 2)
    for percent in (62, 64, 66, 70):
        plan = planner.make_plan(
            str(synthetic_stats), spec, planner.parse_budget(f"{percent}%")
        )
        groups = [
            [
                (c.bits, c.cost)
                for c in candidates.feature_candidates(profiles[f.name], f)
            ]
            for f in spec.categorical
        ]
        best_bits, best_cost, _ = brute_force(
            groups, plan.budget_bits - plan.fixed_bits
        )
        s = plan.solution
        assert s.lower_bound <= best_cost + 1e-12 <= s.cost + 1e-12, percent
        assert s.gap < 1e-3, percent
        if s.exact:
            assert s.cost == pytest.approx(best_cost, abs=1e-9), percent
        assert plan.total_bits <= plan.budget_bits


def test_plans_are_deterministic_and_tighter_budgets_cost_more(
    synthetic_stats, spec_path
):
    spec = load_feature_spec(spec_path)
    costs = []
    for percent in (61, 65, 75, 100):
        a = planner.make_plan(
            str(synthetic_stats), spec, planner.parse_budget(f"{percent}%")
        )
        b = planner.make_plan(
            str(synthetic_stats), spec, planner.parse_budget(f"{percent}%")
        )
        assert output.spec_yaml(a, spec, planner.parse_budget("1")) == output.spec_yaml(
            b, spec, planner.parse_budget("1")
        )
        costs.append(a.predicted_cost)
    assert costs == sorted(costs, reverse=True)
    assert costs[0] > costs[-1]


def test_discretised_solver_reports_its_gap(synthetic_stats, spec_path):
    spec = load_feature_spec(spec_path)
    profiles, _ = planner.load_profiles(str(synthetic_stats), spec, 2)
    groups = [
        [(c.bits, c.cost) for c in candidates.feature_candidates(profiles[f.name], f)]
        for f in spec.categorical
    ]
    budget = sum(min(b for b, _ in g) for g in groups) * 3
    exact = solver.solve(groups, budget)
    rough = solver.solve(groups, budget, cells=2048, max_exact_cells=16)
    assert exact.exact and not rough.exact
    assert rough.bits <= budget
    assert rough.lower_bound <= exact.cost + 1e-12 <= rough.cost + 1e-12


def test_planned_spec_loads_back_unchanged(synthetic_stats, spec_path, tmp_path):
    spec = load_feature_spec(spec_path)
    budget = planner.parse_budget("70%")
    plan = planner.make_plan(str(synthetic_stats), spec, budget)
    path = tmp_path / "planned.yaml"
    path.write_text(output.spec_yaml(plan, spec, budget))
    loaded = load_feature_spec(str(path))
    for f in plan.features:
        entry = candidates.spec_entry(loaded.feature(f.name))
        assert entry == candidates.spec_entry(f.chosen.feature), f.name
        assert (
            candidates.serving_bits(loaded.feature(f.name), f.distinct) == f.chosen.bits
        )
    assert loaded.crosses == spec.crosses
    assert [f.name for f in loaded.features] == [f.name for f in spec.features]
    assert loaded.numeric == spec.numeric


def test_replan_comparison_names_changed_features(synthetic_stats, spec_path):
    spec = load_feature_spec(spec_path)
    plan = planner.make_plan(str(synthetic_stats), spec, planner.parse_budget("70%"))
    new = output.planned_spec(plan, spec)
    lines = output.compare(spec, new)
    changed = {line.split(":")[0] for line in lines}
    expected = {
        f.name
        for f in plan.features
        if candidates.spec_entry(f.chosen.feature)
        != candidates.spec_entry(spec.feature(f.name))
    }
    assert changed == expected and changed
    same = FeatureSpec.from_dict(new)
    assert output.compare(same, new) == []


@pytest.mark.parametrize(
    "text,bytes_,percent",
    [
        ("64MB", 64 * 10**6, None),
        ("512KiB", 512 * 1024, None),
        ("1000", 1000, None),
        ("15%", None, 15.0),
        ("2.5 GB", 25 * 10**8, None),
    ],
)
def test_parse_budget(text, bytes_, percent):
    b = planner.parse_budget(text)
    assert (b.bytes, b.percent) == (bytes_, percent)


@pytest.mark.parametrize("text", ["64XB", "", "-3MB", "0", "150%", "MB"])
def test_parse_budget_rejects(text):
    with pytest.raises(planner.PlanError, match="budget"):
        planner.parse_budget(text)


def test_spec_and_stats_disagreements_name_the_feature(tmp_path):
    stats = write_stats(tmp_path / "s", HAND)
    with pytest.raises(planner.PlanError, match="'one' is in the stats"):
        planner.make_plan(stats, hand_spec("head", "flat"), planner.parse_budget("50%"))
    with pytest.raises(planner.PlanError, match="'extra' of spec has no count table"):
        planner.make_plan(stats, hand_spec(*HAND, "extra"), planner.parse_budget("50%"))
    empty = write_stats(tmp_path / "e", {**HAND, "flat": []})
    with pytest.raises(planner.PlanError, match="'flat': empty count table"):
        planner.make_plan(empty, hand_spec(*HAND), planner.parse_budget("50%"))
    numeric = FeatureSpec.from_dict(
        {
            "name": "n",
            "features": [
                {"name": "head"},
                {"name": "flat"},
                {"name": "one", "kind": "numeric"},
            ],
        }
    )
    with pytest.raises(planner.PlanError, match="'one' is categorical in the stats"):
        planner.make_plan(stats, numeric, planner.parse_budget("50%"))


def test_candidate_bits_match_the_trainers_model(synthetic_stats, spec_path):
    """serving_bits() of a real WideAndDeep built from candidates == the planner's."""
    from trainer.models.wide_deep import WideAndDeep

    spec = load_feature_spec(spec_path)
    profiles, manifest = planner.load_profiles(str(synthetic_stats), spec, 2)
    fixed = planner.fixed_bits(spec, manifest, (32, 16))
    treatments = [
        Treatment.MGQE,
        Treatment.HYBRID,
        Treatment.DPQ,
        Treatment.DOUBLE_HASH,
        Treatment.HASH,
        Treatment.FULL,
    ]
    for shift in range(2):
        chosen = {}
        for i, f in enumerate(spec.categorical):
            want = treatments[(i + shift) % len(treatments)]
            opts = candidates.feature_candidates(profiles[f.name], f)
            chosen[f.name] = [c for c in opts if c.treatment is want][len(opts) % 3]
        features = [
            chosen[f.name].feature if f.name in chosen else f for f in spec.features
        ]
        planned = dataclasses.replace(spec, features=tuple(features))
        rows = {}
        for f in planned.features:
            if f.name in chosen:
                n = profiles[f.name].n
                rows[f.name] = (
                    candidates.dictionary_rows(f, n) + 1
                    if f.uses_dictionary
                    else f.hash_buckets
                )
            else:
                rows[f.name] = manifest["numeric"][f.name]["num_boundaries"] + 2
        model = WideAndDeep(planned.to_dict(), rows, hidden_units=(32, 16))
        for f in planned.categorical:
            if f.treatment is Treatment.MGQE:  # tiers as the stats job writes them
                v = rows[f.name] - 1
                sizes = candidates.mgqe_tier_sizes(f, profiles[f.name].n)
                tiers = np.repeat(np.arange(len(sizes)), sizes).astype("int32")
                assert tiers.size == v + 1
                model.deep_embeddings[f.name].set_row_tiers(tiers)
        expected = fixed + sum(c.bits for c in chosen.values())
        assert model.serving_bits() == expected, {k: c.label for k, c in chosen.items()}
