"""One synthetic hour through the local pipeline: per-stage seconds and their ratio.

Writes two hours of ``--events`` synthetic events each (``beam_jobs.synthetic``, seed
0; the evaluation stage scores the model on the hour after the one it trained on), then
runs the first as ``python -m pipeline run-local`` does (``pipeline.local.
run_hour_logged``: kfp.local, every component in its own process, the default
experiment ``specs/experiments/synthetic_hybrid.yaml`` unless ``--experiment``) in a
fresh work directory. The stage seconds are those of the hour's summary line (kfp.local's
task status lines, ``pipeline/progress.py``); the training stage's examples/s is the
trainer's last progress line in ``train-model.log``.

Ratio of issue 12: the non-training stages (stats, transform, export, evaluate,
register) together over the training stage (target <= 0.5 on a 1M-event hour).

Usage::

    python bench/pipeline_hour.py [--events 1000000] [--work-dir runs/bench_pipeline]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = re.compile(r"step (\d+)/(\d+) loss \S+ ([\d,]+) examples/s")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events of the hour")
    p.add_argument("--work-dir", default=os.path.join(REPO, "runs", "bench_pipeline"))
    p.add_argument(
        "--experiment", default="", help="trainer experiment (default: run-local's)"
    )
    args = p.parse_args(argv)
    if args.events < 1:
        p.error(f"--events: must be >= 1, got {args.events}")
    if args.experiment and not os.path.isfile(args.experiment):
        p.error(f"--experiment: no file at {args.experiment}")
    return args


def _train_rate(log: str) -> dict[str, Any]:
    """Steps and examples/s of the trainer's last progress line in ``log``."""
    if not os.path.exists(log):
        return {}
    with open(log, encoding="utf-8", errors="replace") as f:
        hits = RATE.findall(f.read())
    if not hits:
        return {}
    step, total, rate = hits[-1]
    return {
        "train_steps": int(total),
        "train_examples_per_s": int(rate.replace(",", "")),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Writes the hour, runs it through the local pipeline, returns the figures."""
    from beam_jobs import synthetic
    from pipeline import local
    from pipeline.progress import STAGES
    from trainer.contracts import events

    work = os.path.abspath(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)  # a finished hour would be skipped
    logs = os.path.join(work, "logs_in")
    t0 = time.perf_counter()
    written = synthetic.write_stream(
        logs, synthetic.SyntheticConfig(seed=0, events_per_hour=args.events), 2
    )  # the evaluation stage reads the next hour
    generate_s = time.perf_counter() - t0
    hour = written[0]["hour"]
    namespace = argparse.Namespace(logs=logs, workdir=os.path.join(work, "run"))
    settings = local.settings_from_args(namespace, args.experiment or None)
    t0 = time.perf_counter()
    rec = local.run_hour_logged(hour, settings)
    wall = time.perf_counter() - t0
    if rec.get("status") == "failed":
        raise SystemExit(f"error: the hour failed: {local.format_failure(rec)}")
    stages = {k: round(v, 2) for k, v in (rec.get("stage_seconds") or {}).items()}
    train = stages.get("train", 0.0)
    other = sum(v for k, v in stages.items() if k in STAGES and k != "train")
    result: dict[str, Any] = {
        "events": args.events,
        "hour": events.format_hour(events.parse_hour(hour)),
        "experiment": os.path.relpath(
            args.experiment or local.DEFAULT_EXPERIMENT, REPO
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "generate_seconds": round(generate_s, 2),
        "stage_seconds": stages,
        "hour_seconds": round(wall, 1),
        "train_seconds": train,
        "non_train_seconds": round(other, 2),
        "non_train_over_train": round(other / train, 3) if train else None,
        "target_non_train_over_train": 0.5,
        "metrics": {k: rec.get("metrics", {}).get(k) for k in ("auc", "rce")},
    }
    log = os.path.join(local.log_dir(settings, hour), "train-model.log")
    result.update(_train_rate(log))
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    result = run(args)
    print(
        f"{result['events']:,} events: "
        + " ".join(f"{k} {v:.1f} s" for k, v in result["stage_seconds"].items())
        + f"; non-training / training = {result['non_train_over_train']}"
    )
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
