"""``make run``: a synthetic stream replayed hour by hour through the local pipeline.

Generates ``hours + 1`` synthetic hours (the last one is only evaluated on), then replays
the hourly pipeline (:mod:`pipeline.local`, ``kfp.local`` + DirectRunner) once per
compression variant — hybrid hashing, MGQE and the full-embedding baseline — each with
its own registry, warm-starting hour to hour. Prints one line per hour and variant
(live on a terminal: stage and elapsed seconds; then RCE, AUC, bytes, blessing and
per-stage seconds), then one table row per hour (RCE of each variant on the next hour,
exported model bytes, compression ratio against the baseline), and writes
``OUT/report.html`` (:mod:`pipeline.report`). Every task's output is in
``OUT/<variant>/logs/<hour>/<task>.log``; ``-v`` streams it.

Re-running with the same ``--out`` resumes: finished hours are not redone. A failed hour
is shown (task, reason, its log's last lines) and reported; the other hours and variants
still run, the report is written, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

_EXPERIMENTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "specs", "experiments"
)
VARIANTS: tuple[tuple[str, str], ...] = tuple(
    (v, os.path.join(_EXPERIMENTS, f"synthetic_{v}.yaml"))
    for v in ("full", "hybrid", "mgqe")
)


def _generate(out: str, hours: int, events_per_hour: int, seed: int) -> list[str]:
    from beam_jobs import synthetic
    from trainer.contracts import events

    cfg = synthetic.SyntheticConfig(seed=seed, events_per_hour=events_per_hour)
    logs = os.path.join(out, "logs")
    names = [events.format_hour(cfg.hour(i)) for i in range(hours + 1)]
    missing = [
        i
        for i, h in enumerate(names)
        if not os.path.isdir(events.partition_path(logs, cfg.hour(i)))
    ]
    quiet = logging.getLogger("beam_jobs.synthetic")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))  # the line below says it
    try:
        for i in missing:
            synthetic.write_stream(logs, cfg, hours=1, first_hour=i)
    finally:
        quiet.setLevel(level)
    print(
        f"synthetic stream: {hours + 1} hours x {events_per_hour:,} events under {logs} "
        f"({len(missing)} generated now)",
        flush=True,
    )
    return names


def run(
    out: str, hours: int, events_per_hour: int, seed: int, verbose: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Runs the demo; returns the per-variant hour records (failed hours included)."""
    from pipeline import local

    os.makedirs(out, exist_ok=True)
    names = _generate(out, hours, events_per_hour, seed)
    results: dict[str, list[dict[str, Any]]] = {}
    width = max(len(v) for v, _ in VARIANTS)
    print(
        f"replaying {names[0]}..{names[hours - 1]} for {len(VARIANTS)} variants "
        f"({', '.join(v for v, _ in VARIANTS)}), each evaluated on the next hour:",
        flush=True,
    )
    for variant, experiment in VARIANTS:
        ns = argparse.Namespace(
            logs=os.path.join(out, "logs"),
            workdir=os.path.join(out, variant),
            config=None,
            spec=None,
        )
        settings = local.settings_from_args(ns, experiment=experiment)
        results[variant] = local.replay_hours(
            names[:hours], settings, label=f"  {variant:<{width}}  ", verbose=verbose
        )
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return results


def _ratio(value: Any, base: Any) -> str:
    return f"{float(value) / float(base):.3f}" if value and base else "-"


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    """Per hour: next-hour RCE per variant, exported bytes, and compression against the
    full-embedding baseline both on disk (bytes) and by Table 1 serving bits."""
    head = (
        "hour",
        "RCE full",
        "RCE hybrid",
        "RCE mgqe",
        "bytes full",
        "bytes hybrid",
        "bytes mgqe",
        "hybrid/full bytes",
        "mgqe/full bytes",
        "hybrid/full bits",
        "mgqe/full bits",
    )
    rows = [head]
    for i, full in enumerate(results["full"]):
        hyb, mg = results["hybrid"][i], results["mgqe"][i]
        rows.append(
            (
                full["hour"],
                *(
                    f"{r['metrics'].get('rce', float('nan')):.3f}"
                    if r.get("status") != "failed"
                    else "FAILED"
                    for r in (full, hyb, mg)
                ),
                *(f"{int(r.get('size_bytes') or 0):,}" for r in (full, hyb, mg)),
                *(
                    _ratio(r.get("size_bytes"), full.get("size_bytes"))
                    for r in (hyb, mg)
                ),
                *(
                    _ratio(r.get("serving_bits"), full.get("serving_bits"))
                    for r in (hyb, mg)
                ),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    return "\n".join(
        "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows
    )


def write_report(out: str, results: dict[str, list[dict[str, Any]]]) -> str:
    """Writes OUT/report.html (:func:`pipeline.report.write_report`)."""
    from pipeline import report

    return report.write_report(
        out,
        results,
        title="compactrec: hourly continuous training on the synthetic stream",
        intro="Each variant trains wide-and-deep on hour h, warm-started from the "
        "model registered for hour h-1 (its own registry), and is evaluated on hour "
        "h+1; only blessed models are registered. Variants: full embeddings "
        "(baseline), hybrid hashing (frequency + double hashing) and MGQE.",
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of ``python -m pipeline demo`` (``make run``)."""
    if args.hours < 1 or args.events_per_hour < 1:
        print("error: --hours and --events-per-hour must be >= 1", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    verbose = bool(getattr(args, "verbose", False))
    results = run(args.out, args.hours, args.events_per_hour, args.seed, verbose)
    print("\n" + table(results))
    path = write_report(args.out, results)
    failed = [
        (v, r)
        for v, recs in results.items()
        for r in recs
        if r.get("status") == "failed"
    ]
    out = os.path.abspath(args.out)
    print(
        f"\nreport: {path}\nlogs:   {os.path.join(out, 'VARIANT', 'logs', 'HOUR')}"
        f"/TASK.log\ntensorboard --logdir {out}"
    )
    if failed:
        hours = ", ".join(
            f"{v} {r['hour']} ({r.get('failed_task')})" for v, r in failed
        )
        print(f"FAILED: {len(failed)} hour runs: {hours}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0
