"""``python -m reproduce.planner --dry-run``: the plans of the validation grid."""

from __future__ import annotations

import json

from reproduce import planner as validation
from trainer.contracts.features import load_feature_spec


def test_dry_run_plans_every_method_and_the_plan_is_never_worse(tmp_path):
    work = tmp_path / "work"
    argv = ["--quick", "--dry-run", "--events-per-hour", "1500", "--train-hours", "1"]
    assert (
        validation.main([*argv, "--budgets", "60", "90", "--work-dir", str(work)]) == 0
    )
    results = json.loads((work / "planner.json").read_text())["datasets"]["synthetic"]
    plans = {(p["budget"], p["method"]): p for p in results["plans"]}
    assert set(plans) == {(b, m) for b in (60.0, 90.0) for m in validation.METHODS}
    for (budget, method), p in plans.items():
        assert p["size_percent"] <= budget + 1e-9, (budget, method)
        # the unrestricted plan is optimal over a superset of the uniform candidates
        assert (
            plans[(budget, "planned")]["predicted_cost"] <= p["predicted_cost"] + 1e-9
        )
    for key, path in results["specs"].items():
        spec = load_feature_spec(path)
        if "uniform mgqe" in key:
            assert {f.treatment.value for f in spec.categorical} <= {
                "mgqe",
                "dpq",
                "full",
            }
    assert "planned size %" in (work / "planner.md").read_text()


def test_table_and_plot_of_finished_runs(tmp_path):
    runs = [
        {"budget": 20.0, "method": m, "seed": s, "rce": r + s, "bits": 8000 * kb}
        for m, r, kb in (("planned", 1.0, 10), ("uniform hybrid", 0.5, 12))
        for s in (0, 1)
    ]
    results = {"datasets": {"synthetic": {"runs": runs, "plans": []}}}
    text = validation.table(results)
    assert "| 20 % | planned | 1.500 +- 0.707 | 10.0 | 2 |" in text
    assert "| 20 % | uniform hybrid | 1.000 +- 0.707 | 12.0 | 2 |" in text
    path = tmp_path / "p.png"
    validation.plot(runs, "synthetic", str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
