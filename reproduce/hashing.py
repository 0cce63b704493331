"""Hybrid hashing reproduction (Zhang et al., RecSys 2020: the ads and timeline experiments).

**Table 3 style**, wide-and-deep on two datasets:

* the synthetic stream (:mod:`beam_jobs.synthetic`): train on hours ``0 .. T-1``,
  evaluate on hour ``T``;
* MovieLens-1M rating events (:mod:`beam_jobs.movielens`): train on the hours holding
  the first 80 % of the events, evaluate on the later hours.

Variants change the large vocabularies only (synthetic: user, item, publisher;
MovieLens: user, movie, zip); every variant is derived from
``specs/features/<dataset>_full.yaml``:

* ``baseline``: full embedding of every value seen in training;
* ``freq k``: frequency hashing, the top ``k`` values (a share of the baseline's) get
  rows, every other value the OOV row;
* ``hybrid``: the top ``k`` (:attr:`Budget.hybrid_k_share`) plus double hashing
  (two tables of ``2^-j`` of the baseline's rows, ``d/2`` columns each, concatenated)
  for the rest, ``j = 2 .. 5``.

Metrics: RCE (:func:`trainer.evaluation.metrics.relative_cross_entropy`) on the evaluation
events, and model size = serving bits of the whole model (tables and 32-bit dense
weights) relative to the baseline's. Mean ± std over training seeds (fixed data).

**Continuous training** (Figure 5 style): hour by hour on the synthetic stream, the
stats job runs in continuous mode (``--previous``), the model warm-starts from the
previous hour's, trains on hour ``h`` and is evaluated on hour ``h + 1``; baseline
against hybrid. Everything goes through :func:`trainer.task.run`.

Usage::

    python -m reproduce.hashing [--quick] --data-dir DIR \\
        --out docs/results_hashing.md
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import yaml

from reproduce import hashing_data, hashing_results
from reproduce.hashing_data import hour_name
from trainer.contracts.fingerprint import fingerprint

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = os.path.join(REPO, "specs", "experiments", "synthetic_full.yaml")
COMPRESSED = {
    "synthetic": ("user_id", "item_id", "publisher"),
    "movielens": ("user_id", "movie_id", "zip"),
}


@dataclasses.dataclass(frozen=True)
class Budget:
    """Sizes of one reproduction run (``--quick`` or full)."""

    seeds: int
    train_hours: int  # synthetic Table 3: T
    events_per_hour: int
    continuous_hours: int
    continuous_events: int
    movielens_users: int | None  # None: every user of the ratings file
    k_shares: tuple[float, ...]
    hash_exponents: tuple[int, ...] = (2, 3, 4, 5)
    hybrid_k_share: float = 0.02
    continuous_exponent: int = 4
    epochs: int = 2
    batch_size: int = 128  # the paper's
    learning_rate: float = 0.1  # Adagrad (deep) and FTRL (wide)
    hidden_units: tuple[int, ...] = (32, 16)


QUICK = Budget(
    seeds=1,
    train_hours=6,
    events_per_hour=20_000,
    continuous_hours=24,
    continuous_events=3_000,
    movielens_users=1_000,
    k_shares=(0.02, 0.05, 0.25),
)
FULL = Budget(
    seeds=3,
    train_hours=12,
    events_per_hour=50_000,
    continuous_hours=48,
    continuous_events=10_000,
    movielens_users=None,
    k_shares=(0.02, 0.05, 0.1, 0.25),
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One compression setting of the large vocabularies."""

    name: str
    treatment: str  # full | hybrid
    k_share: float | None  # None: every value
    hash_exponent: int | None = None  # hybrid: B = 2^-j of the baseline rows


def variants(budget: Budget) -> list[Variant]:
    """Baseline, the frequency-hashing sweep, then the hybrid sweep."""
    out = [Variant("baseline", "full", None)]
    out += [Variant(f"freq k={s:g}", "full", s) for s in budget.k_shares]
    out += [
        Variant(f"hybrid 2^-{j}", "hybrid", budget.hybrid_k_share, j)
        for j in budget.hash_exponents
    ]
    return out


