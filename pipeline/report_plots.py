"""Plots of the run report (matplotlib ``Figure``, Agg: no pyplot, no display) and the
hour-record accessors they share with the report's tables.

Every plot returns a base64 PNG for a ``data:`` URI. Legends sit outside the axes, so
they never cover a point or a bar; failed hours are gaps (NaN), not zeros.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.progress import STAGES

Results = Mapping[str, Sequence[Mapping[str, Any]]]
_NAN = float("nan")


# ----------------------------------------------------------------------- accessors


def ok(rec: Mapping[str, Any]) -> bool:
    return rec.get("status") != "failed"


def metric(rec: Mapping[str, Any], name: str) -> float:
    value = (rec.get("metrics") or {}).get(name) if ok(rec) else None
    return _NAN if value is None else float(value)


def serving_mb(rec: Mapping[str, Any]) -> float:
    """Serving size in MB (10^6 bytes) from the size accounting's serving bits."""
    bits = rec.get("serving_bits") if ok(rec) else None
    return float(bits) / 8e6 if bits else _NAN


def rce_per_mb(rec: Mapping[str, Any]) -> float:
    """Quality per MB: next-hour RCE (percent) per MB of serving size."""
    mb = serving_mb(rec)
    return metric(rec, "rce") / mb if mb and not math.isnan(mb) else _NAN


def hours_of(results: Results) -> list[str]:
    seen: dict[str, None] = {}
    for recs in results.values():
        for r in recs:
            seen.setdefault(r["hour"], None)
    return list(seen)


def short_hour(hour: str) -> str:
    """``2026-01-01T05`` -> ``01-01 05h`` (the date stays: a replay may cross midnight)."""
    return hour[5:].replace("T", " ") + "h"


def by_hour(results: Results) -> dict[str, dict[str, Mapping[str, Any]]]:
    return {v: {r["hour"]: r for r in recs} for v, recs in results.items()}


# ---------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _axes(
    ncols: int, width: float = 11.0, height: float = 3.6
) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure  # Agg, no pyplot state

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _hour_axis(ax: Any, hours: Sequence[str]) -> None:
    ax.set_xticks(range(len(hours)), [short_hour(h) for h in hours])
    ax.set_xlabel("trained hour, UTC (evaluated on the next hour)")
    ax.grid(alpha=0.3)


def _legend(ax: Any, **kw: Any) -> None:
    # Outside the axes, so it never covers a point or a bar.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, **kw)


def quality_plot(results: Results) -> str:
    hours = hours_of(results)
    by = by_hour(results)
    fig, (a1, a2) = _axes(2)
    for variant in results:
        recs = [by[variant].get(h, {"status": "failed"}) for h in hours]
        a1.plot(
            range(len(hours)), [metric(r, "rce") for r in recs], "o-", label=variant
        )
        a2.plot(
            range(len(hours)), [metric(r, "auc") for r in recs], "o-", label=variant
        )
    a1.set(title="RCE on the next hour (higher is better)", ylabel="RCE (%)")
    a2.set(title="AUC on the next hour (higher is better)", ylabel="AUC")
    for ax in (a1, a2):
        _hour_axis(ax, hours)
    _legend(a2, title="variant")
    fig.tight_layout()
    return _png(fig)


def _grouped_bars(ax: Any, results: Results, value: Callable[[Any], float]) -> None:
    hours = hours_of(results)
    by = by_hour(results)
    width = 0.8 / max(len(results), 1)
    for j, variant in enumerate(results):
        xs = [i + (j - (len(results) - 1) / 2) * width for i in range(len(hours))]
        ys = [value(by[variant].get(h, {"status": "failed"})) for h in hours]
        ax.bar(xs, ys, width=width, label=variant)
    _hour_axis(ax, hours)


def size_plot(results: Results) -> str:
    fig, (a1, a2) = _axes(2)
    _grouped_bars(a1, results, serving_mb)
    a1.set(title="serving size (size accounting)", ylabel="MB (10^6 bytes)")
    _grouped_bars(a2, results, rce_per_mb)
    a2.set(title="quality per MB: next-hour RCE / serving MB", ylabel="RCE % per MB")
    _legend(a2, title="variant")
    fig.tight_layout()
    return _png(fig)


def stages_plot(results: Results) -> str:
    """Per-stage seconds, stacked, one bar per hour and variant."""
    fig, (ax,) = _axes(1, width=11.0, height=4.0)
    labels, bottoms = [], []
    bars = [
        (f"{short_hour(r['hour'])}\n{v}", r.get("stage_seconds") or {})
        for h in hours_of(results)
        for v, recs in results.items()
        for r in recs
        if r["hour"] == h
    ]
    xs = list(range(len(bars)))
    bottoms = [0.0] * len(bars)
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for stage, color in zip(STAGES, colors, strict=True):
        ys = [st.get(stage, 0.0) for _, st in bars]
        ax.bar(xs, ys, bottom=bottoms, label=stage, color=color, width=0.7)
        bottoms = [b + y for b, y in zip(bottoms, ys, strict=True)]
    labels = [label for label, _ in bars]
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set(
        title="seconds per pipeline stage, per hour and variant",
        ylabel="seconds (wall clock)",
        xlabel="trained hour and variant",
    )
    ax.grid(alpha=0.3, axis="y")
    _legend(ax, title="stage")
    fig.tight_layout()
    return _png(fig)
