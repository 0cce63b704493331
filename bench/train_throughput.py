"""Training speed and peak memory of wide-and-deep: hybrid hashing and MGQE vs full.

One run writes the synthetic stream (``--hours`` x ``--events-per-hour``), runs the
stats job once per feature spec, then trains every variant through
``trainer.task.run`` on the same events for the same number of steps, each in its own
subprocess so that its peak resident memory (``ru_maxrss``) is its own:

* ``full``: ``specs/experiments/synthetic_full.yaml`` (every value has a row);
* ``hybrid``: the same with user, item and publisher hybrid-hashed: the top 2 % keep
  rows, the rest go to two tables of 2^-4 of the full rows (``d/2`` columns each),
  derived by ``reproduce.hashing.variant_spec``;
* ``mgqe``: ``specs/experiments/synthetic_mgqe.yaml``.

Examples/s is the steady state: from the first progress line at or after
``--warmup-steps`` (tf.function tracing excluded) to the last one; the variants run
round-robin ``--repeats`` times and the best run of each is kept (the machine is
shared), with every run's figure listed. If the ranking backbones exist
(``trainer.evaluation.ranking``, ``trainer.models.gmf``), one GMF epoch on ML-1M
(``specs/experiments/gmf_full.yaml``) is timed as well, else skipped with a message.
``--profile DIR`` adds one traced run per variant after the timed ones (the whole
``task.run``, input pipeline included) and reports its top ops by self time per step
(``ranking_steps.summarize_trace``) under ``profile``.

Usage::

    python bench/train_throughput.py [--hours 3] [--events-per-hour 40000] [--steps 1000]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("full", "hybrid", "mgqe")
EXPERIMENTS = {
    "full": "synthetic_full",
    "hybrid": "synthetic_full",
    "mgqe": "synthetic_mgqe",
}
HYBRID_K_SHARE, HYBRID_EXPONENT = 0.02, 4


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", default=os.path.join(REPO, "runs", "bench_trainer"))
    p.add_argument("--hours", type=int, default=3)
    p.add_argument("--events-per-hour", type=int, default=40_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=1000, help="training steps per variant")
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument(
        "--repeats", type=int, default=2, help="runs per variant (best kept)"
    )
    p.add_argument(
        "--ml1m",
        default=os.path.join(REPO, "..", "shared", "data", "ml-1m", "ml-1m.txt"),
    )
    p.add_argument("--no-gmf", action="store_true", help="skip the GMF epoch")
    p.add_argument(
        "--profile",
        default="",
        metavar="DIR",
        help="trace each variant's first run under DIR; top ops by self time",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)  # JSON job of one subprocess
    return p.parse_args(argv)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ------------------------------------------------------------------------- children


def _train_child(job: dict[str, Any]) -> dict[str, Any]:
    """One variant: trainer.task.run with a progress hook timing the steps."""
    from trainer import task
    from trainer.config import load_config

    config = load_config(job["experiment"], job["overrides"])
    marks: list[tuple[int, float]] = []

    def progress(line: str) -> None:
        marks.append((int(line.split()[1].split("/")[0]), time.perf_counter()))

    if job.get("profile"):
        import tensorflow as tf

        tf.profiler.experimental.start(job["profile"])
    t0 = time.perf_counter()
    meta = task.run(
        config,
        job["logs"],
        job["stats"],
        job["out"],
        hours=job["hours"],
        progress=progress,
    )
    wall = time.perf_counter() - t0
    profile = None
    if job.get("profile"):
        from ranking_steps import summarize_trace  # bench/ leads sys.path

        tf.profiler.experimental.stop()
        profile = summarize_trace(job["profile"], 8, meta["steps"])
    warm = [(s, t) for s, t in marks if s >= job["warmup_steps"]]
    (s0, t_0), (s1, t_1) = warm[0], warm[-1]
    return {
        "examples_per_s": (s1 - s0) * config.training.batch_size / (t_1 - t_0),
        "timed_steps": s1 - s0,
        "steps": meta["steps"],
        "task_seconds": wall,
        "serving_bits": meta["serving_bits"],
        "peak_rss_mb": _peak_rss_mb(),
        **({"profile": profile} if profile else {}),
    }


def _gmf_child(job: dict[str, Any]) -> dict[str, Any]:
    """One GMF epoch on ML-1M (training time of the epoch, evaluation excluded)."""
    from trainer.config import load_config
    from trainer.data.sequences import load_sasrec
    from trainer.evaluation import ranking

    config = load_config(
        os.path.join(REPO, "specs", "experiments", "gmf_full.yaml"),
        {"training.epochs": 1},
    )
    data = load_sasrec(job["ml1m"])
    result = ranking.train_and_evaluate(config, data)
    epoch = result.history[0]
    return {
        "epoch_seconds": epoch.seconds,
        "loss": epoch.loss,
        "test_hr10": result.test.hr,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _spawn(job: dict[str, Any], timeout: int = 1800) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{job['kind']} child failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- parent


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Events, the feature specs of the variants and their stats artifacts."""
    import yaml

    from beam_jobs import feature_stats, synthetic
    from reproduce import hashing as reproduce_hashing
    from trainer.contracts import artifacts, events, storage

    logs = os.path.join(args.work_dir, "logs")
    config = synthetic.SyntheticConfig(seed=0, events_per_hour=args.events_per_hour)
    if len(events.list_partitions(logs) if os.path.isdir(logs) else []) < args.hours:
        synthetic.write_stream(logs, config, args.hours)
    first = synthetic.DEFAULT_START_HOUR
    last = first + dt.timedelta(hours=args.hours - 1)
    hours = f"{events.format_hour(first)}:{events.format_hour(last)}"
    specs = {
        v: os.path.join(REPO, "specs", "features", f"synthetic_{v}.yaml")
        for v in ("full", "mgqe")
    }

    def stats(name: str) -> str:
        out = os.path.join(args.work_dir, f"stats_{name}")
        if not storage.exists(artifacts.manifest_path(out)):
            feature_stats.compute_stats(
                logs,
                hours,
                specs[name],
                out,
                config=feature_stats.StatsConfig(diagnostics=False),
            )
        return out

    stats_dirs = {"full": stats("full")}
    manifest = artifacts.load_manifest(stats_dirs["full"])
    vocab = {
        f: manifest["features"][f]["vocab_size"]
        for f in reproduce_hashing.COMPRESSED["synthetic"]
    }
    with open(specs["full"], encoding="utf-8") as f:
        base = yaml.safe_load(f)
    variant = reproduce_hashing.Variant(
        "hybrid", "hybrid", HYBRID_K_SHARE, HYBRID_EXPONENT
    )
    hybrid = reproduce_hashing.variant_spec(base, "synthetic", variant, vocab)
    specs["hybrid"] = os.path.join(args.work_dir, "synthetic_hybrid_bench.yaml")
    with open(specs["hybrid"], "w", encoding="utf-8") as f:
        yaml.safe_dump(hybrid, f, sort_keys=False)
    stats_dirs.update(hybrid=stats("hybrid"), mgqe=stats("mgqe"))
    return {
        "logs": logs,
        "hours": hours,
        "specs": specs,
        "stats": stats_dirs,
        "vocab": vocab,
    }