def variant_spec(
    base: dict[str, Any], dataset: str, variant: Variant, vocab: dict[str, int]
) -> dict[str, Any]:
    """``base`` (a feature-spec dict) with the large vocabularies compressed.

    Args:
        base: The baseline spec (``specs/features/<dataset>_full.yaml``).
        dataset: ``synthetic`` or ``movielens``.
        variant: The compression.
        vocab: Baseline dictionary size V of each compressed feature.

    Returns:
        A new spec dict named after the variant.
    """
    spec = copy.deepcopy(base)
    spec["name"] = f"{dataset}_{variant.name.replace(' ', '_').replace('=', '')}"
    spec["name"] = spec["name"].replace("^", "").replace(".", "p")
    for f in spec["features"]:
        if f["name"] not in COMPRESSED[dataset] or variant.k_share is None:
            continue
        v = vocab[f["name"]]
        f["treatment"] = variant.treatment
        f["top_k"] = max(1, round(variant.k_share * v))
        if variant.treatment == "hybrid":
            f["hash_buckets"] = max(2, round((v + 1) * 2.0**-variant.hash_exponent))
            f["hash_combiner"] = "concat"
    return spec


# ---------------------------------------------------------------------------- helpers


def _config(spec_path: str, name: str, seed: int, budget: Budget) -> Any:
    from trainer.config import load_config

    return load_config(
        EXPERIMENT,
        {
            "name": name,
            "feature_spec": spec_path,
            "model.hidden_units": list(budget.hidden_units),
            "optimizer.learning_rate": budget.learning_rate,
            "wide_optimizer.learning_rate": budget.learning_rate,
            "training.seed": seed,
            "training.epochs": budget.epochs,
            "training.batch_size": budget.batch_size,
            "training.log_every": 10_000,
            "training.checkpoint_every": 1_000_000,
        },
    )


def _model_dir(root: str, name: str, config: Any, *inputs: Any) -> str:
    """``root/name_<fingerprint>``: a finished model is reused only for the same config
    (and inputs), never for a run with other settings. After changing the code, pass
    a new ``--work-dir``."""
    key = fingerprint([config.to_dict(), *inputs], length=10)
    return os.path.join(root, f"{name}_{key}")


def _train_and_score(
    config: Any,
    train: str,
    stats: str,
    out: str,
    eval_table: Any,
    hours: str | None = None,
    warm_start: str | None = None,
    seen: Any = None,
) -> dict[str, Any]:
    from trainer import task

    meta = task.run(config, train, stats, out, warm_start=warm_start, hours=hours)
    return {
        **hashing_data.evaluate_rce(out, config.feature_spec, eval_table, seen),
        "bits": int(meta["serving_bits"]),
        "steps": int(meta["steps"]),
        "examples": int(meta["examples"]),
    }


# ------------------------------------------------------------------------ experiments


