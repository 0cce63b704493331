"""The ranking reproduction's report: tables beside the papers' numbers, and the plot.

Built from :class:`reproduce.ranking.Run` records (stored or just trained); stale runs
are listed, never tabulated. Paper columns hold a paper's numbers for the report's
protocol only (:func:`paper_numbers`): MGQE's tables (Kang et al. 2020) are full
ranking; SASRec's own paper (Kang & McAuley 2018, Table III) is its sampled protocol.

Example:
    >>> write_results(runs, "runs/reproduce/R.md", "python -m reproduce.ranking ...")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

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
#: Papers reporting a sampled protocol on ML-1M: (model, protocol) -> method -> (HR@10,
#: NDCG@10, size %). SASRec (Kang & McAuley 2018), Table III, ML-1M, 100 negatives, at
#: its own setting (maxlen 200, d 50). Full-ranking numbers are in :data:`PAPER`.
PAPER_SAMPLED: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    ("sasrec", "sampled_sasrec"): {"full": (82.45, 59.05, 100.0)},
}
PAPER_SOURCE = {
    "full": "MGQE paper (Kang et al. 2020), ML-1M tables, mean of 10 runs",
    "sampled_sasrec": "SASRec paper (Kang & McAuley 2018), Table III, ML-1M "
    "(maxlen 200, d 50)",
}
INTRO = (
    "Kang et al., *Learning Multi-granular Quantized Embeddings for Large-Vocab "
    "Categorical Features in Recommender Systems* (2020), GMF/NeuMF/SASRec tables. "
    "HR@10 and NDCG@10 in %, **test** split at the epoch with the best **validation** "
    "NDCG@10 of the selection protocol, ties counted against the target. "
    "Mean ± sample std over seeds. Model size % = serving bits of the whole model "
    "(tables + 32-bit dense weights) over the full-embedding model (the paper's "
    "Table 1). The paper's MGQE sizes need a more compact configuration than its "
    "stated default, hence the extra `mgqe_compact` row."
)


def protocol_note(protocol: str) -> str:
    """The report's statement of ``protocol`` and of its paper columns."""
    from trainer.evaluation.ranking import PROTOCOL_TEXT

    text = f"**Protocol** (`{protocol}`): {PROTOCOL_TEXT[protocol]}."
    if protocol == "full":
        return (
            f"{text} Paper columns: {PAPER_SOURCE['full']} (the paper does not state "
            "its protocol; only full ranking fits its numbers), beside the same MGQE "
            "numbers for `mgqe_compact`."
        )
    if protocol in PAPER_SOURCE:
        return f"{text} Paper columns: {PAPER_SOURCE[protocol]}, where it reports one."
    return f"{text} No paper reports this protocol here: paper columns are empty."


def paper_numbers(
    model: str, method: str, protocol: str
) -> tuple[float, float, float] | None:
    """The paper's (HR@10, NDCG@10, size %) for THAT protocol, or None."""
    if protocol == "full":
        return PAPER[model].get(method.removesuffix("_compact"))
    return PAPER_SAMPLED.get((model, protocol), {}).get(method)


def epoch_line(tag: str, epochs: int, log: Any) -> str:
    """One progress line of an epoch (loss, and metrics when evaluated)."""
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


