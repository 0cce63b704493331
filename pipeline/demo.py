"""``make run``: a synthetic stream replayed hour by hour through the local pipeline.

Generates ``hours + 1`` synthetic hours (the last one is only evaluated on), then replays
the hourly pipeline (:mod:`pipeline.local`, ``kfp.local`` + DirectRunner) once per
compression variant — hybrid hashing, MGQE and the full-embedding baseline — each with
its own registry, warm-starting hour to hour. Prints one table row per hour (RCE of each
variant on the next hour, exported model bytes, compression ratio against the baseline)
and writes ``OUT/report.html`` with the plots.

Re-running with the same ``--out`` resumes: finished hours are not redone.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
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
    for i in missing:
        synthetic.write_stream(logs, cfg, hours=1, first_hour=i)
    print(
        f"synthetic stream: {hours + 1} hours x {events_per_hour:,} events under {logs} "
        f"({len(missing)} generated now)",
        flush=True,
    )
    return names


def run(
    out: str, hours: int, events_per_hour: int, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Runs the demo; returns the per-variant hour records."""
    from pipeline import local

    os.makedirs(out, exist_ok=True)
    names = _generate(out, hours, events_per_hour, seed)
    results: dict[str, list[dict[str, Any]]] = {}
    for variant, experiment in VARIANTS:
        ns = argparse.Namespace(
            logs=os.path.join(out, "logs"),
            workdir=os.path.join(out, variant),
            config=None,
            spec=None,
        )
        settings = local.settings_from_args(ns, experiment=experiment)
        print(
            f"\n== {variant}: replaying {names[0]}..{names[hours - 1]} ({experiment})",
            flush=True,
        )
        t0 = time.perf_counter()
        results[variant] = local.replay_hours(
            names[:hours],
            settings,
            progress=lambda r: print("  " + local.format_record(r), flush=True),
        )
        print(f"   {variant} done in {time.perf_counter() - t0:.0f} s", flush=True)
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


def _plot(results: dict[str, list[dict[str, Any]]]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    hours = [r["hour"][-5:] for r in next(iter(results.values()))]
    x = list(range(len(hours)))
    width = 0.8 / len(results)
    for j, (variant, recs) in enumerate(results.items()):
        rce = [r["metrics"].get("rce", float("nan")) for r in recs]
        ax1.plot(x, rce, marker="o", label=variant)
        offsets = [i + (j - (len(results) - 1) / 2) * width for i in x]
        mb = [(r.get("size_bytes") or 0) / 1e6 for r in recs]
        ax2.bar(offsets, mb, width=width, label=variant)
    ax1.set(title="RCE on the next hour (higher is better)", ylabel="RCE")
    ax2.set(title="exported serving SavedModel on disk", ylabel="MB")
    for ax in (ax1, ax2):
        ax.set_xticks(x, [f"{h} UTC" for h in hours])
        ax.set_xlabel("trained hour (warm-started from the hour before)")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode()


def write_report(out: str, results: dict[str, list[dict[str, Any]]]) -> str:
    """Writes OUT/report.html (table + plots + links to each hour's evaluation report)."""
    links = []
    for variant, recs in results.items():
        for r in recs:
            links.append(
                f"<li>{variant} {r['hour']}: blessed={r['blessed']}, "
                f"version={r.get('registered_version')}</li>"
            )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>compactrec demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}pre{{background:#f6f6f6;padding:1em}}</style>
</head><body><h1>compactrec: hourly continuous training on the synthetic stream</h1>
<p>Each variant trains wide-and-deep on hour h (warm-started from hour h-1's registered model)
and is evaluated on hour h+1. Bytes are the exported serving SavedModel on disk.</p>
<pre>{html.escape(table(results))}</pre>
<img alt="RCE and size per hour" src="data:image/png;base64,{_plot(results)}">
<h2>Registry decisions</h2><ul>{"".join(links)}</ul></body></html>"""
    path = os.path.join(out, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def main(args: argparse.Namespace) -> int:
    """Entry point of ``python -m pipeline demo`` (``make run``)."""
    if args.hours < 1 or args.events_per_hour < 1:
        print("error: --hours and --events-per-hour must be >= 1")
        return 2
    t0 = time.perf_counter()
    results = run(args.out, args.hours, args.events_per_hour, args.seed)
    print("\n" + table(results))
    path = write_report(args.out, results)
    print(f"\nreport: {path}\ntotal {time.perf_counter() - t0:.0f} s")
    return 0
