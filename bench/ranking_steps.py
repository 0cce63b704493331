"""Step time of GMF, NeuMF and SASRec with DPQ / MGQE vs the full embedding, one run.

Every (backbone, method) pair is built exactly as ``trainer.training.fit.fit_ranking``
builds it: the configuration ``specs/experiments/<backbone>_<method>.yaml``, the model
factory, the optimizer factory, the production step of ``trainer.training.loop`` (XLA
for the methods without a codebook, as ``fit_ranking`` decides) and the batches of
``trainer.data.samples.ranking_batches`` (``--batches`` of them taken up front, so the
input pipeline is not timed). The step is called as the loop calls it, reading the
loss, the regulariser and the finiteness flag back after every step.

The pairs are timed round-robin: ``--rounds`` rounds of ``--steps`` steps each (after
``--warmup`` steps); each round gives every method's ratio to the full embedding of its
backbone, and the median round is reported, so load from other processes that shifts
between rounds moves all methods alike. Memory beside each: the bytes of its weights
and optimizer slots (``state_mb``) and the growth of the process' resident set while it
was built and warmed up (``rss_growth_mb``); the process' peak RSS once.

``--xla-quantized`` adds every DPQ/MGQE pair once more with its step XLA-compiled
(``<backbone>_<method>_xla``), in the same rounds.

``--profile DIR`` also records a TensorFlow profiler trace of ``--profile-steps`` steps
of every pair under DIR and summarises it (:func:`summarize_trace`): the top ops by self
time and their share of the step.

Data: ML-1M (``--ml1m``) or, with ``--synthetic USERS``, Zipf-distributed interactions.

Usage::

    python bench/ranking_steps.py [--backbones gmf,neumf,sasrec] [--methods full,dpq,mgqe]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKBONES = ("gmf", "neumf", "sasrec")
METHODS = ("full", "dpq", "mgqe")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--methods", default=",".join(METHODS), help="must include full")
    p.add_argument(
        "--ml1m",
        default=os.path.join(REPO, "..", "shared", "data", "ml-1m", "ml-1m.txt"),
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="USERS",
        help="synthetic interactions of USERS users instead of ML-1M",
    )
    p.add_argument("--batches", type=int, default=8, help="distinct batches cycled")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=40, help="steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--xla-quantized",
        action="store_true",
        help="also time every DPQ/MGQE pair with its step XLA-compiled",
    )
    p.add_argument("--profile", default="", metavar="DIR", help="trace each pair here")
    p.add_argument("--profile-steps", type=int, default=50)
    p.add_argument("--top", type=int, default=8, help="ops listed per profile")
    args = p.parse_args(argv)
    for name, given, known in (
        ("--backbones", args.backbones, BACKBONES),
        ("--methods", args.methods, METHODS),
    ):
        bad = sorted(set(given.split(",")) - set(known))
        if bad or not given:
            p.error(f"{name}: {bad or given!r} not in {list(known)}")
    if "full" not in args.methods.split(","):
        p.error("--methods must include full (the baseline of every ratio)")
    if not args.synthetic and not os.path.isfile(args.ml1m):
        p.error(f"--ml1m: no file at {args.ml1m} (or use --synthetic USERS)")
    return args


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _data(args: argparse.Namespace) -> Any:
    from trainer.data import sequences

    if not args.synthetic:
        return sequences.load_sasrec(args.ml1m)
    rng = np.random.default_rng(0)
    items = max(args.synthetic // 2, 50)
    per_user = rng.integers(5, 40, size=args.synthetic)
    users = np.repeat(np.arange(1, args.synthetic + 1), per_user)
    u = rng.random(len(users))  # Zipf(1) over items: log-uniform inverse transform
    picks = np.minimum(np.floor(np.exp(u * np.log(items + 1.0))), items)
    return sequences.from_pairs(users, picks.astype(np.int64))


class Pair:
    """One (backbone, method): model, optimizer, production step and its batches."""

    def __init__(
        self, backbone: str, method: str, task: Any, n_batches: int, xla: bool = False
    ) -> None:
        import keras

        from trainer.config import load_config
        from trainer.data.samples import ranking_batches
        from trainer.models import factory
        from trainer.training import loop, losses
        from trainer.training.optimizers import make_optimizer

        rss0 = _rss_mb()
        path = os.path.join(REPO, "specs", "experiments", f"{backbone}_{method}.yaml")
        cfg = load_config(path, {"training.epochs": 1})
        keras.utils.set_random_seed(cfg.training.seed)
        self.backbone, self.method = backbone, method
        self.name = f"{backbone}_{method}" + ("_xla" if xla else "")
        self.batch_size = cfg.training.batch_size
        self.model = factory.build_ranking_model(cfg.model, task)
        self.optimizer = make_optimizer(cfg.optimizer)
        variables = list(self.model.trainable_variables)
        self.optimizer.build(variables)
        # fit_ranking's default: XLA only for the tables without a codebook
        self.jit = xla or cfg.model.embedding.kind not in ("dpq", "mgqe")
        self.step = loop._make_step(
            self.model,
            [(self.optimizer, lambda: variables)],
            [variables],
            losses.loss_for(cfg.model.name),
            self.jit,
        )
        dataset, _ = ranking_batches(cfg, task)
        self.batches = list(dataset.take(n_batches))
        self.calls = 0
        self.run(1)  # trace (and compile) before anything is timed
        import tensorflow as tf

        state = [*self.model.weights, *self.optimizer.variables]
        nbytes = sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in state)
        self.state_mb = nbytes / 2**20
        self.rss_growth_mb = _rss_mb() - rss0

    def run(self, steps: int) -> float:
        """``steps`` steps as the loop runs them; returns the seconds they took."""
        start = time.perf_counter()
        for _ in range(steps):
            loss, reg, ok = self.step(self.batches[self.calls % len(self.batches)])
            bool(ok), float(loss), float(reg)  # the loop's per-step reads
            self.calls += 1
        return time.perf_counter() - start


def summarize_trace(logdir: str, top: int, steps: int) -> dict[str, Any]:
    """The top ops by self time of the newest trace under ``logdir``.

    Reads the profiler's ``framework_op_stats`` table (host ops: this is a CPU run).

    Returns:
        ``{"total_self_ms_per_step": ..., "types": [[type, self_ms_per_step, share],
        ...], "ops": [[type, name, self_ms_per_step, share], ...]}``, ``share`` of the
        total self time of all ops (an XLA-compiled step is one op).
    """
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    raw, ok = plugin.xspace_to_tools_data([path[-1]], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"profiler could not read {path[-1]}: {raw[:200]!r}")
    table = json.loads(raw)[0]
    cols = [c["id"] for c in table["cols"]]
    rows = [
        dict(zip(cols, (c["v"] for c in r["c"]), strict=True)) for r in table["rows"]
    ]
    rows = [r for r in rows if r["operation"] != "IDLE"]
    total = sum(r["total_self_time"] for r in rows) or 1.0
    rows.sort(key=lambda r: -r["total_self_time"])
    by_type: dict[str, float] = {}
    for r in rows:
        by_type[r["type"]] = by_type.get(r["type"], 0.0) + r["total_self_time"]
    return {
        "total_self_ms_per_step": round(total / 1e3 / steps, 3),
        "types": [
            [t, round(us / 1e3 / steps, 3), round(us / total, 3)]
            for t, us in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]
        ],
        "ops": [
            [
                r["type"],
                r["operation"][-60:],
                round(r["total_self_time"] / 1e3 / steps, 3),
                round(r["total_self_time"] / total, 3),
            ]
            for r in rows[:top]
        ],
    }


def _profile(pair: Pair, args: argparse.Namespace) -> dict[str, Any]:
    import tensorflow as tf

    logdir = os.path.join(args.profile, pair.name)
    tf.profiler.experimental.start(logdir)
    seconds = pair.run(args.profile_steps)
    tf.profiler.experimental.stop()
    summary = summarize_trace(logdir, args.top, args.profile_steps)
    summary["ms_per_step_traced"] = round(seconds * 1e3 / args.profile_steps, 3)
    return summary


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Builds every pair, times them round-robin, returns the figures."""
    from trainer.data.samples import prepare_task

    task = prepare_task(_data(args))
    pairs = [
        Pair(b, m, task, args.batches, xla)
        for b in args.backbones.split(",")
        for m in args.methods.split(",")
        for xla in ((False, True) if args.xla_quantized and m != "full" else (False,))
    ]
    for pair in pairs:
        pair.run(args.warmup)
    ms: dict[str, list[float]] = {p.name: [] for p in pairs}
    for _ in range(args.rounds):
        for pair in pairs:
            ms[pair.name].append(pair.run(args.steps) * 1e3 / args.steps)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "data": f"synthetic {args.synthetic} users" if args.synthetic else "ml-1m",
        "num_users": task.num_users,
        "num_items": task.num_items,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "pairs": {},
    }
    for pair in pairs:
        full = ms[f"{pair.backbone}_full"]
        ratios = [a / b for a, b in zip(ms[pair.name], full, strict=True)]
        result["pairs"][pair.name] = {
            "ms_per_step": round(statistics.median(ms[pair.name]), 3),
            "ms_per_step_rounds": [round(x, 3) for x in ms[pair.name]],
            "x_full_step_time": round(statistics.median(ratios), 3),
            "batch_size": pair.batch_size,
            "xla": pair.jit,
            "state_mb": round(pair.state_mb, 2),
            "rss_growth_mb": round(pair.rss_growth_mb, 1),
        }
    result["step_time_ratio"] = {
        p.name: result["pairs"][p.name]["x_full_step_time"]
        for p in pairs
        if p.method != "full"
    }
    if args.profile:
        result["profile"] = {p.name: _profile(p, args) for p in pairs}
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args)
    for name, f in result["pairs"].items():
        print(
            f"{name:14s} {f['ms_per_step']:9.3f} ms/step {f['x_full_step_time']:6.3f}x "
            f"full  state {f['state_mb']:7.2f} MB"
        )
    for name, prof in result.get("profile", {}).items():
        print(f"-- {name}: {prof['ms_per_step_traced']} ms/step traced")
        for t in prof["types"]:
            print(f"   type {t[0]:23s} {t[1]:8.3f} ms {100 * t[2]:5.1f}%")
        for op in prof["ops"]:
            print(f"   {op[0]:28s} {op[2]:8.3f} ms {100 * op[3]:5.1f}%  {op[1]}")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
