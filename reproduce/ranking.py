"""Reproduces MGQE's ML-1M ranking tables (Kang et al. 2020) into docs/results_ranking.md.

Runs backbones (GMF, NeuMF, SASRec) x embedding methods (full, LRF r=48, SQ b=8, DPQ
D=64 K=256, MGQE D=64 K=[256,64] 10 % head, and a compact MGQE K=[256,16]) x seeds, each
from ``specs/experiments/<model>_<method>.yaml``, and writes a Markdown table per model
(HR@10 and NDCG@10 in percent, mean ± std over seeds, model size %) beside the paper's
numbers (Kang et al. 2020, ML-1M tables), plus a plot of HR@10 against model size %.

Usage::

    python -m reproduce.ranking --data-dir ../shared/data --out docs/results_ranking.md
    python -m reproduce.ranking --quick --data-dir ../shared/data --out docs/results_ranking.md

Example:
    >>> main(["--quick", "--data-dir", "data"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MODELS = ("gmf", "neumf", "sasrec")
METHODS = ("full", "lrf", "sq", "dpq", "mgqe", "mgqe_compact")
#: Kang et al. 2020, ML-1M: (HR@10 %, NDCG@10 %, printed model size %), mean of 10 runs.
PAPER: dict[str, dict[str, tuple[float, float, float]]] = {
    "gmf": {
        "full": (7.79, 3.88, 100.0),
        "lrf": (7.20, 3.65, 75.5),
        "sq": (7.82, 3.92, 25.0),
        "dpq": (7.92, 3.95, 30.4),
        "mgqe": (8.03, 3.98, 20.7),
    },
    "neumf": {
        "full": (7.88, 3.90, 100.0),
        "lrf": (7.41, 3.70, 77.3),
        "sq": (7.99, 3.96, 29.0),
        "dpq": (7.79, 3.90, 34.1),
        "mgqe": (8.04, 3.98, 24.4),
    },
    "sasrec": {
        "full": (20.36, 8.88, 100.0),
        "lrf": (20.07, 9.21, 74.3),
        "sq": (20.04, 8.72, 31.5),
        "dpq": (20.23, 8.81, 38.3),
        "mgqe": (20.36, 8.88, 27.5),
    },
}
#: Evaluate every this many epochs by default (SASRec trains 200 short epochs).
EVAL_EVERY = {"gmf": 1, "neumf": 1, "sasrec": 10}
#: ``--quick``: GMF, one seed, the same 6,000 steps (~30 % of an epoch) for every
#: method; about 10 minutes on 2 CPU cores (DPQ/MGQE steps cost ~25 ms, the rest ~3 ms).
QUICK = {"models": ("gmf",), "seeds": 1, "epochs": 1, "max_steps": 6000}


INTRO = (
    "Kang et al., *Learning Multi-granular Quantized Embeddings for Large-Vocab "
    "Categorical Features in Recommender Systems* (2020), GMF/NeuMF/SASRec tables. "
    "HR@10 and NDCG@10 in %, **test** split at the epoch with the best **validation** "
    "NDCG@10, full ranking over all items minus the user's training items (and the "
    "validation item at test), ties counted against the target (the paper does not state its protocol; only full ranking fits its numbers). "
    "Mean ± sample std over seeds. Model size % = serving bits of the whole model "
    "(tables + 32-bit dense weights) over the full-embedding model (the paper's "
    "Table 1). Paper columns: the paper's ML-1M tables (mean of 10 runs) and the printed sizes. "
    "The paper's MGQE sizes need a more compact configuration than its stated "
    "default, hence the extra `mgqe_compact` row (beside the same paper MGQE numbers)."
)


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run of the grid."""

    model: str
    method: str
    spec: str
    result: Any  # trainer.evaluation.ranking.RankingResult


def spec_path(specs_dir: str, model: str, method: str) -> str:
    """``specs_dir/<model>_<method>.yaml``."""
    return os.path.join(specs_dir, f"{model}_{method}.yaml")


