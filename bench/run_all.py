"""``make bench``: every benchmark in its own process; one JSON summary at the end.

Each benchmark prints one JSON object on its last line with absolute figures *and* the
ratio against a baseline measured in the same run (this machine is shared and noisy, so
only the ratios are comparable between runs). This script runs them in turn, prints
their progress, and writes ``runs/bench/summary.json``. docs/BENCHMARKS.md records the
figures with the commands that produced them.

Usage: ``python bench/run_all.py [--only NAME,...] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (script, default args, --quick args)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "synthetic": ("bench/synthetic.py", [], ["--events", "200000"]),
    "beam_stats": ("bench/beam_stats.py", [], ["--events", "500000"]),
    "embeddings": ("bench/embeddings.py", [], ["--steps", "2"]),
    "optimizers": ("bench/optimizers.py", ["--rows", "1000000"], ["--rows", "100000"]),
    "trainer": (
        "bench/train_throughput.py",
        [],
        ["--steps", "200", "--events-per-hour", "10000"],
    ),
}


def _run(name: str, script: str, args: list[str]) -> dict:
    cmd = [sys.executable, os.path.join(REPO, script), *args]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        print(f"   FAILED (exit {proc.returncode}):\n{tail}", flush=True)
        return {"error": f"exit {proc.returncode}", "command": " ".join(cmd[1:])}
    result = json.loads(lines[-1])
    result["command"] = "python " + " ".join(cmd[1:]).replace(REPO + "/", "")
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"   {json.dumps(result)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--only", default="", help="comma-separated subset of " + ",".join(BENCHES)
    )
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    summary = {}
    for name in names:
        script, full, quick = BENCHES[name]
        summary[name] = _run(name, script, quick if args.quick else full)
    out = os.path.join(REPO, "runs", "bench")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return 1 if any("error" in r for r in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
