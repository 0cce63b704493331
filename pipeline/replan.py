"""``python -m pipeline replan``: a new compression plan from the latest statistics.

Warm start needs a stable table layout, so an hourly run keeps the plan it started
with. ``replan`` makes the plan the budget would get from newer statistics
(:mod:`trainer.planning`, no TensorFlow) and says which features would change and by
how much (treatment, bytes, predicted collided traffic), for the user to apply with a
cold start (``--out`` writes the new feature spec).

Example::

    python -m pipeline replan --stats work/stats/2026-01-01T05 \\
        --spec planned.yaml --budget 15% --out replanned.yaml
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Registers the ``replan`` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "replan", help="plan per-feature compression anew from the latest stats"
    )
    p.add_argument("--stats", required=True, help="stats artifact directory")
    p.add_argument("--spec", required=True, help="the feature spec in use")
    p.add_argument(
        "--budget",
        help="64MB, 512KiB, bytes or 15%% (default: data.budget of --config)",
    )
    p.add_argument("--config", help="pipeline config YAML (for data.budget)")
    p.add_argument("--out", help="write the new feature spec here")
    p.set_defaults(handler=replan)


def replan(args: argparse.Namespace) -> int:
    """Plans, prints what would change, optionally writes the new spec."""
    from trainer.contracts import storage
    from trainer.contracts.features import load_feature_spec
    from trainer.planning import output, planner

    spec = load_feature_spec(args.spec)
    text = args.budget
    if not text and args.config:
        from pipeline import config

        text = config.load_config(args.config).data.budget
    if not text:
        raise ValueError("replan needs --budget, or --config with data.budget set")
    budget = planner.parse_budget(text)
    plan = planner.make_plan(args.stats, spec, budget, spec_source=args.spec)
    print(output.format_table(plan))
    diff = changes(plan, spec, args.stats)
    if not diff:
        print(f"replan: no feature would change ({args.spec} is still the plan)")
    for d in diff:
        print(
            f"replan: {d['feature']}: {_short(d['before'])} -> {_short(d['after'])}, "
            f"{d['bytes_before']:,} -> {d['bytes_after']:,} bytes, predicted "
            f"collided traffic {100 * d['cost_before']:.3f} % -> "
            f"{100 * d['cost_after']:.3f} %"
        )
    if args.out:
        storage.write_text(args.out, output.spec_yaml(plan, spec, budget))
        print(f"replan: wrote {args.out}; apply it with a cold start")
    return 0


def changes(plan: Any, spec: Any, stats_dir: str) -> list[dict[str, Any]]:
    """Per feature whose treatment would change: before and after, bytes and cost."""
    from trainer.planning import candidates, planner

    profiles, _ = planner.load_profiles(stats_dir, spec, plan.heavy_min_count)
    out = []
    for f in plan.features:
        current = spec.feature(f.name)
        before, after = (
            candidates.spec_entry(current),
            candidates.spec_entry(f.chosen.feature),
        )
        if before == after:
            continue
        profile = profiles[f.name]
        out.append(
            {
                "feature": f.name,
                "before": before,
                "after": after,
                "bytes_before": candidates.serving_bits(current, profile.n) // 8,
                "bytes_after": f.chosen.bits // 8,
                "cost_before": candidates.predicted_cost(
                    current, profile, plan.quant_penalty
                ),
                "cost_after": f.chosen.cost,
            }
        )
    return out


def _short(entry: dict[str, Any]) -> str:
    skip = ("name", "kind", "embedding_dim")
    return " ".join(
        [str(entry["treatment"])]
        + [f"{k}={v}" for k, v in entry.items() if k not in skip and k != "treatment"]
    )