def table_experiment(
    dataset: str,
    budget: Budget,
    work: str,
    data_dir: str | None,
    progress: Any = print,
) -> dict[str, Any]:
    """Trains and scores every variant x seed on one dataset (Table 3 style)."""
    from trainer.contracts import events
    from trainer.contracts.features import load_feature_spec

    root = os.path.join(work, dataset)
    base_path = os.path.join(REPO, "specs", "features", f"{dataset}_full.yaml")
    with open(base_path, encoding="utf-8") as f:
        base = yaml.safe_load(f)
    split = _split(dataset, budget, root, data_dir)
    logs = split["logs"]
    eval_table, _ = hashing_data.read_events(
        logs, split["eval_hours"], load_feature_spec(base_path)
    )
    base_stats = hashing_data.run_stats(
        logs, split["train_hours"], base_path, os.path.join(root, "stats_full")
    )
    vocab = hashing_data.vocab_sizes(base_stats, COMPRESSED[dataset])
    train_table, _ = hashing_data.read_events(
        logs, split["train_hours"], load_feature_spec(base_path)
    )
    seen = hashing_data.seen_mask(eval_table, train_table, COMPRESSED[dataset])
    del train_table
    rows: list[dict[str, Any]] = []
    for variant in variants(budget):
        spec = variant_spec(base, dataset, variant, vocab)
        spec_path = hashing_data.write_spec(spec, os.path.join(root, "specs"))
        key = "full" if variant.k_share is None else f"k{variant.k_share:g}"
        stats = hashing_data.run_stats(
            logs, split["train_hours"], spec_path, os.path.join(root, f"stats_{key}")
        )
        if dataset == "synthetic":
            train, hours = logs, f"{hour_name(0)}:{hour_name(budget.train_hours - 1)}"
        else:  # hour gaps: transformed examples (their ids depend on k and B)
            tf_dir = os.path.join(root, "examples", spec["name"])
            train = hashing_data.transformed_examples(
                logs, split["train_hours"], spec_path, stats, tf_dir
            )
            hours = None
        for seed in range(budget.seeds):
            config = _config(spec_path, spec["name"], seed, budget)
            out = _model_dir(root, f"models/{spec['name']}_seed{seed}", config)
            t0 = time.perf_counter()
            result = _train_and_score(
                config, train, stats, out, eval_table, hours, seen=seen
            )
            result.update(
                variant=variant.name, seed=seed, seconds=time.perf_counter() - t0
            )
            rows.append(result)
            progress(
                f"{dataset} {variant.name} seed {seed}: RCE {result['rce']:.3f} "
                f"size {result['bits'] / 8e3:.1f} kB ({result['seconds']:.0f} s)"
            )
    features = {
        v.name: {
            f["name"]: {k: f.get(k) for k in ("treatment", "top_k", "hash_buckets")}
            for f in variant_spec(base, dataset, v, vocab)["features"]
            if f["name"] in COMPRESSED[dataset]
        }
        for v in variants(budget)
    }
    return {
        "dataset": dataset,
        "runs": rows,
        "vocab": vocab,
        "features": features,
        "train_hours": [events.format_hour(h) for h in split["train_hours"][:1]]
        + [events.format_hour(h) for h in split["train_hours"][-1:]],
        "num_train_hours": len(split["train_hours"]),
        "eval_hours": [events.format_hour(h) for h in split["eval_hours"][:1]]
        + [events.format_hour(h) for h in split["eval_hours"][-1:]],
        "eval_events": eval_table.num_rows,
        "seen_events": int(seen.sum()),
    }


def _split(
    dataset: str, budget: Budget, root: str, data_dir: str | None
) -> dict[str, Any]:
    """Logs root, training hours and evaluation hours of one dataset."""
    from trainer.contracts import events

    if dataset == "movielens":
        return hashing_data.movielens_split(data_dir, root, budget.movielens_users)
    hours = budget.train_hours
    logs = hashing_data.synthetic_stream(root, hours + 1, budget.events_per_hour)
    return {
        "logs": logs,
        "train_hours": [events.parse_hour(hour_name(i)) for i in range(hours)],
        "eval_hours": [events.parse_hour(hour_name(hours))],
    }


def _continuous_run(
    spec_path: str,
    budget: Budget,
    logs: str,
    eval_tables: list[Any],
    root: str,
    label: str,
    progress: Any,
) -> tuple[list[dict[str, Any]], str]:
    """Hour h: continuous stats, warm start from h - 1, train on h, score on h + 1."""
    name = os.path.basename(spec_path)[: -len(".yaml")]
    prev_stats = prev_model = None
    series = []
    for h in range(budget.continuous_hours):
        stats = hashing_data.run_stats(
            logs,
            hour_name(h),
            spec_path,
            f"{root}/{name}/stats_{h:03d}",
            prev_stats,
        )
        config = _config(spec_path, name, 0, budget)
        out = _model_dir(root, f"{name}/model_{h:03d}", config, prev_model)
        result = _train_and_score(
            config,
            logs,
            stats,
            out,
            eval_tables[h + 1],
            hour_name(h),
            warm_start=prev_model,
        )
        result["hour"] = hour_name(h)
        series.append(result)
        prev_stats, prev_model = stats, out
        progress(
            f"continuous {label} {hour_name(h)}: RCE on the next hour "
            f"{result['rce']:.3f}, size {result['bits'] / 8e3:.1f} kB"
        )
    return series, prev_stats