def run_grid(
    data: Any,
    models: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    specs_dir: str = "specs/experiments",
    overrides: dict[str, Any] | None = None,
    protocol: str = "full",
    eval_every: int | None = None,
    progress: Callable[[str], None] | None = None,
    store: Any = None,
    on_run: Callable[[list[Run]], None] | None = None,
) -> list[Run]:
    """Trains and evaluates every model x method x seed.

    Args:
        data: A :class:`~trainer.data.sequences.SequenceData` or prepared ranking task.
        models: Backbones (:data:`MODELS`).
        methods: Embedding methods (:data:`METHODS`), i.e. YAML name suffixes.
        seeds: ``training.seed`` of each repetition.
        specs_dir: Directory of the experiment YAMLs.
        overrides: Dotted config overrides applied to every run (e.g. epochs).
        protocol: Evaluation protocol (see :data:`trainer.evaluation.ranking.PROTOCOLS`).
        eval_every: Epochs between evaluations; ``None``: :data:`EVAL_EVERY`.
        progress: Receives one line per epoch and per finished run.
        store: A :class:`~reproduce.run_store.RunStore`: runs found there with the same
            settings are loaded instead of trained, and new ones are saved to it.
        on_run: Called with the runs so far after each one (rewrites the tables, so
            an interrupted grid still leaves its finished part written).

    Returns:
        The runs, in grid order.
    """
    from trainer.config import load_config
    from trainer.data.samples import RankingTask, prepare_task
    from trainer.evaluation import ranking

    task = data if isinstance(data, RankingTask) else prepare_task(data)
    say = progress or (lambda line: None)
    runs = []
    for model in models:
        for method in methods:
            path = spec_path(specs_dir, model, method)
            for seed in seeds:
                cfg = load_config(path, {**(overrides or {}), "training.seed": seed})
                tag = f"{model}/{method} seed {seed}"
                every = eval_every or EVAL_EVERY[model]
                name = f"{model}_{method}"
                result = store and store.load(name, cfg, protocol, every, task)
                if result is None:
                    result = ranking.train_and_evaluate(
                        cfg,
                        task,
                        protocol,
                        every,
                        on_epoch=lambda log, tag=tag, n=cfg.training.epochs: say(
                            _epoch_line(tag, n, log)
                        ),
                    )
                    if store is not None:
                        store.save(name, result, protocol, every, task)
                else:
                    tag += " (stored)"
                say(
                    f"{tag}: best epoch {result.best_epoch}, test HR@10 "
                    f"{result.test.hr:.2f} NDCG@10 {result.test.ndcg:.2f}, size "
                    f"{result.size_percent:.2f} %, {result.train_seconds:.0f} s"
                )
                runs.append(Run(model, method, path, result))
                if on_run is not None:
                    on_run(runs)
    return runs


