"""Validation of the compression planner by training (issue 15, item 2).

For each dataset (the synthetic stream, the MovieLens CTR events) and each budget (a
share of the full model), trains and scores on the next hour(s):

- ``planned``: the spec ``python -m trainer.plan`` writes at that budget;
- ``uniform hybrid`` and ``uniform mgqe``: every categorical feature under the one
  treatment, its sizes chosen by the same knapsack restricted to that treatment, so
  the uniform model gets the same budget and the best sizes the planner can find;
- ``baseline``: the full-embedding spec (``specs/features/<dataset>_full.yaml``).

RCE mean +- std over the seeds goes to ``WORK/planner.json`` and a Markdown table
(``--out``, default ``WORK/planner.md``; committed docs are never the default), with a
plot of RCE against size per dataset (``WORK/planner_<dataset>.png``). Uniform SQ is
not run yet: SQ is post-training and model-wide (``trainer.serving.export --sq-bits``),
not a per-feature treatment of the spec, and scoring here reads the trained Keras
model, not the export.

Training and scoring reuse :mod:`reproduce.hashing` (same splits, trainer config,
model-directory fingerprints and RCE), so finished runs are reused on a rerun.

Command (CPU-hours at the full size; not run in the repository yet)::

    python -m reproduce.planner --dataset synthetic movielens \\
        --budgets 10 20 40 --seeds 3 --work-dir runs/planner
    python -m reproduce.planner --quick --dry-run   # plans only, no training
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from reproduce import hashing, hashing_data

METHODS = ("planned", "uniform hybrid", "uniform mgqe")
_PLAN_KEYS = ("planned_bytes", "size_percent", "predicted_cost", "optimality_gap")


def plan_specs(
    dataset: str, budgets: Sequence[float], root: str, stats: str, units
) -> dict[tuple[float, str], tuple[str, dict[str, Any]]]:
    """Spec path and plan summary per (budget %, method), under ``root/specs``."""
    from trainer.contracts.features import Treatment, load_feature_spec
    from trainer.planning import output, planner

    base_path = os.path.join(hashing.REPO, "specs", "features", f"{dataset}_full.yaml")
    spec = load_feature_spec(base_path)
    out: dict[tuple[float, str], tuple[str, dict[str, Any]]] = {}
    for p in budgets:
        budget = planner.parse_budget(f"{p:g}%")
        for method in METHODS:
            only = None if method == "planned" else {Treatment(method.split()[1])}
            plan = planner.make_plan(
                stats, spec, budget, hidden_units=units, treatments=only
            )
            d = output.planned_spec(plan, spec)
            d["name"] = f"{dataset}_{method.replace(' ', '_')}_{p:g}pct"
            path = hashing_data.write_spec(d, os.path.join(root, "specs"))
            summary = plan.summary()
            out[(p, method)] = (path, {k: summary[k] for k in _PLAN_KEYS})
    return out


def run(args: argparse.Namespace, progress: Any = print) -> dict[str, Any]:
    """Plans, then (unless ``--dry-run``) trains and scores every spec x seed."""
    from trainer.contracts.features import load_feature_spec

    size = hashing.QUICK if args.quick else hashing.FULL
    size = dataclasses.replace(size, seeds=args.seeds or size.seeds)
    if args.events_per_hour:
        size = dataclasses.replace(size, events_per_hour=args.events_per_hour)
    if args.train_hours:
        size = dataclasses.replace(size, train_hours=args.train_hours)
    results: dict[str, Any] = {"datasets": {}}
    for dataset in args.dataset:
        root = os.path.join(args.work_dir, dataset)
        base_path = os.path.join(
            hashing.REPO, "specs", "features", f"{dataset}_full.yaml"
        )
        split = hashing._split(dataset, size, root, args.data_dir)
        logs = split["logs"]
        stats = hashing_data.run_stats(
            logs, split["train_hours"], base_path, os.path.join(root, "stats_full")
        )
        plans = plan_specs(dataset, args.budgets, root, stats, size.hidden_units)
        specs = {key: path for key, (path, _) in plans.items()}
        specs[(100.0, "baseline")] = base_path
        rows = []
        if not args.dry_run:
            eval_table, _ = hashing_data.read_events(
                logs, split["eval_hours"], load_feature_spec(base_path)
            )
            for (p, method), spec_path in sorted(specs.items()):
                rows += _train(
                    dataset, p, method, spec_path, split, size, root, eval_table,
                    progress,
                )  # fmt: skip
        results["datasets"][dataset] = {
            "specs": {f"{p:g}% {m}": s for (p, m), s in sorted(specs.items())},
            "plans": [
                {"budget": p, "method": m, **summary}
                for (p, m), (_, summary) in sorted(plans.items())
            ],
            "runs": rows,
        }
    os.makedirs(args.work_dir, exist_ok=True)
    with open(os.path.join(args.work_dir, "planner.json"), "w") as f:
        json.dump(results, f, indent=1)
    out = args.out or os.path.join(args.work_dir, "planner.md")
    with open(out, "w") as f:
        f.write(table(results))
    progress(f"wrote {out}")
    for dataset, d in results["datasets"].items():
        if d["runs"]:
            plot(
                d["runs"],
                dataset,
                os.path.join(args.work_dir, f"planner_{dataset}.png"),
            )
    return results


def _train(dataset, p, method, spec_path, split, size, root, eval_table, progress):
    """Stats for the spec, then one trained model per seed; its RCE and size."""
    name = os.path.basename(spec_path)[: -len(".yaml")]
    stats = hashing_data.run_stats(
        split["logs"], split["train_hours"], spec_path, os.path.join(root, f"st_{name}")
    )
    if dataset == "synthetic":
        hn = hashing_data.hour_name
        train, hours = split["logs"], f"{hn(0)}:{hn(size.train_hours - 1)}"
    else:
        train = hashing_data.transformed_examples(
            split["logs"], split["train_hours"], spec_path, stats,
            os.path.join(root, "examples", name),
        )  # fmt: skip
        hours = None
    rows = []
    for seed in range(size.seeds):
        config = hashing._config(spec_path, name, seed, size)
        out = hashing._model_dir(root, f"models/{name}_seed{seed}", config)
        t0 = time.perf_counter()
        r = hashing._train_and_score(config, train, stats, out, eval_table, hours)
        r.update(budget=p, method=method, seed=seed, seconds=time.perf_counter() - t0)
        rows.append(r)
        progress(f"{dataset} {p:g}% {method} seed {seed}: RCE {r['rce']:.3f}")
    return rows


def table(results: dict[str, Any]) -> str:
    """Markdown: RCE mean +- std and size per dataset, budget and method."""
    lines = []
    for dataset, d in results["datasets"].items():
        lines += [f"## {dataset}", "", "| budget | method | RCE | size (kB) | seeds |"]
        lines.append("| --- | --- | --- | --- | --- |")
        groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
        for r in d["runs"]:
            groups.setdefault((r["budget"], r["method"]), []).append(r)
        for (p, method), rs in sorted(groups.items()):
            rce = [r["rce"] for r in rs]
            std = statistics.stdev(rce) if len(rce) > 1 else 0.0
            kb = rs[0]["bits"] / 8e3
            lines.append(
                f"| {p:g} % | {method} | {statistics.mean(rce):.3f} +- {std:.3f} "
                f"| {kb:,.1f} | {len(rs)} |"
            )
        lines += ["", "| budget | method | planned size % | predicted cost |"]
        lines.append("| --- | --- | --- | --- |")
        for q in d["plans"]:
            lines.append(
                f"| {q['budget']:g} % | {q['method']} | {q['size_percent']:.2f} "
                f"| {q['predicted_cost']:.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], dataset: str, path: str) -> None:
    """RCE (mean +- std over seeds) against serving size, one series per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in (*METHODS, "baseline"):
        points: dict[float, list[dict[str, Any]]] = {}
        for r in runs:
            if r["method"] == method:
                points.setdefault(r["budget"], []).append(r)
        if not points:
            continue
        xs = [rs[0]["bits"] / 8e3 for _, rs in sorted(points.items())]
        rce = [[r["rce"] for r in rs] for _, rs in sorted(points.items())]
        ys = [statistics.mean(v) for v in rce]
        err = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in rce]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=method)
    ax.set_xlabel("serving size (kB)")
    ax.set_ylabel("RCE on the next hour(s) (higher is better)")
    ax.set_title(f"{dataset}: planned spec vs uniform treatments")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m reproduce.planner", description=__doc__)
    p.add_argument(
        "--dataset",
        nargs="+",
        default=["synthetic"],
        choices=["synthetic", "movielens"],
    )
    p.add_argument("--budgets", nargs="+", type=float, default=[10.0, 20.0, 40.0])
    p.add_argument("--seeds", type=int, help="default: 1 with --quick, else 3")
    p.add_argument(
        "--quick", action="store_true", help="reproduce.hashing's QUICK sizes"
    )
    p.add_argument("--events-per-hour", type=int, help="override the size's events")
    p.add_argument("--train-hours", type=int, help="override the size's hours")
    p.add_argument("--work-dir", default=os.path.join("runs", "planner"))
    p.add_argument("--data-dir", help="MovieLens-1M directory (movielens)")
    p.add_argument("--out", help="Markdown table (default WORK/planner.md)")
    p.add_argument("--dry-run", action="store_true", help="plan only, do not train")
    args = p.parse_args(argv)
    if any(not 0 < b <= 100 for b in args.budgets):
        p.error(f"--budgets {args.budgets}: each must be in (0, 100]")
    if args.seeds is not None and args.seeds < 1:
        p.error(f"--seeds {args.seeds}: must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.planning.planner import PlanError

    args = _parse_args(argv)
    try:
        run(args)
    except (PlanError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
