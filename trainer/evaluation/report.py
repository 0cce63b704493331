"""HTML and Markdown evaluation reports with PNG plots (matplotlib, Agg canvas).

:func:`write_report` turns the ``metrics.json`` content of
:func:`trainer.evaluation.evaluate.evaluate` into ``report.html`` (tables + ``<img>`` links),
``report.md`` (the same for the KFP Markdown viewer) and two plots next to them:

* ``rce_by_slice.png``: RCE per feature and frequency class, candidate vs production;
* ``calibration.png``: mean prediction vs observed label rate per prediction bin.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (no ``pyplot``,
no global backend switch), which renders with Agg.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

RCE_PLOT = "rce_by_slice.png"
CALIBRATION_PLOT = "calibration.png"
HTML_REPORT = "report.html"
MARKDOWN_REPORT = "report.md"
_METRICS = ("count", "label_mean", "mean_prediction", "log_loss", "rce", "auc")


def write_report(details: Mapping[str, Any], out: str) -> str:
    """Writes the plots, ``report.html`` and ``report.md`` into ``out``.

    Args:
        details: ``metrics.json`` content (``source``, ``events``, ``candidate``,
            ``production``, ``blessed``, ``reasons``, ``thresholds``).
        out: Output directory (created if needed).

    Returns:
        The path of ``report.html``.

    Example:
        >>> write_report(result["details"], "/tmp/eval")  # doctest: +SKIP
        '/tmp/eval/report.html'
    """
    os.makedirs(out, exist_ok=True)
    plots = []
    if details.get("candidate"):
        plot_rce_by_slice(details, os.path.join(out, RCE_PLOT))
        plot_calibration(details, os.path.join(out, CALIBRATION_PLOT))
        plots = [RCE_PLOT, CALIBRATION_PLOT]
    sections = _sections(details)
    path = os.path.join(out, HTML_REPORT)
    with open(path, "w", encoding="utf-8") as f:
        f.write(_html(details, sections, plots))
    with open(os.path.join(out, MARKDOWN_REPORT), "w", encoding="utf-8") as f:
        f.write(_markdown(details, sections, plots))
    logger.info("report written to %s", path)
    return path


# ----------------------------------------------------------------------------- plots


def plot_rce_by_slice(details: Mapping[str, Any], path: str) -> None:
    """Grouped bars: RCE of each ``feature/class`` slice, candidate vs production."""
    from matplotlib.figure import Figure

    labels, series = _slice_series(details, "rce")
    fig = Figure(figsize=(max(6.0, 0.45 * len(labels) + 2), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [0.0 if v is None else v for v in values], width, label=name)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("RCE (%)")
    ax.set_title("RCE by id frequency slice (empty slices shown as 0)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_calibration(details: Mapping[str, Any], path: str) -> None:
    """Reliability curves of the candidate (and production) with the diagonal."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot()
    top = 0.0
    for name in ("candidate", "production"):
        scored = details.get(name)
        if scored:
            cal = scored["calibration"]
            ax.plot(cal["mean_prediction"], cal["label_rate"], marker="o", label=name)
            top = max([top, *cal["mean_prediction"], *cal["label_rate"]])
    top = min(1.0, top * 1.1 + 1e-3)
    ax.plot([0, top], [0, top], linestyle="--", color="gray", label="perfect")
    ax.set_xlabel("mean prediction (bin)")
    ax.set_ylabel("observed label rate")
    ax.set_title("Calibration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _slice_series(
    details: Mapping[str, Any], metric: str
) -> tuple[list[str], dict[str, list[float | None]]]:
    cand = details["candidate"]["slices"]
    labels = [f"{f}/{c}" for f, classes in cand.items() for c in classes]
    series: dict[str, list[float | None]] = {}
    for name in ("candidate", "production"):
        scored = details.get(name)
        if scored:
            series[name] = [
                scored["slices"].get(f, {}).get(c, {}).get(metric)
                for f, classes in cand.items()
                for c in classes
            ]
    return labels, series


# ---------------------------------------------------------------------------- tables


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _sections(
    details: Mapping[str, Any],
) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` tables shared by the HTML and Markdown writers."""
    out = [
        (
            "Thresholds",
            ["threshold", "value"],
            [[k, _fmt(v)] for k, v in sorted(details.get("thresholds", {}).items())],
        )
    ]
    cand, prod = details.get("candidate"), details.get("production")
    if not cand:
        return out
    rows = []
    for m in _METRICS:
        c = cand["overall"][m]
        p = prod["overall"][m] if prod else None
        delta = (
            c - p if isinstance(c, int | float) and isinstance(p, int | float) else None
        )
        rows.append([m, _fmt(c), _fmt(p), _fmt(delta)])
    out.append(("Overall", ["metric", "candidate", "production", "delta"], rows))
    rows = []
    for feature, classes in cand["slices"].items():
        for cls, m in classes.items():
            pm = prod["slices"].get(feature, {}).get(cls, {}) if prod else {}
            rows.append(
                [
                    feature,
                    cls,
                    str(m["count"]),
                    _fmt(m["label_mean"]),
                    _fmt(m["rce"]),
                    _fmt(pm.get("rce")),
                    _fmt(m["auc"]),
                    _fmt(pm.get("auc")),
                ]
            )
    header = [
        "feature",
        "class",
        "events",
        "label mean",
        "RCE",
        "prod RCE",
        "AUC",
        "prod AUC",
    ]
    out.append(("Slices by id frequency class", header, rows))
    return out


def _status(details: Mapping[str, Any]) -> str:
    return "BLESSED" if details.get("blessed") else "NOT BLESSED"


def _html(
    details: Mapping[str, Any], sections: Sequence[Any], plots: Sequence[str]
) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>Evaluation report</title><style>body{font-family:sans-serif}",
        "td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse;margin-bottom:1em}</style></head><body>",
        f"<h1>Evaluation: {e(_status(details))}</h1>",
        f"<p>Events: {details.get('events')} from {e(str(details.get('source')))} "
        f"(malformed: {details.get('malformed_events', 0)})</p>",
        "<h2>Reasons</h2><ul>",
        *[f"<li>{e(r)}</li>" for r in details.get("reasons", [])],
        "</ul>",
    ]
    for title, header, rows in sections:
        parts.append(f"<h2>{e(title)}</h2><table><tr>")
        parts += [f"<th>{e(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    for plot in plots:
        parts.append(f"<h2>{e(plot)}</h2><img src='{e(plot)}' alt='{e(plot)}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _markdown(
    details: Mapping[str, Any], sections: Sequence[Any], plots: Sequence[str]
) -> str:
    lines = [
        f"# Evaluation: {_status(details)}",
        "",
        f"Events: {details.get('events')} from `{details.get('source')}`",
        "",
        "## Reasons",
        "",
    ]
    lines += [f"- {r}" for r in details.get("reasons", [])]
    for title, header, rows in sections:
        lines += [
            "",
            f"## {title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)
