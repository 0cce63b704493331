"""Every benchmark runs, as ``python bench/NAME.py`` and through ``make bench``.

Run as a script, ``bench/`` leads ``sys.path``, so a benchmark named like a package
(the old ``bench/trainer.py``) would hide it. The smoke run is ``bench/run_all.py
--quick`` (what ``make bench`` runs, at the smallest sizes): each benchmark in its own
process, each printing one JSON line. Only the keys are asserted, never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py"))

# the keys each benchmark's JSON line must carry
EXPECTED_KEYS = {
    "synthetic": {"events", "seconds", "events_per_s", "calibration_seconds"},
    "beam_stats": {"events", "seconds", "events_per_s", "limit_events_per_s", "ratio"},
    "embeddings": {"examples_per_s", "ratio_to_full", "targets_met", "config"},
    "optimizers": {
        "keras_adagrad_examples_per_s",
        "sparse_adagrad_examples_per_s",
        "ratio",
    },
    "train_throughput": {"variants", "events", "steps", "batch_size", "gmf_ml1m"},
    "ranking_steps": {"pairs", "step_time_ratio", "peak_rss_mb", "profile"},
    "pipeline_hour": {"events", "stage_seconds", "non_train_over_train"},
}
VARIANT_KEYS = {"examples_per_s", "peak_rss_mb", "serving_bits", "speed_vs_full"}


def _run_all_module():
    spec = importlib.util.spec_from_file_location("bench_run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_is_in_make_bench() -> None:
    assert set(_run_all_module().BENCHES) == set(SCRIPTS) - {"run_all"}
    assert set(EXPECTED_KEYS) == set(SCRIPTS) - {"run_all"}


@pytest.mark.parametrize("stem", SCRIPTS)
def test_no_benchmark_is_named_like_an_importable_module(stem) -> None:
    # bench/ is not on this process's sys.path, so a hit is a package or module
    # that ``python bench/<stem>.py`` would hide from every import in it.
    assert importlib.util.find_spec(stem) is None, (
        f"bench/{stem}.py would shadow the importable module {stem!r}: rename it"
    )


@pytest.mark.parametrize("stem", SCRIPTS)
def test_help_works_as_a_script(stem, tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{stem}.py"), "--help"],
        cwd=tmp_path,  # not the repository: the packages come from the install
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:"), proc.stdout[:500]


def test_run_all_rejects_an_unknown_benchmark(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--only", "nope", "--out", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "error: unknown benchmark(s) ['nope']" in proc.stderr


@pytest.mark.e2e
def test_quick_make_bench_prints_every_benchmarks_json(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == summary
    assert set(summary) == set(EXPECTED_KEYS)
    for name, keys in EXPECTED_KEYS.items():
        result = summary[name]
        assert "error" not in result, (name, result)
        assert keys <= set(result), (name, sorted(keys - set(result)))
        assert result["command"].startswith(f"python bench/{name}.py"), result
    variants = summary["train_throughput"]["variants"]
    assert set(variants) == {"full", "hybrid", "mgqe"}
    for name, figures in variants.items():
        assert VARIANT_KEYS <= set(figures), (name, sorted(VARIANT_KEYS - set(figures)))
    assert set(summary["embeddings"]["examples_per_s"]) == set(
        summary["embeddings"]["ratio_to_full"]
    )
    ranking = summary["ranking_steps"]
    quantized = {
        f"{b}_{m}" for b in ("gmf", "neumf", "sasrec") for m in ("dpq", "mgqe")
    }
    assert set(ranking["step_time_ratio"]) == quantized
    assert set(ranking["profile"]) == set(ranking["pairs"])
    for name, prof in ranking["profile"].items():
        assert prof["ops"] and 0 < prof["ops"][0][3] <= 1, (name, prof)
    hour = summary["pipeline_hour"]
    assert hour["events"] == 5000
    assert {"stats", "transform", "train", "export", "evaluate"} <= set(
        hour["stage_seconds"]
    ), hour
    assert hour["non_train_over_train"] > 0
