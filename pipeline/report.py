"""``report.html`` of a local run: hour records -> one self-contained page.

Reads only what the hours left behind (pure Python + matplotlib's Agg backend, no
TensorFlow): each hour's record (``WORKDIR/hours/<hour>.json``, or ``.failed.json``),
its stats manifest (hashing diagnostics, dictionary churn), its evaluation's
``blessing.json`` (the registry decision's reasons) and the per-stage seconds the runner
measured. Images are inlined as ``data:`` URIs; links point at files under the run
directory (relative, so the directory can be moved); nothing is fetched. Used by
``python -m pipeline demo`` (:func:`pipeline.demo.write_report`).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.progress import STAGES
from pipeline.report_plots import (
    Results,
    by_hour,
    hours_of,
    metric,
    ok,
    quality_plot,
    rce_per_mb,
    short_hour,
    size_plot,
    stages_plot,
)

SLICE_CLASSES = ("head", "tail", "unseen", "missing")

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:.5em 0;max-width:100%}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;white-space:normal;vertical-align:bottom}td.l,th.l{text-align:left}td.reason{white-space:normal;
text-align:left;max-width:520px}
tr.failed td{background:#fde8e8}.wrap{overflow-x:auto}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
code{background:#f3f3f3;padding:1px 4px}.note{color:#555;font-size:13px}
"""


# ------------------------------------------------------------------------ reading


def _read_json(path: str | None) -> dict[str, Any] | None:
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _beside(rec: Mapping[str, Any], key: str, name: str) -> dict[str, Any] | None:
    """``name`` in the directory ``rec[key]`` (the stats artifact, the evaluation)."""
    return _read_json(os.path.join(rec[key], name)) if rec.get(key) else None


# ------------------------------------------------------------------------ formatting


