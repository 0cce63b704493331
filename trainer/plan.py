"""``python -m trainer.plan``: the best per-feature compression within a size budget.

Reads a stats artifact (``beam_jobs.feature_stats``) and a feature spec, and writes a
feature spec with one treatment per categorical feature, chosen by
:mod:`trainer.planning` to minimise the predicted collided traffic within the budget.
The written spec is a normal feature spec: the trainer and the pipeline take it as is.

Example::

    python -m trainer.plan --stats stats/00 --spec specs/features/synthetic.yaml \\
        --budget 15% --out planned.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trainer.contracts import storage
from trainer.contracts.features import FeatureSpecError, load_feature_spec
from trainer.planning import cost, output, planner


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer.plan",
        description="Plan per-feature embedding compression within a size budget.",
    )
    p.add_argument("--stats", required=True, help="stats artifact directory")
    p.add_argument("--spec", required=True, help="feature spec YAML")
    p.add_argument(
        "--budget", required=True, help="serving size: 64MB, 512KiB, bytes, or 15%%"
    )
    p.add_argument("--out", required=True, help="planned feature spec YAML (written)")
    p.add_argument("--summary", help="also write the plan as JSON here")
    p.add_argument(
        "--experiment",
        help="trainer config YAML whose model.hidden_units the model size counts",
    )
    p.add_argument(
        "--hidden-units",
        help="the MLP's widths, counted in the model size (default: --experiment's, "
        f"else {','.join(str(u) for u in planner.DEFAULT_HIDDEN_UNITS)})",
    )
    p.add_argument(
        "--heavy-min-count",
        type=int,
        default=cost.DEFAULT_HEAVY_MIN_COUNT,
        help="count at which an id carries non-negligible traffic (%(default)s)",
    )
    p.add_argument(
        "--quant-penalty",
        type=float,
        default=cost.DEFAULT_QUANT_PENALTY,
        help="collided-equivalent share of a quantized id at 64 code bits "
        "(%(default)s)",
    )
    return p.parse_args(argv)


def _hidden_units(text: str | None, experiment: str | None) -> tuple[int, ...]:
    if text is None:
        if not experiment:
            return planner.DEFAULT_HIDDEN_UNITS
        from trainer.config import ConfigError, load_config

        try:
            return tuple(load_config(experiment).model.hidden_units)
        except (ConfigError, FileNotFoundError) as e:
            raise planner.PlanError(f"--experiment {experiment}: {e}") from None
    try:
        units = tuple(int(u) for u in text.split(",") if u.strip())
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise planner.PlanError(
            f"--hidden-units {text!r}: expected positive integers such as 256,128,64"
        )
    return units


def run(args: argparse.Namespace) -> planner.Plan:
    """Makes the plan, writes the spec (and summary), prints the table."""
    if args.heavy_min_count < 1:
        raise planner.PlanError(
            f"--heavy-min-count {args.heavy_min_count}: must be >= 1"
        )
    if not 0 <= args.quant_penalty <= 1:
        raise planner.PlanError(
            f"--quant-penalty {args.quant_penalty}: must be in [0, 1]"
        )
    budget = planner.parse_budget(args.budget)
    spec = load_feature_spec(args.spec)
    plan = planner.make_plan(
        args.stats,
        spec,
        budget,
        hidden_units=_hidden_units(args.hidden_units, args.experiment),
        heavy_min_count=args.heavy_min_count,
        quant_penalty=args.quant_penalty,
        spec_source=args.spec,
    )
    storage.write_text(args.out, output.spec_yaml(plan, spec, budget))
    if args.summary:
        storage.write_text(args.summary, json.dumps(plan.summary(), indent=1))
    print(output.format_table(plan))
    print(f"wrote {args.out}")
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        run(args)
    except (planner.PlanError, FeatureSpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
