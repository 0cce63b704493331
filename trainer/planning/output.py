"""What a plan writes and prints: the planned spec, its table, a comparison.

Example:
    >>> bytes_text(8 * 1536)
    '1.536 KB'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from trainer.contracts.features import FeatureSpec
from trainer.planning import candidates as candidates_lib
from trainer.planning.planner import Budget, Plan, bytes_text


def planned_spec(plan: Plan, spec: FeatureSpec) -> dict[str, Any]:
    """The input spec with each categorical feature's treatment replaced by the plan."""
    chosen = {f.name: f.chosen.feature for f in plan.features}
    features = [candidates_lib.spec_entry(chosen.get(f.name, f)) for f in spec.features]
    out: dict[str, Any] = {
        "name": spec.name,
        "timestamp_key": spec.timestamp_key,
        "label_keys": list(spec.label_keys),
        "features": features,
    }
    if spec.crosses:
        out["crosses"] = [
            {"features": list(c.features), "hash_buckets": c.hash_buckets}
            for c in spec.crosses
        ]
    return out


def spec_yaml(plan: Plan, spec: FeatureSpec, budget: Budget) -> str:
    """The planned spec as YAML, with a header saying how it was made."""
    s = plan.summary()
    header = (
        f"# Planned by python -m trainer.plan (budget {budget.text}) from stats "
        f"{plan.stats_version}.\n"
        f"# Size {bytes_text(plan.total_bits)} of {bytes_text(plan.budget_bits)} "
        f"({s['size_percent']:.2f} % of the full model, "
        f"{bytes_text(plan.full_model_bits)}); "
        f"predicted collided traffic {plan.predicted_cost:.4f} "
        f"(gap to the optimum <= {plan.solution.gap:.2g}).\n"
    )
    body = yaml.safe_dump(planned_spec(plan, spec), sort_keys=False, width=88)
    return header + body


def format_table(plan: Plan) -> str:
    """The plan as a text table, one row per categorical feature."""
    head = (
        "feature",
        "distinct",
        "head share",
        "chosen",
        "bytes",
        "collided",
        "runner-up",
    )
    rows = [head]
    for f in plan.features:
        ru = f.runner_up
        rows.append(
            (
                f.name,
                f"{f.distinct:,}",
                f"{100 * f.head_share:.1f} %",
                f.chosen.label,
                f"{f.chosen.bits // 8:,}",
                f"{100 * f.chosen.cost:.3f} %",
                f"{ru.label} ({ru.bits // 8:,} B, {100 * ru.cost:.3f} %)"
                if ru
                else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    ]
    s = plan.solution
    lines.append(
        f"total {bytes_text(plan.total_bits)} of budget {bytes_text(plan.budget_bits)} "
        f"({100 * plan.total_bits / plan.full_model_bits:.2f} % of the full model "
        f"{bytes_text(plan.full_model_bits)}; fixed {bytes_text(plan.fixed_bits)}); "
        f"predicted collided traffic {plan.predicted_cost:.5f} summed over features; "
        + ("exact optimum" if s.exact else f"optimality gap <= {s.gap:.2g}")
    )
    lines.append(
        f"head share = traffic of ids seen >= {plan.heavy_min_count} times; "
        "collided = predicted share of the feature's traffic whose row is shared "
        "with another such id (quantized ids: a penalty per code bit)"
    )
    return "\n".join(lines)


def compare(old: FeatureSpec, new: Mapping[str, Any]) -> list[str]:
    """Lines saying which features a new planned spec changes, and how."""
    lines = []
    for entry in new["features"]:
        try:
            before = candidates_lib.spec_entry(old.feature(entry["name"]))
        except KeyError:
            lines.append(f"{entry['name']}: new feature")
            continue
        a, b = candidates_lib.settings_of(before), candidates_lib.settings_of(entry)
        if a != b:
            changed = sorted(set(a) | set(b))
            diff = ", ".join(
                f"{k} {a.get(k, '-')} -> {b.get(k, '-')}"
                for k in changed
                if a.get(k) != b.get(k)
            )
            lines.append(f"{entry['name']}: {diff}")
    return lines
