"""``make bench``: every benchmark in its own process; one JSON summary at the end.

Each benchmark prints one JSON object on its last line with absolute figures *and* the
ratio against a baseline measured in the same run (this machine is shared and noisy, so
only the ratios are comparable between runs). This script runs them in turn, prints
their progress, and writes ``runs/bench/summary.json``. docs/BENCHMARKS.md records the
figures with the commands that produced them.

Usage: ``python bench/run_all.py [--only NAME,...] [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name (= the file bench/NAME.py) -> (default args, --quick args). The quick sizes are
# the smallest that still exercise every measured path: the smoke test in
# tests/bench/test_smoke.py runs them all (a few minutes on 2 cores). ``{out}`` is
# replaced by --out.
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "synthetic": ([], ["--events", "20000"]),
    "beam_stats": ([], ["--events", "50000", "--hours", "2", "--files-per-hour", "1"]),
    "embeddings": (
        [],
        ["--rows", "20000,5000,2000,2000", "--batch", "256"]
        + ["--warmup", "1", "--steps", "1", "--rounds", "1"],
    ),
    "optimizers": (
        ["--rows", "1000000"],
        ["--rows", "20000", "--features", "2", "--seconds", "0.5", "--min-steps", "1"],
    ),
    "train_throughput": (
        [],
        ["--work-dir", "{out}/train_throughput", "--hours", "2"]
        + ["--events-per-hour", "3000", "--steps", "40", "--warmup-steps", "10"]
        + ["--repeats", "1", "--no-gmf"],
    ),
    "ranking_steps": (
        ["--xla-quantized"],
        ["--synthetic", "200", "--batches", "2", "--warmup", "1", "--steps", "2"]
        + [
            "--rounds",
            "1",
            "--profile",
            "{out}/ranking_profile",
            "--profile-steps",
            "2",
        ],
    ),
    "pipeline_hour": (
        ["--work-dir", "{out}/pipeline_hour"],
        ["--work-dir", "{out}/pipeline_hour", "--events", "5000"],
    ),
}


def _run(name: str, args: list[str]) -> dict:
    script = os.path.join("bench", f"{name}.py")
    cmd = [sys.executable, os.path.join(REPO, script), *args]
    command = " ".join(["python", script, *args])
    print(f"== {name}: {command}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        result = json.loads(lines[-1]) if lines and not proc.returncode else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        tail = (proc.stderr or proc.stdout)[-2000:]
        print(f"   FAILED (exit {proc.returncode}):\n{tail}", flush=True)
        return {"error": f"exit {proc.returncode}", "command": command}
    result["command"] = command
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"   {json.dumps(result)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--only", default="", help="comma-separated subset of " + ",".join(BENCHES)
    )
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument(
        "--out",
        default=os.path.join(REPO, "runs", "bench"),
        help="folder for summary.json and the benchmarks' work files",
    )
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    summary = {}
    for name in names:
        full, quick = BENCHES[name]
        bench_args = [a.replace("{out}", out) for a in (quick if args.quick else full)]
        summary[name] = _run(name, bench_args)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return 1 if any("error" in r for r in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