def _epoch_line(tag: str, epochs: int, log: Any) -> str:
    line = f"{tag} epoch {log.epoch}/{epochs}: loss {log.loss:.4f}"
    if log.reg_loss:
        line += f" reg {log.reg_loss:.2e}"
    if log.valid is not None:
        line += (
            f" | valid HR@10 {log.valid.hr:.2f} NDCG@10 {log.valid.ndcg:.2f}"
            f" | test HR@10 {log.test.hr:.2f} NDCG@10 {log.test.ndcg:.2f}"
        )
    return f"{line} ({log.seconds:.0f} s)"


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def results_table(runs: Sequence[Run], model: str) -> list[str]:
    """Markdown rows of one model's table (one row per method, seeds aggregated)."""
    lines = [
        "| method | HR@10 | NDCG@10 | model size % | paper HR@10 | paper NDCG@10 "
        "| paper size % | best epochs | seeds | train s/run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    methods = list(dict.fromkeys(r.method for r in runs if r.model == model))
    for method in methods:
        rs = [r.result for r in runs if r.model == model and r.method == method]
        paper = PAPER[model].get(method.removesuffix("_compact"))
        p = [f"{x:.2f}" for x in paper] if paper else ["-", "-", "-"]
        lines.append(
            f"| {method} | {_mean_std([r.test.hr for r in rs])} "
            f"| {_mean_std([r.test.ndcg for r in rs])} | {rs[0].size_percent:.2f} "
            f"| {p[0]} | {p[1]} | {p[2]} | {', '.join(str(r.best_epoch) for r in rs)} "
            f"| {len(rs)} | {np.mean([r.train_seconds for r in rs]):.0f} |"
        )
    return lines


def write_results(
    runs: Sequence[Run], out: str, command: str, notes: Sequence[str] = ()
) -> str:
    """Writes RESULTS.md (tables, settings, configs) and its plot (same name, .png).

    Args:
        runs: Finished runs.
        out: Path of the Markdown file.
        command: The exact command line, recorded in the file.
        notes: Extra lines for the settings section (data, quick mode, ...).

    Returns:
        The path of the PNG plot.
    """
    png = os.path.splitext(out)[0] + ".png"
    lines = [
        "# Ranking reproduction: MGQE backbones on MovieLens-1M",
        "",
        INTRO,
        "",
        f"Command: `{command}`",
        "",
        *[f"- {n}" for n in notes],
        "",
    ]
    for model in dict.fromkeys(r.model for r in runs):
        lines += [f"## {model.upper() if model != 'sasrec' else 'SASRec'}", ""]
        lines += results_table(runs, model) + [""]
    lines += ["## Configs", ""]
    for run in {r.spec: r for r in runs}.values():
        lines.append(
            f"- `{run.spec}`: {_embedding_summary(run.result.config.model.embedding)}"
        )
    lines += ["", f"![HR@10 vs model size](./{os.path.basename(png)})", ""]
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    plot_results(runs, png)
    return png


def _embedding_summary(cfg: Any) -> str:
    """The fields of an EmbeddingConfig that matter for its kind."""
    fields = {
        "lrf": ("rank",),
        "sq": ("bits",),
        "dpq": ("num_subspaces", "num_centroids"),
        "mgqe": ("num_subspaces", "num_centroids", "tier_shares", "mgqe_variant"),
    }.get(cfg.kind, ())
    parts = [f"kind={cfg.kind}", f"dim={cfg.dim}"]
    parts += [
        f"{f}={list(v) if isinstance(v := getattr(cfg, f), tuple) else v}"
        for f in fields
    ]
    return ", ".join(parts)


def plot_results(runs: Sequence[Run], png: str) -> None:
    """HR@10 (mean ± std over seeds) against model size %, ours filled, paper hollow."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    models = list(dict.fromkeys(r.model for r in runs))
    fig, axes = plt.subplots(
        1, len(models), figsize=(5.5 * len(models), 4), squeeze=False
    )
    for ax, model in zip(axes[0], models, strict=True):
        methods = dict.fromkeys(r.method for r in runs if r.model == model)
        for i, method in enumerate(methods):
            rs = [r.result for r in runs if r.model == model and r.method == method]
            hr = [r.test.hr for r in rs]
            std = float(np.std(hr, ddof=1)) if len(hr) > 1 else 0.0
            color = f"C{i}"
            ax.errorbar(
                rs[0].size_percent,
                float(np.mean(hr)),
                yerr=std,
                fmt="o",
                color=color,
                capsize=3,
                label=f"{method} (n={len(rs)})",
            )
            paper = PAPER[model].get(method.removesuffix("_compact"))
            if paper and not method.endswith("_compact"):
                ax.scatter(paper[2], paper[0], facecolors="none", edgecolors=[color])
        ax.set(title=model, xlabel="model size %", ylabel="test HR@10 %")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("ours (filled, mean ± std over seeds) vs paper (hollow)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def _data_file(data_dir: str) -> str:
    for candidate in ("ml-1m/ml-1m.txt", "ml-1m.txt"):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"no ml-1m.txt under {data_dir} (or {data_dir}/ml-1m/)")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m reproduce.ranking", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--data-dir", required=True, help="holds ml-1m/ml-1m.txt or ml-1m.txt"
    )
    p.add_argument("--out", default="docs/results_ranking.md")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"one seed, GMF only, {QUICK['epochs']} epoch of at most "
        f"{QUICK['max_steps']} steps per run",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="repetitions (default 3; quick 1)"
    )
    p.add_argument("--models", default=None, help=f"comma list of {','.join(MODELS)}")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.add_argument(
        "--max-steps", type=int, default=None, help="override training.max_steps"
    )
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument(
        "--protocol", default="full", choices=("full", "sampled_ncf", "sampled_sasrec")
    )
    p.add_argument("--specs-dir", default="specs/experiments")
    p.add_argument(
        "--results-dir",
        default=os.path.join("runs", "reproduce"),
        help="finished runs as JSON: a rerun with the same settings loads them "
        "(resume, add seeds); 'none' to always train",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints progress and writes ``--out`` and the plot."""
    args = _parse_args(argv)
    from reproduce.run_store import RunStore
    from trainer.data.sequences import load_sasrec

    quick = QUICK if args.quick else {}
    models = args.models.split(",") if args.models else quick.get("models", MODELS)
    methods = args.methods.split(",")
    for name, allowed in ((models, MODELS), (methods, METHODS)):
        bad = sorted(set(name) - set(allowed))
        if bad:
            print(f"error: unknown {bad}; allowed {list(allowed)}", file=sys.stderr)
            return 2
    seeds = list(range(args.seeds or quick.get("seeds", 3)))
    overrides = {
        k: v
        for k, v in (
            ("training.epochs", args.epochs or quick.get("epochs")),
            ("training.max_steps", args.max_steps or quick.get("max_steps")),
        )
        if v
    }
    path = _data_file(args.data_dir)
    data = load_sasrec(path)
    command = "python -m reproduce.ranking " + shlex.join(
        list(argv if argv is not None else sys.argv[1:])
    )
    print(
        f"data {path}: {data.num_users} users, {data.num_items} items; "
        f"{len(models) * len(methods) * len(seeds)} runs",
        flush=True,
    )
    start = time.perf_counter()
    notes = [
        f"Data: `{path}` ({data.num_users} users, {data.num_items} items, "
        f"{data.num_actions} actions), leave-last-two-out.",
        f"Seeds: {seeds}; protocol: {args.protocol}; overrides: {overrides or 'none'}.",
    ]
    if args.quick:
        notes.append(
            "**Quick mode**: a budget far below the paper's (20 / 200 epochs); "
            "the numbers check the pipeline, not the paper."
        )
    total = len(models) * len(methods) * len(seeds)

    def write(done: list[Run]) -> str:
        extra = (
            [] if len(done) == total else [f"**Partial**: {len(done)} of {total} runs."]
        )
        wall = f"Wall time: {time.perf_counter() - start:.0f} s, {os.cpu_count()} CPU cores."
        return write_results(done, args.out, command, [*notes, wall, *extra])

    runs = run_grid(
        data,
        models,
        methods,
        seeds,
        args.specs_dir,
        overrides,
        args.protocol,
        args.eval_every,
        progress=lambda line: print(line, flush=True),
        store=None if args.results_dir == "none" else RunStore(args.results_dir),
        on_run=write,
    )
    png = write(runs)
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