def results_table(runs: Sequence[Any], model: str, protocol: str = "full") -> list[str]:
    """Markdown rows of one model's table (one row per method, seeds aggregated).

    Paper columns hold the paper's numbers for ``protocol`` only (:func:`paper_numbers`).
    """
    runs = [r for r in runs if not r.stale]
    lines = [
        "| method | HR@10 | NDCG@10 | model size % | paper HR@10 | paper NDCG@10 "
        "| paper size % | best epochs | seeds | train s/run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    methods = list(dict.fromkeys(r.method for r in runs if r.model == model))
    for method in methods:
        rs = [r.result for r in runs if r.model == model and r.method == method]
        paper = paper_numbers(model, method, protocol)
        p = [f"{x:.2f}" for x in paper] if paper else ["-", "-", "-"]
        lines.append(
            f"| {method} | {_mean_std([r.test.hr for r in rs])} "
            f"| {_mean_std([r.test.ndcg for r in rs])} | {rs[0].size_percent:.2f} "
            f"| {p[0]} | {p[1]} | {p[2]} | {', '.join(str(r.best_epoch) for r in rs)} "
            f"| {len(rs)} | {np.mean([r.train_seconds for r in rs]):.0f} |"
        )
    return lines


def other_protocols_table(runs: Sequence[Any], model: str) -> list[str]:
    """The other protocols of the same models at the chosen epoch (test split)."""
    runs = [r for r in runs if not r.stale and r.model == model]
    keys = sorted({k for r in runs for k in r.result.extra if k.endswith("/test")})
    if not keys:
        return []
    names = [k.removesuffix("/test") for k in keys]
    head = " | ".join(
        f"{n} HR@10 | {n} NDCG@10 | paper {n} HR@10 / NDCG@10" for n in names
    )
    lines = [
        f"| method | {head} |",
        "| --- |" + " --- | --- | --- |" * len(names),
    ]
    for method in dict.fromkeys(r.method for r in runs):
        rs = [r.result for r in runs if r.method == method]
        cells = []
        for key, name in zip(keys, names, strict=True):
            got = [r.extra[key] for r in rs if key in r.extra]
            paper = paper_numbers(model, method, name)
            cells += [
                _mean_std([m.hr for m in got]) if got else "-",
                _mean_std([m.ndcg for m in got]) if got else "-",
                f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else "-",
            ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    sources = [n for n in names if (model, n) in PAPER_SAMPLED and n in PAPER_SOURCE]
    sources += ["full"] if "full" in names else []
    if sources:
        lines += ["", *(f"Paper `{n}` column: {PAPER_SOURCE[n]}." for n in sources)]
    return lines


def write_results(
    runs: Sequence[Any],
    out: str,
    command: str,
    notes: Sequence[str] = (),
    protocol: str = "full",
) -> str:
    """Writes RESULTS.md (tables, settings, configs) and its plot (same name, .png).

    Args:
        runs: Finished runs (stale ones are listed, not tabulated).
        out: Path of the Markdown file.
        command: The exact command line, recorded in the file.
        notes: Extra lines for the settings section (data, quick mode, ...).
        protocol: The protocol that chose the epoch and fills the main tables.

    Returns:
        The path of the PNG plot.
    """
    png = os.path.splitext(out)[0] + ".png"
    lines = [
        "# Ranking reproduction: MGQE backbones on MovieLens-1M",
        "",
        INTRO,
        "",
        protocol_note(protocol),
        "",
        f"Command: `{command}`",
        "",
        *[f"- {n}" for n in notes],
        "",
    ]
    from trainer.evaluation.ranking import PROTOCOL_TEXT

    fresh = [r for r in runs if not r.stale]
    for model in dict.fromkeys(r.model for r in fresh):
        lines += [f"## {model.upper() if model != 'sasrec' else 'SASRec'}", ""]
        lines += results_table(fresh, model, protocol) + [""]
        other = other_protocols_table(fresh, model)
        if other:
            lines += [
                f"Other protocols, same models, test split at the epoch chosen by "
                f"`{protocol}`:",
                "",
                *other,
                "",
            ]
    others = sorted({k.split("/")[0] for r in fresh for k in r.result.extra})
    if others:
        lines += ["Other protocols, exactly:", ""]
        lines += [f"- `{p}`: {PROTOCOL_TEXT[p]}." for p in others] + [""]
    stale = [r for r in runs if r.stale]
    if stale:
        lines += [
            "## STALE runs (other code; not in the tables)",
            "",
            "Rerun with `--rerun-stale` to retrain them.",
            "",
        ]
        lines += [
            f"- {r.model}/{r.method} seed {r.result.seed}: `{r.path}` "
            f"(changed: {', '.join(r.changed) or 'code list'})"
            for r in stale
        ] + [""]
    lines += ["## Configs", ""]
    for run in {r.spec: r for r in runs}.values():
        lines.append(
            f"- `{run.spec}`: {_embedding_summary(run.result.config.model.embedding)}"
        )
    lines += ["", f"![HR@10 vs model size](./{os.path.basename(png)})", ""]
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    plot_results(fresh, png)
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


def plot_results(runs: Sequence[Any], png: str) -> None:
    """HR@10 (mean ± std over seeds) against model size %, ours filled, paper hollow."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    models = list(dict.fromkeys(r.model for r in runs))
    if not models:
        return
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
            paper = paper_numbers(model, method, rs[0].protocol)
            if paper and not method.endswith("_compact"):
                ax.scatter(paper[2], paper[0], facecolors="none", edgecolors=[color])
        ax.set(title=model, xlabel="model size %", ylabel="test HR@10 %")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("ours (filled, mean ± std over seeds) vs paper (hollow)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
