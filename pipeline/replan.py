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
    p.add_argument(
        "--config",
        help="pipeline config YAML (data.budget; data.trainer_config's hidden units)",
    )
    p.add_argument("--out", help="write the new feature spec here")
    p.set_defaults(handler=replan)


def replan(args: argparse.Namespace) -> int:
    """Plans, prints what would change, optionally writes the new spec."""
    from trainer.contracts import storage
    from trainer.contracts.features import load_feature_spec
    from trainer.planning import output, planner

    spec = load_feature_spec(args.spec)
    text, units = args.budget, None
    if args.config:
        from pipeline import config
        from trainer.config import load_config

        data = config.load_config(args.config).data
        text = text or data.budget
        if data.trainer_config:  # the MLP's widths count in the model size
            units = tuple(load_config(data.trainer_config).model.hidden_units)
    if not text:
        raise ValueError("replan needs --budget, or --config with data.budget set")
    budget = planner.parse_budget(text)
    plan = planner.make_plan(
        args.stats,
        spec,
        budget,
        hidden_units=units or planner.DEFAULT_HIDDEN_UNITS,
        spec_source=args.spec,
    )
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


def cold_start_plan(
    logs: str,
    hour: str,
    spec_path: str,
    budget: str,
    workdir: str,
    cold_start: bool = True,
    hidden_units: tuple[int, ...] | None = None,
) -> str:
    """The planned feature spec of a run: made once at cold start, then kept.

    The first call plans from ``hour``'s statistics (the Beam stats job on the
    DirectRunner, with the user's spec) and writes ``WORKDIR/plan/plan.json`` (the
    plan's summary: sizes, predicted cost per feature) and then
    ``WORKDIR/plan/planned.yaml``; later calls return that spec unchanged, so every
    later hour keeps the layout warm start needs. Replan with ``python -m pipeline
    replan`` and a cold start (a new workdir).

    Args:
        hidden_units: The trainer's MLP widths (counted in the model size);
            default :data:`trainer.planning.planner.DEFAULT_HIDDEN_UNITS`.
        cold_start: False when ``workdir`` already holds trained hours: then a
            missing plan is an error (planning now would change the layout under
            warm start).

    Returns:
        The path of the planned feature spec.

    Raises:
        ValueError: if there is no plan yet and it is not a cold start.
    """
    import json
    import os

    from trainer.contracts import storage
    from trainer.contracts.features import load_feature_spec
    from trainer.planning import output, planner

    plan_dir = os.path.join(workdir, "plan")
    planned = os.path.join(plan_dir, "planned.yaml")
    if os.path.exists(planned):
        return planned
    if not cold_start:
        raise ValueError(
            f"budget {budget!r} is set but {workdir} holds hours trained without a "
            "plan; plan at a cold start (a new workdir) or remove data.budget"
        )
    from beam_jobs import feature_stats

    stats = os.path.join(plan_dir, "stats", hour)
    if not storage.exists(os.path.join(stats, "manifest.json")):
        feature_stats.compute_stats(
            logs, hour, spec_path, stats, pipeline_args=["--runner=DirectRunner"]
        )
    spec = load_feature_spec(spec_path)
    b = planner.parse_budget(budget)
    units = tuple(hidden_units or planner.DEFAULT_HIDDEN_UNITS)
    plan = planner.make_plan(stats, spec, b, hidden_units=units, spec_source=spec_path)
    summary = {"hour": hour, "spec": spec_path, "budget": budget, **plan.summary()}
    storage.write_text(
        os.path.join(plan_dir, "plan.json"), json.dumps(summary, indent=1)
    )
    storage.write_text(planned, output.spec_yaml(plan, spec, b))  # last: marks done
    return planned


def plan_record(workdir: str, serving_bits: int | None) -> dict[str, Any]:
    """What an hour's record says about the plan: planned vs actual size, cost."""
    import json
    import os

    path = os.path.join(workdir, "plan", "plan.json")
    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    planned_bits = int(round(8 * plan["planned_bytes"]))
    return {
        "spec": os.path.join(workdir, "plan", "planned.yaml"),
        "planned_bits": planned_bits,
        "actual_bits": serving_bits,
        "predicted_cost": plan["predicted_cost"],
        "planned_at": plan["hour"],
    }