def continuous_experiment(
    budget: Budget, work: str, progress: Any = print
) -> dict[str, Any]:
    """Hourly warm-started training, baseline vs hybrid (Figure 5 style).

    The baseline runs first; its last dictionary sizes V fix the hybrid's k (a share of
    V) and double-hash rows (``2^-j`` of V + 1) for every hour.
    """
    from trainer.contracts import events
    from trainer.contracts.features import load_feature_spec

    root = os.path.join(work, "continuous")
    logs = hashing_data.synthetic_stream(
        root, budget.continuous_hours + 1, budget.continuous_events
    )
    base_path = os.path.join(REPO, "specs", "features", "synthetic_full.yaml")
    with open(base_path, encoding="utf-8") as f:
        base = yaml.safe_load(f)
    spec0 = load_feature_spec(base_path)
    eval_tables = [
        hashing_data.read_events(logs, [events.parse_hour(hour_name(h))], spec0)[0]
        for h in range(budget.continuous_hours + 1)
    ]
    specs_dir = os.path.join(root, "specs")
    baseline_path = hashing_data.write_spec(
        {**base, "name": "continuous_baseline"}, specs_dir
    )
    baseline, last_stats = _continuous_run(
        baseline_path, budget, logs, eval_tables, root, "baseline", progress
    )
    final_vocab = hashing_data.vocab_sizes(last_stats, COMPRESSED["synthetic"])
    j = budget.continuous_exponent
    variant = Variant(f"hybrid 2^-{j}", "hybrid", budget.hybrid_k_share, j)
    spec = {
        **variant_spec(base, "synthetic", variant, final_vocab),
        "name": "continuous_hybrid",
    }
    hybrid, _ = _continuous_run(
        hashing_data.write_spec(spec, specs_dir),
        budget,
        logs,
        eval_tables,
        root,
        variant.name,
        progress,
    )
    return {
        "series": {"baseline": baseline, variant.name: hybrid},
        "final_vocab": final_vocab,
        "hybrid_features": {
            f["name"]: {k: f.get(k) for k in ("top_k", "hash_buckets")}
            for f in spec["features"]
            if f["name"] in COMPRESSED["synthetic"]
        },
        "hours": budget.continuous_hours,
        "events_per_hour": budget.continuous_events,
    }


# -------------------------------------------------------------------------------- CLI


def _movielens_dir(data_dir: str) -> str:
    for candidate in (os.path.join(data_dir, "ml-1m"), data_dir):
        if os.path.isfile(os.path.join(candidate, "users.dat")):
            return candidate
    raise FileNotFoundError(
        f"no MovieLens-1M (users.dat) in {data_dir} or {data_dir}/ml-1m"
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m reproduce.hashing", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data-dir", required=True, help="holds ml-1m/ (users.dat ...)")
    p.add_argument("--out", default="docs/results_hashing.md")
    p.add_argument(
        "--work-dir",
        default="runs/reproduce_hashing",
        help="data, artifacts and models; finished steps with the same settings are "
        "reused (use a new directory after changing the code)",
    )
    p.add_argument(
        "--quick", action="store_true", help="one seed, small data (< 15 min)"
    )
    p.add_argument("--seeds", type=int, default=None, help="override the seed count")
    p.add_argument(
        "--skip", default="", help="comma list of synthetic,movielens,continuous"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the reproduction, prints progress, writes ``--out`` and its plot."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    budget = QUICK if args.quick else FULL
    if args.seeds:
        budget = dataclasses.replace(budget, seeds=args.seeds)
    skip = {s for s in args.skip.split(",") if s}
    try:
        ml_dir = _movielens_dir(args.data_dir) if "movielens" not in skip else None
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    work = os.path.join(args.work_dir, "quick" if args.quick else "full")
    command = "python -m reproduce.hashing " + shlex.join(
        list(argv if argv is not None else sys.argv[1:])
    )
    t0 = time.perf_counter()
    results: dict[str, Any] = {"budget": dataclasses.asdict(budget), "command": command}
    for dataset in ("synthetic", "movielens"):
        if dataset not in skip:
            results[dataset] = table_experiment(dataset, budget, work, ml_dir)
    if "continuous" not in skip:
        results["continuous"] = continuous_experiment(budget, work)
    results["minutes"] = (time.perf_counter() - t0) / 60
    with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, default=str)
    png = os.path.join(os.path.dirname(os.path.abspath(args.out)), "continuous_rce.png")
    hashing_results.write(results, args.out, png if "continuous" in results else None)
    print(f"wrote {args.out} ({results['minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
