"""Reproduces MGQE's ML-1M ranking tables (Kang et al. 2020) from committed runs.

Runs backbones (GMF, NeuMF, SASRec) x embedding methods (full, LRF r=48, SQ b=8, DPQ
D=64 K=256, MGQE D=64 K=[256,64] 10 % head, and a compact MGQE K=[256,16]) x seeds, each
from ``specs/experiments/<model>_<method>.yaml``, and writes a Markdown table per model
(HR@10 and NDCG@10 in percent, mean ± std over seeds, model size %) beside the paper's
numbers (Kang et al. 2020, ML-1M tables; full ranking only), plus a plot of HR@10
against model size %. Every run also reports the sampled protocols of NCF and SASRec
from the same model (:data:`trainer.evaluation.ranking.PROTOCOL_TEXT`).

Finished runs are JSON files under ``reproduce/runs/ranking/`` (committed;
:mod:`reproduce.run_store`): a rerun trains only the missing ones and regenerates the
report from the stored ones; runs made by other code are listed as stale (not in the
tables) until ``--rerun-stale`` retrains them. ``--out`` defaults under ``runs/``
(gitignored); pass ``--out docs/...`` to refresh a committed report.

Usage::

    python -m reproduce.ranking --data-dir ../shared/data --models gmf --seeds 3
    python -m reproduce.ranking --data-dir ../shared/data --models sasrec \\
        --methods full,mgqe --set model.maxlen=200 --set model.embedding.dim=50 \\
        --set model.embedding.num_subspaces=50 --protocol sampled_sasrec

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

from reproduce.ranking_report import PAPER, epoch_line, write_results  # noqa: F401

MODELS = ("gmf", "neumf", "sasrec")
METHODS = ("full", "lrf", "sq", "dpq", "mgqe", "mgqe_compact")
#: Evaluate every this many epochs by default (SASRec trains 200 short epochs).
EVAL_EVERY = {"gmf": 1, "neumf": 1, "sasrec": 10}
#: ``--quick``: GMF, one seed, the same 6,000 steps (~30 % of an epoch) for every
#: method; about 10 minutes on 2 CPU cores (DPQ/MGQE steps cost ~25 ms, the rest ~3 ms).
QUICK = {"models": ("gmf",), "seeds": 1, "epochs": 1, "max_steps": 6000}


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run of the grid."""

    model: str
    method: str
    spec: str
    result: Any  # trainer.evaluation.ranking.RankingResult
    #: Made by other code than the current (listed, not in the tables).
    stale: bool = False
    #: For a stale run: the stored file and the code paths that changed since.
    path: str = ""
    changed: tuple[str, ...] = ()


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
    rerun_stale: bool = False,
    candidates_file: str | None = None,
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
        rerun_stale: Retrain stored runs made by other code (default: keep them,
            marked ``stale``).
        candidates_file: A fixed test candidate list in NCF's ``test.negative``
            format, reported as protocol ``external``
            (:func:`trainer.evaluation.candidates.read_candidates`).

    Returns:
        The runs, in grid order (stale ones with ``stale=True``).
    """
    from trainer.config import load_config
    from trainer.data.samples import RankingTask, prepare_task
    from trainer.evaluation import ranking

    task = data if isinstance(data, RankingTask) else prepare_task(data)
    say = progress or (lambda line: None)
    fixed, fixed_key = None, None
    if candidates_file is not None:
        from trainer.contracts import storage
        from trainer.contracts.fingerprint import fingerprint
        from trainer.evaluation.candidates import read_candidates

        fixed = read_candidates(candidates_file, task)
        fixed_key = fingerprint(storage.read_text(candidates_file))
    runs = []
    for model in models:
        for method in methods:
            path = spec_path(specs_dir, model, method)
            for seed in seeds:
                cfg = load_config(path, {**(overrides or {}), "training.seed": seed})
                tag = f"{model}/{method} seed {seed}"
                every = eval_every or EVAL_EVERY[model]
                name = f"{model}_{method}"
                hit = (
                    store.lookup(name, cfg, protocol, every, task, fixed_key)
                    if store
                    else None
                )
                if hit is not None and hit.stale and not rerun_stale:
                    say(f"{tag}: STALE {hit.path} ({', '.join(hit.changed_files)})")
                    runs.append(
                        Run(
                            model,
                            method,
                            path,
                            hit.result,
                            True,
                            hit.path,
                            tuple(hit.changed_files),
                        )
                    )
                    if on_run is not None:
                        on_run(runs)
                    continue
                result = None if hit is None or hit.stale else hit.result
                if result is None:
                    result = ranking.train_and_evaluate(
                        cfg,
                        task,
                        protocol,
                        every,
                        on_epoch=lambda log, tag=tag, n=cfg.training.epochs: say(
                            epoch_line(tag, n, log)
                        ),
                        candidates=fixed,
                    )
                    if store is not None:
                        store.save(name, result, protocol, every, task, fixed_key)
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


#: ``--out`` default: under the gitignored ``runs/``, never a committed doc.
DEFAULT_OUT = os.path.join("runs", "reproduce", "results_ranking.md")
#: ``--results-dir`` default of ``--quick`` (its runs are not the grid's; not committed).
QUICK_RESULTS = os.path.join("runs", "reproduce", "quick")


def _data_file(data_dir: str) -> str:
    for candidate in ("ml-1m/ml-1m.txt", "ml-1m.txt"):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"--data-dir {data_dir}: no ml-1m.txt there (or in {data_dir}/ml-1m/)"
    )


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["model.maxlen=200", ...]`` -> dotted overrides of the model, training and
    optimizer sections, read as ``python -m trainer.task --set`` reads them."""
    from trainer.config import parse_overrides

    return parse_overrides(items, ("model", "training", "optimizer"))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m reproduce.ranking", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--data-dir", required=True, help="holds ml-1m/ml-1m.txt or ml-1m.txt"
    )
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"report (and .png beside it); default {DEFAULT_OUT}; committed reports "
        "only by an explicit --out docs/...",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"one seed, GMF only, {QUICK['epochs']} epoch of at most "
        f"{QUICK['max_steps']} steps per run (runs kept under {QUICK_RESULTS})",
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
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model/training/optimizer field of every run, e.g. "
        "--set model.maxlen=200 (YAML value; repeatable)",
    )
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument(
        "--protocol",
        default="full",
        choices=("full", "sampled_ncf", "sampled_sasrec"),
        help="the protocol that chooses the epoch and fills the main tables (the "
        "other two are reported from the same models)",
    )
    p.add_argument(
        "--candidates",
        default=None,
        metavar="FILE",
        help="also rank each listed user's test item against a fixed list in NCF's "
        "test.negative format ('(user,item)' then the negatives, raw ids), reported as "
        "protocol 'external'",
    )
    p.add_argument("--specs-dir", default="specs/experiments")
    p.add_argument(
        "--results-dir",
        default=None,
        help="finished runs as JSON (default reproduce/runs/ranking, committed; quick: "
        f"{QUICK_RESULTS}): a rerun with the same settings loads them (resume, add "
        "seeds); 'none' to always train",
    )
    p.add_argument(
        "--rerun-stale",
        action="store_true",
        help="retrain stored runs whose code fingerprint is not the current code's",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints progress and writes ``--out`` and the plot."""
    args = _parse_args(argv)
    from reproduce.run_store import DEFAULT_ROOT, RunStore
    from trainer.config import load_config
    from trainer.data.samples import prepare_task
    from trainer.data.sequences import load_sasrec
    from trainer.evaluation.candidates import read_candidates

    quick = QUICK if args.quick else {}
    models = args.models.split(",") if args.models else quick.get("models", MODELS)
    methods = args.methods.split(",")
    for name, allowed in ((models, MODELS), (methods, METHODS)):
        bad = sorted(set(name) - set(allowed))
        if bad:
            print(f"error: unknown {bad}; allowed {list(allowed)}", file=sys.stderr)
            return 2
    seeds = list(range(args.seeds or quick.get("seeds", 3)))
    try:
        overrides = parse_sets(args.set)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    overrides |= {
        k: v
        for k, v in (
            ("training.epochs", args.epochs or quick.get("epochs")),
            ("training.max_steps", args.max_steps or quick.get("max_steps")),
        )
        if v
    }
    for model in models:  # a bad spec or --set fails here, before any training
        for method in methods:
            try:
                load_config(spec_path(args.specs_dir, model, method), overrides)
            except (ValueError, OSError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    try:
        path = _data_file(args.data_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seq = load_sasrec(path)
    data = prepare_task(seq)
    try:  # a bad candidate file fails here, before any training
        _ = args.candidates and read_candidates(args.candidates, data)
    except (ValueError, OSError) as e:
        print(f"error: --candidates {e}", file=sys.stderr)
        return 2
    results_dir = args.results_dir or (QUICK_RESULTS if args.quick else DEFAULT_ROOT)
    command = "python -m reproduce.ranking " + shlex.join(
        list(argv if argv is not None else sys.argv[1:])
    )
    print(
        f"data {path}: {data.num_users} users, {data.num_items} items; "
        f"{len(models) * len(methods) * len(seeds)} runs; stored runs {results_dir}",
        flush=True,
    )
    start = time.perf_counter()
    notes = [
        f"Data: `{path}` ({data.num_users} users, {data.num_items} items, "
        f"{seq.num_actions} actions), leave-last-two-out.",
        f"Seeds: {seeds}; selection protocol: {args.protocol}; overrides: "
        f"{overrides or 'none'}.",
        f"Runs: `{results_dir}` (JSON per run; the report is regenerated from them).",
    ]
    if args.quick:
        notes.append(
            "**Quick mode**: a budget far below the paper's (20 / 200 epochs); "
            "the numbers check the pipeline, not the paper."
        )
    total = len(models) * len(methods) * len(seeds)

    def write(done: list[Run]) -> str:
        fresh = sum(not r.stale for r in done)
        extra = [] if fresh == total else [f"**Partial**: {fresh} of {total} runs."]
        wall = f"Wall time: {time.perf_counter() - start:.0f} s, {os.cpu_count()} CPU cores."
        return write_results(
            done, args.out, command, [*notes, wall, *extra], args.protocol
        )

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
        store=None if results_dir == "none" else RunStore(results_dir),
        on_run=write,
        rerun_stale=args.rerun_stale,
        candidates_file=args.candidates,
    )
    png = write(runs)
    stale = sum(r.stale for r in runs)
    print(
        f"wrote {args.out} and {png}"
        + (f"; {stale} STALE runs listed" if stale else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