def _f(value: Any, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _table(
    head: Sequence[str],
    rows: Sequence[Sequence[Any]],
    left: int = 1,
    row_class: Callable[[int], str] | None = None,
    table_id: str = "",
    head_rows: Sequence[str] = (),
) -> str:
    """An HTML table; the first ``left`` columns are left-aligned labels."""

    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="l"' if i < left else ""
        if isinstance(v, tuple):  # (html, css class): pre-escaped cell
            return f'<{tag} class="{v[1]}">{v[0]}</{tag}>'
        return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"

    out = [f'<div class="wrap"><table id="{table_id}">' if table_id else "<table>"]
    out += list(head_rows)
    out.append("<tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>")
    for n, r in enumerate(rows):
        cls = f' class="{row_class(n)}"' if row_class and row_class(n) else ""
        out.append(
            f"<tr{cls}>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>"
        )
    out.append("</table></div>" if table_id else "</table>")
    return "\n".join(out)


def _link(out: str, path: str | None, text: str) -> str:
    if not path:
        return "-"
    rel = os.path.relpath(path, out) if os.path.isabs(path) else path
    return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'


# --------------------------------------------------------------------------- tables


def results_rows(results: Results) -> list[list[Any]]:
    """Hour, variant, status, RCE, AUC, log loss, bytes, serving bits, bits vs full,
    RCE per serving MB, blessed, version, seconds: one row per hour and variant."""
    by = by_hour(results)
    base = by.get("full", {})
    rows = []
    for hour in hours_of(results):
        for variant in results:
            r = by[variant].get(hour)
            if r is None:
                continue
            if not ok(r):
                rows.append(
                    [hour, variant, f"failed in {r.get('failed_task') or '?'}"]
                    + ["-"] * 9
                    + [_f(r.get("seconds"), "{:.0f}")]
                )
                continue
            full_bits = (base.get(hour) or {}).get("serving_bits")
            bits = r.get("serving_bits")
            ratio = float(bits) / float(full_bits) if bits and full_bits else None
            rows.append(
                [
                    hour,
                    variant,
                    "ok",
                    _f(metric(r, "rce")),
                    _f(metric(r, "auc"), "{:.4f}"),
                    _f(metric(r, "log_loss"), "{:.4f}"),
                    _f(r.get("size_bytes"), "{:,.0f}"),
                    _f(bits, "{:,.0f}"),
                    _f(ratio),
                    _f(rce_per_mb(r), "{:.2f}"),
                    str(bool(r.get("blessed"))),
                    str(r.get("registered_version") or "-"),
                    _f(r.get("seconds"), "{:.0f}"),
                ]
            )
    return rows


def _results_table(results: Results) -> str:
    rows = results_rows(results)
    head = (
        "hour", "variant", "status", "RCE", "AUC", "log loss", "bytes on disk",
        "serving bits", "bits / full", "RCE per MB", "blessed", "version", "s",
    )  # fmt: skip
    return _table(
        head,
        rows,
        left=3,
        row_class=lambda n: "failed" if rows[n][2] != "ok" else "",
        table_id="results",
    )


def _slice_features(results: Results) -> list[str]:
    names: dict[str, None] = {}
    for recs in results.values():
        for r in recs:
            for key in (r.get("metrics") or {}) if ok(r) else ():
                if key.count("/") == 2 and key.endswith("/rce"):
                    names.setdefault(key.split("/")[0], None)
    return sorted(names)


def _slices_table(results: Results) -> str:
    hours = hours_of(results)
    by = by_hour(results)
    group = "<tr><th></th><th></th>" + "".join(
        f'<th colspan="{len(hours)}">{html.escape(v)}</th>' for v in results
    )
    head = ["feature", "ids"] + [short_hour(h) for _ in results for h in hours]
    rows = []
    for feature in _slice_features(results):
        for cls in SLICE_CLASSES:
            row = [feature, cls]
            for variant in results:
                for hour in hours:
                    r = by[variant].get(hour)
                    row.append(_f(metric(r, f"{feature}/{cls}/rce")) if r else "-")
            rows.append(row)
    return _table(head, rows, left=2, table_id="slices", head_rows=[group + "</tr>"])


def _stages_table(results: Results) -> str:
    rows = []
    for hour in hours_of(results):
        for variant, recs in results.items():
            for r in recs:
                if r["hour"] != hour:
                    continue
                st = r.get("stage_seconds") or {}
                rows.append(
                    [hour, variant]
                    + [_f(st.get(s), "{:.1f}") for s in STAGES]
                    + [_f(sum(st.values()) if st else None, "{:.1f}")]
                )
    return _table(
        ["hour", "variant", *STAGES, "all tasks"], rows, left=2, table_id="stages"
    )


def _rate(diag: Mapping[str, Any] | None, key: str) -> str:
    e = (diag or {}).get(key)
    if not e:
        return "-"
    return f"{e['measured_rate']:.3g} / {e['expected_rate']:.3g}"


def hashing_rows(results: Results) -> list[list[Any]]:
    """Per variant, hour and feature: the stats job's hashing diagnostics."""
    rows = []
    for variant, recs in results.items():
        for r in recs:
            manifest = _beside(r, "stats", "manifest.json") if ok(r) else None
            for name, f in sorted(((manifest or {}).get("features") or {}).items()):
                diag = f.get("diagnostics") or {}
                cont = f.get("continuous") or {}
                single = diag.get("single") or {}
                rows.append(
                    [
                        variant,
                        r["hour"],
                        name,
                        f.get("treatment", "-"),
                        _f(f.get("distinct"), "{:,}"),
                        f"{f.get('vocab_size', 0):,} / {f.get('k', 0):,}",
                        _f(f.get("oov_share"), "{:.3f}"),
                        _f(diag.get("tail_values"), "{:,}"),
                        _f(single.get("buckets"), "{:,}"),
                        _rate(diag, "single"),
                        _rate(diag, "double"),
                        _f(cont.get("churn")),
                        _f(cont.get("promoted"), "{:,}"),
                        _f(cont.get("evicted"), "{:,}"),
                    ]
                )
    return rows


def _hashing_table(results: Results) -> str:
    head = (
        "variant", "hour", "feature", "treatment", "distinct ids", "dictionary / k",
        "OOV share", "tail ids", "buckets", "collision rate, 1 hash: measured / formula",
        "collision rate, pair: measured / formula", "churn", "promoted", "evicted",
    )  # fmt: skip
    return _table(head, hashing_rows(results), left=4, table_id="hashing")


def _registry_table(out: str, results: Results) -> str:
    rows = []
    for variant, recs in results.items():
        for r in recs:
            if not ok(r):
                reason = f"failed in {r.get('failed_task')}: {r.get('reason')}"
                rows.append(
                    [variant, r["hour"], "-", "-", (html.escape(reason), "reason")]
                )
                continue
            b = _beside(r, "evaluation", "blessing.json") or {}
            reasons = "; ".join(b.get("reasons") or []) or "-"
            rows.append(
                [
                    variant,
                    r["hour"],
                    str(bool(r.get("blessed"))),
                    str(r.get("registered_version") or "not registered"),
                    (html.escape(reasons), "reason"),
                ]
            )
    return _table(
        ["variant", "hour", "blessed", "version", "reasons"],
        rows,
        left=2,
        table_id="registry",
    )


def _links(out: str, results: Results) -> str:
    items = []
    for variant, recs in results.items():
        cells = []
        for r in recs:
            if ok(r) and r.get("evaluation"):
                report = os.path.join(r["evaluation"], "report.html")
                cells.append(_link(out, report, r["hour"]))
            elif not ok(r):
                cells.append(_link(out, r.get("log"), f"{r['hour']} (failed: log)"))
        items.append(f"<li>{html.escape(variant)}: {', '.join(cells) or '-'}</li>")
    logdir = os.path.abspath(out)
    return (
        f"<h3>Each hour's evaluation report</h3><ul>{''.join(items)}</ul>"
        "<h3>TensorBoard</h3><p>Training curves of every hour and variant "
        "(each under <code>VARIANT/kfp-root/RUN/train-model/model/tensorboard</code>):"
        f"</p><pre><code>tensorboard --logdir {html.escape(logdir)}</code></pre>"
        "<h3>Logs</h3><p>Every task's full output: "
        "<code>VARIANT/logs/HOUR/TASK.log</code> (and <code>pipeline.log</code>).</p>"
    )


def _failures(out: str, results: Results) -> str:
    rows = [
        [
            v,
            r["hour"],
            r.get("failed_task") or "-",
            (html.escape(r.get("reason") or "-"), "reason"),
            (_link(out, r.get("log"), "log"), "l"),
        ]
        for v, recs in results.items()
        for r in recs
        if not ok(r)
    ]
    if not rows:
        return '<p id="failures">No hour failed.</p>'
    return _table(
        ["variant", "hour", "task", "reason", "log"], rows, left=3, table_id="failures"
    )


def _img(alt: str, b64: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


# ----------------------------------------------------------------------------- page


def render(out: str, results: Results, title: str = "", intro: str = "") -> str:
    """The page as a string (see :func:`write_report`)."""
    n_failed = sum(not ok(r) for recs in results.values() for r in recs)
    n_all = sum(len(recs) for recs in results.values())
    status = (
        f"{n_all - n_failed} of {n_all} hour runs finished"
        + (f"; <b>{n_failed} failed</b> (see below)" if n_failed else "")
        + "."
    )
    ran = {v: [r for r in recs] for v, recs in results.items() if recs}
    title = title or "compactrec: hourly continuous training"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{intro}</p><p id="status">{status}</p>
<h2>Results per hour and variant</h2>
<p class="note">RCE and AUC are measured on the hour after the trained hour. Bytes on
disk are the exported serving SavedModel; serving bits are the embedding tables by the
size accounting (trainer.serving.sizes); "RCE per MB" divides RCE by the serving MB.</p>
{_results_table(ran)}
{_img("RCE and AUC per hour and variant", quality_plot(ran))}
{_img("serving size and quality per MB per hour and variant", size_plot(ran))}
<h2>RCE per id-frequency slice</h2>
<p class="note">Per categorical feature, the evaluation events whose id is in the
dictionary's head tier, a tail tier, not in the dictionary (unseen), or empty
(missing); "-" where a slice has no events.</p>
{_slices_table(ran)}
<h2>Hashing diagnostics (stats job)</h2>
<p class="note">Measured collision rate of the hour's out-of-dictionary ids against the
formula r(n, B) = n/B - 1 + (1 - 1/B)^n (hybrid hashing paper, Zhang et al., RecSys 2020, Table 1);
OOV share = traffic outside the dictionary; churn, promoted and evicted rows against the
previous hour's dictionary (continuous mode).</p>
{_hashing_table(ran)}
<h2>Seconds per stage</h2>
{_stages_table(ran)}
{_img("seconds per pipeline stage, stacked", stages_plot(ran))}
<h2>Registry decisions</h2>
{_registry_table(out, ran)}
<h2>Failed hours</h2>
{_failures(out, ran)}
<h2>Links</h2>
{_links(out, ran)}
</body></html>
"""


def write_report(out: str, results: Results, title: str = "", intro: str = "") -> str:
    """Writes ``OUT/report.html`` for the hour records of each variant; returns its path.

    Failed hours (``status: "failed"``) appear as failed with their reason; every
    other section shows the hours that finished.
    """
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(out, results, title=title, intro=intro))
    return path
