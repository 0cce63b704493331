"""reproduce.hashing / hashing_data / hashing_results: the hybrid hashing
reproduction's variants, seen-id slice, tables and verdict, and a tiny real run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pytest

from reproduce import hashing as reproduce_hashing
from reproduce import hashing_data, hashing_results

BASE = {
    "name": "synthetic_full",
    "features": [
        {"name": "user_id", "kind": "categorical", "treatment": "full"},
        {"name": "item_id", "kind": "categorical", "treatment": "full"},
        {"name": "publisher", "kind": "categorical", "treatment": "full"},
        {"name": "device", "kind": "categorical", "treatment": "full"},
    ],
}
VOCAB = {"user_id": 1000, "item_id": 400, "publisher": 50}


def test_variants_sweep_frequency_k_then_hybrid_sizes():
    budget = reproduce_hashing.QUICK
    names = [v.name for v in reproduce_hashing.variants(budget)]
    assert names == [
        "baseline",
        "freq k=0.02",
        "freq k=0.05",
        "freq k=0.25",
        "hybrid 2^-2",
        "hybrid 2^-3",
        "hybrid 2^-4",
        "hybrid 2^-5",
    ]


def test_variant_spec_sets_k_and_double_hash_rows_of_the_large_vocabularies_only():
    hybrid = reproduce_hashing.Variant("hybrid 2^-3", "hybrid", 0.02, 3)
    spec = reproduce_hashing.variant_spec(BASE, "synthetic", hybrid, VOCAB)
    by_name = {f["name"]: f for f in spec["features"]}
    assert spec["name"] == "synthetic_hybrid_2-3"
    assert by_name["user_id"]["top_k"] == 20  # round(0.02 * 1000)
    assert by_name["user_id"]["hash_buckets"] == round(1001 / 8)
    assert by_name["publisher"]["top_k"] == 1  # at least one dictionary row
    assert by_name["item_id"]["hash_combiner"] == "concat"
    assert by_name["device"] == BASE["features"][3]  # not a compressed feature
    assert BASE["features"][0]["treatment"] == "full"  # the base is not mutated
    baseline = reproduce_hashing.Variant("baseline", "full", None)
    same = reproduce_hashing.variant_spec(BASE, "synthetic", baseline, VOCAB)
    assert same["features"] == BASE["features"]


def test_seen_mask_keeps_events_whose_every_compressed_value_was_trained_on():
    train = pa.table({"u": ["a", "b", "c"], "i": ["x", "y", "y"]})
    evals = pa.table({"u": ["a", "d", "b", "c"], "i": ["y", "x", "z", "x"]})
    mask = hashing_data.seen_mask(evals, train, ["u", "i"])
    assert mask.tolist() == [True, False, False, True]
    assert hashing_data.seen_mask(evals, train, ["u"]).tolist() == [
        True,
        False,
        True,
        True,
    ]


def _runs(deltas, seeds=3, seen=True):
    rng = np.random.default_rng(0)
    out = []
    for name, (delta, bits) in deltas.items():
        for seed in range(seeds):
            run = {"variant": name, "seed": seed, "bits": bits}
            run["rce"] = (
                10.0 + delta + (0.1 * rng.standard_normal() if seeds > 1 else 0)
            )
            if seen:
                run["rce_seen"] = run["rce"] + 1.0
            out.append(run)
    return out


def test_summary_sizes_and_verdicts():
    runs = _runs({"baseline": (0.0, 1000), "hybrid 2^-5": (-0.01, 110)})
    stats = hashing_results.summarize(runs)
    assert stats["hybrid 2^-5"]["size"] == pytest.approx(11.0)
    assert stats["baseline"]["n"] == 3 and stats["baseline"]["std"] > 0
    assert stats["baseline"]["rce_seen"] == pytest.approx(stats["baseline"]["rce"] + 1)
    assert "target met" in hashing_results.verdict(stats)

    far = hashing_results.summarize(
        _runs({"baseline": (0.0, 1000), "hybrid 2^-5": (-5.0, 110)})
    )
    assert "target missed" in hashing_results.verdict(far)
    one = hashing_results.summarize(
        _runs({"baseline": (0.0, 1000), "hybrid 2^-5": (-5.0, 110)}, seeds=1)
    )
    assert math.isnan(one["baseline"]["std"])
    assert "no std" in hashing_results.verdict(one)
    big = hashing_results.summarize(
        _runs({"baseline": (0.0, 1000), "hybrid 2^-2": (0.0, 300)})
    )
    assert hashing_results.verdict(big).startswith("No hybrid setting")


def _result(runs):
    features = {
        name: {
            f: {"treatment": "hybrid" if name != "baseline" else "full"}
            | {"top_k": 10, "hash_buckets": 125}
            for f in VOCAB
        }
        for name in dict.fromkeys(r["variant"] for r in runs)
    }
    return {
        "dataset": "synthetic",
        "runs": runs,
        "vocab": VOCAB,
        "features": features,
        "num_train_hours": 1,
        "train_hours": ["2026-01-01T00"],
        "eval_hours": ["2026-01-01T01"],
        "eval_events": 200,
        "seen_events": 150,
    }


def test_dataset_section_has_the_seen_columns_only_when_scored():
    runs = _runs({"baseline": (0.0, 1000), "hybrid 2^-5": (-0.5, 110)})
    text = "\n".join(hashing_results.dataset_section(_result(runs)))
    assert "| RCE (seen) | Δ RCE (seen) |" in text
    assert "150 evaluation events (75.0 %)" in text
    row = next(x for x in text.splitlines() if x.startswith("| hybrid 2^-5 "))
    assert row.count("|") == 9 and row.rstrip().endswith("| 11.0 |")
    plain = _runs({"baseline": (0.0, 1000), "hybrid 2^-5": (-0.5, 110)}, seen=False)
    text = "\n".join(hashing_results.dataset_section(_result(plain)))
    assert "RCE (seen)" not in text


TINY = reproduce_hashing.Budget(
    seeds=2,
    train_hours=1,
    events_per_hour=600,
    continuous_hours=2,
    continuous_events=400,
    movielens_users=None,
    k_shares=(0.25,),
    hash_exponents=(2,),
    epochs=1,
    hidden_units=(4,),
)


def test_tiny_reproduction_trains_every_variant_and_seed_and_writes_the_report(
    tmp_path,
):
    lines: list[str] = []
    table = reproduce_hashing.table_experiment(
        "synthetic", TINY, str(tmp_path), None, progress=lines.append
    )
    assert [(r["variant"], r["seed"]) for r in table["runs"]] == [
        (v, s) for v in ("baseline", "freq k=0.25", "hybrid 2^-2") for s in (0, 1)
    ]
    assert 0 < table["seen_events"] <= table["eval_events"] == 600
    for run in table["runs"]:
        assert np.isfinite(run["rce"]) and np.isfinite(run["rce_seen"])
    bits = {r["variant"]: r["bits"] for r in table["runs"]}
    assert bits["freq k=0.25"] < bits["baseline"]
    by_seed = {(r["variant"], r["seed"]): r["rce"] for r in table["runs"]}
    assert by_seed[("baseline", 0)] != by_seed[("baseline", 1)]  # seeds differ

    continuous = reproduce_hashing.continuous_experiment(
        TINY, str(tmp_path), progress=lines.append
    )
    assert [len(s) for s in continuous["series"].values()] == [2, 2]
    out = tmp_path / "docs" / "results_hashing.md"
    png = tmp_path / "docs" / "continuous_rce.png"
    out.parent.mkdir()
    hashing_results.write(
        {
            "budget": dataclasses.asdict(TINY),
            "command": "test",
            "minutes": 1.0,
            "synthetic": table,
            "continuous": continuous,
        },
        str(out),
        str(png),
    )
    text = out.read_text()
    assert "| hybrid 2^-2 |" in text and "RCE (seen)" in text
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert any("synthetic hybrid 2^-2 seed 1: RCE" in x for x in lines)