def _job(
    args: argparse.Namespace, prep: dict[str, Any], name: str, result: dict[str, Any]
) -> dict[str, Any]:
    """The child job that trains variant ``name`` from a clean output directory."""
    import shutil

    out = os.path.join(args.work_dir, f"model_{name}")
    shutil.rmtree(out, ignore_errors=True)  # task.run is idempotent: start clean
    overrides = {
        "feature_spec": prep["specs"][name],
        "training.batch_size": args.batch_size,
        "training.max_steps": result["steps"],
        "training.epochs": result["epochs"],
        "training.log_every": 10,
        "training.checkpoint_every": 1_000_000,
    }
    experiment = os.path.join(REPO, "specs", "experiments", f"{EXPERIMENTS[name]}.yaml")
    return {
        "kind": "train",
        "experiment": experiment,
        "overrides": overrides,
        "logs": prep["logs"],
        "hours": prep["hours"],
        "stats": prep["stats"][name],
        "out": out,
        "warmup_steps": args.warmup_steps,
        "profile": "",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepares the data, trains each variant in a subprocess, returns every figure."""

    os.makedirs(args.work_dir, exist_ok=True)
    prep = _prepare(args)
    events = args.hours * args.events_per_hour
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "events": events,
        "hours": prep["hours"],
        "batch_size": args.batch_size,
        "steps": args.steps,
        "epochs": -(
            -args.steps * args.batch_size // events
        ),  # as many as the steps need
        "vocab": prep["vocab"],
        "variants": {},
    }
    names = args.variants.split(",")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for repeat in range(args.repeats):  # round-robin evens out load from elsewhere
        for name in names:
            runs[name].append(_spawn(_job(args, prep, name, result)))
            print(f"{name} #{repeat}: {json.dumps(runs[name][-1])}", flush=True)
    if args.profile:  # one more run per variant, traced, not among the timed ones
        result["profile"] = {}
        for name in names:
            job = {**_job(args, prep, name, result), "kind": "train"}
            job["profile"] = os.path.join(os.path.abspath(args.profile), name)
            result["profile"][name] = _spawn(job)["profile"]
    for name, figures in runs.items():
        best = max(figures, key=lambda f: f["examples_per_s"])
        result["variants"][name] = {
            **best,
            "examples_per_s_runs": [f["examples_per_s"] for f in figures],
            "peak_rss_mb": max(f["peak_rss_mb"] for f in figures),
        }
    full = result["variants"].get("full")
    for figures in result["variants"].values():
        if full:
            figures["speed_vs_full"] = (
                figures["examples_per_s"] / full["examples_per_s"]
            )
            figures["size_vs_full"] = figures["serving_bits"] / full["serving_bits"]
    result["gmf_ml1m"] = _gmf(args)
    return result


def _gmf(args: argparse.Namespace) -> dict[str, Any] | str:
    import importlib.util

    if args.no_gmf:
        return "skipped (--no-gmf)"
    missing = [
        m
        for m in ("trainer.evaluation.ranking", "trainer.models.gmf")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        msg = f"skipped: {', '.join(missing)} not found"
    elif not os.path.isfile(args.ml1m):
        msg = f"skipped: no ML-1M sequence file at {args.ml1m}"
    else:
        figures = _spawn(
            {"kind": "gmf", "ml1m": os.path.abspath(args.ml1m)}, timeout=3600
        )
        print(f"gmf: {json.dumps(figures)}", flush=True)
        return figures
    print(msg, flush=True)
    return msg


def main(argv: list[str] | None = None) -> int:
    """Runs the bench (or one child job); the last line printed is the JSON result."""
    args = _parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        figures = _train_child(job) if job["kind"] == "train" else _gmf_child(job)
        print(json.dumps(figures, sort_keys=True))
        return 0
    t0 = time.perf_counter()
    result = run(args)
    result["bench_seconds"] = time.perf_counter() - t0
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
